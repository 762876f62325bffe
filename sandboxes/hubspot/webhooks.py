"""The app's webhook settings and subscriptions (Webhooks API v3), and the events a committed
change makes for them.

A HubSpot app (``app_id``, managed with its developer API key, signing with its client secret)
has one target URL with a concurrency limit and a list of subscriptions. A subscription names
an ``eventType``: the legacy per-object form (``contact.creation``, ``deal.propertyChange``
with a ``propertyName``, ``company.deletion``, ``deal.merge``, ``deal.restore``,
``deal.associationChange``) or the generic form (``object.creation`` ... with an
``objectTypeId`` such as ``0-3``, the only form custom objects have). New subscriptions are
paused unless created ``active``, as HubSpot makes them. Each change of a record makes one event
per active subscription it matches, with HubSpot's fields (``eventId``, ``subscriptionId``,
``portalId``, ``appId``, ``occurredAt``, ``subscriptionType``, ``attemptNumber``, ``objectId``,
``changeSource``, ``sourceId`` and the kind's own). The configuration is kept in the portal's
meta table; events in flight are not.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from sandboxes.hubspot.changes import Change
from sandboxes.hubspot.errors import HsError, validation
from sandboxes.hubspot.history import CRM_USER_ID, PRIVATE_APP_ID
from sandboxes.hubspot.schema import PORTAL_ID, PortalSchema
from sandboxes.hubspot.values import ms_to_iso
from sandboxes.kit.writelog import in_api_request

LEGACY_OBJECTS = {
    "contact": "contacts",
    "company": "companies",
    "deal": "deals",
    "ticket": "tickets",
    "product": "products",
    "line_item": "line_items",
}
KINDS = ("creation", "deletion", "propertyChange", "merge", "restore", "associationChange")
LEGACY_KINDS = {
    "contact": (*KINDS, "privacyDeletion"),
    "company": KINDS,
    "deal": KINDS,
    "ticket": KINDS,
    "product": ("creation", "deletion", "propertyChange", "merge", "restore"),
    "line_item": KINDS,
}
MIN_CONCURRENT_REQUESTS = 5
"""HubSpot refuses a concurrency limit below 5 in an app's webhook settings."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class Subscription:
    """One subscription of the app."""

    id: int
    event_type: str
    property_name: str | None
    object_type_id: str | None
    active: bool
    created_ms: int
    updated_ms: int

    def matches(self, change: Change, schema: PortalSchema) -> bool:
        """Whether ``change`` makes an event for this subscription."""
        if not self.active:
            return False
        scope, _, kind = self.event_type.partition(".")
        if kind != change.kind:
            return False
        if scope == "object":
            if self.object_type_id != change.object_type.object_type_id:
                return False
        elif LEGACY_OBJECTS.get(scope) != change.object_type.name:
            return False
        return kind != "propertyChange" or self.property_name == change.property_name

    def to_json(self) -> dict[str, Any]:
        """The subscription as the API shows it."""
        body: dict[str, Any] = {
            "id": str(self.id),
            "eventType": self.event_type,
            "active": self.active,
            "createdAt": ms_to_iso(self.created_ms),
            "updatedAt": ms_to_iso(self.updated_ms),
        }
        if self.property_name is not None:
            body["propertyName"] = self.property_name
        if self.object_type_id is not None:
            body["objectTypeId"] = self.object_type_id
        return body


@dataclass
class Target:
    """Where deliveries go and how many may be under way at once."""

    url: str
    max_concurrent_requests: int
    created_ms: int
    updated_ms: int

    def to_json(self) -> dict[str, Any]:
        """The settings as the API shows them."""
        return {
            "targetUrl": self.url,
            "throttling": {"maxConcurrentRequests": self.max_concurrent_requests},
            "createdAt": ms_to_iso(self.created_ms),
            "updatedAt": ms_to_iso(self.updated_ms),
        }


