"""The CRM objects v3 endpoints: list, get, create, update, archive, batch, merge.

Lists page in id order with an ``after`` cursor (at most 100 a page, 50 with
``propertiesWithHistory``); ``archived=true`` lists only the recycle bin, with ``archivedAt``.
Records, lists and batch reads show ``propertiesWithHistory`` when asked for it. Batches take
at most 100 inputs; reads and updates that miss some ids answer 207 Multi-Status with an
``OBJECT_NOT_FOUND`` error naming them, while invalid property values fail the whole batch with
400, as HubSpot's do. A merged-away id reads as its survivor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from werkzeug.wrappers import Request, Response

from sandboxes.hubspot.errors import HsError, not_found, validation
from sandboxes.hubspot.portal import Portal
from sandboxes.hubspot.schema import ObjectType
from sandboxes.hubspot.store import LIVE
from sandboxes.hubspot.values import ms_to_iso
from sandboxes.kit.server import empty_response, json_response, read_json

MAX_PAGE = 100
MAX_PAGE_WITH_HISTORY = 50
MAX_BATCH = 100


def list_param(request: Request, name: str) -> list[str]:
    """A list parameter sent repeated (``?p=a&p=b``) or comma-separated (``?p=a,b``)."""
    return [part for raw in request.args.getlist(name) for part in raw.split(",") if part]


def bool_param(request: Request, name: str) -> bool:
    """A boolean parameter (``true``/``True``/``false``/``False``)."""
    return request.args.get(name, "false").strip().lower() == "true"


def _now(portal: Portal) -> str:
    return ms_to_iso(portal.clock.now_ms())


def _object_type(portal: Portal, name: str) -> ObjectType:
    return portal.records.object_type(name)


def _batch_inputs(body: Any) -> list[Mapping[str, Any]]:
    if not isinstance(body, Mapping) or not isinstance(body.get("inputs"), list):
        raise validation("Invalid input JSON: a batch needs an 'inputs' list")
    inputs = body["inputs"]
    if len(inputs) > MAX_BATCH:
        raise validation(f"Batch input size of {len(inputs)} exceeds the limit of {MAX_BATCH}")
    return inputs


def _batch_reply(
    portal: Portal, results: list[dict[str, Any]], missing: Sequence[str], ok_status: int
) -> Response:
    started = _now(portal)
    body: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": _now(portal),
    }
    if not missing:
        return json_response(body, ok_status)
    body["numErrors"] = 1
    body["errors"] = [
        {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": "Could not get some objects, they may be deleted or not exist. "
            "Check that ids are valid.",
            "context": {"ids": list(missing)},
            "errors": [],
            "links": {},
        }
    ]
    return json_response(body, 207)


# -- list, get, create, update, archive ------------------------------------------------------


def list_objects(portal: Portal, request: Request, object_type: str) -> Response:
    """``GET /crm/v3/objects/{type}``: a page of live (or only archived) records by id."""
    kind = _object_type(portal, object_type)
    limit = _limit(request.args.get("limit", "10"))
    history = list_param(request, "propertiesWithHistory")
    if history:
        limit = min(limit, MAX_PAGE_WITH_HISTORY)
    archived = bool_param(request, "archived")
    after = request.args.get("after")
    start = _after_id(after)
    state = "archived = 1 AND merged_into IS NULL" if archived else LIVE
    rows = portal.store.select(
        f"WHERE type = ? AND {state} AND id >= ? ORDER BY id LIMIT ?",
        (kind.name, start, limit + 1),
    )
    properties = list_param(request, "properties")
    associations = list_param(request, "associations")
    results = []
    for row in rows[:limit]:
        body = _shown(portal, kind, row, properties, history)
        if associations:
            body["associations"] = _v3_associations(portal, kind, row["id"], associations)
        results.append(body)
    reply: dict[str, Any] = {"results": results}
    if len(rows) > limit:
        next_after = str(rows[limit]["id"])
        reply["paging"] = {
            "next": {
                "after": next_after,
                "link": f"{portal.base_url}/crm/v3/objects/{object_type}?after={next_after}",
            }
        }
    return json_response(reply)


def _limit(text: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        raise validation(f"limit must be an integer; got {text!r}") from None
    if not 1 <= limit <= MAX_PAGE:
        raise validation(f"limit must be between 1 and {MAX_PAGE}; got {limit}")
    return limit


def _after_id(after: str | None) -> int:
    if not after:
        return 0
    try:
        return int(after)
    except ValueError:
        raise validation(f"Invalid paging cursor after={after!r}") from None


def _v3_associations(
    portal: Portal, kind: ObjectType, record_id: int, targets: list[str]
) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for target in targets:
        other = portal.schema.object_type(target)
        if other is None:
            continue
        entries = []
        base = f"{_singular(kind)}_to_{_singular(other)}"
        for to_id, type_id in portal.store.associations_of(kind.name, record_id, other.name):
            assoc = portal.schema.association_type(kind.name, other.name, type_id)
            if assoc.primary:
                name = base
            elif assoc.label is None:
                name = f"{base}_unlabeled"
            else:
                name = assoc.label.lower().replace(" ", "_")
            entries.append({"id": str(to_id), "type": name})
        if entries:
            shown[other.name] = {"results": entries}
    return shown


def _singular(kind: ObjectType) -> str:
    return kind.singular.lower().replace(" ", "_")


def get_object(portal: Portal, request: Request, object_type: str, object_id: str) -> Response:
    """``GET /crm/v3/objects/{type}/{id}`` (``idProperty`` for a unique property)."""
    kind = _object_type(portal, object_type)
    archived = bool_param(request, "archived")
    row = _find(portal, kind, object_id, request.args.get("idProperty"), archived)
    if row is None:
        raise not_found()
    properties = list_param(request, "properties")
    history = list_param(request, "propertiesWithHistory")
    return json_response(_shown(portal, kind, row, properties, history))


def _shown(
    portal: Portal,
    kind: ObjectType,
    row: Mapping[str, Any],
    properties: Sequence[str],
    history: Sequence[str],
) -> dict[str, Any]:
    """A record's JSON, with ``propertiesWithHistory`` for the known names of ``history``."""
    body = portal.records.to_json(kind, row, properties)
    if history:
        known = [name for name in dict.fromkeys(history) if kind.property(name) is not None]
        body["propertiesWithHistory"] = portal.records.history.of(kind.name, row, known)
    return body


