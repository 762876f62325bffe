"""The Dataverse sandbox's WSGI app: Entra ID, the Web API, auth, limits, faults, errors.

Entra ID endpoints (discovery, token) are public. Every Web API request is logged, may be
slowed or failed by an injected fault, must carry a live Bearer token for this organisation
(401 with ``WWW-Authenticate`` otherwise), is counted by service protection (429 with
``Retry-After`` when over the limit) and gets the ``x-ms-ratelimit-*`` headers. Errors are
Dataverse's ``{"error": {"code", "message"}}``. The admin path (``kit.admin``) reaches the
test controls from another process; nothing else exposes them.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote, urlsplit

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from sandboxes.dynamics import api_meta as meta
from sandboxes.dynamics import api_rows as rows
from sandboxes.dynamics import api_webhooks
from sandboxes.dynamics.batch import Operation, run_batch
from sandboxes.dynamics.errors import AadError, DataverseError
from sandboxes.dynamics.org import (
    API_PREFIX,
    SUPPORTED_VERSIONS,
    DataverseOrg,
    fault_error,
    identity_error,
)
from sandboxes.dynamics.query import count_rows, parse_query, run_query, run_tracking
from sandboxes.dynamics.shape import parse_prefer
from sandboxes.kit.admin import Controls
from sandboxes.kit.app import SandboxApp
from sandboxes.kit.server import (
    html_response,
    json_response,
    request_target,
)

log = logging.getLogger(__name__)
URL_LIMIT = 32_768
"""Characters of URL Dataverse takes in a request; inside a ``$batch`` body, twice as many."""
BATCHED_URL_LIMIT = 65_536
SEGMENT_LIMIT = 260
"""Characters of one path segment (``accounts(...)``): longer is 400 Bad Request - Invalid URL."""
_HTTP_SYS_PAGE = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">'
    "\r\n<HTML><HEAD><TITLE>{title}</TITLE>\r\n"
    '<META HTTP-EQUIV="Content-Type" Content="text/html; charset=us-ascii"></HEAD>\r\n'
    "<BODY><h2>{heading}</h2>\r\n<hr><p>{text}</p>\r\n</BODY></HTML>\r\n"
)


class DataverseApp(SandboxApp):
    """The WSGI callable of one sandbox organisation and its Entra tenant."""

    control_errors = (DataverseError,)

    def __init__(self, org: DataverseOrg, admin_token: str, controls: Controls) -> None:
        """Serve ``org``; ``controls(name, kwargs)`` runs a test control for the admin path."""
        super().__init__(org, admin_token, controls)
        self.org = org

    def refuse(self, request: Request) -> Response | None:
        """HTTP.sys's answer to a Web API URL over its limits (``refuse_url``)."""
        if request.path.startswith(API_PREFIX):
            return refuse_url(request_target(request.environ), URL_LIMIT)
        return None

    def fault_path(self, request: Request) -> str:
        """Faults match the path with its query."""
        return request.full_path

    # --- routing -------------------------------------------------------------------------

    def answer(self, request: Request) -> Response:
        """Entra ID or the Web API, after the injected delay or failure, if any."""
        org = self.org
        self.log_call(request, request.full_path.rstrip("?"))
        if not request.path.startswith(API_PREFIX):
            fault = org.faults.take(org.faults.identity, request.full_path)
            if fault is not None:
                error = identity_error(fault)
                return json_response(error.body(), error.status, error.headers)
            return self._identity(request)
        try:
            fault = org.faults.take(org.faults.failures, request.full_path)
            if fault is not None:
                raise fault_error(fault)
            self._authorize(request)
            org.protection.spend()
            response = self.dispatch(request)
        except DataverseError as error:
            response = rows.odata_json(error.body(), error.status, error.headers)
        except Exception as error:
            log.exception("the Dataverse sandbox failed on %s %s", request.method, request.path)
            body = {"error": {"code": "0x80040216", "message": f"An unexpected error occurred: "
                              f"{type(error).__name__}: {error}"}}  # fmt: skip
            response = rows.odata_json(body, 500)
        for name, value in org.protection.headers().items():
            response.headers[name] = value
        return response

    def _identity(self, request: Request) -> Response:
        tenant_api = self.org.tenant
        parts = [p for p in request.path.split("/") if p]
        try:
            if parts[1:] == ["discovery", "instance"] and request.method == "GET":
                return tenant_api.instance_discovery(request)
            if parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                return tenant_api.discovery(request, parts[0])
            if parts[1:] == ["oauth2", "v2.0", "token"] and request.method == "POST":
                return tenant_api.token(request, parts[0])
        except AadError as error:
            return json_response(error.body(), error.status, error.headers)
        return json_response({"error": "not_found", "error_description": "No such endpoint."}, 404)

    def dispatch(self, request: Request) -> Response:
        """Route one (authorised) Web API request."""
        version, _, resource = request.path.removeprefix(API_PREFIX).partition("/")
        if version not in SUPPORTED_VERSIONS:
            raise DataverseError(404, "0x80060888", f"API version 'v{version}' is not supported.")
        segments = [unquote(s) for s in resource.split("/") if s]
        if not segments:
            return meta.service_document(self.org, request)
        head, key = _split_key(segments[0])
        rest = segments[1:]
        method = request.method
        if head == "$metadata" and method == "GET":
            return meta.csdl(self.org, request)
        if head == "$batch" and method == "POST":
            return self._batch(request)
        if head in ("WhoAmI", "WhoAmI()") and method == "GET":
            return meta.who_am_i(self.org, request)
        if head == "EntityDefinitions" and method == "GET":
            return meta.entity_definitions(self.org, request, key, rest)
        if head in api_webhooks.SETS:
            return api_webhooks.handle(self.org, request, head, key, rest)
        entity = self.org.records.entity(head)
        return self._data(request, entity, key, rest)

    def _data(self, request: Request, entity: Any, key: str | None, rest: list[str]) -> Response:
        method = request.method
        if key is None and rest == ["$count"] and method == "GET":
            return Response(str(count_rows(self.org, entity)), content_type="text/plain")
        if key is None and not rest:
            if method == "GET":
                return self._collection(request, entity)
            if method == "POST":
                return rows.create(self.org, request, entity)
            raise _not_allowed(method, "the entity set")
        if key is not None and not rest:
            handler = {"GET": rows.retrieve, "PATCH": rows.upsert, "DELETE": rows.delete}
            if method not in handler:
                raise _not_allowed(method, "a row")
            return handler[method](self.org, request, entity, key)
        if key is not None and len(rest) == 2 and rest[1] == "$ref" and method == "DELETE":
            return rows.delete_reference(self.org, request, entity, key, rest[0])
        raise DataverseError(404, "0x80060888", f"Resource not found for the segment '{rest[0]}'.")

    def _collection(self, request: Request, entity: Any) -> Response:
        prefer = parse_prefer(request.headers.getlist("Prefer"))
        query = parse_query(self.org, entity, request.args, prefer)
        runner = run_tracking if query.track else run_query
        body = runner(self.org, query, request.path)
        applied = [f"odata.maxpagesize={query.page_size}"] if "odata.maxpagesize" in prefer else []
        if query.track:
            applied.append("odata.track-changes")
        if "odata.include-annotations" in prefer:
            applied.append(f'odata.include-annotations="{prefer["odata.include-annotations"]}"')
        headers = {"Preference-Applied": ",".join(applied)} if applied else {}
        return rows.odata_json(body, 200, headers)

    def _batch(self, request: Request) -> Response:
        def execute(operation: Operation) -> Response:
            refused = refuse_url(operation.url, BATCHED_URL_LIMIT)
            if refused is not None:
                return refused
            path, query_string = operation.path_and_query
            inner = EnvironBuilder(
                method=operation.method,
                path=path,
                query_string=query_string,
                headers=list(operation.headers.items()),
                data=operation.body,
                base_url=self.org.base_url or "http://127.0.0.1",
            ).get_request()
            try:
                if path.rstrip("/").endswith("$batch"):
                    raise DataverseError(400, "0x80060888", "A batch cannot contain a batch.")
                self.org.protection.spend()
                return self.dispatch(inner)
            except DataverseError as error:
                return rows.odata_json(error.body(), error.status, error.headers)

        return run_batch(request, execute, self.org.store.transaction)

    def _authorize(self, request: Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.org.tenant.valid(token.strip(), request.host):
            return
        tenant = self.org.tenant.tenant_id
        raise DataverseError(
            401,
            "",
            "The user is not authenticated. Provide a valid access token.",
            {"WWW-Authenticate": f"Bearer authorization_uri=https://login.microsoftonline.com/"
             f"{tenant}/oauth2/authorize, resource_id=https://{request.host}/"},
        )  # fmt: skip


def refuse_url(url: str, limit: int) -> Response | None:
    """HTTP.sys's answer to a URL over ``limit`` characters (414) or with a path segment over
    260 characters (400 Bad Request - Invalid URL), before Dataverse sees it; else ``None``."""
    if len(url) > limit:
        text = "HTTP Error 414. The request URL is too long."
        page = _HTTP_SYS_PAGE.format(title="Request URL Too Long", heading="Request URL Too Long",
                                     text=text)  # fmt: skip
        return html_response(page, 414, charset="us-ascii")
    path = urlsplit(url).path
    if any(len(unquote(segment)) > SEGMENT_LIMIT for segment in path.split("/")):
        text = "HTTP Error 400. The request URL is invalid."
        page = _HTTP_SYS_PAGE.format(title="Bad Request", heading="Bad Request - Invalid URL",
                                     text=text)  # fmt: skip
        return html_response(page, 400, charset="us-ascii")
    return None


def _split_key(segment: str) -> tuple[str, str | None]:
    if segment.endswith(")") and "(" in segment:
        head, _, key = segment.partition("(")
        return head, key[:-1]
    return segment, None


def _not_allowed(method: str, what: str) -> DataverseError:
    message = f"The HTTP method '{method}' is not allowed on {what}."
    return DataverseError(405, "0x80060888", message)
