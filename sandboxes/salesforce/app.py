"""The Salesforce sandbox's WSGI app: routing, sessions, API budget, faults, error bodies.

Every CRM-facing request is logged, may be slowed or failed by an injected fault, must carry a
valid Bearer token (except the login endpoints), spends one request of the daily budget (403
REQUEST_LIMIT_EXCEEDED once it is gone) and gets ``Sforce-Limit-Info`` on its answer. Errors
are Salesforce's JSON arrays. The admin path (``kit.admin``) reaches the test controls from another
process; nothing else exposes them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import BaseConverter, Map, Rule, ValidationError
from werkzeug.wrappers import Request, Response

from sandboxes.kit.admin import Controls
from sandboxes.kit.app import SandboxApp
from sandboxes.kit.server import (
    BadJson,
    html_response,
    json_response,
    request_head_bytes,
    request_target,
)
from sandboxes.salesforce import api_auth as auth
from sandboxes.salesforce import api_bulk as bulk
from sandboxes.salesforce import api_composite as composite
from sandboxes.salesforce import api_composite_request as composite_request
from sandboxes.salesforce import api_rows as rows
from sandboxes.salesforce import api_sync as sync
from sandboxes.salesforce.cdc import change_origin
from sandboxes.salesforce.errors import SfError, invalid_session
from sandboxes.salesforce.org import Org
from sandboxes.salesforce.soql import SoqlError

log = logging.getLogger(__name__)

MIN_VERSION, MAX_VERSION = 50, 62
REQUEST_HEAD_LIMIT = 16_384
"""Bytes Salesforce takes for a request's URI, and for its URI and headers together: a longer
URI is refused with 414, longer URI and headers with 431 (Help article 000386264)."""
_SEASONS = ("Winter", "Spring", "Summer")


class VersionConverter(BaseConverter):
    """``v59.0`` in a path, for the API versions the sandbox serves; yields ``"59.0"``."""

    regex = r"v\d{2}\.\d"

    def to_python(self, value: str) -> str:
        """Validate the version number and strip the ``v``."""
        number = float(value[1:])
        if not MIN_VERSION <= number <= MAX_VERSION or not number.is_integer():
            raise ValidationError()
        return value[1:]

    def to_url(self, value: str) -> str:
        """Put the ``v`` back."""
        return f"v{value}"


def versions(org: Org, request: Request) -> Response:
    """``GET /services/data/``: the API versions served."""
    entries = []
    for number in range(MIN_VERSION, MAX_VERSION + 1):
        step = number - MIN_VERSION
        label = f"{_SEASONS[step % 3]} '{21 + step // 3}"
        entries.append(
            {"label": label, "url": f"/services/data/v{number}.0", "version": f"{number}.0"}
        )
    return json_response(entries)


PUBLIC_ENDPOINTS = {auth.oauth_token, auth.soap_login, versions}


def resources(org: Org, request: Request, version: str) -> Response:
    """``GET /services/data/vXX.X/``: the resources of a version."""
    base = f"/services/data/v{version}"
    names = ("sobjects", "query", "queryAll", "limits", "composite", "jobs")
    return json_response({name: f"{base}/{name}" for name in names})


def limits(org: Org, request: Request, version: str) -> Response:
    """``GET .../limits/``: the org's limits, with the daily API budget."""
    budget = org.budget
    return json_response(
        {
            "DailyApiRequests": {"Max": budget.limit, "Remaining": budget.limit - budget.used},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
        }
    )


def describe_global(org: Org, request: Request, version: str) -> Response:
    """``GET .../sobjects``: describe global."""
    return _raw_json(org.schema.global_json(version, org.base_url))


def describe(org: Org, request: Request, version: str, sobject: str) -> Response:
    """``GET .../sobjects/{Type}/describe``."""
    obj = org.records.sobject(sobject)
    return _raw_json(org.schema.describe_json(obj.name, version, org.base_url))


def _raw_json(body: bytes) -> Response:
    return Response(body, content_type="application/json;charset=UTF-8")


def _rules() -> Iterable[Rule]:
    data = "/services/data/<version:version>"
    table: list[tuple[str, Callable[..., Response], tuple[str, ...]]] = [
        ("/services/data", versions, ("GET",)),
        ("/services/oauth2/token", auth.oauth_token, ("POST",)),
        ("/services/Soap/u/<soap_version>", auth.soap_login, ("POST",)),
        (data, resources, ("GET",)),
        (f"{data}/limits", limits, ("GET",)),
        (f"{data}/sobjects", describe_global, ("GET",)),
        (f"{data}/sobjects/<sobject>", rows.metadata, ("GET",)),
        (f"{data}/sobjects/<sobject>", rows.create, ("POST",)),
        (f"{data}/sobjects/<sobject>/describe", describe, ("GET",)),
        (f"{data}/sobjects/<sobject>/updated", sync.updated, ("GET",)),
        (f"{data}/sobjects/<sobject>/deleted", sync.deleted, ("GET",)),
        (f"{data}/sobjects/<sobject>/<record_id>", rows.row, ("GET", "PATCH", "DELETE")),
        (f"{data}/sobjects/<sobject>/<field>/<path:value>", rows.by_external_id,
         ("GET", "PATCH", "DELETE")),
        (f"{data}/query", sync.query, ("GET",)),
        (f"{data}/queryAll", sync.query_all, ("GET",)),
        (f"{data}/query/<locator>", sync.query_more, ("GET",)),
        (f"{data}/queryAll/<locator>", sync.query_more, ("GET",)),
        (f"{data}/composite", composite_request.composite, ("POST",)),
        (f"{data}/composite/sobjects", composite.collection, ("POST", "PATCH", "DELETE")),
        (f"{data}/composite/sobjects/<sobject>", composite.retrieve, ("GET", "POST")),
        (f"{data}/composite/sobjects/<sobject>/<field>", composite.upsert, ("PATCH",)),
        (f"{data}/jobs/query", bulk.jobs, ("GET", "POST")),
        (f"{data}/jobs/query/<job_id>", bulk.job, ("GET", "PATCH", "DELETE")),
        (f"{data}/jobs/query/<job_id>/results", bulk.results, ("GET",)),
    ]  # fmt: skip
    for path, endpoint, methods in table:
        yield Rule(path, endpoint=endpoint, methods=methods)