def _find(
    portal: Portal, kind: ObjectType, key: str, id_property: str | None, archived: bool = False
) -> dict[str, Any] | None:
    if id_property and id_property != "hs_object_id":
        if id_property not in kind.unique_properties:
            raise validation(f"{id_property} is not a unique property of {kind.name}")
        owner = portal.store.unique_owner(kind.name, id_property, str(key))
        return portal.records.live(kind, owner) if owner is not None else None
    try:
        return portal.records.resolve(kind, key, archived=archived)
    except HsError:
        return None


def create_object(portal: Portal, request: Request, object_type: str) -> Response:
    """``POST /crm/v3/objects/{type}``: 201 with the new record."""
    kind = _object_type(portal, object_type)
    body = read_json(request)
    row = portal.records.create(kind, dict(body.get("properties") or {}))
    _inline_associations(portal, kind, row["id"], body.get("associations") or ())
    return json_response(portal.records.to_json(kind, row, list(body.get("properties") or ())), 201)


def _inline_associations(
    portal: Portal, kind: ObjectType, record_id: int, associations: Sequence[Any]
) -> None:
    from sandboxes.hubspot.api_associations import associate_by_type_ids

    for entry in associations:
        to_id = (entry.get("to") or {}).get("id")
        type_ids = [int(t["associationTypeId"]) for t in entry.get("types") or ()]
        associate_by_type_ids(portal, kind, record_id, to_id, type_ids)


def update_object(portal: Portal, request: Request, object_type: str, object_id: str) -> Response:
    """``PATCH /crm/v3/objects/{type}/{id}``: 200 with the record."""
    kind = _object_type(portal, object_type)
    body = read_json(request)
    row = _find(portal, kind, object_id, request.args.get("idProperty"))
    if row is None:
        raise not_found()
    values = dict(body.get("properties") or {})
    row = portal.records.update(kind, row["id"], values)
    return json_response(portal.records.to_json(kind, row, list(values)))


def archive_object(portal: Portal, request: Request, object_type: str, object_id: str) -> Response:
    """``DELETE /crm/v3/objects/{type}/{id}``: 204, the record moves to the recycle bin."""
    kind = _object_type(portal, object_type)
    portal.records.archive(kind, object_id)
    return empty_response(204)


