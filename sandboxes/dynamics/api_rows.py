"""Single-row endpoints of the Dataverse sandbox: create, retrieve, update/upsert, delete.

- ``POST /<set>``: 204 with ``OData-EntityId`` (201 and the row with
  ``Prefer: return=representation``); the body may carry the new row's id.
- ``GET /<set>(<id>)``: the row (``$select``); ``If-None-Match`` with the current etag is 304.
- ``PATCH /<set>(<id>)``: an upsert. Without conditions it updates, or creates the row with
  that id; ``If-Match: *`` makes it update-only (404 when missing), ``If-Match: W/"<v>"``
  update-only at that version (412 when it moved on), ``If-None-Match: *`` create-only (412
  when the row exists). 204 with ``OData-EntityId``, or 200/201 with the row when asked.
- ``DELETE /<set>(<id>)``: 204; 404 when missing; ``If-Match`` as for PATCH.
- ``DELETE /<set>(<id>)/<navigation property>/$ref``: clears a lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from werkzeug.wrappers import Request, Response

from sandboxes.dynamics.errors import already_exists, not_found, version_mismatch
from sandboxes.dynamics.odata import check_select, parse_select, query_error
from sandboxes.dynamics.org import DataverseOrg
from sandboxes.dynamics.records import etag
from sandboxes.dynamics.schema import Entity
from sandboxes.dynamics.shape import Annotations, RowWriter, parse_prefer
from sandboxes.dynamics.values import normalize_guid
from sandboxes.kit.server import BadJson, read_json

JSON_TYPE = "application/json; odata.metadata=minimal"


def odata_json(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A Web API JSON response."""
    response = Response(orjson.dumps(payload), status=status, content_type=JSON_TYPE)
    response.headers["OData-Version"] = "4.0"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def no_content(status: int = 204, headers: Mapping[str, str] | None = None) -> Response:
    """A response without a body."""
    response = Response(status=status)
    response.headers.pop("Content-Type", None)
    response.headers["OData-Version"] = "4.0"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def entity_url(org: DataverseOrg, entity: Entity, record_id: str) -> str:
    """The absolute URL of a row (the ``OData-EntityId`` header's value)."""
    return f"{org.base_url}/api/data/v9.2/{entity.set_name}({record_id})"


def _prefer(request: Request) -> dict[str, Any]:
    return parse_prefer(request.headers.getlist("Prefer"))


def _body(request: Request) -> Any:
    try:
        return read_json(request)
    except BadJson as error:
        raise query_error(f"Error parsing the request body: {error}") from None


def _record_key(key: str) -> str:
    guid = normalize_guid(key)
    if guid is None:
        raise query_error(f"Invalid key '{key}': a row is addressed by its guid.")
    return guid


def _representation(
    org: DataverseOrg, request: Request, entity: Entity, row: Mapping[str, Any], status: int
) -> Response:
    select = request.args.get("$select")
    selected = check_select(entity, parse_select(select)) if select else None
    annotations = Annotations(_prefer(request).get("odata.include-annotations"))
    [item] = RowWriter(org.store, entity, selected, annotations).render([row])
    columns = f"({','.join(a.wire_name for a in selected)})" if selected else ""
    context = f"{org.base_url}/api/data/v9.2/$metadata#{entity.set_name}{columns}/$entity"
    headers = {"OData-EntityId": entity_url(org, entity, row[entity.primary_id]),
               "Preference-Applied": "return=representation", "ETag": etag(row)}  # fmt: skip
    return odata_json({"@odata.context": context, **item}, status, headers)


def _written(
    org: DataverseOrg, request: Request, entity: Entity, row: Mapping[str, Any], created: bool
) -> Response:
    if "return" in _prefer(request) and _prefer(request)["return"] == "representation":
        return _representation(org, request, entity, row, 201 if created else 200)
    url = entity_url(org, entity, row[entity.primary_id])
    return no_content(204, {"OData-EntityId": url, "Location": url})


def create(org: DataverseOrg, request: Request, entity: Entity) -> Response:
    """``POST /<set>``."""
    records = org.records
    values = records.parse_payload(entity, _body(request), creating=True)
    row = records.create(entity, values)
    return _written(org, request, entity, row, created=True)


def retrieve(org: DataverseOrg, request: Request, entity: Entity, key: str) -> Response:
    """``GET /<set>(<id>)``."""
    record_id = _record_key(key)
    row = org.store.fetch(entity, record_id)
    if row is None:
        raise not_found(entity.name, record_id)
    annotations = _prefer(request).get("odata.include-annotations")
    if request.headers.get("If-None-Match") == etag(row) and not annotations:
        return no_content(304)
    return _representation(org, request, entity, row, 200)


def upsert(org: DataverseOrg, request: Request, entity: Entity, key: str) -> Response:
    """``PATCH /<set>(<id>)``."""
    record_id = _record_key(key)
    records = org.records
    with org.store.transaction():
        current = org.store.fetch(entity, record_id)
        _check_conditions(request, entity, record_id, current)
        values = records.parse_payload(entity, _body(request), creating=current is None)
        if current is None:
            row = records.create(entity, values, record_id=record_id)
        else:
            row = records.update(entity, record_id, values)
    return _written(org, request, entity, row, created=current is None)


def _check_conditions(
    request: Request, entity: Entity, record_id: str, current: Mapping[str, Any] | None
) -> None:
    if_match = request.headers.get("If-Match")
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match == "*" and current is not None:
        raise already_exists()
    if if_match is None:
        return
    if current is None:
        raise not_found(entity.name, record_id)
    if if_match != "*" and if_match != etag(current):
        raise version_mismatch()


def delete(org: DataverseOrg, request: Request, entity: Entity, key: str) -> Response:
    """``DELETE /<set>(<id>)``."""
    record_id = _record_key(key)
    with org.store.transaction():
        current = org.store.fetch(entity, record_id)
        if current is None:
            raise not_found(entity.name, record_id)
        _check_conditions(request, entity, record_id, current)
        org.records.delete(entity, record_id)
    return no_content(204)


def delete_reference(
    org: DataverseOrg, request: Request, entity: Entity, key: str, nav: str
) -> Response:
    """``DELETE /<set>(<id>)/<navigation property>/$ref``: clear one lookup."""
    record_id = _record_key(key)
    found = entity.nav_properties.get(nav)
    if found is None:
        raise query_error(f"Resource not found for the segment '{nav}'.")
    attribute, _targets = found
    values: dict[str, Any] = {attribute.name: None}
    if attribute.polymorphic:
        values[f"{attribute.name}type"] = None
    if org.store.fetch(entity, record_id) is None:
        raise not_found(entity.name, record_id)
    org.records.update(entity, record_id, values)
    return no_content(204)
