"""A local Dynamics 365 organisation: Entra ID and the Dataverse Web API over a generated dataset.

``DynamicsSandbox`` serves, on one 127.0.0.1 port, a Microsoft Entra ID stand-in (OpenID
discovery advertising https endpoints, the client-credentials token endpoint for a client
secret or a certificate) and the Dataverse Web API v9.x (``EntityDefinitions`` metadata,
queries with ``$select``/``$filter``/``$orderby``/``$top``/``$count`` and paging, change
tracking with delta links and tombstones, row create/retrieve/upsert/delete with etags,
``$batch`` and service protection), from its own SQLite file generated from a seed on first
start. Registered webhooks (``serviceendpoints`` and ``sdkmessageprocessingsteps``) receive
every committed change as Dataverse posts it (``webhooks``). Its public methods are the test
controls; each is also reachable from another process as
``POST /__sandbox/<name>`` with the ``X-Sandbox-Admin: <admin_token>`` header.

Example::

    with DynamicsSandbox("/tmp/dv.db", seed=7, size="small") as sb:
        settings = DynamicsSettings(org_url=sb.org_url, authority_url=sb.authority_url,
                                    tenant_id=sb.tenant_id, client_id=sb.client_id,
                                    client_secret=sb.client_secret)
        DynamicsAdapter(settings).check()
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from sandboxes.dataset.generate import Dataset
from sandboxes.dynamics.app import DataverseApp
from sandboxes.dynamics.entra import EntraTenant, generate_certificate, thumbprints
from sandboxes.dynamics.errors import REQUESTS_LIMIT, THROTTLE_MESSAGES
from sandboxes.dynamics.load import DataverseLoader, record_guid
from sandboxes.dynamics.org import DataverseOrg, ServiceProtection
from sandboxes.dynamics.schema import Attribute, DataverseSchema, Entity
from sandboxes.dynamics.store import DataverseStore, quote
from sandboxes.dynamics.values import epoch, normalize_guid
from sandboxes.dynamics.webhook_controls import WEBHOOK_CONTROLS, WebhookControls
from sandboxes.kit.controls import ClockControls, CommonControls
from sandboxes.kit.faults import Fault

_CONTROLS = (
    "now", "advance_clock", "freeze_clock", "thaw_clock",
    "set_clock", "create", "update", "delete", "hard_delete",
    "set_modstamp", "get", "count", "ids", "record_id", "expire_tokens", "expire_delta_tokens",
    "set_delta_token_expiry_days", "set_change_tracking", "fail_next", "fail_identity_next",
    "throttle", "set_rate_limit", "drop_next_response", "slow_down", "corrupt", "reset_calls",
    "call_count", "issue_token", "add_column", "add_columns", "write_log", "dump",
    "clear_faults", *WEBHOOK_CONTROLS,
)  # fmt: skip
UNTRACKED_BY_DEFAULT = ("systemuser",)


class DynamicsSandbox(WebhookControls, ClockControls, CommonControls):
    """A Dynamics 365 organisation on 127.0.0.1, backed by one SQLite file (module docstring)."""

    tenant_id = "3f1c6a52-8c1d-4b9e-9a0f-5d2e7b4c1a90"
    client_id = "7b3e9d2a-1c4f-4e8b-b6a5-2f9d0c8e1a37"
    client_secret = "dv8Q~sandbox.client-secret_1234567890"
    controls = _CONTROLS
    properties = ("calls", "tenant_id", "client_id", "client_secret", "certificate_thumbprint")
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
        token_lifetime: int = 3599,
    ) -> None:
        """A sandbox storing its organisation in ``db_path`` (generated if new).

        ``anchor`` is the instant the dataset's timestamps lead up to (default: today 00:00
        UTC); ``token_lifetime`` the seconds an access token lives on the sandbox clock.
        """
        self._configure(db_path, seed, size, port, anchor, admin_token)
        self.token_lifetime = token_lifetime

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def org(self) -> DataverseOrg:
        """The running organisation; opens (and if new, generates) the database on first use."""
        return self._world

    def _open(self) -> DataverseOrg:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        schema = DataverseSchema.default()
        store = DataverseStore(self.db_path, schema)
        self._seed_once(store, lambda dataset: _load(store, dataset))
        for name in orjson.loads(store.get_meta("untracked") or "[]"):
            schema.set_change_tracking(name, False)
        for table, column in orjson.loads(store.get_meta("added_columns") or "[]"):
            schema.add_attribute(table, _attribute(column))
        clock = self._resumed_clock(store)
        certificate, _key = orjson.loads(store.get_meta("certificate") or "[]")
        tenant = EntraTenant(
            self.tenant_id, self.client_id, self.client_secret, certificate, clock.now,
            self.token_lifetime, accepted_hosts=self._hosts,
        )  # fmt: skip
        org = DataverseOrg(store, clock, tenant)
        org.delta_floor = int(store.get_meta("delta_floor") or 0)
        return org

    def stop(self) -> None:
        """Stop the webhook pipeline, then serving (``SandboxLifecycle.stop``)."""
        if self._state is not None:
            self._state.webhooks.stop()
        super().stop()

    def clear_faults(self) -> None:
        """Forget every injected failure, dropped response, added latency and delivery fault."""
        super().clear_faults()
        self.clear_webhook_faults()

    def _hosts(self) -> set[str]:
        port = self._server.port if self._server is not None else self._requested_port
        return {f"127.0.0.1:{port}", f"localhost:{port}"}

    def _app(self) -> DataverseApp:
        return DataverseApp(self.org, self.admin_token, self._control)

    def _date_clock(self) -> Callable[[], datetime]:
        return self.org.clock.now

    @property
    def org_url(self) -> str:
        """The organisation URL an adapter is configured with."""
        return self.base_url

    @property
    def authority_url(self) -> str:
        """The Entra ID authority host an adapter is configured with."""
        return self.base_url

    def source_settings(self) -> dict[str, Any]:
        """A ``[sources.<name>]`` table (as a dict) that mirrors this sandbox."""
        return {
            "crm": "dynamics",
            "org_url": self.org_url,
            "authority_url": self.authority_url,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }

    # -- certificate -------------------------------------------------------------------------

    @property
    def certificate_pem(self) -> str:
        """The registered application certificate (public part), PEM."""
        return str(orjson.loads(self.org.store.get_meta("certificate") or "[]")[0])

    @property
    def certificate_thumbprint(self) -> str:
        """The certificate's SHA-1 thumbprint (hex), as Entra ID shows it."""
        return thumbprints(self.certificate_pem)[0]

    def write_certificate(self, path: str | Path) -> Path:
        """Write the certificate's private key and certificate to a PEM file; its path."""
        certificate, key = orjson.loads(self.org.store.get_meta("certificate") or "[]")
        target = Path(path)
        target.write_text(key + certificate, encoding="utf-8")
        target.chmod(0o600)
        return target

    # -- records -----------------------------------------------------------------------------

    def _entity(self, table: str) -> Entity:
        return self.org.records.entity(table)

    def record_id(self, key: str) -> str:
        """The guid of a generated record from its dataset key (``"partner-3"``)."""
        return str(record_guid(self.seed, key))

    def create(self, table: str, values: dict[str, Any]) -> str:
        """Create a row as a change made inside the CRM; returns its guid.

        ``values`` are keyed by Web API property (``_x_value`` for lookups) or logical name,
        with Python values.
        """
        records, entity = self.org.records, self._entity(table)
        row = records.create(entity, records.control_values(entity, values))
        return str(row[entity.primary_id])

    def update(self, table: str, record_id: str, values: dict[str, Any]) -> None:
        """Change a row as a user of the CRM would (new ``modifiedon`` and row version)."""
        records, entity = self.org.records, self._entity(table)
        records.update(entity, _guid(record_id), records.control_values(entity, values))

    def delete(self, table: str, record_id: str) -> None:
        """Delete a row (change tracking reports it as a ``$deletedEntity``)."""
        self.org.records.delete(self._entity(table), _guid(record_id))

    def hard_delete(self, table: str, record_id: str) -> None:
        """Delete a row so that not even change tracking reports it (only a sweep finds it)."""
        self.org.records.delete(self._entity(table), _guid(record_id), tombstone=False)

    def set_modstamp(self, table: str, ids: list[str], when: datetime) -> None:
        """Put many rows on one ``modifiedon`` (each a change with a new row version)."""
        entity, store = self._entity(table), self.org.store
        with store.transaction():
            for record_id in ids:
                guid = _guid(record_id)
                if store.fetch(entity, guid) is None:
                    raise KeyError(f"{entity.name} has no row {record_id}")
                store.update(entity, guid, {"modifiedon": epoch(when),
                                            "versionnumber": store.next_version()})  # fmt: skip
                self.org.records.log("touch", entity, guid, {}, epoch(when))

    def get(self, table: str, record_id: str) -> dict[str, Any] | None:
        """A row's values keyed by Web API property, as Python values; ``None`` if absent."""
        entity = self._entity(table)
        guid = normalize_guid(record_id)
        row = self.org.store.fetch(entity, guid) if guid else None
        return None if row is None else self.org.records.as_python(entity, row)

    def dump(self, table: str) -> dict[str, dict[str, Any]]:
        """Every row of a table by id, keyed by Web API property, as Python values (a deleted
        row is gone: Dataverse keeps no recycle bin)."""
        entity = self._entity(table)
        rows = self.org.store.query(f"SELECT * FROM {quote(entity.name)}")
        return {
            row[entity.primary_id]: self.org.records.as_python(entity, dict(row)) for row in rows
        }

    def count(self, table: str) -> int:
        """How many rows a table holds."""
        return self.org.store.count(self._entity(table))

    def ids(self, table: str) -> list[str]:
        """Every id of a table, in id order."""
        return self.org.store.ids(self._entity(table))

    def corrupt(self, table: str, record_id: str, column: str, raw_value: Any) -> None:
        """Store a raw value that may not fit the column; it is served as it is."""
        entity = self._entity(table)
        attribute = entity.by_wire_name.get(column) or entity.by_name[column]
        store = self.org.store
        store.update(entity, _guid(record_id), {attribute.name: raw_value,
                                                "modifiedon": epoch(self.now()),
                                                "versionnumber": store.next_version()})  # fmt: skip

    # -- identity, change tracking, limits and faults -------------------------------------------

    def issue_token(self) -> str:
        """A valid access token for this organisation, as if a client had asked for one."""
        return self.org.tenant.issue(f"127.0.0.1:{self.port}")[0]

    def expire_tokens(self) -> None:
        """Every access token issued so far gets 401 from now on."""
        self.org.tenant.expire_all()

    def expire_delta_tokens(self) -> None:
        """Every delta token handed out so far is expired (400 ``0x80044352``)."""
        org = self.org
        org.delta_floor = org.store.next_version()
        org.store.set_meta("delta_floor", str(org.delta_floor))

    def set_delta_token_expiry_days(self, days: int) -> None:
        """How many days a delta token lives (Dataverse's ``ExpireChangeTrackingInDays``)."""
        self.org.expire_change_tracking_days = days

    def add_column(
        self, table: str, name: str, type: str = "String", max_length: int | None = 100
    ) -> None:
        """Schema drift: a new column appears in the table's definitions and becomes readable
        and writable (kept across restarts of the sandbox)."""
        self.add_columns(table, [name], type, max_length)

    def add_columns(
        self, table: str, names: list[str], type: str = "String", max_length: int | None = 100
    ) -> None:
        """``add_column`` for many columns of one type at once."""
        entity = self._entity(table)
        columns = [{"name": name, "type": type, "max_length": max_length} for name in names]
        attributes = [_attribute(column) for column in columns]
        for attribute in attributes:
            entity = self.org.schema.add_attribute(entity.name, attribute)
        store = self.org.store
        store.add_columns(entity, attributes)
        added = orjson.loads(store.get_meta("added_columns") or "[]")
        added += [[entity.name, column] for column in columns]
        store.set_meta("added_columns", orjson.dumps(added).decode())

    def set_change_tracking(self, table: str, enabled: bool) -> None:
        """Turn change tracking of a table on or off."""
        entity = self._entity(table)
        self.org.schema.set_change_tracking(entity.name, enabled)
        untracked = [e.name for e in self.org.schema.entities.values() if not e.change_tracking]
        self.org.store.set_meta("untracked", orjson.dumps(untracked).decode())

    def fail_next(
        self,
        count: int,
        status: int = 503,
        code: str = "",
        message: str = "The service is temporarily unavailable.",
        path_contains: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """The next ``count`` Web API requests (whose path contains ``path_contains``) fail."""
        faults = self.org.faults
        fault = Fault(count, path_contains, status, code, message, retry_after)
        faults.add(faults.failures, fault)

    def fail_identity_next(
        self,
        count: int,
        status: int = 503,
        error: str = "temporarily_unavailable",
        message: str = "A transient error has occurred. Please try again.",
        path_contains: str | None = "/oauth2/v2.0/token",
        retry_after: int | None = None,
    ) -> None:
        """The next ``count`` Entra ID requests (the token endpoint unless ``path_contains``
        says otherwise) fail with an AAD error answer."""
        faults = self.org.faults
        faults.add(
            faults.identity, Fault(count, path_contains, status, error, message, retry_after)
        )

    def throttle(
        self,
        count: int = 1,
        retry_after: int = 1,
        path_contains: str | None = None,
        code: str = REQUESTS_LIMIT,
    ) -> None:
        """A burst of ``count`` service-protection 429s with ``Retry-After: retry_after``."""
        self.fail_next(count, 429, code, THROTTLE_MESSAGES.get(code, "Too many requests."),
                       path_contains, retry_after)  # fmt: skip

    def set_rate_limit(self, requests: int, window_seconds: float = 300.0) -> None:
        """Service protection: at most ``requests`` Web API requests per sliding window."""
        self.org.protection = ServiceProtection(requests, window_seconds)

    def slow_down(self, delay_seconds: float) -> None:
        """Add latency to every request."""
        self.org.faults.delay_seconds = delay_seconds


def _load(store: DataverseStore, dataset: Dataset) -> None:
    """Load a new dataset with the organisation's certificate and its untracked tables."""
    DataverseLoader(store, dataset).load()
    store.set_meta("certificate", orjson.dumps(generate_certificate("prm-mirror")).decode())
    store.set_meta("untracked", orjson.dumps(UNTRACKED_BY_DEFAULT).decode())


def _attribute(column: dict[str, Any]) -> Attribute:
    """The attribute of an ``add_column`` entry (a custom column)."""
    length = column.get("max_length") if column["type"] in ("String", "Memo") else None
    return Attribute(column["name"], column["type"], column["name"], max_length=length,
                     custom=True)  # fmt: skip


def _guid(record_id: str) -> str:
    guid = normalize_guid(record_id)
    if guid is None:
        raise ValueError(f"{record_id!r} is not a guid")
    return guid
