"""TinyCRM: an in-memory CRM with two objects, partners and deals, served through a small API.

It behaves like the CRMs the real adapters talk to, in the ways the contract suite probes: an
API key buys a session token that can expire, requests can be made to fail, every change
stamps the record with the CRM's own clock (strictly increasing, millisecond resolution), a
delete leaves a tombstone until it is purged, and creates carry an external key that makes
them idempotent. Servers are found by their ``memory://`` address, as a URL finds a host.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

FIELDS: dict[str, dict[str, str]] = {
    "partners": {
        "id": "id",
        "name": "text",
        "is_partner": "flag",
        "external_key": "text",
        "updated_at": "time",
    },
    "deals": {
        "id": "id",
        "name": "text",
        "amount": "number",
        "partner_id": "link:partners",
        "external_key": "text",
        "updated_at": "time",
    },
}
TICK = timedelta(milliseconds=1)
_servers: dict[str, TinyCrm] = {}


class ApiError(Exception):
    """An answer other than success: its HTTP-like status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass
class Answer:
    """One query's answer: rows and tombstones in (stamp, id) order, and the CRM's clock when
    it began the query."""

    rows: list[dict[str, Any]]
    deleted: list[tuple[str, datetime]]
    began: datetime


@dataclass
class TinyCrm:
    """One TinyCRM organisation in memory."""

    api_key: str = "tiny-key"
    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    records: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {name: {} for name in FIELDS}
    )
    tombstones: dict[str, dict[str, datetime]] = field(
        default_factory=lambda: {name: {} for name in FIELDS}
    )
    tokens: set[str] = field(default_factory=set)
    failures: list[int] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    address: str = field(default_factory=lambda: f"memory://{uuid.uuid4().hex[:8]}")
    # called under the lock with (object, id, "change" or "delete", stamp) after each change:
    # how the change stream of tests/adapters/fourth/stream.py hears of them
    watchers: list[Callable[[str, str, str, datetime], None]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def _tell(self, object_name: str, record_id: str, kind: str, when: datetime) -> None:
        for watcher in self.watchers:
            watcher(object_name, record_id, kind, when)

    def start(self) -> TinyCrm:
        """Make the server reachable at its address."""
        _servers[self.address] = self
        return self

    def stop(self) -> None:
        """Make it unreachable."""
        _servers.pop(self.address, None)

    # --- the API ---------------------------------------------------------------------------

    def request(self, token: str | None, operation: str, **arguments: Any) -> Any:
        """Answer one API request made with session ``token`` (``login`` needs none)."""
        with self.lock:
            if self.failures:
                raise ApiError(self.failures.pop(0), "the server is having a bad day")
            if operation == "login":
                return self._login(str(arguments["api_key"]))
            if token not in self.tokens:
                raise ApiError(401, "the session token is not valid")
            handler = getattr(self, f"_api_{operation}", None)
            if handler is None:
                raise ApiError(404, f"no operation {operation!r}")
            return handler(**arguments)

    def _login(self, api_key: str) -> str:
        if api_key != self.api_key:
            raise ApiError(403, "the API key is not valid")
        token = uuid.uuid4().hex
        self.tokens.add(token)
        return token

    def _api_objects(self) -> dict[str, dict[str, str]]:
        return {name: dict(fields) for name, fields in FIELDS.items()}

    def _api_query(
        self, object_name: str, since: datetime | None, skip: Iterable[str], limit: int
    ) -> Answer:
        skipped = set(skip)
        events: list[tuple[datetime, str, dict[str, Any] | None]]
        events = [(r["updated_at"], i, r) for i, r in self._table(object_name).items()]
        events += [(when, i, None) for i, when in self.tombstones[object_name].items()]
        chosen = sorted(
            (e for e in events if since is None or e[0] >= since),
            key=lambda e: (e[0], e[1]),
        )
        chosen = [e for e in chosen if not (e[0] == since and e[1] in skipped)][:limit]
        rows = [dict(record) for _, _, record in chosen if record is not None]
        deleted = [(i, when) for when, i, record in chosen if record is None]
        return Answer(rows, deleted, self.now)

    def _api_ids(self, object_name: str) -> list[str]:
        return sorted(self._table(object_name))

    def _api_get(self, object_name: str, ids: Iterable[str]) -> list[dict[str, Any]]:
        table = self._table(object_name)
        return [dict(table[i]) for i in ids if i in table]

    def _api_create(self, object_name: str, values: Mapping[str, Any]) -> tuple[str, bool]:
        key = values.get("external_key")
        for record_id, record in self._table(object_name).items():
            if key and record["external_key"] == key:
                return record_id, False
        return self.create(object_name, values), True

    def _api_update(
        self, object_name: str, record_id: str, values: Mapping[str, Any], version: str | None
    ) -> None:
        record = self._table(object_name).get(record_id)
        if record is None:
            raise ApiError(404, f"no {object_name} record {record_id}")
        if version is not None and record["updated_at"].isoformat() != version:
            raise ApiError(412, f"{object_name} {record_id} changed since that version")
        self.update(object_name, record_id, values)

    def _api_delete(self, object_name: str, record_id: str) -> None:
        if record_id not in self._table(object_name):
            raise ApiError(404, f"no {object_name} record {record_id}")
        self.delete(object_name, record_id)

    def _table(self, object_name: str) -> dict[str, dict[str, Any]]:
        if object_name not in self.records:
            raise ApiError(404, f"no object {object_name!r}")
        return self.records[object_name]

    # --- the CRM's own users, and the test's controls ---------------------------------------

    def stamp(self) -> datetime:
        """A new change stamp: the clock's time, after which the clock moves on."""
        when = self.now
        self.now += TICK
        return when

    def create(self, object_name: str, values: Mapping[str, Any]) -> str:
        """Create a record as a CRM user would; its id."""
        with self.lock:
            record_id = f"{object_name[0]}{next(self._ids):06d}"
            blank = {name: None for name in FIELDS[object_name]}
            self.records[object_name][record_id] = {**blank, **values, "id": record_id}
            when = self.records[object_name][record_id]["updated_at"] = self.stamp()
            self._tell(object_name, record_id, "change", when)
            return record_id

    def update(self, object_name: str, record_id: str, values: Mapping[str, Any]) -> None:
        """Change a record as a CRM user would."""
        with self.lock:
            when = self.stamp()
            self.records[object_name][record_id].update(values, updated_at=when)
            self._tell(object_name, record_id, "change", when)

    def delete(self, object_name: str, record_id: str) -> None:
        """Delete a record; a tombstone stays."""
        with self.lock:
            del self.records[object_name][record_id]
            when = self.tombstones[object_name][record_id] = self.stamp()
            self._tell(object_name, record_id, "delete", when)

    def purge(self, object_name: str, record_id: str) -> None:
        """Delete a record leaving no trace."""
        with self.lock:
            self.records[object_name].pop(record_id, None)
            self.tombstones[object_name].pop(record_id, None)

    def same_stamp(self, object_name: str, ids: Iterable[str]) -> None:
        """Give all ``ids`` one new stamp."""
        with self.lock:
            when = self.stamp()
            for record_id in ids:
                self.records[object_name][record_id]["updated_at"] = when
                self._tell(object_name, record_id, "change", when)


def server_at(address: str) -> TinyCrm:
    """The running server at ``address``; ``ApiError`` 503 when none answers there."""
    server = _servers.get(address)
    if server is None:
        raise ApiError(503, f"nothing answers at {address}")
    return server


def seeded(partners: int = 3, deals_each: int = 4, fillers: int = 0) -> TinyCrm:
    """A started server with ``partners`` partner companies, ``deals_each`` deals attributed to
    each, and ``fillers`` partners more that are not partners (plain customers)."""
    crm = TinyCrm().start()
    for number in range(partners):
        partner = crm.create("partners", {"name": f"Partner {number}", "is_partner": True})
        for deal in range(deals_each):
            crm.create(
                "deals",
                {"name": f"Deal {number}-{deal}", "amount": 100.0 * deal, "partner_id": partner},
            )
    for number in range(fillers):
        crm.create("partners", {"name": f"Customer {number}", "is_partner": False})
    return crm


class TinyControls:
    """The contract suite's controls of one TinyCRM server (``SandboxControls``)."""

    def __init__(self, crm: TinyCrm) -> None:
        self.crm = crm

    def create(self, object_name: str, values: Mapping[str, Any]) -> str:
        """Create a record behind the adapter's back; its id."""
        return self.crm.create(object_name, values)

    def update(self, object_name: str, record_id: str, values: Mapping[str, Any]) -> None:
        """Change a record behind the adapter's back."""
        self.crm.update(object_name, record_id, values)

    def delete(self, object_name: str, record_id: str) -> None:
        """Delete a record (its tombstone stays)."""
        self.crm.delete(object_name, record_id)

    def hard_delete(self, object_name: str, record_id: str) -> None:
        """Delete a record leaving no tombstone."""
        self.crm.purge(object_name, record_id)

    def set_same_modstamp(self, object_name: str, ids: Iterable[str]) -> None:
        """Give all ``ids`` one new stamp."""
        self.crm.same_stamp(object_name, ids)

    def advance_clock(self, seconds: float) -> None:
        """Move the CRM's clock forward."""
        with self.crm.lock:
            self.crm.now += timedelta(seconds=seconds)

    def expire_sessions(self) -> None:
        """Invalidate every session token."""
        with self.crm.lock:
            self.crm.tokens.clear()

    def fail_next(self, count: int, status: int) -> None:
        """Fail the next ``count`` requests with ``status``."""
        with self.crm.lock:
            self.crm.failures.extend([status] * count)

    def count(self, object_name: str) -> int:
        """Live records of the object."""
        return len(self.crm.records[object_name])

    def ids(self, object_name: str) -> list[str]:
        """Live ids of the object, oldest first."""
        return list(self.crm.records[object_name])

    def get(self, object_name: str, record_id: str) -> Mapping[str, Any] | None:
        """A live record's values, or ``None``."""
        record = self.crm.records[object_name].get(record_id)
        return None if record is None else dict(record)