def merge_objects(portal: Portal, request: Request, object_type: str) -> Response:
    """``POST /crm/v3/objects/{type}/merge``: ``objectIdToMerge`` into ``primaryObjectId``."""
    kind = _object_type(portal, object_type)
    body = read_json(request)
    row = portal.records.merge(kind, body.get("primaryObjectId"), [body.get("objectIdToMerge")])
    shown = [*kind.default_properties, "hs_merged_object_ids"]
    return json_response(portal.records.to_json(kind, row, shown))


# -- batch ----------------------------------------------------------------------------------


def _traced(body: dict[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """A batch result carrying its input's ``objectWriteTraceId`` back, as HubSpot does."""
    if entry.get("objectWriteTraceId") is not None:
        body["objectWriteTraceId"] = str(entry["objectWriteTraceId"])
    return body


def batch_read(portal: Portal, request: Request, object_type: str) -> Response:
    """``POST …/batch/read``: the records of the input ids (207 naming the missing ones)."""
    kind = _object_type(portal, object_type)
    body = read_json(request)
    inputs = _batch_inputs(body)
    properties = list(body.get("properties") or ())
    history = list(body.get("propertiesWithHistory") or ())
    archived = bool_param(request, "archived")
    results, missing = [], []
    for entry in inputs:
        key = str(entry.get("id"))
        row = _find(portal, kind, key, body.get("idProperty"), archived)
        if row is None:
            missing.append(key)
        else:
            results.append(_shown(portal, kind, row, properties, history))
    return _batch_reply(portal, results, missing, 200)


def batch_create(portal: Portal, request: Request, object_type: str) -> Response:
    """``POST …/batch/create``: 201; an invalid input fails the whole batch."""
    kind = _object_type(portal, object_type)
    inputs = _batch_inputs(read_json(request))
    values = [dict(entry.get("properties") or {}) for entry in inputs]
    rows = portal.records.create_many(kind, values)
    for row, entry in zip(rows, inputs, strict=True):
        _inline_associations(portal, kind, row["id"], entry.get("associations") or ())
    results = [
        _traced(portal.records.to_json(kind, row, list(v)), entry)
        for row, v, entry in zip(rows, values, inputs, strict=True)
    ]
    return _batch_reply(portal, results, [], 201)


def batch_update(portal: Portal, request: Request, object_type: str) -> Response:
    """``POST …/batch/update``: 200, or 207 when some ids are not live records."""
    kind = _object_type(portal, object_type)
    body = read_json(request)
    inputs = _batch_inputs(body)
    id_property = body.get("idProperty")
    for entry in inputs:
        portal.records.checked(kind, dict(entry.get("properties") or {}))
    stamp = portal.clock.stamp()
    results, missing = [], []
    for entry in inputs:
        key = str(entry.get("id"))
        row = _find(portal, kind, key, entry.get("idProperty") or id_property)
        if row is None:
            missing.append(key)
            continue
        values = dict(entry.get("properties") or {})
        row = portal.records.update(kind, row["id"], values, stamp=stamp)
        results.append(_traced(portal.records.to_json(kind, row, list(values)), entry))
    return _batch_reply(portal, results, missing, 200)


def batch_upsert(portal: Portal, request: Request, object_type: str) -> Response:
    """``POST …/batch/upsert``: create or update by a unique ``idProperty`` value."""
    kind = _object_type(portal, object_type)
    inputs = _batch_inputs(read_json(request))
    for entry in inputs:
        prop = entry.get("idProperty")
        if not prop or prop not in kind.unique_properties:
            raise validation(f"idProperty {prop!r} is not a unique property of {kind.name}")
        portal.records.checked(kind, dict(entry.get("properties") or {}))
    stamp = portal.clock.stamp()
    results = []
    for entry in inputs:
        prop, key = entry["idProperty"], str(entry.get("id"))
        values = {**dict(entry.get("properties") or {}), prop: key}
        owner = portal.store.unique_owner(kind.name, prop, key)
        if owner is None:
            row, new = portal.records.create(kind, values, stamp=stamp), True
        else:
            row, new = portal.records.update(kind, owner, values, stamp=stamp), False
        results.append(
            _traced({**portal.records.to_json(kind, row, list(values)), "new": new}, entry)
        )
    return _batch_reply(portal, results, [], 200)


def batch_archive(portal: Portal, request: Request, object_type: str) -> Response:
    """``POST …/batch/archive``: 204; ids that are already gone are ignored."""
    kind = _object_type(portal, object_type)
    for entry in _batch_inputs(read_json(request)):
        try:
            portal.records.archive(kind, entry.get("id"))
        except HsError:
            continue
    return empty_response(204)
