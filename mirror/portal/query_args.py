"""The arguments of a partner query, checked before any SQL is written.

A ``PartnerView`` call with an argument the database would choke on (a value of an odd type,
a list where an id belongs, a pattern or an ordering too long for the database's limits, a
condition of three parts, a page with no bound) raises ``QueryError`` naming the argument, so
no database error, with its SQL text, reaches the caller. Conditions come back in one form:
``(field, operator, value)``; several conditions on one field all apply.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from mirror.errors import QueryError
from mirror.store.records import CONVERTERS, BadValue
from mirror.types import FieldType

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "in", "like", "is_null")
MAX_PAGE = 1000
MAX_FEED_PAGE = 5000
MAX_OFFSET = 10_000_000
MAX_CONDITIONS = 100
MAX_IN_VALUES = 1000
MAX_PATTERN = 500
MAX_ORDER_TERMS = 10
MAX_ID = 255
SCALARS = (str, int, float, Decimal, dt.date, dt.time)
TEXT_TYPES = (FieldType.ID, FieldType.REFERENCE, FieldType.STRING, FieldType.TEXT)

# (field, operator, value)
Condition = tuple[str, str, Any]


def text(argument: str, value: Any) -> str:
    """``value`` when it is a non-empty string of at most ``MAX_ID`` characters."""
    if not isinstance(value, str):
        raise QueryError(argument, f"expected a string, not {type(value).__name__}")
    if not value or len(value) > MAX_ID:
        raise QueryError(argument, f"expected 1 to {MAX_ID} characters, got {len(value)}")
    return value


def bounded(argument: str, value: Any, low: int, high: int) -> int:
    """``value`` when it is an integer from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise QueryError(argument, f"expected an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise QueryError(argument, f"must be between {low} and {high}, not {value}")
    return value


def page(limit: Any, offset: Any) -> tuple[int, int]:
    """A page's ``limit`` (1 to ``MAX_PAGE``) and ``offset``."""
    return bounded("limit", limit, 1, MAX_PAGE), bounded("offset", offset, 0, MAX_OFFSET)


def fields(value: Any) -> list[str] | None:
    """The ``fields`` argument as a list of names (``None``: every field shown)."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise QueryError("fields", "expected a list of field names")
    return [text("fields", name) for name in value]


def ordering(order_by: Any) -> list[str]:
    """``order_by`` as a list of at most ``MAX_ORDER_TERMS`` names (``-Name``: descending)."""
    if order_by is None:
        return []
    names = [order_by] if isinstance(order_by, str) else order_by
    if not isinstance(names, Sequence):
        raise QueryError("order_by", "expected a field name or a list of them")
    if len(names) > MAX_ORDER_TERMS:
        raise QueryError("order_by", f"at most {MAX_ORDER_TERMS} fields, not {len(names)}")
    return [text("order_by", name) for name in names]


def conditions(where: Any) -> list[Condition]:
    """``where`` (field -> value, ``(operator, value)``, or a list of those pairs, all of
    which apply) as conditions, each checked for its operator and the shape of its value."""
    if where is None:
        return []
    if not isinstance(where, Mapping):
        raise QueryError("where", "expected a mapping of field names to conditions")
    found: list[Condition] = []
    for name, condition in where.items():
        argument = f"where[{name!r}]"
        text(argument, name)
        pairs = condition if isinstance(condition, list) else [condition]
        if not pairs:
            raise QueryError(argument, "an empty list of conditions")
        for pair in pairs:
            found.append((name, *_pair(argument, pair, listed=isinstance(condition, list))))
    if len(found) > MAX_CONDITIONS:
        raise QueryError("where", f"at most {MAX_CONDITIONS} conditions, not {len(found)}")
    return found


def _pair(argument: str, condition: Any, *, listed: bool) -> tuple[str, Any]:
    if not isinstance(condition, tuple):
        if listed:
            raise QueryError(argument, "a list holds (operator, value) pairs; use 'in' for a set")
        return "=", _scalar(argument, condition)
    if len(condition) != 2:
        raise QueryError(argument, f"expected (operator, value), got {len(condition)} parts")
    operator, value = condition
    if not isinstance(operator, str) or operator not in OPERATORS:
        raise QueryError(argument, f"unknown operator {operator!r} (one of {', '.join(OPERATORS)})")
    if operator == "in":
        if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
            raise QueryError(argument, "'in' takes a list of values")
        if len(value) > MAX_IN_VALUES:
            raise QueryError(argument, f"'in' takes at most {MAX_IN_VALUES} values")
        return operator, [_scalar(argument, v, none=False) for v in value]
    if operator == "is_null":
        if not isinstance(value, bool):
            raise QueryError(argument, "'is_null' takes True or False")
        return operator, value
    if operator == "like":
        if not isinstance(value, str):
            raise QueryError(argument, "'like' takes a string pattern")
        if len(value) > MAX_PATTERN:
            raise QueryError(argument, f"a pattern of at most {MAX_PATTERN} characters")
        return operator, value
    return operator, _scalar(argument, value, none=operator in ("=", "!="))


def _scalar(argument: str, value: Any, *, none: bool = True) -> Any:
    if value is None and none:
        return None
    if isinstance(value, (bool, *SCALARS)):
        return value
    raise QueryError(argument, f"a value of type {type(value).__name__} cannot be compared")


def typed(name: str, field_type: FieldType, operator: str, value: Any) -> Any:
    """``value`` converted to what the field holds (the database compares like with like)."""
    argument = f"where[{name!r}]"
    if operator == "is_null" or value is None:
        return value
    if field_type == FieldType.JSON:
        raise QueryError(argument, "a JSON field can only be filtered with 'is_null'")
    if operator == "like":
        if field_type not in TEXT_TYPES:
            raise QueryError(argument, "'like' applies to text fields only")
        return value
    convert = CONVERTERS[field_type]
    try:
        if operator == "in":
            return [convert(v) for v in value]
        return convert(value)
    except BadValue as exc:
        raise QueryError(argument, str(exc)) from None
