"""The sandbox org's validation rules, evaluated on every API save like Salesforce's.

A failing rule answers 400 FIELD_CUSTOM_VALIDATION_EXCEPTION with the rule's message and the
field the error is shown on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandboxes.salesforce.errors import bad_request
from sandboxes.salesforce.schema import SObject

Row = dict[str, Any]


def _negative(value: Any) -> bool:
    return isinstance(value, int | float) and value < 0


@dataclass(frozen=True)
class ValidationRule:
    """A rule: when ``fails(row)`` holds the save is refused with ``message`` on ``field``."""

    sobject: str
    field: str
    message: str
    fails: Callable[[Row], bool]


RULES = (
    ValidationRule(
        "Opportunity", "Amount", "Amount must be zero or more.",
        lambda row: _negative(row.get("Amount")),
    ),
    ValidationRule(
        "Deal_Registration__c", "Amount__c", "Amount must be zero or more.",
        lambda row: _negative(row.get("Amount__c")),
    ),
    ValidationRule(
        "Deal_Registration__c", "Close_Date__c", "An approved registration needs a close date.",
        lambda row: row.get("Status__c") == "Approved" and not row.get("Close_Date__c"),
    ),
)  # fmt: skip


def check_rules(obj: SObject, row: Row) -> None:
    """Raise the first failing validation rule of ``obj`` for the row about to be saved."""
    for rule in RULES:
        if rule.sobject == obj.name and rule.fails(row):
            raise bad_request("FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.message, [rule.field])
