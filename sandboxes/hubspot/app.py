"""The HubSpot sandbox's WSGI app: routing, token auth, rate limits, faults, error bodies.

Every CRM-facing request is logged, may be slowed or failed by an injected fault, must carry the
portal's private-app token as a Bearer token (401 ``INVALID_AUTHENTICATION`` otherwise; the
developer endpoints under ``/webhooks/`` take the developer API key as ``hapikey`` instead) and
is counted against the rate limits (429 once over one). Errors are HubSpot's JSON bodies.
The admin path (``kit.admin``) reaches the test controls from another process; nothing else
exposes them.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandboxes.hubspot import api_associations as assoc
from sandboxes.hubspot import api_meta as meta
from sandboxes.hubspot import api_objects as objects
from sandboxes.hubspot import api_webhooks as hooks
from sandboxes.hubspot.api_search import search
from sandboxes.hubspot.errors import HsError, unauthorized
from sandboxes.hubspot.portal import Portal
from sandboxes.kit.admin import Controls
from sandboxes.kit.app import SandboxApp
from sandboxes.kit.server import (
    BadJson,
    html_response,
    json_response,
    request_target,
)

URL_LIMIT = 16_384
"""Bytes of request target (path and query) the sandbox takes. HubSpot documents no URL
limit; integrators report 414 URI Too Long from about 16 KB of URL (see docs/hubspot.md)."""
TOO_LONG_PAGE = (
    "<html><head><title>414 Request-URI Too Large</title></head><body>"
    "<center><h1>414 Request-URI Too Large</h1></center></body></html>"
)


def _rules() -> Iterable[Rule]:
    o3, a4 = "/crm/v3/objects/<object_type>", "/crm/v4/associations/<from_object_type>"
    r4 = "/crm/v4/objects/<object_type>/<object_id>/associations/<to_object_type>"
    w3 = "/webhooks/v3/<app_id>"
    table: list[tuple[str, Callable[..., Response], tuple[str, ...]]] = [
        (o3, objects.list_objects, ("GET",)),
        (o3, objects.create_object, ("POST",)),
        (f"{o3}/search", search, ("POST",)),
        (f"{o3}/merge", objects.merge_objects, ("POST",)),
        (f"{o3}/batch/read", objects.batch_read, ("POST",)),
        (f"{o3}/batch/create", objects.batch_create, ("POST",)),
        (f"{o3}/batch/update", objects.batch_update, ("POST",)),
        (f"{o3}/batch/upsert", objects.batch_upsert, ("POST",)),
        (f"{o3}/batch/archive", objects.batch_archive, ("POST",)),
        (f"{o3}/<object_id>", objects.get_object, ("GET",)),
        (f"{o3}/<object_id>", objects.update_object, ("PATCH",)),
        (f"{o3}/<object_id>", objects.archive_object, ("DELETE",)),
        (r4, assoc.list_associations, ("GET",)),
        (f"{r4}/<to_object_id>", assoc.put_association, ("PUT",)),
        (f"{r4}/<to_object_id>", assoc.delete_association, ("DELETE",)),
        ("/crm/v4/objects/<from_object_type>/<from_object_id>/associations/default/"
         "<to_object_type>/<to_object_id>", assoc.put_default_association, ("PUT",)),
        (f"{a4}/<to_object_type>/batch/read", assoc.batch_read, ("POST",)),
        (f"{a4}/<to_object_type>/batch/create", assoc.batch_create, ("POST",)),
        (f"{a4}/<to_object_type>/batch/archive", assoc.batch_archive, ("POST",)),
        (f"{a4}/<to_object_type>/batch/labels/archive", assoc.batch_archive_labels, ("POST",)),
        (f"{a4}/<to_object_type>/labels", assoc.labels, ("GET",)),
        ("/crm/v3/properties/<object_type>", meta.list_properties, ("GET",)),
        ("/crm/v3/properties/<object_type>", meta.create_property, ("POST",)),
        ("/crm/v3/properties/<object_type>/<property_name>", meta.get_property, ("GET",)),
        ("/crm/v3/schemas", meta.list_schemas, ("GET",)),
        ("/crm/v3/schemas/<object_type>", meta.get_schema, ("GET",)),
        ("/crm-object-schemas/v3/schemas", meta.list_schemas, ("GET",)),
        ("/crm-object-schemas/v3/schemas/<object_type>", meta.get_schema, ("GET",)),
        (f"{w3}/settings", hooks.get_settings, ("GET",)),
        (f"{w3}/settings", hooks.put_settings, ("PUT",)),
        (f"{w3}/settings", hooks.delete_settings, ("DELETE",)),
        (f"{w3}/subscriptions", hooks.list_subscriptions, ("GET",)),
        (f"{w3}/subscriptions", hooks.create_subscription, ("POST",)),
        (f"{w3}/subscriptions/batch/update", hooks.batch_update, ("POST",)),
        (f"{w3}/subscriptions/<subscription_id>", hooks.get_subscription, ("GET",)),
        (f"{w3}/subscriptions/<subscription_id>", hooks.update_subscription, ("PATCH",)),
        (f"{w3}/subscriptions/<subscription_id>", hooks.delete_subscription, ("DELETE",)),
    ]  # fmt: skip
    for path, endpoint, methods in table:
        yield Rule(path, endpoint=endpoint, methods=methods)


class HubSpotApp(SandboxApp):
    """The WSGI callable of one sandbox portal."""

    control_errors = (HsError,)

    def __init__(self, portal: Portal, admin_token: str, controls: Controls) -> None:
        """Serve ``portal``; ``controls(name, kwargs)`` runs a test control for the admin path."""
        super().__init__(portal, admin_token, controls)
        self.portal = portal
        self.url_map = Map(list(_rules()), strict_slashes=False)

    def refuse(self, request: Request) -> Response | None:
        """The front end's 414 for a request target over ``URL_LIMIT`` bytes."""
        if len(request_target(request.environ).encode()) > URL_LIMIT:
            return html_response(TOO_LONG_PAGE, 414)
        return None

    def answer(self, request: Request) -> Response:
        """Log, delay or fail the request as injected, else authorise, count and route it."""
        portal = self.portal
        self.log_call(request, request.path)
        try:
            fault = portal.faults.take(portal.faults.failures, request.path)
            if fault is not None:
                raise HsError(fault.status, fault.code, fault.message)
            endpoint, args = self.url_map.bind_to_environ(request.environ).match()
            self._authorize(request)
            headers = portal.limits.admit(request.path.endswith("/search"), portal.clock.now_ms())
            response = endpoint(portal, request, **args)
            response.headers.extend(headers)
            return response
        except HsError as error:
            return json_response(error.body(), error.status, error.headers)
        except BadJson as error:
            return json_response(
                HsError(400, "VALIDATION_ERROR", f"Invalid input JSON: {error}").body(), 400
            )
        except MethodNotAllowed:
            return json_response(HsError(405, "", "Method Not Allowed").body(), 405)
        except NotFound:
            return json_response(HsError(404, "", "resource not found").body(), 404)
        except HTTPException as error:
            return json_response(HsError(400, "VALIDATION_ERROR", str(error)).body(), 400)

    def _authorize(self, request: Request) -> None:
        if request.path.startswith("/webhooks/"):
            key = request.args.get("hapikey", "")
            expected = self.portal.webhooks.developer_api_key
            if not hmac.compare_digest(key.encode(), expected.encode()):
                raise HsError(
                    401, "INVALID_AUTHENTICATION", "The API key provided is invalid. "
                    "Developer endpoints take the developer account's API key as hapikey.",
                )  # fmt: skip
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        valid = scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.portal.token.encode()
        )
        if not valid:
            raise unauthorized()
