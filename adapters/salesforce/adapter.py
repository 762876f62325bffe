"""The Salesforce adapter: the engine's ``CrmAdapter`` port on simple-salesforce.

- Metadata: describe JSON becomes an ``ObjectSpec`` keyed on ``Id`` with ``SystemModstamp`` as
  the change cursor (``salesforce_types``).
- Backfill: objects above ``bulk_threshold`` records go through one Bulk API 2.0 ``queryAll``
  job, resumable at its results locator (``salesforce_bulk``); smaller ones through paged REST
  ``queryAll`` queries with the engine's fenced closed-range cursor (``salesforce_read``,
  ``mirror.cursor``). Deleted rows (the recycle bin, merge losers) become tombstones, so a
  backfill started again over a mirror that holds them does not leave them live.
- Split backfills (``RangeReader``): record-id ranges found with ``COUNT()`` queries, each
  bounded by the newest SystemModstamp at the start (``salesforce_range_read``).
- Incremental: ``queryAll`` from the cursor (deleted rows become tombstones, merge losers point
  at their master), plus getDeleted since the last check; when Salesforce no longer remembers
  deletes that far back, the first page asks the engine for an id sweep.
- Writes: sObject Collections with idempotent upserts and version preconditions
  (``salesforce_write``).
- Change stream (``StreamListener``): Change Data Capture through the Pub/Sub API, one
  subscription per object resumed from its replay id (``salesforce_stream``).
- Sessions, retries, quotas and errors: ``salesforce_client`` and ``salesforce_errors``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import requests

from adapters.salesforce.bulk import bulk_backfill, bulk_ids
from adapters.salesforce.client import SalesforceConnection
from adapters.salesforce.cursor import resume
from adapters.salesforce.fetch import fetch_rows
from adapters.salesforce.pubsub import CallCounter, PubSubClient
from adapters.salesforce.range_read import plan_ranges, range_pages
from adapters.salesforce.read import DeletedCheck, check_deleted, first_query, rest_ids, rest_pages
from adapters.salesforce.settings import SalesforceSettings
from adapters.salesforce.stream import ChangeListener
from adapters.salesforce.types import RecordConverter, mirrorable_objects, object_spec
from adapters.salesforce.write import CollectionWriter
from mirror.adapter import RangePlan, StreamItem
from mirror.errors import ConfigError
from mirror.types import Checkpoint, ObjectSpec, Page, Record, Write, WriteResult

__all__ = ["SalesforceAdapter", "SalesforceSettings"]

BULK_STATE_KEYS = frozenset({"bulk_job", "locator", "started", "backfill_started"})


class SalesforceAdapter:
    """A Salesforce org as the engine sees it (see the module docstring for the strategy)."""

    name = "salesforce"

    def __init__(
        self,
        settings: SalesforceSettings,
        *,
        source: str = "salesforce",
        session: requests.Session | None = None,
    ) -> None:
        """Prepare (without any request) an adapter for the org ``settings`` describe.

        ``source`` names the mirror tables' prefix; ``session`` replaces the HTTP session (its
        requests are still counted). Raises ``ConfigError`` listing every settings problem.
        """
        self.settings = settings
        self.source = source
        self.connection = SalesforceConnection(settings, session)
        self._global: dict[str, Any] | None = None
        self._replicateable: dict[str, bool] = {}
        self._stream_calls = CallCounter()

    def check(self) -> None:
        """Log in and list the org's objects; ``AuthError`` or ``TransientError`` if not."""
        self._global = None
        self._describe_global()

    def list_objects(self) -> list[str]:
        """The objects the integration user can query."""
        return mirrorable_objects(self._describe_global())

    def describe(self, object_name: str) -> ObjectSpec:
        """Fields, types, key, cursor and relations of ``object_name`` from its describe."""
        raw = self.connection.call(
            f"describing {object_name}", lambda sf: getattr(sf, object_name).describe()
        )
        self._replicateable[object_name] = bool(raw.get("replicateable"))
        try:
            return object_spec(raw, self.source)
        except ValueError as error:
            raise ConfigError(
                f"Salesforce object {object_name} cannot be mirrored: {error}"
            ) from None

    def read(self, spec: ObjectSpec, since: Checkpoint | None) -> Iterator[Page]:
        """Pages after ``since``: a backfill while its phase is ``backfill``, else changes."""
        if since is None or since.phase == "backfill":
            yield from self._backfill(spec, since)
        else:
            yield from self._incremental(spec, since)

    def plan_ranges(self, spec: ObjectSpec, parts: int, min_records: int) -> RangePlan | None:
        """Record-id ranges splitting the backfill of ``spec`` (``None`` below
        ``min_records`` records)."""
        return plan_ranges(self.connection, spec, parts, min_records)

    def read_range(
        self, spec: ObjectSpec, plan: RangePlan, index: int, since: Checkpoint | None
    ) -> Iterator[Page]:
        """Pages of one id range of ``plan`` after ``since``, through paged REST queries."""
        return range_pages(self.connection, spec, plan, index, since)

    def read_ids(self, spec: ObjectSpec) -> Iterator[list[str]]:
        """Every live id, in batches (through Bulk API 2.0 for large objects)."""
        if self.connection.count(spec.name) > self.settings.bulk_threshold:
            yield from bulk_ids(self.connection, spec)
        else:
            yield from rest_ids(self.connection, spec)

    def fetch(self, spec: ObjectSpec, ids: Sequence[str]) -> list[Record]:
        """The current CRM version of the records ``ids`` (deleted ones included, with
        ``IsDeleted``); for dry-run diffs and audits, in as many queries as their length needs
        (``salesforce_fetch``)."""
        converter = RecordConverter(spec)
        return [converter.from_json(row) for row in fetch_rows(self.connection, spec, ids)]

    def write(self, spec: ObjectSpec, writes: Sequence[Write]) -> list[WriteResult]:
        """Apply ``writes`` through sObject Collections; one result per write, in order."""
        return CollectionWriter(self.connection, spec).write(writes)

    def listen(
        self, specs: Sequence[ObjectSpec], position: str | None, stop: threading.Event
    ) -> Iterator[StreamItem]:
        """Change Data Capture events of ``specs``' objects after ``position`` (``None``: from
        now) through the Pub/Sub API, until ``stop`` is set (``salesforce_stream``)."""
        client = PubSubClient(self.settings, self._stream_calls)
        yield from ChangeListener(self.connection, client, specs, position, stop).items()

    def api_usage(self) -> tuple[int, int] | None:
        """The org's daily API requests ``(used, limit)`` as its last answer reported."""
        return self.connection.log.last_usage

    def api_calls(self) -> int:
        """HTTP requests made so far, logins and retries included, plus the change stream's
        Pub/Sub API requests (each RPC opened and each FetchRequest sent)."""
        return self.connection.log.count + self._stream_calls.value

    # --- internals -----------------------------------------------------------------------

    def _backfill(self, spec: ObjectSpec, since: Checkpoint | None) -> Iterator[Page]:
        if since is not None and since.state.get("bulk_job"):
            return bulk_backfill(self.connection, spec, since)
        # the mirror may hold records deleted or merged away since they were applied (by this
        # backfill before it was resumed, or before it was started again): queryAll brings
        # them back as tombstones, merge losers pointing at their master
        cursor = resume(since)
        first = None
        if since is None:
            # the query's own totalSize picks the API: no separate COUNT() call per object
            first = first_query(self.connection, spec, cursor, include_deleted=True)
            total = int(first.get("totalSize", 0))
            if total > self.settings.bulk_threshold:
                return bulk_backfill(self.connection, spec, None, total)
        return rest_pages(
            self.connection,
            spec,
            cursor,
            phase="backfill",
            include_deleted=True,
            state={},
            first_answer=first,
        )

    def _incremental(self, spec: ObjectSpec, since: Checkpoint) -> Iterator[Page]:
        state = {key: value for key, value in since.state.items() if key not in BULK_STATE_KEYS}
        check = None
        if self._is_replicateable(spec.name):

            def check(clock_at_least: datetime | None) -> DeletedCheck:
                return check_deleted(self.connection, spec, since, clock_at_least)

        return rest_pages(
            self.connection,
            spec,
            resume(since),
            phase="incremental",
            include_deleted=True,
            state=state,
            deleted_check=check,
        )

    def _describe_global(self) -> dict[str, Any]:
        if self._global is None:
            answer = self.connection.call("listing objects", lambda sf: sf.describe())
            self._global = dict(answer or {})
            for entry in self._global.get("sobjects", ()):
                self._replicateable.setdefault(entry["name"], bool(entry.get("replicateable")))
        return self._global

    def _is_replicateable(self, object_name: str) -> bool:
        if object_name not in self._replicateable:
            self._describe_global()
        return self._replicateable.get(object_name, False)