class SalesforceApp(SandboxApp):
    """The WSGI callable of one sandbox org."""

    control_errors = (SfError,)

    def __init__(self, org: Org, admin_token: str, controls: Controls) -> None:
        """Serve ``org``; ``controls(name, kwargs)`` runs a test control for the admin path."""
        super().__init__(org, admin_token, controls)
        self.org = org
        self.url_map = Map(
            list(_rules()), strict_slashes=False, converters={"version": VersionConverter}
        )

    def refuse(self, request: Request) -> Response | None:
        """Jetty's answer to an oversized request (``refuse_oversized``)."""
        return refuse_oversized(request.environ)

    def finish(self, response: Response) -> None:
        """Every answer carries ``Sforce-Limit-Info``."""
        response.headers["Sforce-Limit-Info"] = self.org.budget.header()

    def answer(self, request: Request) -> Response:
        """Log, delay or fail the request as injected, else route it."""
        org = self.org
        self.log_call(request, request.path)
        fault = org.faults.take(org.faults.failures, request.path)
        if fault is not None:
            return json_response(SfError(fault.status, fault.code, fault.message).body(),
                                 fault.status)  # fmt: skip
        with change_origin(api_origin(request)):
            return self._route(request, authorize=True)

    def _route(self, request: Request, *, authorize: bool) -> Response:
        """Answer ``request`` from its route; errors become Salesforce's JSON arrays.
        A composite subrequest is routed without ``authorize``: its call was checked once."""
        org = self.org
        try:
            endpoint, matched = self.url_map.bind_to_environ(request.environ).match()
            args = dict(matched)
            if authorize and endpoint not in PUBLIC_ENDPOINTS:
                self._authorize(request)
            if endpoint is composite_request.composite:
                args["dispatch"] = lambda inner: self._route(inner, authorize=False)
            return endpoint(org, request, **args)
        except SfError as error:
            return json_response(error.body(), error.status)
        except SoqlError as error:
            return json_response([{"message": error.message, "errorCode": error.code}], 400)
        except BadJson as error:
            body = [{"message": str(error), "errorCode": "JSON_PARSER_ERROR"}]
            return json_response(body, 400)
        except MethodNotAllowed as error:
            allowed = ",".join(sorted(error.valid_methods or ()))
            message = f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}"
            return json_response([{"message": message, "errorCode": "METHOD_NOT_ALLOWED"}], 405)
        except NotFound:
            body = [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]
            return json_response(body, 404)
        except HTTPException as error:
            return json_response([{"message": str(error), "errorCode": "UNKNOWN_EXCEPTION"}], 400)

    def _authorize(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "oauth"):
            token = request.headers.get("X-SFDC-Session", "")
        if not self.org.sessions.valid(token.strip() or None):
            raise invalid_session()
        if not self.org.budget.spend(self.org.clock.now().date()):
            raise SfError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")


def api_origin(request: Request) -> str:
    """The ``changeOrigin`` of a change made by an API request:
    ``com/salesforce/api/<rest|soap>/<version>;client=<client>``, the client being the
    ``Sforce-Call-Options`` header's ``client=`` (empty without one)."""
    parts = request.path.strip("/").split("/")
    kind, version = "rest", "59.0"
    if len(parts) >= 3 and parts[:2] == ["services", "data"] and parts[2].startswith("v"):
        version = parts[2][1:]
    elif len(parts) >= 4 and parts[:2] == ["services", "Soap"]:
        kind, version = "soap", parts[3]
    options = request.headers.get("Sforce-Call-Options", "")
    client = next(
        (item.split("=", 1)[1].strip() for item in options.split(",") if "client=" in item), ""
    )
    return f"com/salesforce/api/{kind}/{version};client={client}"


def refuse_oversized(environ: dict[str, Any]) -> Response | None:
    """The front end's answer to a request whose URI, or URI and headers, are over 16,384
    bytes (Jetty's HTML pages, before any authentication or API accounting); else ``None``."""
    if len(request_target(environ).encode()) > REQUEST_HEAD_LIMIT:
        return html_response("<h1>Bad Message 414</h1><pre>reason: URI Too Long</pre>", 414)
    if request_head_bytes(environ) > REQUEST_HEAD_LIMIT:
        body = "<h1>Bad Message 431</h1><pre>reason: Request Header Fields Too Large</pre>"
        return html_response(body, 431)
    return None
