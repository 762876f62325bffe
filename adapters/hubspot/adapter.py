"""The HubSpot adapter: the engine's ``CrmAdapter`` port on hubspot-api-client.

- Metadata: the properties API becomes an ``ObjectSpec`` keyed on ``hs_object_id`` with the
  last-modified property as the change cursor (``lastmodifieddate`` on contacts,
  ``hs_lastmodifieddate`` elsewhere), types from HubSpot's property types; custom objects come
  from the schemas API; associations appear as reference fields (``hubspot_catalog``).
- Backfill: list paging, 100 a page, resumable; incremental: keyset search past the
  10,000-result cap; deletes from the recycle bin, merges from ``hs_merged_object_ids``,
  associations re-read per page and swept periodically (``hubspot_read``); association edge
  objects such as ``deal_company_associations`` (``hubspot_edges``).
- Writes: the batch APIs, 100 a call, 207s per record, idempotent creates by upsert on a unique
  property (``hubspot_write``).
- Change stream: HubSpot webhook deliveries, verified with the app's client secret and turned
  into ``StreamEvent``/``StreamGap`` (``hubspot_webhooks``); polling stays the backstop.
- One rate governor per adapter for the burst and search budgets, honouring 429s and the
  ``X-HubSpot-RateLimit-*`` headers; every request counted (``hubspot_http``,
  ``hubspot_client``); errors mapped in one table (``hubspot_errors``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from adapters.hubspot.catalog import EDGE_OBJECTS, Catalog
from adapters.hubspot.client import HubSpotConnection
from adapters.hubspot.edges import EdgeReader, read_only
from adapters.hubspot.read import Reader
from adapters.hubspot.settings import HubSpotSettings
from adapters.hubspot.webhooks import WebhookDecoder
from adapters.hubspot.write import BatchWriter
from mirror.types import (
    Checkpoint,
    ObjectSpec,
    Page,
    Record,
    StreamEvent,
    StreamGap,
    Write,
    WriteResult,
)

__all__ = ["HubSpotAdapter", "HubSpotSettings"]


class HubSpotAdapter:
    """A HubSpot portal as the engine sees it (see the module docstring for the strategy)."""

    name = "hubspot"

    def __init__(self, settings: HubSpotSettings, *, source: str = "hubspot") -> None:
        """Prepare (without any request) an adapter for the portal ``settings`` name.

        ``source`` names the mirror tables' prefix. Raises ``ConfigError`` listing every
        settings problem.
        """
        self.settings = settings
        self.source = source
        self.connection = HubSpotConnection(settings)
        self.catalog = Catalog(self.connection, settings, source)
        self.webhooks = WebhookDecoder(settings, self.catalog)

    def check(self) -> None:
        """Reach the portal with the token: ``AuthError`` or ``TransientError`` if not."""
        self.catalog.refresh()
        self.catalog.object_names()
        self.connection.list_page("companies", ["hs_object_id"], None, 1)

    def list_objects(self) -> list[str]:
        """The standard CRM objects and the portal's custom objects."""
        return self.catalog.object_names()

    def describe(self, object_name: str) -> ObjectSpec:
        """Fields, types, key, cursor and association fields of ``object_name``."""
        return self.catalog.describe(object_name)

    def read(self, spec: ObjectSpec, since: Checkpoint | None) -> Iterator[Page]:
        """Pages after ``since``: a backfill while its phase is ``backfill``, else changes."""
        reader = self._reader(spec)
        if since is None or since.phase == "backfill":
            return reader.backfill(since)
        return reader.incremental(since)

    def read_ids(self, spec: ObjectSpec) -> Iterator[list[str]]:
        """Every live id, one batch per list page."""
        return self._reader(spec).ids()

    def fetch(self, spec: ObjectSpec, ids: Sequence[str]) -> list[Record]:
        """The current HubSpot version of the records ``ids`` (missing ones left out)."""
        return self._reader(spec).fetch(ids)

    def write(self, spec: ObjectSpec, writes: Sequence[Write]) -> list[WriteResult]:
        """Apply ``writes`` through the batch APIs; one result per write, in order."""
        if spec.name in EDGE_OBJECTS:
            return read_only(writes)
        return BatchWriter(self.connection, self.catalog, spec).write(writes)

    def stream_problems(self) -> list[str]:
        """What keeps the webhook stream from working: no ``client_secret`` to verify with."""
        if self.settings.client_secret is None:
            return ["client_secret: not set, so every webhook delivery would be refused"]
        return []

    def receive(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> list[StreamEvent | StreamGap]:
        """The changes one HubSpot webhook delivery tells of; ``StreamSignatureError`` when
        its v3 signature is not the app's or is five minutes old."""
        return self.webhooks.receive(method, url, headers, body)

    def _reader(self, spec: ObjectSpec) -> Reader:
        kind = EdgeReader if spec.name in EDGE_OBJECTS else Reader
        return kind(self.connection, self.catalog, self.settings, spec)

    def api_calls(self) -> int:
        """HTTP requests made so far, throttled and repeated ones included."""
        return self.connection.requests_sent
