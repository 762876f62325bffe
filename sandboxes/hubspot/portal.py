"""The live state of a sandbox portal shared by the HTTP layer and the test controls.

``Portal`` bundles the schema, storage, clock and record operations with the in-memory parts:
the private-app token, the rate limiter, injected faults, the search cap and the call log.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

from sandboxes.hubspot.limits import RateLimiter
from sandboxes.hubspot.records import Records
from sandboxes.hubspot.schema import PortalSchema
from sandboxes.hubspot.search import DEFAULT_CAP
from sandboxes.hubspot.store import HubSpotClock, Store


def new_token() -> str:
    """A private-app access token shaped like HubSpot's (``pat-na1-<uuid>``)."""
    raw = secrets.token_hex(16)
    return f"pat-na1-{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


@dataclass
class Fault:
    """An injected failure for the next ``remaining`` requests whose path matches."""

    remaining: int
    path_contains: str | None = None
    status: int = 503
    category: str = ""
    message: str = "Service Unavailable"

    def matches(self, path: str) -> bool:
        """Whether this fault applies to a request for ``path``."""
        return self.remaining > 0 and (self.path_contains is None or self.path_contains in path)


@dataclass
class Faults:
    """Injected failures, dropped answers and added latency."""

    failures: list[Fault] = field(default_factory=list)
    drops: list[Fault] = field(default_factory=list)
    delay_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, kind: list[Fault], path: str) -> Fault | None:
        """Consume one use of the first matching fault of ``kind``."""
        with self.lock:
            for fault in kind:
                if fault.matches(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        kind.remove(fault)
                    return fault
        return None


class Portal:
    """Everything one sandbox portal is made of."""

    def __init__(self, store: Store, schema: PortalSchema, clock: HubSpotClock, token: str):
        """Assemble the portal around its storage, schema, clock and access token."""
        self.store = store
        self.schema = schema
        self.clock = clock
        self.records = Records(store, schema, clock)
        self.token = token
        self.limits = RateLimiter()
        self.faults = Faults()
        self.search_cap = DEFAULT_CAP
        self.calls: list[tuple[str, str]] = []
        self.calls_lock = threading.Lock()
        self.base_url = ""

    def record_call(self, method: str, path: str) -> None:
        """Log a CRM-facing request."""
        with self.calls_lock:
            self.calls.append((method, path))
