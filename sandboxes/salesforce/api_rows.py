"""sObject rows: get, create, update, delete, and get/upsert/delete by external id.

Conditional requests follow Salesforce: ETag, If-Match and If-None-Match exist for Account rows
only; If-Unmodified-Since (an HTTP-date compared with LastModifiedDate) answers 412 when the
record changed later; an invalid conditional header on PATCH or POST answers 400; DELETE
ignores conditional headers. GET also honours If-Modified-Since (304).
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime
from typing import Any

import orjson
from werkzeug.http import http_date, parse_date
from werkzeug.wrappers import Request, Response

from sandboxes.kit.server import empty_response, json_response, read_json
from sandboxes.salesforce.errors import SfError, bad_request, not_found, precondition_failed
from sandboxes.salesforce.org import Org
from sandboxes.salesforce.schema import SObject
from sandboxes.salesforce.values import storage_to_datetime, to_wire

_ETAG_LIST = re.compile(r'^\s*(\*|(W/)?"[^"]*"(\s*,\s*(W/)?"[^"]*")*)\s*$')
_ETAG_OPAQUE = re.compile(r'(?:W/)?"([^"]*)"')
CONDITIONAL_OBJECTS = ("Account",)


def record_url(version: str, sobject: str, record_id: str) -> str:
    """The root-relative url of a record for API ``version``."""
    return f"/services/data/v{version}/sobjects/{sobject}/{record_id}"


def render_row(
    obj: SObject, row: dict[str, Any], version: str, fields: list[str] | None = None
) -> dict[str, Any]:
    """A record as sObject Rows answers it: attributes, then fields in describe order."""
    record: dict[str, Any] = {
        "attributes": {"type": obj.name, "url": record_url(version, obj.name, row["Id"])}
    }
    chosen = obj.stored_fields() if fields is None else [_field_or_400(obj, f) for f in fields]
    for field in chosen:
        record[field["name"]] = to_wire(field["type"], row.get(field["name"]))
    return record


def _field_or_400(obj: SObject, name: str) -> dict[str, Any]:
    field = obj.field(name.strip())
    if field is None:
        raise bad_request(
            "INVALID_FIELD", f"No such column '{name.strip()}' on entity '{obj.name}'."
        )
    return field


def etag(row: dict[str, Any]) -> str:
    """A strong ETag of the row's content (changes whenever any value changes)."""
    digest = hashlib.sha1(orjson.dumps(row, option=orjson.OPT_SORT_KEYS)).digest()
    return '"' + base64.b64encode(digest).decode() + '-gzip"'


def _etag_core(tag: str) -> str:
    return tag.strip().removeprefix("W/").strip('"').removesuffix("-gzip").removesuffix("-")


def _http_date_header(request: Request, name: str) -> datetime | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    parsed = parse_date(raw)
    if parsed is None:
        raise bad_request("INVALID_HEADER_TYPE", f"Invalid value for header {name}: {raw}")
    return parsed


def _etag_header(request: Request, name: str) -> list[str] | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    if not _ETAG_LIST.match(raw):
        raise bad_request("INVALID_HEADER_TYPE", f"Invalid value for header {name}: {raw}")
    return ["*"] if raw.strip() == "*" else [_etag_core(m) for m in _ETAG_OPAQUE.findall(raw)]


def check_write_preconditions(request: Request, obj: SObject, row: dict[str, Any]) -> None:
    """Apply If-Match / If-None-Match (Account) and If-Unmodified-Since to a PATCH."""
    if obj.name in CONDITIONAL_OBJECTS:
        current = _etag_core(etag(row))
        wanted = _etag_header(request, "If-Match")
        if wanted is not None and "*" not in wanted and current not in wanted:
            raise precondition_failed()
        unwanted = _etag_header(request, "If-None-Match")
        if unwanted is not None and ("*" in unwanted or current in unwanted):
            raise precondition_failed()
    since = _http_date_header(request, "If-Unmodified-Since")
    if since is not None and storage_to_datetime(row["LastModifiedDate"]) > since:
        raise precondition_failed()


