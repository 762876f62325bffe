"""The Composite resource: up to 25 subrequests in one call, one request of the API budget.

``POST /services/data/vXX.X/composite`` with ``{"allOrNone", "compositeRequest": [{"method",
"url", "referenceId", "httpHeaders"?, "body"?}]}`` runs each subrequest in order through the
org's own routes, as the calling user, and answers ``{"compositeResponse": [{"body",
"httpHeaders", "httpStatusCode", "referenceId"}]}`` in the same order. A subrequest's URL
travels in the JSON body, so the 16,384-byte URI limit of a direct request does not apply to
it: a query as long as SOQL allows (100,000 characters) can be sent this way.

The sandbox runs GET subrequests (queries, describes, retrieves) and refuses, with 400, what it
does not implement rather than ignoring it: other methods and ``@{reference}`` expressions.
With ``allOrNone`` the subrequests after a failed one are not run and answer
``PROCESSING_HALTED``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from sandboxes.kit.server import json_response, read_json
from sandboxes.salesforce.errors import bad_request
from sandboxes.salesforce.org import Org

MAX_SUBREQUESTS = 25
INHERITED_HEADERS = ("Accept", "Authorization", "Content-Type")
"""Headers a subrequest takes from the composite request and may not set itself."""

Dispatch = Callable[[Request], Response]


def composite(org: Org, request: Request, version: str, dispatch: Dispatch) -> Response:
    """``POST .../composite``: run the subrequests with ``dispatch`` (the app's routing,
    without a second authentication or API charge)."""
    all_or_none, subrequests = _subrequests(request)
    answers: list[dict[str, Any]] = []
    halted = False
    for sub in subrequests:
        if halted:
            answers.append(_halted(sub["referenceId"]))
            continue
        response = dispatch(_inner_request(org, request, sub))
        answers.append(_answer(sub["referenceId"], response))
        halted = all_or_none and response.status_code >= 400
    return json_response({"compositeResponse": answers})


def _subrequests(request: Request) -> tuple[bool, list[dict[str, Any]]]:
    body = read_json(request)
    subs = body.get("compositeRequest") if isinstance(body, dict) else None
    if not isinstance(subs, list) or not subs:
        raise bad_request("JSON_PARSER_ERROR", "The request body needs a 'compositeRequest' array")
    if len(subs) > MAX_SUBREQUESTS:
        raise bad_request(
            "INVALID_INPUT",
            f"A composite request holds at most {MAX_SUBREQUESTS} subrequests; got {len(subs)}",
        )
    seen: set[str] = set()
    for sub in subs:
        _check(sub, seen)
    return bool(body.get("allOrNone", False)), subs


def _check(sub: Any, seen: set[str]) -> None:
    if not isinstance(sub, dict):
        raise bad_request("JSON_PARSER_ERROR", "Each subrequest must be a JSON object")
    for name in ("method", "url", "referenceId"):
        if not isinstance(sub.get(name), str) or not sub[name]:
            raise bad_request("INVALID_INPUT", f"Each subrequest needs a '{name}'")
    if sub["referenceId"] in seen:
        raise bad_request("INVALID_INPUT", f"Duplicate referenceId '{sub['referenceId']}'")
    seen.add(sub["referenceId"])
    if not urlsplit(sub["url"]).path.startswith("/services/data/v"):
        raise bad_request("INVALID_INPUT", "A subrequest url must begin with /services/data/vXX.X")
    headers = sub.get("httpHeaders") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise bad_request("JSON_PARSER_ERROR", "httpHeaders must map header names to strings")
    inherited = {name.lower() for name in INHERITED_HEADERS}
    if any(name.lower() in inherited for name in headers):
        raise bad_request(
            "INVALID_INPUT", "A subrequest may not set Accept, Authorization or Content-Type"
        )
    if sub["method"] != "GET":
        raise bad_request(
            "INVALID_INPUT",
            f"The sandbox runs GET subrequests only; got {sub['method']} (not implemented)",
        )
    if "@{" in sub["url"] or "@{" in orjson.dumps(sub.get("body")).decode():
        raise bad_request("INVALID_INPUT", "The sandbox does not resolve @{reference} expressions")


def _inner_request(org: Org, outer: Request, sub: Mapping[str, Any]) -> Request:
    parts = urlsplit(sub["url"])
    headers = {name: outer.headers[name] for name in INHERITED_HEADERS if name in outer.headers}
    headers.update(sub.get("httpHeaders") or {})
    return EnvironBuilder(
        method=sub["method"],
        path=parts.path,
        query_string=parts.query,
        headers=list(headers.items()),
        base_url=org.base_url or "http://127.0.0.1",
    ).get_request()


def _answer(reference: str, response: Response) -> dict[str, Any]:
    data = response.get_data()
    try:
        body: Any = orjson.loads(data) if data.strip() else None
    except orjson.JSONDecodeError:
        body = data.decode("utf-8", "replace")
    headers = {
        name: value
        for name, value in response.headers.items()
        if name.lower() not in ("content-type", "content-length")
    }
    return {
        "body": body,
        "httpHeaders": headers,
        "httpStatusCode": response.status_code,
        "referenceId": reference,
    }


def _halted(reference: str) -> dict[str, Any]:
    error = {
        "errorCode": "PROCESSING_HALTED",
        "message": "The transaction was rolled back since another operation in the same "
        "transaction failed.",
    }
    return {"body": [error], "httpHeaders": {}, "httpStatusCode": 400, "referenceId": reference}
