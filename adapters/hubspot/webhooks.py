"""HubSpot webhook deliveries as change-stream items (``WebhookReceiver.receive``).

A delivery is a POST of a JSON array of up to 100 events, signed with the app's client secret.
``WebhookDecoder`` first checks ``X-HubSpot-Signature-v3`` and ``X-HubSpot-Request-Timestamp``
with hubspot-api-client's own validator (``hubspot.utils.signature.Signature``: HMAC-SHA256 over
method, URI, body and timestamp; a timestamp five minutes old or more is refused), after decoding
in the URI the escapes HubSpot's instructions list. Anything it cannot verify raises
``StreamSignatureError``: the engine refuses the delivery (HubSpot does not retry a 401) and polls.

Then each event becomes the records it says changed, grouped per mirrored object:

- ``creation``, ``propertyChange``, ``restore``: the object id changed (a group made only of
  property changes names its ``changed_fields``);
- ``deletion``, ``privacyDeletion``: deleted;
- ``merge``: the merged ids deleted into the survivor (``newObjectId``, else ``primaryObjectId``),
  which changed;
- ``associationChange``: the records whose association fields it moves (a deal's
  ``primary_company_id``/``partner_company_id`` and its ``deal_company_associations`` edge, a
  line item's ``deal_id``, a contact's ``associatedcompanyid``); other pairs change nothing the
  mirror keeps.

Events of objects the adapter does not mirror (tickets, conversations) are ignored. An id told
of twice keeps its latest event. ``committed_at`` is the earliest ``occurredAt`` of the group, so
the stream's lag is never understated. A delivery that is not a JSON array, or an event the
decoder cannot read, becomes a ``StreamGap`` (of its object when known) instead of an error, so
the engine still answers HubSpot 2xx and polls what it could not read. Webhooks have no replay:
``position`` is always ``None``, and a delivery HubSpot gave up on is only covered by polling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from hubspot.exceptions import InvalidSignatureTimestampError
from hubspot.utils.signature import Signature

from adapters._kit.settings import reveal
from adapters.hubspot.catalog import EDGE_OBJECTS, STANDARD_OBJECTS, Catalog
from adapters.hubspot.settings import HubSpotSettings
from mirror.errors import StreamSignatureError
from mirror.types import StreamEvent, StreamGap

StreamItem = StreamEvent | StreamGap
LEGACY_OBJECTS = {
    "contact": "contacts",
    "company": "companies",
    "deal": "deals",
    "product": "products",
    "line_item": "line_items",
    "ticket": "tickets",
}
STANDARD_TYPE_IDS = {
    "0-1": "contacts",
    "0-2": "companies",
    "0-3": "deals",
    "0-5": "tickets",
    "0-7": "products",
    "0-8": "line_items",
}
CHANGED_KINDS = frozenset({"creation", "propertyChange", "restore"})
DELETED_KINDS = frozenset({"deletion", "privacyDeletion"})
EDGE = "deal_company_associations"
ASSOCIATION_OWNERS = (("deals", "companies"), ("line_items", "deals"), ("contacts", "companies"))
"""Associations the mirror keeps as fields: (the object holding the field, the other one)."""
URI_DECODED = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
    "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip
"""The escapes HubSpot's v3 instructions decode in the request URI before hashing."""


def signed_uri(url: str) -> str:
    """``url`` as HubSpot's v3 signature covers it."""
    for escaped, plain in URI_DECODED.items():
        url = url.replace(escaped, plain).replace(escaped.lower(), plain)
    return url


