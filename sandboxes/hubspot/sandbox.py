"""A local HubSpot portal: the CRM API hubspot-api-client speaks, over a generated dataset.

``HubSpotSandbox`` serves the CRM objects v3 API (list, get, create, update, archive, batch,
search with HubSpot's filter groups, limits and 10,000-result cap, merge), associations v4
(labels such as ``Partner``), properties v3 and custom-object schemas on 127.0.0.1 from its own
SQLite file, generated from a seed on first start. It is strict where HubSpot is: private-app
Bearer token, 100-input batches with 207 partial results, 409 on a duplicate contact email,
property values as strings, HubSpot's error bodies and rate limits (burst, daily, search)
answered with 429 and ``X-HubSpot-RateLimit-*`` headers.

Its public methods are the test controls: record changes made "inside the CRM", associations,
merges, the recycle bin, faults, rate limits, the search cap, the clock, the call log and the
webhooks (``webhook_controls``: every committed change is delivered to the app's subscriptions
as HubSpot's Webhooks API v3 does, ``delivery``). Each
is also reachable from another process as ``POST /__sandbox/<name>`` with the
``X-Sandbox-Admin: <admin_token>`` header.

Example::

    with HubSpotSandbox("/tmp/hs.db", seed=7, size="small") as sb:
        api = HubSpot(access_token=sb.access_token, host=sb.base_url)
        api.crm.objects.basic_api.get_page("deals", limit=100)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from sandboxes.dataset.generate import Dataset
from sandboxes.hubspot.app import HubSpotApp
from sandboxes.hubspot.load import PortalLoader
from sandboxes.hubspot.portal import Portal, new_token
from sandboxes.hubspot.properties import property_from_json
from sandboxes.hubspot.schema import PARTNER_LABEL, PortalSchema
from sandboxes.hubspot.search import contains_token
from sandboxes.hubspot.store import LIVE, Store
from sandboxes.hubspot.values import ms_to_iso, to_ms, to_python
from sandboxes.hubspot.webhook_controls import (
    WEBHOOK_CONTROLS,
    WEBHOOK_PROPERTIES,
    WebhookControls,
)
from sandboxes.kit.clock import MillisecondClock
from sandboxes.kit.controls import CommonControls
from sandboxes.kit.faults import Fault

_CONTROLS = (
    "now", "advance_clock", "freeze_clock", "thaw_clock",
    "create", "create_many", "update", "delete", "restore",
    "hard_delete", "merge", "set_modstamp", "get", "count", "ids", "associate", "dissociate",
    "associations", "fail_next", "drop_next_response", "throttle", "set_rate_limits",
    "set_search_cap", "add_property", "corrupt", "rotate_token", "reset_calls", "call_count",
    "write_log", "dump", "clear_faults", *WEBHOOK_CONTROLS,
)  # fmt: skip


class HubSpotSandbox(WebhookControls, CommonControls):
    """A HubSpot portal on 127.0.0.1, backed by one SQLite file; see the module docstring."""

    portal_id = 48151623
    controls = _CONTROLS
    properties = ("calls", "access_token", "rate_limited", *WEBHOOK_PROPERTIES)
    datetime_arguments = {"set_modstamp": "when"}

    def __init__(
        self,
        db_path: str | Path,
        seed: int = 7,
        size: str | int = "small",
        port: int = 0,
        *,
        anchor: datetime | None = None,
        admin_token: str | None = None,
        access_token: str | None = None,
    ) -> None:
        """A sandbox keeping its portal in ``db_path`` (generated from ``seed``/``size`` if new).

        ``anchor`` is the instant the dataset's timestamps lead up to (default: today 00:00
        UTC); ``access_token`` fixes the private-app token (default: kept in the file).
        """
        self._configure(db_path, seed, size, port, anchor, admin_token)
        self._fixed_token = access_token

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def portal(self) -> Portal:
        """The running portal; opens (and on first use generates) the database."""
        return self._world

    def _open(self) -> Portal:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        store = Store(self.db_path)
        store.conn.create_function("hs_contains_token", 2, contains_token, deterministic=True)
        schema = PortalSchema()
        for type_name, body in store.added_properties():
            schema.add_property(type_name, property_from_json(body))
        token = self._fixed_token or store.get_meta("token") or new_token()
        store.set_meta("token", token)

        def load(dataset: Dataset) -> None:
            loading = Portal(store, schema, MillisecondClock(), token)
            PortalLoader(loading.records, dataset).load()

        self._seed_once(store, load)
        anchor = self._stored_anchor(store)
        clock = MillisecondClock.from_state(store.get_meta("clock"), to_ms(anchor))
        return Portal(store, schema, clock, token)

    def stop(self) -> None:
        """Stop delivering webhooks, then serving; save the clock and close the database."""
        if self._state is not None:
            self._state.delivery.close()
        super().stop()

    def _app(self) -> HubSpotApp:
        return HubSpotApp(self.portal, self.admin_token, self._control)

    def _date_clock(self) -> Callable[[], datetime]:
        return self.now

    @property
    def access_token(self) -> str:
        """The portal's private-app access token."""
        return self.portal.token

    def rotate_token(self) -> str:
        """Issue a new private-app token; the old one gets 401 from now on."""
        self.portal.token = new_token()
        self.portal.store.set_meta("token", self.portal.token)
        return self.portal.token

    # -- clock -------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The sandbox clock (aware UTC, milliseconds)."""
        return datetime.fromtimestamp(self.portal.clock.now_ms() / 1000, UTC)

    def advance_clock(self, seconds: float) -> datetime:
        """Move the sandbox clock forward."""
        return datetime.fromtimestamp(self.portal.clock.advance(seconds) / 1000, UTC)

    def freeze_clock(self) -> datetime:
        """Stop the sandbox clock (only ``advance_clock`` moves it then; each change still
        gets a millisecond of its own)."""
        return datetime.fromtimestamp(self.portal.clock.freeze() / 1000, UTC)

    def thaw_clock(self) -> datetime:
        """Let a frozen sandbox clock run on with the wall clock."""
        return datetime.fromtimestamp(self.portal.clock.thaw() / 1000, UTC)

    # -- records -----------------------------------------------------------------------------

    def _type(self, object_type: str) -> Any:
        return self.portal.records.object_type(object_type)

    def create(self, object_type: str, values: Mapping[str, Any]) -> str:
        """Create a record as a change inside the CRM; its id."""
        return str(self.portal.records.create(self._type(object_type), values, system=True)["id"])

    def create_many(self, object_type: str, batch: Sequence[Mapping[str, Any]]) -> list[str]:
        """Create many records at once (one last-modified value); their ids."""
        rows = self.portal.records.create_many(self._type(object_type), batch, system=True)
        return [str(row["id"]) for row in rows]

    def update(self, object_type: str, record_id: str, values: Mapping[str, Any]) -> None:
        """Change a live record's properties."""
        self.portal.records.update(self._type(object_type), record_id, values, system=True)

    def delete(self, object_type: str, record_id: str) -> None:
        """Archive a record (the recycle bin still lists it)."""
        self.portal.records.archive(self._type(object_type), record_id)

    def restore(self, object_type: str, record_id: str) -> None:
        """Restore an archived record from the recycle bin."""
        self.portal.records.restore(self._type(object_type), record_id)

    def hard_delete(self, object_type: str, record_id: str) -> None:
        """Delete a record for good: no longer listed, archived or not."""
        self.portal.records.purge(self._type(object_type), record_id)

    def merge(self, object_type: str, primary_id: str, loser_ids: Iterable[str]) -> None:
        """Merge ``loser_ids`` into ``primary_id``."""
        self.portal.records.merge(self._type(object_type), primary_id, list(loser_ids))

    def set_modstamp(
        self, object_type: str, ids: Iterable[str], when: datetime | None = None
    ) -> int:
        """Put live records on one last-modified value (default: a fresh stamp); returns it
        in epoch milliseconds."""
        stamp = to_ms(when) if when is not None else self.portal.clock.stamp()
        self.portal.records.touch(self._type(object_type), ids, stamp)
        return stamp

    def get(
        self, object_type: str, record_id: str, include_archived: bool = False
    ) -> dict[str, Any] | None:
        """A record's properties as Python values, or ``None`` (archived ones only if asked)."""
        kind = self._type(object_type)
        row = self.portal.store.fetch(kind.name, int(record_id))
        if row is None or row["merged_into"] or (row["archived"] and not include_archived):
            return None
        return {name: to_python(kind.property(name), v) for name, v in row["props"].items()}

    def count(self, object_type: str, include_archived: bool = False) -> int:
        """How many live (or live and archived) records a type holds."""
        state = "merged_into IS NULL" if include_archived else LIVE
        sql = f"SELECT COUNT(*) FROM hs_objects WHERE type = ? AND {state}"
        return int(self.portal.store.scalar(sql, (self._type(object_type).name,)))

    def ids(self, object_type: str, include_archived: bool = False) -> list[str]:
        """Every live (or live and archived) id of a type, in id order."""
        state = "merged_into IS NULL" if include_archived else LIVE
        rows = self.portal.store.query(
            f"SELECT id FROM hs_objects WHERE type = ? AND {state} ORDER BY id",
            (self._type(object_type).name,),
        )
        return [str(row[0]) for row in rows]

    def dump(self, object_type: str) -> dict[str, dict[str, Any]]:
        """Every record of a type, archived and merged ones included, by id: its properties as
        Python values plus ``archived`` and ``merged_into`` (the survivor's id, or ``None``)."""
        kind = self._type(object_type)
        rows = self.portal.store.query(
            "SELECT id, props, archived, merged_into FROM hs_objects WHERE type = ?", (kind.name,)
        )
        dumped = {}
        for record_id, props, archived, merged_into in rows:
            values = {n: to_python(kind.property(n), v) for n, v in orjson.loads(props).items()}
            values.update(archived=bool(archived), merged_into=merged_into and str(merged_into))
            dumped[str(record_id)] = values
        return dumped

    def corrupt(self, object_type: str, record_id: str, name: str, raw_value: str) -> None:
        """Store a raw property string that may not fit its type; it is served as is."""
        kind = self._type(object_type)
        row = self.portal.records.require(kind, record_id)
        row["props"][name] = raw_value
        row["modified_ms"] = self.portal.clock.stamp()
        row["props"][kind.modified_property] = ms_to_iso(row["modified_ms"])
        self.portal.store.write(kind.name, row)

    def add_property(
        self, object_type: str, name: str, type: str = "string", **attributes: Any
    ) -> None:
        """Schema drift: a new property appears in the properties API and on records."""
        kind = self._type(object_type)
        body = {"name": name, "type": type, "label": name, **attributes}
        self.portal.schema.add_property(kind.name, property_from_json(body))
        self.portal.store.save_property(kind.name, name, body)

    # -- associations ------------------------------------------------------------------------

    def associate(
        self,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        label: str | None = None,
        type_id: int | None = None,
    ) -> None:
        """Associate two records: unlabeled, under ``label`` (``"Primary"``, ``"Partner"``)
        or with an explicit association ``type_id``."""
        source, target = self._type(from_type), self._type(to_type)
        chosen = self._association_types(source.name, target.name, label, type_id)
        self.portal.records.associate(source, from_id, target, to_id, chosen)

    def dissociate(
        self,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        label: str | None = None,
        type_id: int | None = None,
    ) -> None:
        """Remove an association: only the ``label``/``type_id`` one, or every one."""
        source, target = self._type(from_type), self._type(to_type)
        chosen = (
            self._association_types(source.name, target.name, label, type_id)
            if label or type_id
            else None
        )
        self.portal.records.dissociate(source, from_id, target, to_id, chosen)

    def associations(self, from_type: str, from_id: str, to_type: str) -> list[dict[str, Any]]:
        """A record's associations to a type: ``[{"id", "type_id", "label"}]``."""
        source, target = self._type(from_type), self._type(to_type)
        schema = self.portal.schema
        return [
            {
                "id": str(to_id),
                "type_id": type_id,
                "label": schema.association_type(source.name, target.name, type_id).label,
            }
            for to_id, type_id in self.portal.store.associations_of(
                source.name, int(from_id), target.name
            )
        ]

    def _association_types(
        self, source: str, target: str, label: str | None, type_id: int | None
    ) -> list[Any]:
        options = self.portal.schema.association_types(source, target)
        if type_id is not None:
            chosen = [a for a in options if a.type_id == type_id]
        elif label is not None:
            chosen = [a for a in options if (a.label or "").lower() == label.lower()]
        else:
            chosen = [a for a in options if a.label is None and not a.primary]
        if not chosen:
            raise KeyError(f"no association type {label or type_id} from {source} to {target}")
        return chosen[:1]

    @property
    def partner_label(self) -> str:
        """The association label that attributes a deal to a partner company."""
        return PARTNER_LABEL

    # -- faults, limits, calls ---------------------------------------------------------------

    def fail_next(
        self,
        count: int,
        status: int = 503,
        path_contains: str | None = None,
        category: str = "",
        message: str = "Service Unavailable",
    ) -> None:
        """The next ``count`` matching requests fail with ``status`` and a HubSpot error body."""
        faults = self.portal.faults
        faults.add(faults.failures, Fault(count, path_contains, status, category, message))

    def throttle(self, delay_seconds: float) -> None:
        """Add latency to every request."""
        self.portal.faults.delay_seconds = delay_seconds

    def set_rate_limits(
        self,
        burst: int | None = None,
        interval_ms: int | None = None,
        daily: int | None = None,
        search_per_second: int | None = None,
        retry_after: float | None = None,
    ) -> dict[str, Any]:
        """Change the rate limits (``None`` keeps one, except ``retry_after``: ``None`` sends
        no ``Retry-After``); returns them all."""
        changes: dict[str, Any] = {
            k: v
            for k, v in {
                "burst": burst,
                "interval_ms": interval_ms,
                "daily": daily,
                "search_per_second": search_per_second,
            }.items()
            if v is not None
        }
        limits = self.portal.limits.configure(**changes, retry_after=retry_after)
        return dict(limits.__dict__)

    @property
    def rate_limited(self) -> int:
        """How many requests were refused with 429 so far."""
        return self.portal.limits.refused

    def set_search_cap(self, cap: int) -> None:
        """How many results one search may page through (HubSpot: 10,000)."""
        self.portal.search_cap = cap
