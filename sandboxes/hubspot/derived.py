"""The HubSpot sandbox's calculated properties, and a record's JSON as the CRM API answers it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sandboxes.hubspot.properties import CLOSED_STAGES, DEAL_STAGES
from sandboxes.hubspot.schema import ObjectType
from sandboxes.hubspot.values import canonical, ms_to_iso

_PROBABILITY = {stage: probability for stage, _label, probability in DEAL_STAGES}


def derive(object_type: ObjectType, row: dict[str, Any]) -> None:
    """Recompute a record row's calculated properties: its id, created and last-modified
    values, a deal's closed flags, probability and forecast, a line item's amount."""
    props = row["props"]
    props["hs_object_id"] = str(row["id"])
    props[object_type.created_property] = ms_to_iso(row["created_ms"])
    props[object_type.modified_property] = ms_to_iso(row["modified_ms"])
    if object_type.name == "deals":
        stage = props.get("dealstage")
        if stage:
            props["hs_is_closed"] = _bool(stage in CLOSED_STAGES)
            props["hs_is_closed_won"] = _bool(stage == "closedwon")
            props["hs_deal_stage_probability"] = _PROBABILITY.get(stage, "0")
        amount = props.get("amount")
        if amount and stage:
            forecast = float(amount) * float(_PROBABILITY.get(stage, "0"))
            props["hs_forecast_amount"] = (
                canonical(object_type.properties["amount"], forecast) or "0"
            )
    elif object_type.name == "line_items":
        quantity, price = props.get("quantity"), props.get("price")
        if quantity and price:
            total = round(float(quantity) * float(price), 2)
            props["amount"] = canonical(object_type.properties["amount"], total) or "0"


def record_json(
    object_type: ObjectType,
    row: Mapping[str, Any],
    properties: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A record as a ``SimplePublicObject``: requested properties (``null`` when unset;
    unknown names left out) or the type's defaults."""
    props = row["props"]
    names = properties if properties else object_type.default_properties
    shown = {n: props.get(n) for n in names if object_type.property(n) is not None}
    if not properties:
        shown = {n: v for n, v in shown.items() if v is not None}
    body: dict[str, Any] = {
        "id": str(row["id"]),
        "properties": shown,
        "createdAt": ms_to_iso(row["created_ms"]),
        "updatedAt": ms_to_iso(row["modified_ms"]),
        "archived": bool(row["archived"]),
    }
    if row["archived"]:
        body["archivedAt"] = ms_to_iso(row["archived_ms"])
    return body


def _bool(value: bool) -> str:
    return "true" if value else "false"