@dataclass
class Group:
    """What a delivery says of one object: per id its latest ``(occurredAt, deleted)``."""

    ids: dict[str, tuple[int, bool]] = field(default_factory=dict)
    merged_into: dict[str, str] = field(default_factory=dict)
    fields: set[str] = field(default_factory=set)
    only_properties: bool = True
    earliest: int | None = None

    def add(self, record_id: str, occurred: int | None, deleted: bool) -> None:
        """Note one id's change; a later event of the same id replaces an earlier one."""
        stamp = occurred if occurred is not None else 0
        known = self.ids.get(record_id)
        if known is None or (stamp, deleted) >= known:
            self.ids[record_id] = (stamp, deleted)
        if occurred is not None:
            self.earliest = occurred if self.earliest is None else min(self.earliest, occurred)

    def event(self, name: str) -> StreamEvent:
        """The group as one ``StreamEvent``."""
        changed = tuple(sorted(i for i, (_, gone) in self.ids.items() if not gone))
        deleted = tuple(sorted(i for i, (_, gone) in self.ids.items() if gone))
        committed = (
            datetime.fromtimestamp(self.earliest / 1000, UTC) if self.earliest is not None else None
        )
        return StreamEvent(
            object=name,
            changed=changed,
            deleted=deleted,
            merged_into={k: v for k, v in self.merged_into.items() if k in deleted},
            committed_at=committed,
            changed_fields=tuple(sorted(self.fields)) if self.only_properties else (),
        )


class Malformed(ValueError):
    """An event the decoder cannot read; ``object`` is its object when known."""

    def __init__(self, reason: str, object_name: str | None = None) -> None:
        super().__init__(reason)
        self.object = object_name


