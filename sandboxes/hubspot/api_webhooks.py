"""Webhooks API v3 endpoints: the app's settings and subscriptions.

``/webhooks/v3/{appId}/settings`` (GET, PUT, DELETE) and ``/webhooks/v3/{appId}/subscriptions``
(GET, POST, ``/{id}`` GET, PATCH, DELETE, ``/batch/update`` POST), authenticated as HubSpot's
developer endpoints are: the developer account's API key in the ``hapikey`` query parameter
(``app.HubSpotApp`` checks it). An app id other than the sandbox app's is 404.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from sandboxes.hubspot.errors import HsError, not_found, validation
from sandboxes.hubspot.portal import Portal
from sandboxes.hubspot.values import ms_to_iso
from sandboxes.hubspot.webhooks import WebhookConfig
from sandboxes.kit.server import empty_response, json_response, read_json


def _app(portal: Portal, app_id: str) -> WebhookConfig:
    config = portal.webhooks
    if app_id != str(config.app_id):
        raise not_found(f"No app {app_id} in this developer account")
    return config


def get_settings(portal: Portal, request: Request, app_id: str) -> Response:
    """``GET …/settings``: the target URL and throttling (404 before any is set)."""
    target = _app(portal, app_id).target
    if target is None:
        raise not_found(f"No webhook settings for app {app_id}")
    return json_response(target.to_json())


def put_settings(portal: Portal, request: Request, app_id: str) -> Response:
    """``PUT …/settings``: set the target URL and ``throttling.maxConcurrentRequests``."""
    body = read_json(request)
    if not isinstance(body, dict):
        raise validation("Invalid input JSON: expected an object")
    throttling = body.get("throttling") or {}
    if not isinstance(throttling, dict):
        raise validation("throttling must be an object")
    target = _app(portal, app_id).configure(
        body.get("targetUrl"), throttling.get("maxConcurrentRequests"), portal.clock.now_ms()
    )
    return json_response(target.to_json())


def delete_settings(portal: Portal, request: Request, app_id: str) -> Response:
    """``DELETE …/settings``: 204; deliveries stop."""
    _app(portal, app_id).clear()
    return empty_response(204)


def list_subscriptions(portal: Portal, request: Request, app_id: str) -> Response:
    """``GET …/subscriptions``: every subscription of the app."""
    subs = _app(portal, app_id).subscriptions.values()
    return json_response({"results": [s.to_json() for s in subs]})


def create_subscription(portal: Portal, request: Request, app_id: str) -> Response:
    """``POST …/subscriptions``: 201 with the new subscription (paused unless ``active``)."""
    body = read_json(request)
    if not isinstance(body, dict):
        raise validation("Invalid input JSON: expected an object")
    sub = _app(portal, app_id).subscribe(body, portal.clock.now_ms())
    return json_response(sub.to_json(), 201)


def get_subscription(
    portal: Portal, request: Request, app_id: str, subscription_id: str
) -> Response:
    """``GET …/subscriptions/{id}``."""
    return json_response(_app(portal, app_id).subscription(subscription_id).to_json())


def update_subscription(
    portal: Portal, request: Request, app_id: str, subscription_id: str
) -> Response:
    """``PATCH …/subscriptions/{id}`` ``{"active": bool}``: pause or resume it."""
    body = read_json(request)
    if not isinstance(body, dict):
        raise validation("Invalid input JSON: expected an object")
    config = _app(portal, app_id)
    return json_response(
        config.set_active(subscription_id, body.get("active"), portal.clock.now_ms()).to_json()
    )


def delete_subscription(
    portal: Portal, request: Request, app_id: str, subscription_id: str
) -> Response:
    """``DELETE …/subscriptions/{id}``: 204."""
    _app(portal, app_id).unsubscribe(subscription_id)
    return empty_response(204)


def batch_update(portal: Portal, request: Request, app_id: str) -> Response:
    """``POST …/subscriptions/batch/update`` ``{"inputs": [{"id", "active"}]}``: the updated
    subscriptions; unknown ids are listed as errors (207)."""
    body = read_json(request)
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list):
        raise validation("inputs is required")
    config = _app(portal, app_id)
    started = ms_to_iso(portal.clock.now_ms())
    results, errors = [], []
    for entry in inputs:
        try:
            sub = config.set_active(entry.get("id"), entry.get("active"), portal.clock.now_ms())
        except HsError as error:
            errors.append({"status": "error", "category": error.category, "message": error.message})
            continue
        results.append(sub.to_json())
    reply: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": ms_to_iso(portal.clock.now_ms()),
    }
    if errors:
        reply.update(numErrors=len(errors), errors=errors)
    return json_response(reply, 207 if errors else 200)
