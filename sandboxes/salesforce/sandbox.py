"""A local Salesforce org: the REST API the real SDKs speak, over a generated dataset.

``SalesforceSandbox`` serves the Salesforce REST API (login, describe, query/queryAll with
snapshot paging, sObject rows, getUpdated/getDeleted, sObject collections, Bulk API 2.0 query)
on 127.0.0.1 from its own SQLite file, generated from a seed on first start. Its public methods
are the test controls: the sandbox clock, record changes made "inside the CRM", injected faults,
schema drift, call counting and Change Data Capture (``cdc_controls``: the Pub/Sub API on its
own port, ``pubsub_endpoint()``). Each control is also reachable from another process as
``POST /__sandbox/<name>`` with the ``X-Sandbox-Admin: <admin_token>`` header.

Example::

    with SalesforceSandbox("/tmp/sf.db", seed=7, size="small") as sb:
        session = local_session(sb.base_url)
        sf = Salesforce(instance_url=sb.base_url.replace("http", "https"),
                        session_id=sb.issue_session(), session=session)
        sf.query("SELECT Id FROM Opportunity")
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sandboxes.kit.controls import ClockControls, CommonControls
from sandboxes.kit.faults import Fault
from sandboxes.salesforce.app import SalesforceApp
from sandboxes.salesforce.cdc_controls import CDC_CONTROLS, CdcControls
from sandboxes.salesforce.fields import make_field
from sandboxes.salesforce.ids import normalize_id
from sandboxes.salesforce.load import DatasetLoader
from sandboxes.salesforce.org import Credentials, Org
from sandboxes.salesforce.schema import SalesforceSchema
from sandboxes.salesforce.store import Store, quote
from sandboxes.salesforce.values import to_python

_CONTROLS = (
    "now", "advance_clock", "freeze_clock", "thaw_clock",
    "set_clock", "create", "update", "delete", "undelete", "hard_delete",
    "merge", "set_modstamp", "get", "count", "ids", "expire_sessions", "fail_next", "throttle",
    "set_daily_limit", "lock_rows", "unlock_rows", "drop_next_response", "add_field", "corrupt",
    "set_deleted_window", "reset_calls", "call_count", "issue_session", "write_log", "dump",
    "clear_faults", *CDC_CONTROLS,
)  # fmt: skip


class SalesforceSandbox(CdcControls, ClockControls, CommonControls):
    """A Salesforce org on 127.0.0.1, backed by one SQLite file; see the module docstring."""

    username = Credentials.username
    password = Credentials.password
    security_token = Credentials.security_token
    consumer_key = Credentials.consumer_key
    consumer_secret = Credentials.consumer_secret
    org_id = "00DKj0000000001EAA"
    controls = _CONTROLS
    properties = ("api_usage", "calls")
    datetime_arguments = {"set_clock": "dt", "set_modstamp": "when"}

    def __init__(
        self,
        db_path: str | Path,
        seed: int = 7,
        size: str | int = "small",
        port: int = 0,
        *,
        anchor: datetime | None = None,
        admin_token: str | None = None,
        pubsub_port: int = 0,
        **credentials: str,
    ) -> None:
        """A sandbox storing its org in ``db_path`` (generated from ``seed``/``size`` if new).

        ``anchor`` is the instant the dataset's timestamps lead up to (default: today 00:00
        UTC); ``credentials`` may override ``username``, ``password``, ``security_token``,
        ``consumer_key`` and ``consumer_secret``; ``pubsub_port`` is where the Pub/Sub API is
        served (0: any free port; ``pubsub_endpoint()`` tells).
        """
        self._configure(db_path, seed, size, port, anchor, admin_token)
        self._pubsub_port = pubsub_port
        defaults = Credentials()
        self.credentials = Credentials(**{**defaults.__dict__, **credentials})
        for name, value in self.credentials.__dict__.items():
            setattr(self, name, value)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def org(self) -> Org:
        """The running org (schema, store, records); opens the database on first use."""
        return self._world

    def _open(self) -> Org:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        schema = SalesforceSchema()
        store = Store(self.db_path, schema)
        self._seed_once(store, lambda dataset: DatasetLoader(store, dataset).load())
        return Org(store, schema, self._resumed_clock(store), self.credentials)

    def _app(self) -> SalesforceApp:
        return SalesforceApp(self.org, self.admin_token, self._control)

    def _date_clock(self) -> Callable[[], datetime]:
        return self.org.clock.now

    def issue_session(self) -> str:
        """A valid access token, as if the integration user had logged in."""
        return self.org.sessions.issue()

    # -- records -----------------------------------------------------------------------------

    def create(self, sobject: str, values: dict[str, Any]) -> str:
        """Create a record as a change inside the CRM; returns its 18-char id."""
        return self.org.records.create(self.org.records.sobject(sobject), values, system=True)

    def update(
        self, sobject: str, record_id: str, values: dict[str, Any], *, system_only: bool = False
    ) -> None:
        """Update a record; ``system_only`` bumps SystemModstamp but not LastModifiedDate."""
        records = self.org.records
        records.update(
            records.sobject(sobject), record_id, values, system=True, system_only=system_only
        )

    def delete(self, sobject: str, record_id: str) -> None:
        """Soft-delete a record (recycle bin: queryAll and getDeleted still see it)."""
        self.org.records.delete(self.org.records.sobject(sobject), record_id, system=True)

    def undelete(self, sobject: str, record_id: str) -> None:
        """Restore a soft-deleted record."""
        self.org.records.undelete(self.org.records.sobject(sobject), record_id)

    def hard_delete(self, sobject: str, record_id: str) -> None:
        """Delete for good: not in queryAll, not in getDeleted."""
        self.org.records.hard_delete(self.org.records.sobject(sobject), record_id)

    def merge(self, sobject: str, master_id: str, loser_ids: list[str]) -> None:
        """Merge losers into master (Account, Contact, Lead)."""
        self.org.records.merge(self.org.records.sobject(sobject), master_id, loser_ids)

    def set_modstamp(self, sobject: str, ids: list[str], when: datetime) -> None:
        """Put many records on the same SystemModstamp."""
        self.org.records.set_modstamp(self.org.records.sobject(sobject), ids, when)

    def get(
        self, sobject: str, record_id: str, include_deleted: bool = False
    ) -> dict[str, Any] | None:
        """A record's stored values as Python, or ``None`` (also when deleted, unless asked)."""
        obj = self.org.records.sobject(sobject)
        canonical = normalize_id(record_id)
        row = self.org.store.fetch_row(obj, canonical) if canonical else None
        if row is None or (row["IsDeleted"] and not include_deleted):
            return None
        types = {f["name"]: f["type"] for f in obj.stored_fields()}
        return {name: to_python(types.get(name, "string"), value) for name, value in row.items()}

    def count(self, sobject: str, include_deleted: bool = False) -> int:
        """How many records an object holds."""
        obj = self.org.records.sobject(sobject)
        condition = "" if include_deleted else ' WHERE "IsDeleted" = 0'
        return int(self.org.store.scalar(f"SELECT COUNT(*) FROM {quote(obj.sql_table)}{condition}"))

    def ids(self, sobject: str, include_deleted: bool = False) -> list[str]:
        """Every id of an object, in id order."""
        obj = self.org.records.sobject(sobject)
        condition = "" if include_deleted else ' WHERE "IsDeleted" = 0'
        sql = f'SELECT "Id" FROM {quote(obj.sql_table)}{condition} ORDER BY "Id"'
        return [row[0] for row in self.org.store.query(sql)]

    def dump(self, sobject: str) -> dict[str, dict[str, Any]]:
        """Every record of an object, deleted ones included, by id: its stored values as
        Python (``IsDeleted`` and ``MasterRecordId`` say whether and into what it went)."""
        obj = self.org.records.sobject(sobject)
        types = {f["name"]: f["type"] for f in obj.stored_fields()}
        with self.org.store.lock:
            cursor = self.org.store.conn.execute(f"SELECT * FROM {quote(obj.sql_table)}")
            names = [column[0] for column in cursor.description]
            rows = cursor.fetchall()
        return {
            row[names.index("Id")]: {
                name: to_python(types.get(name, "string"), value)
                for name, value in zip(names, row, strict=True)
            }
            for row in rows
        }

    def corrupt(self, sobject: str, record_id: str, field: str, raw_value: Any) -> None:
        """Store a raw value that may be invalid for the field's type; it is served as is."""
        records = self.org.records
        obj = records.sobject(sobject)
        spec = obj.field(field)
        if spec is None:
            raise KeyError(f"{obj.name} has no field {field!r}")
        row = records.row(obj, record_id, include_deleted=True)
        values = {spec["name"]: raw_value}
        if spec["name"] not in ("SystemModstamp", "LastModifiedDate"):
            now = records.stamp()
            values.update(SystemModstamp=now, LastModifiedDate=now)
        self.org.store.update_row(obj, row["Id"], values)

    def add_field(self, sobject: str, name: str, type: str, **describe_attrs: Any) -> None:
        """Schema drift: a new field appears in describe and becomes queryable."""
        obj = self.org.records.sobject(sobject)
        field = make_field(name, type, **describe_attrs)
        self.org.schema.add_field(obj.name, field)
        self.org.store.add_column(obj, field)

    # -- sessions, budget, faults ------------------------------------------------------------

    def expire_sessions(self) -> None:
        """Every issued token now gets 401 INVALID_SESSION_ID."""
        self.org.sessions.expire_all()

    def fail_next(
        self,
        count: int,
        status: int = 503,
        error_code: str = "SERVER_UNAVAILABLE",
        message: str = "Server temporarily unavailable, please try again later.",
        path_contains: str | None = None,
    ) -> None:
        """The next ``count`` matching requests fail with this status and error."""
        faults = self.org.faults
        faults.add(faults.failures, Fault(count, path_contains, status, error_code, message))

    def throttle(self, delay_seconds: float) -> None:
        """Add latency to every request."""
        self.org.faults.delay_seconds = delay_seconds

    def clear_faults(self) -> None:
        """Forget every injected failure and dropped response, remove the added latency,
        release every locked record and forget the change stream's faults."""
        super().clear_faults()
        self.unlock_rows()
        self.org.cdc.clear_faults()

    def set_daily_limit(self, limit: int) -> None:
        """Set the daily API request allowance."""
        self.org.budget.limit = limit

    @property
    def api_usage(self) -> int:
        """API requests counted today (sandbox clock)."""
        return self.org.budget.used

    def lock_rows(self, ids: list[str]) -> None:
        """API writes to these records fail with UNABLE_TO_LOCK_ROW."""
        self.org.records.locked_ids.update(normalize_id(i) or i for i in ids)

    def unlock_rows(self) -> None:
        """Release every locked record."""
        self.org.records.locked_ids.clear()

    def set_deleted_window(self, days: int) -> None:
        """How far back getDeleted reaches (default 15 days)."""
        self.org.deleted_window_days = days
