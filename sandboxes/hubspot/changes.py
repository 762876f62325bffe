"""What a committed record change tells the portal's webhooks: ``Change`` values.

``Records`` hands each change it makes (a creation, a property written, an archive, a restore,
a merge, an association added or removed) to its ``events`` sink; the webhook subscriptions
(``sandboxes.hubspot.webhooks``) turn it into events once the change's transaction commits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandboxes.hubspot.schema import ObjectType


@dataclass(frozen=True)
class Change:
    """One change of one record: ``kind`` is the webhook event kind (``creation``,
    ``propertyChange``, ``deletion``, ``restore``, ``merge``, ``associationChange``);
    ``details`` are the event fields the kind adds (``propertyName``, ``mergedObjectIds``,
    ``fromObjectId``...)."""

    kind: str
    object_type: ObjectType
    object_id: int
    occurred_ms: int
    details: Mapping[str, Any] = field(default_factory=dict)
    property_name: str | None = None


ChangeSink = Callable[[Change], None]
"""Receives every change a portal's records make."""


def association_name(source: ObjectType, target: ObjectType) -> str:
    """HubSpot's ``associationType`` of an association event (``DEAL_TO_COMPANY``)."""

    def word(kind: ObjectType) -> str:
        return kind.singular.upper().replace(" ", "_")

    return f"{word(source)}_TO_{word(target)}"