def _not_modified(request: Request, obj: SObject, row: dict[str, Any]) -> bool:
    if obj.name in CONDITIONAL_OBJECTS:
        unwanted = request.headers.get("If-None-Match")
        if unwanted is not None and _etag_core(etag(row)) in [
            _etag_core(m) for m in _ETAG_OPAQUE.findall(unwanted)
        ]:
            return True
    since = parse_date(request.headers.get("If-Modified-Since") or "")
    return since is not None and storage_to_datetime(row["LastModifiedDate"]) <= since


def _get(org: Org, request: Request, version: str, obj: SObject, row: dict[str, Any]) -> Response:
    headers = {"Last-Modified": http_date(storage_to_datetime(row["LastModifiedDate"]))}
    if obj.name in CONDITIONAL_OBJECTS:
        headers["ETag"] = etag(row)
    if _not_modified(request, obj, row):
        return empty_response(304, headers)
    fields = request.args.get("fields")
    chosen = [f for f in fields.split(",") if f.strip()] if fields else None
    return json_response(render_row(obj, row, version, chosen), headers=headers)


def _body(request: Request) -> dict[str, Any]:
    body = read_json(request)
    if not isinstance(body, dict):
        raise bad_request("JSON_PARSER_ERROR", "The request body must be a JSON object")
    return body


def metadata(org: Org, request: Request, version: str, sobject: str) -> Response:
    """``GET .../sobjects/{Type}``: the object's basic metadata."""
    obj = org.records.sobject(sobject)
    body = org.schema.metadata_json(obj.name, version, org.base_url)
    return Response(body, content_type="application/json;charset=UTF-8")


def create(org: Org, request: Request, version: str, sobject: str) -> Response:
    """``POST .../sobjects/{Type}/``: 201 with the new id."""
    obj = org.records.sobject(sobject)
    body = _body(request)
    if any(key.lower() == "id" for key in body):
        raise bad_request("INVALID_FIELD", "Id not allowed on create")
    record_id = org.records.create(obj, body)
    return json_response({"id": record_id, "success": True, "errors": []}, 201)


def row(org: Org, request: Request, version: str, sobject: str, record_id: str) -> Response:
    """``GET/PATCH/DELETE .../sobjects/{Type}/{id}``."""
    obj = org.records.sobject(sobject)
    stored = org.records.row(obj, record_id)
    if request.method == "GET":
        return _get(org, request, version, obj, stored)
    if request.method == "DELETE":
        org.records.delete(obj, stored["Id"])
        return empty_response()
    body = _body(request)
    with org.store.transaction():
        check_write_preconditions(request, obj, org.records.row(obj, stored["Id"]))
        org.records.update(obj, stored["Id"], body)
    return empty_response()


def by_external_id(
    org: Org, request: Request, version: str, sobject: str, field: str, value: str
) -> Response:
    """``GET/PATCH/DELETE .../sobjects/{Type}/{ExtIdField}/{value}``; PATCH upserts."""
    obj = org.records.sobject(sobject)
    spec = obj.field(field)
    if spec is None or not (spec["externalId"] or spec["idLookup"]):
        raise not_found(f"Provided external ID field does not exist or is not accessible: {field}")
    live = org.store.find_by(obj, spec["name"], value)
    if len(live) > 1:
        urls = [record_url(version, obj.name, i) for i in live]
        return json_response(urls, 300)
    if request.method == "PATCH":
        return _upsert(org, request, obj, spec, value)
    if not live:
        raise not_found()
    if request.method == "DELETE":
        org.records.delete(obj, live[0])
        return empty_response()
    return _get(org, request, version, obj, org.records.row(obj, live[0]))


def _upsert(org: Org, request: Request, obj: SObject, spec: dict[str, Any], value: str) -> Response:
    body = _body(request)
    for key, given in body.items():
        if key.lower() == spec["name"].lower() and str(given).lower() != value.lower():
            raise bad_request(
                "INVALID_FIELD",
                f"The value of {spec['name']} in the body does not match the URL",
                [spec["name"]],
            )
    try:
        record_id, created = org.records.upsert(obj, spec["name"], value, body)
    except SfError as error:
        if error.status == 300:
            raise bad_request("MULTIPLE_RECORDS", error.message) from None
        raise
    result = {"id": record_id, "success": True, "errors": [], "created": created}
    return json_response(result, 201 if created else 200)
