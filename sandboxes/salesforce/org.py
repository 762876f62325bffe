"""The live state of a sandbox org that the HTTP layer and the test controls share.

``Org`` bundles the schema, storage, clock and record writer with the in-memory parts of the
org: issued sessions, the daily API budget, the call log and the injected faults.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import date

from sandboxes.kit.calllog import CallLog
from sandboxes.kit.clock import SandboxClock
from sandboxes.kit.faults import Faults
from sandboxes.salesforce.cdc import ChangeBus
from sandboxes.salesforce.query import Snapshots
from sandboxes.salesforce.records import Records
from sandboxes.salesforce.schema import SalesforceSchema
from sandboxes.salesforce.store import Store

DEFAULT_DAILY_LIMIT = 100_000
DEFAULT_DELETED_WINDOW_DAYS = 15


@dataclass(frozen=True)
class Credentials:
    """The login credentials the org accepts (an integration user and a connected app)."""

    username: str = "integration@prm-sandbox.example.com"
    password: str = "sandbox-password"
    security_token: str = "SANDBOXTOKEN123"
    consumer_key: str = "3MVG9sandbox.consumer.key"
    consumer_secret: str = "sandbox-consumer-secret"


class Sessions:
    """Access tokens the org has issued; all can be expired at once."""

    def __init__(self, org_id: str) -> None:
        """Issue tokens for the org ``org_id``."""
        self.org_id = org_id
        self._lock = threading.Lock()
        self._tokens: set[str] = set()

    def issue(self) -> str:
        """A new valid token shaped like Salesforce's (``00D...!AQ...``)."""
        token = f"{self.org_id[:15]}!AQ{secrets.token_urlsafe(72)}"
        with self._lock:
            self._tokens.add(token)
        return token

    def valid(self, token: str | None) -> bool:
        """Whether ``token`` was issued and has not been expired."""
        with self._lock:
            return token is not None and token in self._tokens

    def expire_all(self) -> None:
        """Invalidate every issued token."""
        with self._lock:
            self._tokens.clear()


@dataclass
class ApiBudget:
    """The daily API request allowance, counted per sandbox-clock UTC day."""

    limit: int = DEFAULT_DAILY_LIMIT
    used: int = 0
    day: date | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spend(self, today: date) -> bool:
        """Count one request; ``False`` when the allowance was already used up."""
        with self.lock:
            if self.day != today:
                self.day, self.used = today, 0
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def header(self) -> str:
        """The ``Sforce-Limit-Info`` value."""
        return f"api-usage={self.used}/{self.limit}"


class Org:
    """Everything one sandbox org is made of."""

    def __init__(
        self,
        store: Store,
        schema: SalesforceSchema,
        clock: SandboxClock,
        credentials: Credentials | None = None,
    ) -> None:
        """Assemble the org around its storage, schema and clock."""
        self.credentials = credentials or Credentials()
        self.store = store
        self.schema = schema
        self.clock = clock
        self.records = Records(store, schema, clock)
        self.snapshots = Snapshots(store, schema)
        self.org_id = "00DKj0000000001EAA"
        self.cdc = ChangeBus(clock.now, self.records.user_id)
        store.cdc = self.cdc
        self.sessions = Sessions(self.org_id)
        self.budget = ApiBudget()
        self.faults = Faults()
        self.deleted_window_days = DEFAULT_DELETED_WINDOW_DAYS
        self.calls = CallLog()
        self.base_url = ""
