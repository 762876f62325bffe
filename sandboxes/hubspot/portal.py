"""The live state of a sandbox portal shared by the HTTP layer and the test controls.

``Portal`` bundles the schema, storage, clock and record operations with the in-memory parts:
the private-app token, the rate limiter, injected faults, the search cap and the call log. Its
app's webhook subscriptions see every committed record change and deliver the events they make.
"""

from __future__ import annotations

import secrets

from sandboxes.hubspot.changes import Change
from sandboxes.hubspot.delivery import Delivery
from sandboxes.hubspot.limits import RateLimiter
from sandboxes.hubspot.records import Records
from sandboxes.hubspot.schema import PortalSchema
from sandboxes.hubspot.search import DEFAULT_CAP
from sandboxes.hubspot.store import Store
from sandboxes.hubspot.webhooks import WebhookConfig
from sandboxes.kit.calllog import CallLog
from sandboxes.kit.clock import MillisecondClock
from sandboxes.kit.faults import Faults


def new_token() -> str:
    """A private-app access token shaped like HubSpot's (``pat-na1-<uuid>``)."""
    raw = secrets.token_hex(16)
    return f"pat-na1-{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


class Portal:
    """Everything one sandbox portal is made of."""

    def __init__(self, store: Store, schema: PortalSchema, clock: MillisecondClock, token: str):
        """Assemble the portal around its storage, schema, clock and access token."""
        self.store = store
        self.schema = schema
        self.clock = clock
        self.records = Records(store, schema, clock)
        self.token = token
        self.limits = RateLimiter()
        self.faults = Faults()
        self.search_cap = DEFAULT_CAP
        self.calls = CallLog()
        self.base_url = ""
        self.webhooks = WebhookConfig(store, schema)
        self.delivery = Delivery(self.webhooks)
        self.records.events = self._changed

    def _changed(self, change: Change) -> None:
        """Queue the events of ``change`` once its transaction commits."""
        self.store.after_commit(lambda: self.delivery.enqueue(self.webhooks.events(change)))
