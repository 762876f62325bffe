"""Web API endpoints of the webhook registration tables: ``serviceendpoints``,
``sdkmessageprocessingsteps``, ``sdkmessages`` and ``sdkmessagefilters``.

- ``GET /<set>`` with ``$select`` and a ``$filter`` of ``column eq value`` terms joined by
  ``and`` (other filters are refused as not implemented); ``GET /<set>(<id>)``.
- ``POST /serviceendpoints`` and ``POST /sdkmessageprocessingsteps``: 204 with
  ``OData-EntityId`` (201 with the row on ``Prefer: return=representation``). Steps bind their
  message, filter and endpoint with ``sdkmessageid@odata.bind``,
  ``sdkmessagefilterid@odata.bind`` and ``eventhandler_serviceendpoint@odata.bind``.
- ``PATCH`` and ``DELETE`` of an endpoint or a step. ``sdkmessages`` and ``sdkmessagefilters``
  are read-only.

``authvalue`` is never returned (``IsValidForRead`` is false in Dataverse); ``isauthvalueset``
says whether it is set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from werkzeug.wrappers import Request, Response

from sandboxes.dynamics.api_rows import no_content, odata_json
from sandboxes.dynamics.errors import DataverseError
from sandboxes.dynamics.odata import query_error
from sandboxes.dynamics.org import DataverseOrg
from sandboxes.dynamics.shape import parse_prefer
from sandboxes.dynamics.values import normalize_guid
from sandboxes.dynamics.webhook_registry import (
    WebhookRegistry,
    filter_id,
    message_id,
    not_implemented,
)
from sandboxes.kit.server import BadJson, read_json

SETS = ("serviceendpoints", "sdkmessageprocessingsteps", "sdkmessages", "sdkmessagefilters")
_ENDPOINT_COLUMNS = {
    "serviceendpointid", "name", "contract", "url", "authtype", "authvalue", "messageformat",
    "namespaceformat", "userclaim", "connectionmode", "description", "path",
    "solutionnamespace", "namespaceaddress", "messagecharset",
}  # fmt: skip
_STEP_COLUMNS = {
    "sdkmessageprocessingstepid", "name", "description", "stage", "mode", "rank",
    "supporteddeployment", "asyncautodelete", "filteringattributes", "configuration",
    "invocationsource", "statecode", "statuscode",
}  # fmt: skip
_BINDS = {
    "sdkmessageid@odata.bind": ("sdkmessages", "sdkmessageid"),
    "sdkmessagefilterid@odata.bind": ("sdkmessagefilters", "sdkmessagefilterid"),
    "eventhandler_serviceendpoint@odata.bind": ("serviceendpoints", "eventhandler"),
}
_TERM = re.compile(r"^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s+eq\s+(?P<value>.+?)\s*$")
_BIND = re.compile(r"^(?:.*/)?(?P<set>[A-Za-z_]+)\((?P<key>[^)]+)\)$")


def handle(
    org: DataverseOrg, request: Request, head: str, key: str | None, rest: list[str]
) -> Response:
    """Serve one request on a registration table."""
    registry = org.webhooks.registry
    if rest:
        raise not_implemented(f"the path segment '{rest[0]}' under {head}")
    method = request.method
    if method == "GET":
        rows = _rows(registry, head)
        if key is not None:
            guid = _guid(key)
            found = [r for r in rows if r[_id_column(head)] == guid]
            if not found:
                raise DataverseError(404, "0x80040217",
                                     f"{head[:-1]} With Id = {key} Does Not Exist")  # fmt: skip
            return odata_json(_select(found[0], request))
        matching = [r for r in rows if _matches(r, request.args.get("$filter"))]
        return odata_json({"value": [_select(r, request) for r in matching]})
    if head in ("sdkmessages", "sdkmessagefilters"):
        raise DataverseError(405, "0x80060888", f"{head} are read-only in the sandbox.")
    if method == "POST" and key is None:
        body = _body(request)
        if head == "serviceendpoints":
            new_id = registry.add_endpoint(_columns(body, _ENDPOINT_COLUMNS, "serviceendpoint"))
        else:
            new_id = registry.add_step(_step_values(body))
        return _created(org, request, head, new_id)
    if key is None:
        raise DataverseError(405, "0x80060888",
                             f"The HTTP method '{method}' is not allowed on {head}.")  # fmt: skip
    guid = _guid(key)
    if method == "PATCH":
        body = _body(request)
        if head == "serviceendpoints":
            registry.update_endpoint(guid, _columns(body, _ENDPOINT_COLUMNS, "serviceendpoint"))
        else:
            registry.update_step(guid, _columns(body, _STEP_COLUMNS, "sdkmessageprocessingstep"))
        return no_content(headers={"OData-EntityId": _entity_id(org, head, guid)})
    if method == "DELETE":
        if head == "serviceendpoints":
            registry.delete_endpoint(guid)
        else:
            registry.delete_step(guid)
        return no_content()
    raise DataverseError(405, "0x80060888", f"The HTTP method '{method}' is not allowed.")


def _rows(registry: WebhookRegistry, head: str) -> list[dict[str, Any]]:
    if head == "sdkmessages":
        return registry.messages()
    if head == "sdkmessagefilters":
        return registry.filters()
    if head == "serviceendpoints":
        return [_endpoint_row(e) for e in registry.endpoints.values()]
    return [_step_row(registry, s) for s in registry.steps.values()]


def _endpoint_row(endpoint: Mapping[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in endpoint.items() if k != "authvalue"}
    row["isauthvalueset"] = bool(endpoint.get("authvalue"))
    return row


def _step_row(registry: WebhookRegistry, step: Mapping[str, Any]) -> dict[str, Any]:
    table = step["table"]
    return {
        "sdkmessageprocessingstepid": step["sdkmessageprocessingstepid"],
        "name": step["name"], "description": step.get("description"),
        "stage": step["stage"], "mode": step["mode"], "rank": step["rank"],
        "filteringattributes": step["filteringattributes"] or None,
        "asyncautodelete": step["asyncautodelete"], "supporteddeployment": 0,
        "statecode": step["statecode"], "statuscode": 2 if step["statecode"] else 1,
        "_sdkmessageid_value": message_id(step["message"]),
        "_sdkmessagefilterid_value": filter_id(step["message"], table) if table else None,
        "_eventhandler_value": step["eventhandler"],
    }  # fmt: skip


def _id_column(head: str) -> str:
    return {"serviceendpoints": "serviceendpointid", "sdkmessages": "sdkmessageid",
            "sdkmessagefilters": "sdkmessagefilterid",
            "sdkmessageprocessingsteps": "sdkmessageprocessingstepid"}[head]  # fmt: skip


def _guid(key: str) -> str:
    guid = normalize_guid(key)
    if guid is None:
        raise query_error(f"Invalid key '{key}': a row is addressed by its guid.")
    return guid


def _body(request: Request) -> dict[str, Any]:
    try:
        body = read_json(request)
    except BadJson as error:
        raise query_error(f"Error parsing the request body: {error}") from None
    if not isinstance(body, dict):
        raise query_error("The request body must be a JSON object.")
    return body


def _columns(body: Mapping[str, Any], allowed: set[str], table: str) -> dict[str, Any]:
    for name in body:
        if name not in allowed:
            raise query_error(
                f"The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM."
                f"{table}'. Make sure to only use property names that are defined by the type."
            )
    return dict(body)


def _step_values(body: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in body.items():
        if name in _BINDS:
            entity_set, column = _BINDS[name]
            match = _BIND.match(str(value)) if isinstance(value, str) else None
            if match is None or match["set"] != entity_set:
                raise query_error(f"Invalid value '{value}' for the navigation property "
                                  f"'{name.removesuffix('@odata.bind')}'.")  # fmt: skip
            values[column] = _guid(match["key"])
        elif name.endswith("@odata.bind"):
            raise not_implemented(f"binding {name.removesuffix('@odata.bind')} (steps run "
                                  "webhooks only, no plug-in types, no impersonation)")  # fmt: skip
        else:
            values.update(_columns({name: value}, _STEP_COLUMNS, "sdkmessageprocessingstep"))
    if values.get("supporteddeployment", 0) != 0:
        raise not_implemented("steps deployed outside the server (supporteddeployment 0)")
    if values.get("configuration"):
        raise query_error("A step of a webhook cannot carry configuration.")
    if "sdkmessageid" not in values or "eventhandler" not in values:
        raise query_error(
            "A step needs sdkmessageid@odata.bind and eventhandler_serviceendpoint@odata.bind."
        )
    return values


def _matches(row: Mapping[str, Any], expression: str | None) -> bool:
    if not expression:
        return True
    for term in re.split(r"\s+and\s+", expression.strip(), flags=re.IGNORECASE):
        match = _TERM.match(term)
        if match is None or match["name"] not in row:
            raise not_implemented(
                f"the filter {term!r} on registration tables (only 'column eq value' terms "
                "joined by 'and')"
            )
        if row[match["name"]] != _literal(match["value"]):
            return False
    return True


def _literal(text: str) -> Any:
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    guid = normalize_guid(text)
    if guid is not None and "-" in text:
        return guid
    try:
        return int(text)
    except ValueError:
        raise query_error(f"Invalid literal {text!r} in $filter.") from None


def _select(row: Mapping[str, Any], request: Request) -> dict[str, Any]:
    wanted = request.args.get("$select")
    if not wanted:
        return dict(row)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in row]
    if unknown:
        raise query_error(f"Could not find a property named '{unknown[0]}'.")
    return {n: row[n] for n in names}


def _entity_id(org: DataverseOrg, head: str, guid: str) -> str:
    return f"{org.base_url}/api/data/v9.2/{head}({guid})"


def _created(org: DataverseOrg, request: Request, head: str, new_id: str) -> Response:
    headers = {"OData-EntityId": _entity_id(org, head, new_id)}
    if parse_prefer(request.headers.getlist("Prefer")).get("return") == "representation":
        row = next(r for r in _rows(org.webhooks.registry, head) if r[_id_column(head)] == new_id)
        return odata_json(row, 201, headers)
    return no_content(204, headers)
