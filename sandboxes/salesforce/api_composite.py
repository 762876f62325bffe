"""sObject Collections: create, update, upsert, delete and retrieve up to 200 records per call.

Results come back in request order, one per record; a failed record carries
``{"statusCode", "message", "fields"}`` errors. With ``allOrNone`` any failure rolls every
record back and the others report ALL_OR_NONE_OPERATION_ROLLED_BACK.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Request, Response

from sandboxes.kit.server import json_response, read_json
from sandboxes.salesforce.api_rows import render_row
from sandboxes.salesforce.errors import SfError, bad_request
from sandboxes.salesforce.ids import normalize_id
from sandboxes.salesforce.org import Org
from sandboxes.salesforce.schema import SObject

MAX_RECORDS = 200
_ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was using"
    " AllOrNone header",
    "fields": [],
}


class _RollBack(Exception):
    """Unwinds the collection's transaction when allOrNone meets a failure."""


def _records_body(request: Request) -> tuple[bool, list[dict[str, Any]]]:
    body = read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise bad_request("JSON_PARSER_ERROR", "The request body needs a 'records' array")
    records = body["records"]
    if len(records) > MAX_RECORDS:
        raise bad_request(
            "EXCEEDED_ID_LIMIT", f"Maximum number of records is {MAX_RECORDS}, got {len(records)}"
        )
    if not all(isinstance(record, dict) for record in records):
        raise bad_request("JSON_PARSER_ERROR", "Each record must be a JSON object")
    return bool(body.get("allOrNone", False)), records


def _type_of(org: Org, record: dict[str, Any]) -> SObject:
    attributes = record.get("attributes")
    name = attributes.get("type") if isinstance(attributes, dict) else None
    if not name:
        raise bad_request("INVALID_TYPE", "Each record needs attributes.type")
    obj = org.schema.sobject(name)
    if obj is None:
        raise bad_request("INVALID_TYPE", f"sObject type '{name}' is not supported.")
    return obj


def _run_all(
    org: Org, items: list[Any], all_or_none: bool, write: Callable[[Any], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Apply ``write`` to each item; each result is a success dict or a failure dict."""
    results: list[dict[str, Any]] = []
    try:
        with org.store.transaction():
            for item in items:
                try:
                    with org.store.savepoint():
                        results.append({**write(item), "success": True, "errors": []})
                except SfError as error:
                    results.append(_failure(item, error))
            if all_or_none and any(not r["success"] for r in results):
                raise _RollBack()
    except _RollBack:
        results = [
            r if not r["success"] else {"id": None, "success": False, "errors": [_ROLLED_BACK]}
            for r in results
        ]
    return results


def _failure(item: Any, error: SfError) -> dict[str, Any]:
    result: dict[str, Any] = {"success": False, "errors": [error.collection_error()]}
    if isinstance(item, str):
        result = {"id": item, **result}
    return result


def collection(org: Org, request: Request, version: str) -> Response:
    """``POST/PATCH/DELETE .../composite/sobjects``."""
    if request.method == "DELETE":
        ids = [i for i in request.args.get("ids", "").split(",") if i]
        if not ids or len(ids) > MAX_RECORDS:
            raise bad_request("INVALID_FIELD", f"Provide between 1 and {MAX_RECORDS} ids")
        all_or_none = request.args.get("allOrNone", "false").lower() == "true"
        return json_response(_run_all(org, ids, all_or_none, lambda i: _delete(org, i)))
    all_or_none, records = _records_body(request)
    if request.method == "POST":
        return json_response(_run_all(org, records, all_or_none, lambda r: _create(org, r)))
    return json_response(_run_all(org, records, all_or_none, lambda r: _update(org, r)))


def _create(org: Org, record: dict[str, Any]) -> dict[str, Any]:
    obj = _type_of(org, record)
    if any(key.lower() == "id" for key in record):
        raise bad_request("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
    return {"id": org.records.create(obj, record)}


def _update(org: Org, record: dict[str, Any]) -> dict[str, Any]:
    obj = _type_of(org, record)
    fields = {k: v for k, v in record.items() if k.lower() != "id"}
    record_id = next((v for k, v in record.items() if k.lower() == "id"), None)
    if not record_id:
        raise bad_request("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
    canonical = normalize_id(str(record_id))
    if canonical is None:
        raise bad_request("MALFORMED_ID", f"malformed id {record_id}", ["Id"])
    org.records.update(obj, canonical, fields)
    return {"id": canonical}


def _delete(org: Org, record_id: str) -> dict[str, Any]:
    canonical = normalize_id(record_id)
    if canonical is None:
        raise bad_request("MALFORMED_ID", f"malformed id {record_id}")
    obj = org.schema.by_prefix(canonical[:3])
    if obj is None or not org.store.exists(obj, canonical, include_deleted=True):
        raise bad_request("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
    org.records.delete(obj, canonical)
    return {"id": canonical}


def retrieve(org: Org, request: Request, version: str, sobject: str) -> Response:
    """``GET/POST .../composite/sobjects/{Type}``: records by id, ``null`` where missing."""
    obj = org.records.sobject(sobject)
    if request.method == "POST":
        body = read_json(request)
        ids, fields = body.get("ids") or [], body.get("fields") or []
    else:
        ids = [i for i in request.args.get("ids", "").split(",") if i]
        fields = [f for f in request.args.get("fields", "").split(",") if f]
    if not fields:
        raise bad_request("MISSING_ARGUMENT", "fields is required")
    if not ids or len(ids) > 2000:
        raise bad_request("INVALID_FIELD", "Provide between 1 and 2000 ids")
    canonical = [normalize_id(str(i)) for i in ids]
    rows = org.store.fetch_rows(obj, [c for c in canonical if c])
    results = []
    for record_id in canonical:
        row = rows.get(record_id or "")
        live = row is not None and not row["IsDeleted"]
        results.append(render_row(obj, row, version, fields) if live and row else None)
    return json_response(results)


def upsert(org: Org, request: Request, version: str, sobject: str, field: str) -> Response:
    """``PATCH .../composite/sobjects/{Type}/{ExtIdField}``: upsert with ``created`` flags."""
    obj = org.records.sobject(sobject)
    spec = obj.field(field)
    if spec is None or not spec["externalId"]:
        raise bad_request("INVALID_FIELD", f"{field} is not an external id field of {obj.name}")
    all_or_none, records = _records_body(request)

    def write(record: dict[str, Any]) -> dict[str, Any]:
        if _type_of(org, record).name != obj.name:
            raise bad_request("INVALID_TYPE", f"All records must be of type {obj.name}")
        value = next((v for k, v in record.items() if k.lower() == spec["name"].lower()), None)
        if value in (None, ""):
            raise bad_request("MISSING_ARGUMENT", f"{spec['name']} not specified", [spec["name"]])
        record_id, created = org.records.upsert(obj, spec["name"], str(value), record)
        return {"id": record_id, "created": created}

    return json_response(_run_all(org, records, all_or_none, write))
