"""The associations v4 endpoints: per-record list, batch read/create/archive, labels.

Per-record lists page by ``after`` (at most 500 a page); batch reads take at most 1,000 ids,
answer 207 naming the unknown ones, and page each record's associations past 500. Creating a
labeled association implies the unlabeled one, and a new primary replaces the old one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from werkzeug.wrappers import Request, Response

from sandboxes.hubspot.errors import not_found, validation
from sandboxes.hubspot.portal import Portal
from sandboxes.hubspot.schema import AssociationType, ObjectType
from sandboxes.hubspot.values import ms_to_iso
from sandboxes.kit.server import empty_response, json_response, read_json

MAX_PAGE = 500
MAX_BATCH_READ = 1_000
MAX_BATCH_WRITE = 2_000


def _types(portal: Portal, from_name: str, to_name: str) -> tuple[ObjectType, ObjectType]:
    return portal.records.object_type(from_name), portal.records.object_type(to_name)


def _grouped(
    portal: Portal, source: ObjectType, target: ObjectType, record_id: int
) -> list[dict[str, Any]]:
    pairs = portal.store.associations_of(source.name, record_id, target.name)
    return _entries(portal, source, target, pairs, {})


def _entries(
    portal: Portal,
    source: ObjectType,
    target: ObjectType,
    pairs: Sequence[tuple[int, int]],
    types: dict[int, dict[str, Any]],
) -> list[dict[str, Any]]:
    """``(to_id, type_id)`` pairs as v4 results; ``types`` caches each type's JSON."""
    grouped: dict[int, list[dict[str, Any]]] = {}
    for to_id, type_id in pairs:
        if type_id not in types:
            assoc = portal.schema.association_type(source.name, target.name, type_id)
            types[type_id] = assoc.to_json()
        grouped.setdefault(to_id, []).append(types[type_id])
    return [{"toObjectId": to_id, "associationTypes": kinds} for to_id, kinds in grouped.items()]


def _page(entries: list[dict[str, Any]], after: str | None, limit: int) -> tuple[list[Any], Any]:
    start = int(after) if after and after.isdigit() else 0
    chunk = entries[start : start + limit]
    following = start + len(chunk)
    paging = {"next": {"after": str(following)}} if following < len(entries) else None
    return chunk, paging


def list_associations(
    portal: Portal, request: Request, object_type: str, object_id: str, to_object_type: str
) -> Response:
    """``GET /crm/v4/objects/{from}/{id}/associations/{to}``."""
    source, target = _types(portal, object_type, to_object_type)
    row = portal.records.require(source, object_id)
    limit = int(request.args.get("limit", MAX_PAGE))
    if not 1 <= limit <= MAX_PAGE:
        raise validation(f"limit must be between 1 and {MAX_PAGE}")
    results, paging = _page(_grouped(portal, source, target, row["id"]),
                            request.args.get("after"), limit)  # fmt: skip
    reply: dict[str, Any] = {"results": results}
    if paging:
        reply["paging"] = paging
    return json_response(reply)


def _resolve_types(
    portal: Portal, source: ObjectType, target: ObjectType, specs: Sequence[Any]
) -> list[AssociationType]:
    chosen = []
    for spec in specs:
        try:
            type_id = int(spec["associationTypeId"])
            chosen.append(portal.schema.association_type(source.name, target.name, type_id))
        except (KeyError, TypeError, ValueError):
            raise validation(
                f"association type {spec!r} does not exist from {source.name} to {target.name}"
            ) from None
    return chosen


def associate_by_type_ids(
    portal: Portal, source: ObjectType, from_id: Any, to_id: Any, type_ids: Sequence[int]
) -> None:
    """Associate a new record inline (create with ``associations``): the target type comes
    from the association type ids."""
    for type_id in type_ids:
        matches = [
            a for a in portal.schema.associations
            if a.from_type == source.name and a.type_id == type_id
        ]  # fmt: skip
        if not matches:
            raise validation(f"association type {type_id} does not exist from {source.name}")
        target = portal.records.object_type(matches[0].to_type)
        portal.records.associate(source, from_id, target, to_id, matches)


def put_association(
    portal: Portal,
    request: Request,
    object_type: str,
    object_id: str,
    to_object_type: str,
    to_object_id: str,
) -> Response:
    """``PUT /crm/v4/objects/{from}/{id}/associations/{to}/{toId}`` with a list of types."""
    source, target = _types(portal, object_type, to_object_type)
    body = read_json(request)
    if not isinstance(body, list):
        raise validation("Invalid input JSON: expected a list of association types")
    chosen = _resolve_types(portal, source, target, body)
    made = portal.records.associate(source, object_id, target, to_object_id, chosen)
    return json_response(_created(source, object_id, target, to_object_id, made), 201)


def put_default_association(
    portal: Portal,
    request: Request,
    from_object_type: str,
    from_object_id: str,
    to_object_type: str,
    to_object_id: str,
) -> Response:
    """``PUT /crm/v4/objects/{from}/{id}/associations/default/{to}/{toId}``."""
    source, target = _types(portal, from_object_type, to_object_type)
    default = portal.schema.default_association(source.name, target.name)
    if default is None:
        raise validation(f"{source.name} cannot be associated with {target.name}")
    portal.records.associate(source, from_object_id, target, to_object_id, [default])
    return json_response(
        {
            "status": "COMPLETE",
            "results": [_created(source, from_object_id, target, to_object_id, [default])],
            "startedAt": ms_to_iso(portal.clock.now_ms()),
            "completedAt": ms_to_iso(portal.clock.now_ms()),
        }
    )