class WebhookConfig:
    """The app's keys, target and subscriptions, saved in the portal's meta table."""

    meta_key = "webhooks"

    def __init__(self, store: Any, schema: PortalSchema) -> None:
        """Load the app from ``store`` (new keys on first use)."""
        self.store = store
        self.schema = schema
        self.lock = threading.Lock()
        saved = orjson.loads(store.get_meta(self.meta_key) or "{}")
        self.app_id = int(saved.get("app_id") or 1_000_000 + secrets.randbelow(8_999_999))
        self.developer_api_key = str(saved.get("developer_api_key") or uuid.uuid4())
        self.client_secret = str(saved.get("client_secret") or uuid.uuid4())
        target = saved.get("target")
        self.target = Target(**target) if target else None
        self.subscriptions = {
            int(s["id"]): Subscription(**s) for s in saved.get("subscriptions") or ()
        }
        self._next_id = int(saved.get("next_id") or 100)
        self._event_ids = itertools.count(time.time_ns() // 1_000_000)
        self.save()

    def save(self) -> None:
        """Keep the configuration in the meta table."""
        body = {
            "app_id": self.app_id,
            "developer_api_key": self.developer_api_key,
            "client_secret": self.client_secret,
            "target": asdict(self.target) if self.target else None,
            "subscriptions": [asdict(s) for s in self.subscriptions.values()],
            "next_id": self._next_id,
        }
        self.store.set_meta(self.meta_key, orjson.dumps(body).decode())

    # -- settings ---------------------------------------------------------------------------

    def configure(self, url: Any, max_concurrent: Any, now_ms: int) -> Target:
        """Set the target URL and concurrency limit (400 on a value HubSpot refuses)."""
        problems = []
        if not isinstance(url, str) or not url:
            problems.append("targetUrl is required")
        else:
            parts = urlsplit(url)
            loopback = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
            if parts.scheme != "https" and not loopback:
                problems.append(f"targetUrl must be an https URL: {url}")
        if not isinstance(max_concurrent, int) or max_concurrent < MIN_CONCURRENT_REQUESTS:
            problems.append(
                f"throttling.maxConcurrentRequests must be at least {MIN_CONCURRENT_REQUESTS}"
            )
        if problems:
            raise validation("; ".join(problems))
        with self.lock:
            created = self.target.created_ms if self.target else now_ms
            self.target = Target(str(url), int(max_concurrent), created, now_ms)
            self.save()
            return self.target

    def clear(self) -> None:
        """Forget the target (deliveries stop)."""
        with self.lock:
            self.target = None
            self.save()

    # -- subscriptions ----------------------------------------------------------------------

    def subscribe(self, body: Mapping[str, Any], now_ms: int) -> Subscription:
        """A new subscription from a create request (400 when HubSpot would refuse it)."""
        event_type = body.get("eventType")
        prop = body.get("propertyName")
        type_id = body.get("objectTypeId")
        scope, _, kind = str(event_type or "").partition(".")
        if scope == "object":
            kinds: tuple[str, ...] = KINDS
            kind_type = next(
                (t for t in self.schema.types.values() if t.object_type_id == type_id), None
            )
            if kind_type is None:
                raise validation(f"objectTypeId is required and must name an object: {type_id}")
        else:
            kinds = LEGACY_KINDS.get(scope, ())
            kind_type = self.schema.types.get(LEGACY_OBJECTS.get(scope, ""))
            type_id = None
        if kind not in kinds:
            raise validation(f"Unknown eventType: {event_type}")
        if kind == "propertyChange":
            if not prop:
                raise validation("propertyName is required for propertyChange subscriptions")
            if kind_type is not None and kind_type.property(str(prop)) is None:
                raise validation(f"Property {prop} does not exist on {kind_type.name}")
        elif prop:
            raise validation(f"propertyName is only allowed on propertyChange, not {kind}")
        with self.lock:
            self._next_id += 1
            sub = Subscription(
                self._next_id,
                str(event_type),
                str(prop) if prop else None,
                str(type_id) if type_id else None,
                bool(body.get("active", False)),
                now_ms,
                now_ms,
            )
            self.subscriptions[sub.id] = sub
            self.save()
        return sub

    def subscription(self, subscription_id: Any) -> Subscription:
        """One subscription (404 when there is none)."""
        try:
            return self.subscriptions[int(subscription_id)]
        except (KeyError, ValueError):
            raise HsError(404, "OBJECT_NOT_FOUND", f"No subscription {subscription_id}") from None

    def set_active(self, subscription_id: Any, active: Any, now_ms: int) -> Subscription:
        """Pause or resume a subscription."""
        if not isinstance(active, bool):
            raise validation("active must be true or false")
        with self.lock:
            sub = self.subscription(subscription_id)
            sub.active, sub.updated_ms = active, now_ms
            self.save()
        return sub

    def unsubscribe(self, subscription_id: Any) -> None:
        """Delete a subscription."""
        with self.lock:
            self.subscriptions.pop(self.subscription(subscription_id).id)
            self.save()

    # -- events -----------------------------------------------------------------------------

    def events(self, change: Change) -> list[dict[str, Any]]:
        """The events ``change`` makes: one per active subscription it matches."""
        if self.target is None:
            return []
        with self.lock:
            subs = list(self.subscriptions.values())
        matching = [s for s in subs if s.matches(change, self.schema)]
        api = in_api_request()
        events = []
        for sub in matching:
            event: dict[str, Any] = {
                "eventId": next(self._event_ids),
                "subscriptionId": sub.id,
                "portalId": PORTAL_ID,
                "appId": self.app_id,
                "occurredAt": change.occurred_ms,
                "subscriptionType": sub.event_type,
                "attemptNumber": 0,
            }
            if change.kind != "associationChange":
                event["objectId"] = change.object_id
            if sub.object_type_id is not None:
                event["objectTypeId"] = sub.object_type_id
            event["changeSource"] = "INTEGRATION" if api else "CRM_UI"
            event["sourceId"] = PRIVATE_APP_ID if api else f"userId:{CRM_USER_ID}"
            event.update(change.details)
            events.append(event)
        return events
