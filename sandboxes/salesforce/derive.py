"""Values Salesforce computes itself when a record is written: full names, compound address
JSON, the Opportunity stage-driven fields and fiscal period, line item totals.

Each function takes the row as it will be stored (after the write) and the names of the fields
the write set, and returns the derived columns to store with it.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from typing import Any

import orjson

from sandboxes.salesforce.schema import SalesforceSchema, SObject
from sandboxes.salesforce.store import Store

# StageName -> (default probability, ForecastCategory, ForecastCategoryName)
STAGES: dict[str, tuple[int, str, str]] = {
    "Prospecting": (10, "Pipeline", "Pipeline"),
    "Qualification": (10, "Pipeline", "Pipeline"),
    "Needs Analysis": (20, "Pipeline", "Pipeline"),
    "Value Proposition": (50, "Pipeline", "Pipeline"),
    "Id. Decision Makers": (60, "Pipeline", "Pipeline"),
    "Perception Analysis": (70, "Pipeline", "Pipeline"),
    "Proposal/Price Quote": (75, "Pipeline", "Pipeline"),
    "Negotiation/Review": (90, "Pipeline", "Pipeline"),
    "Closed Won": (100, "Closed", "Closed"),
    "Closed Lost": (0, "Omitted", "Omitted"),
}
_ADDRESS_KEYS = ("Street", "City", "State", "PostalCode", "Country", "Latitude", "Longitude",
                 "GeocodeAccuracy")  # fmt: skip


def full_name(first: str | None, last: str | None) -> str | None:
    """``First Last`` as Salesforce composes a person's Name."""
    parts = [part for part in (first, last) if part]
    return " ".join(parts) or None


def _address_parts(obj: SObject, compound: str) -> list[tuple[str, str]]:
    """(JSON key, component field) pairs of a compound address, in JSON key order."""
    prefix = compound.removesuffix("Address")
    pairs = [(key[0].lower() + key[1:], prefix + key) for key in _ADDRESS_KEYS]
    return sorted((key, field) for key, field in pairs if obj.has_field(field))


def address_json(obj: SObject, compound: str, row: dict[str, Any]) -> str | None:
    """The compound address of ``row`` as stored JSON (``None`` when every part is empty)."""
    parts = {key: row.get(field) for key, field in _address_parts(obj, compound)}
    if all(value is None for value in parts.values()):
        return None
    return orjson.dumps(parts).decode()


def stage_fields(stage: str | None, probability: Any, amount: Any) -> dict[str, Any]:
    """IsClosed, IsWon, forecast category and expected revenue for a stage."""
    default_probability, category, category_name = STAGES.get(
        stage or "", (0, "Pipeline", "Pipeline")
    )
    if probability is None:
        probability = default_probability
    expected = None
    if isinstance(amount, int | float) and isinstance(probability, int | float):
        expected = round(amount * probability / 100, 2)
    return {
        "IsClosed": int(stage in ("Closed Won", "Closed Lost")),
        "IsWon": int(stage == "Closed Won"),
        "ForecastCategory": category,
        "ForecastCategoryName": category_name,
        "Probability": probability,
        "ExpectedRevenue": expected,
    }


def fiscal_fields(close_date: Any) -> dict[str, Any]:
    """FiscalYear, FiscalQuarter and Fiscal (``"2024 4"``) for a calendar fiscal year."""
    try:
        day = close_date if isinstance(close_date, date) else date.fromisoformat(close_date)
    except (TypeError, ValueError):
        return {"FiscalYear": None, "FiscalQuarter": None, "Fiscal": None}
    quarter = (day.month - 1) // 3 + 1
    return {"FiscalYear": day.year, "FiscalQuarter": quarter, "Fiscal": f"{day.year} {quarter}"}


def derive(obj: SObject, row: dict[str, Any], written: Collection[str]) -> dict[str, Any]:
    """Derived columns of ``row`` after a write that set the fields in ``written``."""
    derived: dict[str, Any] = {}
    if obj.name in ("Contact", "Lead", "User") and {"FirstName", "LastName"} & set(written):
        derived["Name"] = full_name(row.get("FirstName"), row.get("LastName"))
    for field in obj.stored_fields():
        if field["type"] == "address":
            parts = {f["name"] for f in obj.compound_parts(field["name"])}
            if parts & set(written):
                derived[field["name"]] = address_json(obj, field["name"], row)
    if obj.name == "Opportunity":
        derived.update(_opportunity(row, written))
    if obj.name == "OpportunityLineItem":
        derived.update(_line_item(row, written))
    if obj.name == "User" and "ContactId" in written:
        derived["UserType"] = "PowerPartner" if row.get("ContactId") else "Standard"
    return derived


def _opportunity(row: dict[str, Any], written: Collection[str]) -> dict[str, Any]:
    derived: dict[str, Any] = {}
    if {"StageName", "Probability", "Amount"} & set(written):
        keeps_probability = "Probability" in written or "StageName" not in written
        probability = row.get("Probability") if keeps_probability else None
        derived.update(stage_fields(row.get("StageName"), probability, row.get("Amount")))
    if "CloseDate" in written:
        derived.update(fiscal_fields(row.get("CloseDate")))
    return derived


def _line_item(row: dict[str, Any], written: Collection[str]) -> dict[str, Any]:
    quantity, unit_price, total = row.get("Quantity"), row.get("UnitPrice"), row.get("TotalPrice")
    if not isinstance(quantity, int | float):
        return {}
    if {"Quantity", "UnitPrice"} & set(written) and isinstance(unit_price, int | float):
        return {"TotalPrice": round(quantity * unit_price, 2)}
    if "TotalPrice" in written and isinstance(total, int | float) and quantity:
        return {"UnitPrice": round(total / quantity, 2)}
    return {}


def line_item_lookups(
    store: Store, schema: SalesforceSchema, row: dict[str, Any]
) -> dict[str, Any]:
    """Name, ProductCode and ListPrice a new line item takes from its product."""
    products, opportunities = schema.sobject("Product2"), schema.sobject("Opportunity")
    if products is None or opportunities is None:
        return {}
    product = store.fetch_row(products, row.get("Product2Id") or "")
    opportunity = store.fetch_row(opportunities, row.get("OpportunityId") or "")
    if product is None or opportunity is None:
        return {}
    return {
        "Name": f"{opportunity['Name']} {product['Name']}"[:376],
        "ProductCode": product["ProductCode"],
        "ListPrice": row.get("UnitPrice"),
    }
