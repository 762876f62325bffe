"""HubSpot CRM search requests compiled to SQL over the sandbox's record table.

A request body is validated into a ``SearchRequest`` (filter groups of filters, at most one
sort, limit, offset, properties, full-text query), then each filter is compiled from its
property's type: the id and the created/last-modified instants map onto indexed integer
columns, other properties onto ``json_extract`` of the stored strings, compared as numbers,
ISO instants, dates, booleans or case-insensitive strings. Groups are ORed, filters within a
group ANDed, exactly as HubSpot documents. Limits are HubSpot's: 5 groups, 10 filters per
group, 25 in all, 200 results a page and no paging past the 10,000th result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from sandboxes.hubspot.errors import HsError, validation
from sandboxes.hubspot.properties import PropertyDef
from sandboxes.hubspot.schema import ObjectType
from sandboxes.hubspot.store import LIVE
from sandboxes.hubspot.values import parse_instant

MAX_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS = 5, 10, 25
MAX_LIMIT = 200
DEFAULT_CAP = 10_000
OPERATORS = frozenset({
    "EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
    "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN",
})  # fmt: skip
_LOWER_BOUNDS = frozenset({"GT", "GTE", "EQ", "BETWEEN"})
_COMPARISONS = {"EQ": "=", "NEQ": "!=", "LT": "<", "LTE": "<=", "GT": ">", "GTE": ">="}
_TOKEN_SPLIT = re.compile(r"[^0-9a-z*]+")


@dataclass(frozen=True)
class Filter:
    """One filter: a property, an operator and its value(s)."""

    property: str
    operator: str
    value: Any = None
    high_value: Any = None
    values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SearchRequest:
    """A validated search request."""

    groups: tuple[tuple[Filter, ...], ...] = ()
    sort: tuple[str, bool] | None = None
    limit: int = 10
    offset: int = 0
    properties: tuple[str, ...] = ()
    query: str | None = None


@dataclass
class Compiled:
    """SQL pieces of a search: ``WHERE`` text with its parameters and the ``ORDER BY``."""

    where: str
    params: list[Any] = field(default_factory=list)
    order: str = "id ASC"


def parse_request(body: Any, cap: int = DEFAULT_CAP) -> SearchRequest:
    """Validate a search body into a ``SearchRequest``; 400 ``VALIDATION_ERROR`` if not."""
    if not isinstance(body, Mapping):
        raise validation("Invalid input JSON: the search request must be an object")
    groups = tuple(_group(g) for g in body.get("filterGroups") or ())
    if len(groups) > MAX_GROUPS:
        raise validation(f"Too many filter groups ({len(groups)}); the maximum is {MAX_GROUPS}")
    if any(len(g) > MAX_FILTERS_PER_GROUP for g in groups):
        raise validation(f"A filter group may hold at most {MAX_FILTERS_PER_GROUP} filters")
    if sum(len(g) for g in groups) > MAX_FILTERS:
        raise validation(f"A search may hold at most {MAX_FILTERS} filters in all")
    limit = _integer(body.get("limit", 10), "limit")
    if not 1 <= limit <= MAX_LIMIT:
        raise validation(f"limit must be between 1 and {MAX_LIMIT}; got {limit}")
    offset = _integer(body.get("after") or 0, "after")
    if offset < 0:
        raise validation("after must not be negative")
    if offset >= cap:
        raise validation(
            f"Search results are limited to {cap:,} per query; after={offset} is past them. "
            "Narrow the filters instead of paging further."
        )
    return SearchRequest(
        groups=groups,
        sort=_sort(body.get("sorts") or ()),
        limit=min(limit, cap - offset),
        offset=offset,
        properties=tuple(str(p) for p in body.get("properties") or ()),
        query=str(body["query"]) if body.get("query") else None,
    )


def _integer(value: Any, name: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise validation(f"{name} must be an integer; got {value!r}") from None


def _group(raw: Any) -> tuple[Filter, ...]:
    if not isinstance(raw, Mapping):
        raise validation("each filter group must be an object with filters")
    return tuple(_filter(f) for f in raw.get("filters") or ())


def _filter(raw: Any) -> Filter:
    if not isinstance(raw, Mapping) or not raw.get("propertyName"):
        raise validation("each filter needs a propertyName and an operator")
    operator = str(raw.get("operator") or "EQ").upper()
    if operator not in OPERATORS:
        raise validation(f"Unknown operator {operator!r}")
    needs_value = operator not in ("HAS_PROPERTY", "NOT_HAS_PROPERTY", "IN", "NOT_IN")
    if needs_value and raw.get("value") is None:
        raise validation(f"Operator {operator} needs a value")
    if operator == "BETWEEN" and raw.get("highValue") is None:
        raise validation("Operator BETWEEN needs a value and a highValue")
    values = raw.get("values")
    if operator in ("IN", "NOT_IN") and not values:
        raise validation(f"Operator {operator} needs a list of values")
    return Filter(
        str(raw["propertyName"]),
        operator,
        raw.get("value"),
        raw.get("highValue"),
        tuple(values or ()),
    )


def _sort(raw: Sequence[Any]) -> tuple[str, bool] | None:
    if not raw:
        return None
    if len(raw) > 1:
        raise validation("Only one sort can be applied to a search")
    first = raw[0]
    if isinstance(first, str):
        return first, True
    if not isinstance(first, Mapping) or not first.get("propertyName"):
        raise validation("a sort needs a propertyName")
    direction = str(first.get("direction") or "ASCENDING").upper()
    if direction not in ("ASCENDING", "DESCENDING"):
        raise validation(f"Unknown sort direction {direction!r}")
    return str(first["propertyName"]), direction == "ASCENDING"


class Compiler:
    """Compiles one object type's search requests to SQL."""

    def __init__(self, object_type: ObjectType) -> None:
        """A compiler for searches of ``object_type``."""
        self.object_type = object_type
        self.columns = {
            "hs_object_id": "id",
            object_type.created_property: "created_ms",
            object_type.modified_property: "modified_ms",
        }

    def compile(self, request: SearchRequest) -> Compiled:
        """The SQL of ``request``: live records of the type matching its filters and query."""
        params: list[Any] = [self.object_type.name]
        clauses = [f"type = ? AND {LIVE}"]
        floor = self._floor(request.groups)
        if floor is not None:
            # implied by every group; bound parameters hide it from SQLite's planner, which
            # then scans the whole type instead of the (type, archived, stamp) index range
            clauses.append(f"{floor[0]} >= ?")
            params.append(floor[1])
        if request.groups:
            ored = []
            for group in request.groups:
                parts = [self._filter(f, params) for f in group] or ["1 = 1"]
                ored.append("(" + " AND ".join(parts) + ")")
            clauses.append("(" + " OR ".join(ored) + ")")
        if request.query:
            clauses.append(self._text_query(request.query, params))
        return Compiled(" AND ".join(clauses), params, self._order(request.sort))

    def _floor(self, groups: Sequence[Sequence[Filter]]) -> tuple[str, int] | None:
        """``(column, value)`` when every group has a lower bound on one indexed column (the
        lowest of them), else ``None``."""
        floors: dict[str, list[int]] = {}
        for group in groups:
            found: dict[str, int] = {}
            for flt in group:
                prop = self.object_type.property(flt.property)
                column = self.columns.get(flt.property)
                if prop is None or column is None or flt.operator not in _LOWER_BOUNDS:
                    continue
                try:
                    value = self._operand(prop, flt.value)
                except HsError:
                    return None
                found[column] = max(value, found.get(column, value))
            for column, value in found.items():
                floors.setdefault(column, []).append(value)
        for column, values in floors.items():
            if groups and len(values) == len(groups):
                return column, min(values)
        return None

    def _property(self, name: str) -> PropertyDef:
        prop = self.object_type.property(name)
        if prop is None:
            raise HsError(
                400,
                "VALIDATION_ERROR",
                f"There was a problem with the request: property {name!r} does not exist "
                f"on {self.object_type.name}",
            )
        return prop

    def _expression(self, prop: PropertyDef) -> str:
        column = self.columns.get(prop.name)
        if column:
            return column
        extracted = f"json_extract(props, '$.\"{prop.name}\"')"
        return f"CAST({extracted} AS REAL)" if prop.type == "number" else extracted

    def _operand(self, prop: PropertyDef, value: Any) -> Any:
        """A filter value in the form its property's column is compared in."""
        try:
            if prop.name in self.columns:
                return int(str(value)) if prop.name == "hs_object_id" else parse_instant(value)
            if prop.type == "number":
                return float(value)
            if prop.type == "datetime":
                return _iso(parse_instant(value))
            if prop.type == "date":
                text = str(value)
                return _iso(parse_instant(text))[:10] if text.isdigit() else text[:10]
            if prop.type == "bool":
                return str(value).lower()
        except (TypeError, ValueError):
            raise validation(f"{value!r} is not a valid value for {prop.name}") from None
        return str(value)

    def _caseless(self, prop: PropertyDef) -> bool:
        return prop.name not in self.columns and prop.type in ("string", "enumeration")

    def _filter(self, flt: Filter, params: list[Any]) -> str:
        prop = self._property(flt.property)
        expr = self._expression(prop)
        op = flt.operator
        if op == "HAS_PROPERTY":
            return f"{expr} IS NOT NULL"
        if op == "NOT_HAS_PROPERTY":
            return f"{expr} IS NULL"
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            params.append(str(flt.value))
            test = f"hs_contains_token({expr}, ?)"
            return test if op == "CONTAINS_TOKEN" else f"({expr} IS NULL OR NOT {test})"
        if self._caseless(prop):
            expr = f"lower({expr})"
        if op in ("IN", "NOT_IN"):
            operands = [self._comparable(prop, v) for v in flt.values]
            params.extend(operands)
            marks = ", ".join("?" * len(operands))
            if op == "IN":
                return f"{expr} IN ({marks})"
            return f"({expr} IS NULL OR {expr} NOT IN ({marks}))"
        if op == "BETWEEN":
            params += [self._comparable(prop, flt.value), self._comparable(prop, flt.high_value)]
            return f"{expr} BETWEEN ? AND ?"
        params.append(self._comparable(prop, flt.value))
        if op == "NEQ":
            return f"({expr} IS NULL OR {expr} != ?)"
        return f"{expr} {_COMPARISONS[op]} ?"

    def _comparable(self, prop: PropertyDef, value: Any) -> Any:
        operand = self._operand(prop, value)
        return operand.lower() if self._caseless(prop) and isinstance(operand, str) else operand

    def _text_query(self, query: str, params: list[Any]) -> str:
        searchable = [
            p for p in ("name", "dealname", "email", "firstname", "lastname", "domain", "phone")
            if self.object_type.property(p) is not None
        ]  # fmt: skip
        if not searchable:
            return "1 = 0"
        tests = []
        for name in searchable:
            params.append(f"{query}*")
            tests.append(f"hs_contains_token(json_extract(props, '$.\"{name}\"'), ?)")
        return "(" + " OR ".join(tests) + ")"

    def _order(self, sort: tuple[str, bool] | None) -> str:
        if sort is None:
            return "id ASC"
        name, ascending = sort
        expr = self._expression(self._property(name))
        direction = "ASC" if ascending else "DESC"
        return f"{expr} {direction}, id ASC"


def contains_token(value: str | None, pattern: str | None) -> int:
    """SQLite function: whether ``value`` holds a token matching ``pattern`` (``*`` wildcard)."""
    if value is None or not pattern:
        return 0
    wanted = pattern.lower().strip()
    tokens = [t for t in _TOKEN_SPLIT.split(str(value).lower()) if t]
    whole = str(value).lower()
    if fnmatchcase(whole, wanted):
        return 1
    return int(any(fnmatchcase(token, wanted) for token in tokens))


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