def delete_association(
    portal: Portal,
    request: Request,
    object_type: str,
    object_id: str,
    to_object_type: str,
    to_object_id: str,
) -> Response:
    """``DELETE /crm/v4/objects/{from}/{id}/associations/{to}/{toId}``: every type."""
    source, target = _types(portal, object_type, to_object_type)
    portal.records.dissociate(source, object_id, target, to_object_id)
    return empty_response(204)


def _created(
    source: ObjectType, from_id: Any, target: ObjectType, to_id: Any, made: list[AssociationType]
) -> dict[str, Any]:
    return {
        "fromObjectTypeId": source.object_type_id,
        "fromObjectId": int(from_id),
        "toObjectTypeId": target.object_type_id,
        "toObjectId": int(to_id),
        "labels": [a.label for a in made if a.label],
    }


def _inputs(body: Any, cap: int) -> list[Mapping[str, Any]]:
    if not isinstance(body, Mapping) or not isinstance(body.get("inputs"), list):
        raise validation("Invalid input JSON: a batch needs an 'inputs' list")
    if len(body["inputs"]) > cap:
        raise validation(f"Batch input size of {len(body['inputs'])} exceeds the limit of {cap}")
    return body["inputs"]


def batch_read(
    portal: Portal, request: Request, from_object_type: str, to_object_type: str
) -> Response:
    """``POST /crm/v4/associations/{from}/{to}/batch/read``."""
    source, target = _types(portal, from_object_type, to_object_type)
    results, missing = [], []
    inputs = _inputs(read_json(request), MAX_BATCH_READ)
    # the inputs' records and associations in one query each, not one per input
    ids = sorted({int(k) for k in (str(e.get("id")) for e in inputs) if k.isdigit()})
    live = portal.store.live_ids(source.name, ids)
    pairs = portal.store.associations_of_many(source.name, sorted(live), target.name)
    types: dict[int, dict[str, Any]] = {}
    for entry in inputs:
        key = str(entry.get("id"))
        if not key.isdigit() or int(key) not in live:
            missing.append(key)
            continue
        entries = _entries(portal, source, target, pairs.get(int(key), ()), types)
        to, paging = _page(entries, entry.get("after"), MAX_PAGE)
        result: dict[str, Any] = {"from": {"id": key}, "to": to}
        if paging:
            result["paging"] = paging
        results.append(result)
    now = ms_to_iso(portal.clock.now_ms())
    reply: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": now,
        "completedAt": now,
    }
    if not missing:
        return json_response(reply)
    reply["numErrors"] = len(missing)
    reply["errors"] = [
        {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "subCategory": "crm.associations.FROM_OBJECT_NOT_FOUND",
            "message": f"No {source.singular.lower()} is associated with id {key}.",
            "context": {"fromObjectId": [key]},
            "errors": [],
            "links": {},
        }
        for key in missing
    ]
    return json_response(reply, 207)


def batch_create(
    portal: Portal, request: Request, from_object_type: str, to_object_type: str
) -> Response:
    """``POST …/batch/create``: 201 with what was associated."""
    source, target = _types(portal, from_object_type, to_object_type)
    results = []
    for entry in _inputs(read_json(request), MAX_BATCH_WRITE):
        from_id = (entry.get("from") or {}).get("id")
        to_id = (entry.get("to") or {}).get("id")
        chosen = _resolve_types(portal, source, target, entry.get("types") or ())
        made = portal.records.associate(source, from_id, target, to_id, chosen)
        results.append(_created(source, from_id, target, to_id, made))
    now = ms_to_iso(portal.clock.now_ms())
    return json_response(
        {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}, 201
    )


def batch_archive(
    portal: Portal, request: Request, from_object_type: str, to_object_type: str
) -> Response:
    """``POST …/batch/archive``: remove every association between the pairs; 204."""
    source, target = _types(portal, from_object_type, to_object_type)
    for entry in _inputs(read_json(request), MAX_BATCH_WRITE):
        from_id = (entry.get("from") or {}).get("id")
        for to in entry.get("to") or ():
            portal.records.dissociate(source, from_id, target, to.get("id"))
    return empty_response(204)


def batch_archive_labels(
    portal: Portal, request: Request, from_object_type: str, to_object_type: str
) -> Response:
    """``POST …/batch/labels/archive``: remove only the given types; 204."""
    source, target = _types(portal, from_object_type, to_object_type)
    for entry in _inputs(read_json(request), MAX_BATCH_WRITE):
        from_id = (entry.get("from") or {}).get("id")
        to_id = (entry.get("to") or {}).get("id")
        chosen = _resolve_types(portal, source, target, entry.get("types") or ())
        portal.records.dissociate(source, from_id, target, to_id, chosen)
    return empty_response(204)


def labels(
    portal: Portal, request: Request, from_object_type: str, to_object_type: str
) -> Response:
    """``GET /crm/v4/associations/{from}/{to}/labels``: the association types."""
    source, target = _types(portal, from_object_type, to_object_type)
    types = portal.schema.association_types(source.name, target.name)
    if not types:
        raise not_found(f"No association types from {source.name} to {target.name}")
    return json_response({"results": [a.to_json() for a in types]})
