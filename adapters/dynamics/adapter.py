"""The Dynamics 365 adapter: the engine's ``CrmAdapter`` port on msal + the Dataverse Web API.

- Auth: msal ``ConfidentialClientApplication`` with a client secret or a certificate; msal's
  token cache renews the token before it expires, and a 401 mid-run renews it once
  (``dynamics_client``).
- Metadata: ``EntityDefinitions`` with its attributes and N:1 relationships becomes an
  ``ObjectSpec`` keyed on the table's primary id with ``modifiedon`` as the change cursor;
  lookups are ``_x_value`` references (``dynamics_types``).
- Reads: change tracking (delta links, ``$deletedEntity`` tombstones, a resync with a delete
  sweep when a delta token expired), or a closed-range ``modifiedon`` cursor for tables
  without it (``dynamics_read``).
- Writes: ``$batch`` with ``If-Match`` etags, client-generated guids for idempotent creates and
  ``@odata.bind`` lookups (``dynamics_write``).
- Throttling (429 + ``Retry-After``), server errors and lost connections: retried with backoff;
  errors mapped in one table (``dynamics_errors``).
- Change stream: Dataverse webhooks (a ``serviceendpoint`` and its steps posting the
  ``RemoteExecutionContext``); ``receive`` checks the key and names the rows changed
  (``dynamics_webhook``, ``docs/streams-dynamics.md``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import requests

from adapters.dynamics.client import DataverseConnection
from adapters.dynamics.errors import RowNotFound
from adapters.dynamics.fetch import fetch_rows
from adapters.dynamics.read import cursor_pages, read_ids, tracked_pages
from adapters.dynamics.settings import DynamicsSettings
from adapters.dynamics.types import RecordConverter, TableInfo, navigation_of, object_spec
from adapters.dynamics.webhook import StreamItem, parse_delivery, register_webhook, verify
from adapters.dynamics.write import BatchWriter, create_id
from mirror.errors import ConfigError
from mirror.types import Checkpoint, ObjectSpec, Page, Record, StreamGap, Write, WriteResult

__all__ = ["DynamicsAdapter", "DynamicsSettings"]

TABLE_PROPERTIES = (
    "LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,ChangeTrackingEnabled,"
    "DisplayName,IsPrivate,IsIntersect"
)
RELATIONSHIP_PROPERTIES = (
    "ReferencingAttribute,ReferencedEntity,ReferencingEntityNavigationPropertyName"
)


class DynamicsAdapter:
    """A Dataverse organisation as the engine sees it (see the module docstring)."""

    name = "dynamics"

    def __init__(
        self,
        settings: DynamicsSettings,
        *,
        source: str = "dynamics",
        session: requests.Session | None = None,
    ) -> None:
        """Prepare (without any request) an adapter for the organisation ``settings`` name.

        ``source`` names the mirror tables' prefix; ``session`` replaces the HTTP session (its
        requests are still counted). Raises ``ConfigError`` listing every settings problem.
        """
        self.settings = settings
        self.source = source
        self.connection = DataverseConnection(settings, session)
        self._tables: dict[str, TableInfo] = {}
        self._navigation: dict[str, dict[str, dict[str, str]]] = {}
        self.lookup_targets: dict[str, str] = {}
        self.stream_objects: set[str] = set()

    def check(self) -> None:
        """Get a token and ask the organisation who we are; ``AuthError``/``TransientError``."""
        self.connection.get_json("WhoAmI", action="checking access to the organisation")

    def list_objects(self) -> list[str]:
        """The tables the application user can read (not private, not intersect tables)."""
        body = self.connection.get_json(
            f"EntityDefinitions?$select={TABLE_PROPERTIES}", action="listing tables"
        )
        names = []
        for definition in body.get("value") or ():
            if definition.get("IsPrivate") or definition.get("IsIntersect"):
                continue
            if definition.get("EntitySetName"):
                self._tables[definition["LogicalName"]] = TableInfo.from_definition(definition)
                names.append(str(definition["LogicalName"]))
        return sorted(names)

    def describe(self, object_name: str) -> ObjectSpec:
        """Fields, types, key, cursor and relations of table ``object_name``."""
        definition = self._definition(object_name, expand=True)
        self._tables[object_name] = TableInfo.from_definition(definition)
        try:
            spec = object_spec(definition, self._relationships(object_name), self.source)
        except ValueError as error:
            raise ConfigError(
                f"Dataverse table {object_name} cannot be mirrored: {error}"
            ) from None
        self.stream_objects.add(spec.name)
        return spec

    def read(self, spec: ObjectSpec, since: Checkpoint | None) -> Iterator[Page]:
        """Pages after ``since``: change tracking where the table has it, else the cursor."""
        table = self.table(spec.name)
        page_size = self.settings.effective_page_size
        if table.change_tracking:
            return tracked_pages(self.connection, spec, table, since, page_size,
                                 self._remember_targets(spec))  # fmt: skip
        return cursor_pages(self.connection, spec, table, since, page_size,
                            self._remember_targets(spec))  # fmt: skip

    def read_ids(self, spec: ObjectSpec) -> Iterator[list[str]]:
        """Every live id, in batches of up to 5,000."""
        return read_ids(self.connection, spec, self.table(spec.name))

    def fetch(self, spec: ObjectSpec, ids: Sequence[str]) -> list[Record]:
        """The current Dataverse version of the records ``ids`` (missing ones left out)."""
        converter = RecordConverter(spec)
        rows = fetch_rows(self.connection, spec, self.table(spec.name), ids)
        return [converter.from_json(row) for row in rows]

    def write(self, spec: ObjectSpec, writes: Sequence[Write]) -> list[WriteResult]:
        """Apply ``writes`` through ``$batch``; one result per write, in order."""
        writer = BatchWriter(
            self.connection,
            spec,
            self.table(spec.name),
            self.table,
            lambda: self._relationships(spec.name),
            self.lookup_targets,
        )
        return writer.write(writes)

    def created_id(self, spec: ObjectSpec, idempotency_key: str) -> str | None:
        """The guid a create of ``spec`` with ``idempotency_key`` is sent with (the engine's
        ``KeyedIds``): a pulled row with it is that create, even when its answer was lost."""
        return create_id(spec.name, idempotency_key)

    def stream_problems(self) -> list[str]:
        """What keeps the webhook stream from working: no ``webhook_key`` to check."""
        if self.settings.webhook_key is None:
            return ["webhook_key: not set, so every webhook delivery would be refused"]
        return []

    def receive(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> list[StreamItem]:
        """The changes one Dataverse webhook delivery tells of (the engine's
        ``WebhookReceiver``): the key is checked first (``StreamSignatureError`` when it is
        missing or wrong); rows of tables not in ``stream_objects`` (the tables described so
        far) are left out; an unreadable body is a ``StreamGap``."""
        verify(self.settings, url, headers)
        if method.upper() != "POST":
            return [StreamGap(None, f"a Dataverse webhook delivery by {method}, not POST")]
        return parse_delivery(body, headers, self.stream_objects.__contains__)

    def register_webhook(
        self, url: str, objects: Sequence[str], *, name: str = "prm-mirror"
    ) -> dict[str, Any]:
        """Register (or update) the webhook endpoint ``name`` posting to ``url`` with
        ``webhook_key``, and asynchronous Create/Update/Delete/Merge steps on ``objects``
        (``dynamics_webhook.register_webhook``). The application user needs the privileges
        to create ``serviceendpoint`` and ``sdkmessageprocessingstep`` rows."""
        return register_webhook(self.connection, url, objects, name=name)

    def api_calls(self) -> int:
        """HTTP requests made so far, token requests and retries included."""
        return self.connection.log.count

    def service_protection(self) -> Mapping[str, str]:
        """The last ``x-ms-ratelimit-*`` headers Dataverse sent. (Dataverse has no daily API
        budget, so there is no ``api_usage``: its limits are per five-minute window and are
        honoured by waiting out the 429s.)"""
        return dict(self.connection.rate_limit)

    # --- tables ---------------------------------------------------------------------------

    def table(self, object_name: str) -> TableInfo:
        """Entity set, key and change tracking of a table (one small request the first time)."""
        if object_name not in self._tables:
            self._tables[object_name] = TableInfo.from_definition(self._definition(object_name))
        return self._tables[object_name]

    def _definition(self, object_name: str, *, expand: bool = False) -> dict[str, Any]:
        expand_option = "&$expand=Attributes" if expand else ""
        try:
            return self.connection.get_json(
                f"EntityDefinitions(LogicalName='{object_name}')?$select={TABLE_PROPERTIES}"
                f"{expand_option}",
                action=f"describing {object_name}",
            )
        except RowNotFound:
            raise ConfigError(
                f"Dataverse has no table named {object_name!r} (use logical names such as "
                "'account')"
            ) from None

    def _relationships(self, object_name: str) -> dict[str, dict[str, str]]:
        if object_name not in self._navigation:
            body = self.connection.get_json(
                f"EntityDefinitions(LogicalName='{object_name}')/ManyToOneRelationships"
                f"?$select={RELATIONSHIP_PROPERTIES}",
                action=f"describing the lookups of {object_name}",
            )
            self._navigation[object_name] = navigation_of(list(body.get("value") or ()))
        return self._navigation[object_name]

    def _remember_targets(self, spec: ObjectSpec) -> dict[str, str] | None:
        """Where reads note the target table of polymorphic lookup values (or ``None``)."""
        if not any(len(f.references) > 1 for f in spec.fields):
            return None
        return self.lookup_targets