class WebhookDecoder:
    """Verifies and decodes the deliveries of one HubSpot app."""

    def __init__(self, settings: HubSpotSettings, catalog: Catalog) -> None:
        """Check signatures with ``settings.client_secret``; custom objects from ``catalog``."""
        self.settings = settings
        self.catalog = catalog

    def receive(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> list[StreamItem]:
        """The changes one delivery tells of; ``StreamSignatureError`` when it cannot be
        verified."""
        self.verify(method, url, headers, body)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            return [StreamGap(None, f"HubSpot webhook delivery is not JSON: {error}")]
        if not isinstance(payload, list):
            return [StreamGap(None, "HubSpot webhook delivery is not a JSON array of events")]
        groups: dict[str, Group] = {}
        gaps: dict[str | None, str] = {}
        for event in payload:
            try:
                self._take(event, groups)
            except (Malformed, KeyError, TypeError, ValueError) as error:
                where = getattr(error, "object", None)
                gaps.setdefault(where, f"unreadable HubSpot webhook event: {error}")
        items: list[StreamItem] = [
            groups[name].event(name) for name in sorted(groups) if groups[name].ids
        ]
        if None in gaps:
            return [*items, StreamGap(None, gaps[None])]
        return [*items, *(StreamGap(name, gaps[name]) for name in sorted(n for n in gaps if n))]

    def verify(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> None:
        """Raise ``StreamSignatureError`` unless the v3 signature is the app's and fresh."""
        secret = reveal(self.settings.client_secret)
        if not secret:
            raise StreamSignatureError(
                "hubspot.client_secret is not set: webhook deliveries cannot be verified"
            )
        lowered = {key.lower(): value for key, value in headers.items()}
        signature = lowered.get("x-hubspot-signature-v3")
        timestamp = lowered.get("x-hubspot-request-timestamp")
        if not signature or not timestamp:
            raise StreamSignatureError(
                "HubSpot webhook delivery without X-HubSpot-Signature-v3 and "
                "X-HubSpot-Request-Timestamp"
            )
        try:
            valid = Signature.is_valid(
                signature=signature,
                client_secret=secret,
                request_body=body.decode("utf-8"),
                http_uri=signed_uri(self.settings.webhook_url or url),
                http_method=method.upper(),
                signature_version="v3",
                timestamp=timestamp,
            )
        except InvalidSignatureTimestampError:
            raise StreamSignatureError(
                f"HubSpot webhook delivery timestamp {timestamp} is five minutes old or more "
                "(or unreadable)"
            ) from None
        except UnicodeDecodeError:
            raise StreamSignatureError("HubSpot webhook delivery body is not UTF-8") from None
        if not valid:
            raise StreamSignatureError(
                "HubSpot webhook delivery signature does not match the app's client secret"
            )

    # -- events -----------------------------------------------------------------------------

    def _take(self, event: Any, groups: dict[str, Group]) -> None:
        if not isinstance(event, dict):
            raise Malformed("an event is not a JSON object")
        scope, _, kind = str(event.get("subscriptionType") or "").partition(".")
        if not kind:
            raise Malformed("an event has no subscriptionType")
        name = self._object(scope, event.get("objectTypeId"))
        occurred = _int(event.get("occurredAt"), "occurredAt", name, optional=True)
        if kind == "associationChange":
            self._association(event, occurred, groups)
            return
        if name is None:
            return
        record = str(_int(event.get("objectId"), "objectId", name))
        group = groups.setdefault(name, Group())
        if kind in CHANGED_KINDS:
            group.add(record, occurred, False)
            if kind == "propertyChange" and event.get("propertyName"):
                group.fields.add(str(event["propertyName"]))
            else:
                group.only_properties = False
        elif kind in DELETED_KINDS:
            group.add(record, occurred, True)
        elif kind == "merge":
            group.only_properties = False
            self._merge(event, record, occurred, group, name)

    def _merge(
        self, event: Mapping[str, Any], record: str, occurred: int | None, group: Group, name: str
    ) -> None:
        primary = event.get("primaryObjectId")
        survivor = str(_int(event.get("newObjectId") or primary or record, "newObjectId", name))
        merged = event.get("mergedObjectIds")
        if not isinstance(merged, list):
            raise Malformed("a merge event has no mergedObjectIds list", name)
        losers = {str(_int(m, "mergedObjectIds", name)) for m in merged}
        if primary is not None:
            losers.add(str(_int(primary, "primaryObjectId", name)))
        for loser in sorted(losers - {survivor}):
            group.add(loser, occurred, True)
            group.merged_into[loser] = survivor
        group.add(survivor, occurred, False)

    def _association(
        self, event: Mapping[str, Any], occurred: int | None, groups: dict[str, Group]
    ) -> None:
        pair = str(event.get("associationType") or "")
        left, sep, right = pair.partition("_TO_")
        source = self._object(left.lower(), event.get("fromObjectTypeId"))
        target = self._object(right.lower(), event.get("toObjectTypeId"))
        if not sep:
            raise Malformed(f"an association event has no associationType: {pair!r}")
        if source is None or target is None:
            return
        from_id = str(_int(event.get("fromObjectId"), "fromObjectId", source))
        to_id = str(_int(event.get("toObjectId"), "toObjectId", target))
        ends = {source: from_id, target: to_id}
        for owner, other in ASSOCIATION_OWNERS:
            if {source, target} == {owner, other}:
                group = groups.setdefault(owner, Group())
                group.only_properties = False
                group.add(ends[owner], occurred, False)
        if (source, target) == ("deals", "companies") and EDGE in EDGE_OBJECTS:
            type_id = event.get("associationTypeId")
            if type_id is None:
                raise Malformed("a deal-company association event has no associationTypeId", EDGE)
            edge = f"{from_id}:{to_id}:{_int(type_id, 'associationTypeId', EDGE)}"
            group = groups.setdefault(EDGE, Group())
            group.only_properties = False
            group.add(edge, occurred, bool(event.get("associationRemoved")))

    def _object(self, scope: str, type_id: Any) -> str | None:
        """The mirrored object an event's subscription names (``None``: not mirrored)."""
        if scope != "object":
            name = LEGACY_OBJECTS.get(scope)
            if name is None and type_id is not None:
                return self._object("object", type_id)
            return name if name in STANDARD_OBJECTS else None
        if type_id is None:
            raise Malformed("an object.* event has no objectTypeId")
        type_id = str(type_id)
        if type_id in STANDARD_TYPE_IDS:
            name = STANDARD_TYPE_IDS[type_id]
            return name if name in STANDARD_OBJECTS else None
        for name, schema in self.catalog.custom_objects().items():
            if str(schema.get("objectTypeId")) == type_id:
                return name
        return None


def _int(value: Any, what: str, object_name: str | None, optional: bool = False) -> int | None:
    """An integer field of an event (HubSpot sends ids and instants as numbers)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Malformed(f"{what} is not a number: {value!r}", object_name)
    try:
        return int(value)
    except ValueError:
        raise Malformed(f"{what} is not a number: {value!r}", object_name) from None
