"""OData query options for the Dataverse sandbox: parsed with a real grammar, compiled to SQLite.

``parse_filter``, ``parse_orderby`` and ``parse_select`` turn the option text into a small AST
(grammar: ``odata.lark``, LALR). ``compile_filter`` checks every property and literal
against a table's attributes, the way Dataverse does (unknown properties and operands of the
wrong type are 400s naming them), and emits a SQLite condition with ``?`` parameters;
``evaluate`` runs the same AST over plain dicts, for the metadata endpoints.

Semantics follow Dataverse: string comparisons and the string functions ignore case; a
comparison with a null column is false (``ne`` does not match nulls); ``eq null`` / ``ne null``
test for null; lookups are filtered through their ``_x_value`` property with an unquoted guid;
datetimes are unquoted and compared in UTC.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedInput, VisitError

from sandboxes.dynamics.errors import DataverseError
from sandboxes.dynamics.schema import Attribute, Entity

QUERY_ERROR = "0x80060888"
_OPERATOR_KINDS = {
    "eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
    "lt": "LessThan", "le": "LessThanOrEqual",
}  # fmt: skip
_SQL_OPERATORS = {"eq": "=", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_LITERAL_TYPES = {
    "string": "Edm.String", "guid": "Edm.Guid", "datetime": "Edm.DateTimeOffset",
    "date": "Edm.Date", "number": "Edm.Decimal", "true": "Edm.Boolean",
    "false": "Edm.Boolean", "enum": "Edm.Enum",
}  # fmt: skip
_COMPATIBLE = {
    "Edm.String": {"string"},
    "Edm.Guid": {"guid"},
    "Edm.DateTimeOffset": {"datetime", "date"},
    "Edm.Date": {"date", "datetime"},
    "Edm.Int32": {"number"},
    "Edm.Int64": {"number"},
    "Edm.Decimal": {"number"},
    "Edm.Double": {"number"},
    "Edm.Boolean": {"true", "false"},
}


@dataclass(frozen=True)
class Prop:
    """A property reference (``name`` or a ``nav/name`` path)."""

    path: tuple[str, ...]


@dataclass(frozen=True)
class Lit:
    """A literal: ``kind`` is string, guid, datetime, date, number, enum, null, true, false."""

    kind: str
    value: Any


@dataclass(frozen=True)
class Compare:
    """``left op right``."""

    op: str
    left: Prop | Lit
    right: Prop | Lit


@dataclass(frozen=True)
class Call:
    """``contains(prop, 'x')`` and the other string functions."""

    function: str
    target: Prop | Lit
    argument: Prop | Lit


@dataclass(frozen=True)
class Junction:
    """``and`` / ``or`` of several conditions."""

    kind: str
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Negation:
    """``not condition``."""

    item: Any


@dataclass(frozen=True)
class OrderItem:
    """One ``$orderby`` item."""

    name: str
    descending: bool = False


def query_error(message: str, status: int = 400) -> DataverseError:
    """The 400 Dataverse answers for a malformed query option."""
    return DataverseError(status, QUERY_ERROR, message)


@v_args(inline=True)
class _ToAst(Transformer):
    def filter(self, item: Any) -> Any:
        return item

    def or_expr(self, *items: Any) -> Junction:
        return Junction("or", items)

    def and_expr(self, *items: Any) -> Junction:
        return Junction("and", items)

    def negation(self, item: Any) -> Negation:
        return Negation(item)

    def compare(self, left: Any, op: Token, right: Any) -> Compare:
        return Compare(str(op), left, right)

    def call(self, function: Token, target: Any, argument: Any) -> Call:
        return Call(str(function), target, argument)

    def property(self, *names: Token) -> Prop:
        return Prop(tuple(str(n) for n in names))

    def string(self, token: Token) -> Lit:
        return Lit("string", str(token)[1:-1].replace("''", "'"))

    def guid(self, token: Token) -> Lit:
        return Lit("guid", str(token).lower())

    def datetime(self, token: Token) -> Lit:
        text = str(token).replace("Z", "+00:00")
        return Lit("datetime", datetime.fromisoformat(text).astimezone(UTC))

    def date(self, token: Token) -> Lit:
        return Lit("date", date.fromisoformat(str(token)))

    def number(self, token: Token) -> Lit:
        text = str(token)
        is_integral = not any(c in text for c in ".eE")
        return Lit("number", int(text) if is_integral else float(text))

    def enum(self, token: Token) -> Lit:
        text = str(token)
        return Lit("enum", text[text.index("'") + 1 : -1])

    def null(self) -> Lit:
        return Lit("null", None)

    def true(self) -> Lit:
        return Lit("true", True)

    def false(self) -> Lit:
        return Lit("false", False)

    def orderby(self, *items: OrderItem) -> list[OrderItem]:
        return list(items)

    def order_item(self, prop: Prop, direction: Token | None = None) -> OrderItem:
        return OrderItem("/".join(prop.path), str(direction or "asc") == "desc")

    def select(self, *names: Token) -> list[str]:
        return [str(n) for n in names]


@cache
def _parser() -> Lark:
    grammar = (Path(__file__).parent / "odata.lark").read_text(encoding="utf-8")
    return Lark(grammar, start=["filter", "orderby", "select"], parser="lalr")


def _parse(text: str, start: str, option: str) -> Any:
    try:
        tree = _parser().parse(text, start=start)
        return _ToAst().transform(tree)
    except UnexpectedInput as error:
        position = getattr(error, "pos_in_stream", None) or getattr(error, "column", 0)
        raise query_error(f"Syntax error at position {position} in '{text}'.") from None
    except VisitError as error:
        raise query_error(f"Invalid {option} value '{text}': {error.orig_exc}") from None


def parse_filter(text: str) -> Any:
    """The AST of a ``$filter`` value."""
    return _parse(text, "filter", "$filter")


def parse_orderby(text: str) -> list[OrderItem]:
    """The items of an ``$orderby`` value."""
    return list(_parse(text, "orderby", "$orderby"))


def parse_select(text: str) -> list[str]:
    """The property names of a ``$select`` value."""
    return list(_parse(text, "select", "$select"))


# --- compiling against a table ------------------------------------------------------------


def no_property(entity: Entity, name: str) -> DataverseError:
    """The 400 for a property the table does not have."""
    return query_error(
        f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{entity.name}'."
    )


def attribute_of(entity: Entity, prop: Prop) -> Attribute:
    """The attribute a filter property names (``_x_value`` for lookups)."""
    if len(prop.path) > 1:
        raise query_error(
            f"Navigation path '{'/'.join(prop.path)}' is not supported in $filter by this "
            "service; filter on the lookup's _x_value property instead."
        )
    attribute = entity.by_wire_name.get(prop.path[0])
    if attribute is None:
        raise no_property(entity, prop.path[0])
    return attribute


def sql_value(attribute: Attribute, literal: Lit) -> Any:
    """A literal in the stored form of ``attribute``'s column."""
    value = literal.value
    if attribute.type == "DateTime" and not attribute.date_only:
        moment = value if isinstance(value, datetime) else datetime(*value.timetuple()[:3])
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    if attribute.type == "DateTime":
        return (value.date() if isinstance(value, datetime) else value).isoformat()
    if literal.kind in ("true", "false"):
        return int(value)
    return value


def _check_types(attribute: Attribute, literal: Lit, op: str) -> None:
    if literal.kind == "null":
        return
    if literal.kind in _COMPATIBLE.get(attribute.edm_type, set()):
        return
    raise query_error(
        "A binary operator with incompatible types was detected. Found operand types "
        f"'{attribute.edm_type}' and '{_LITERAL_TYPES.get(literal.kind, 'Edm.String')}' for "
        f"operator kind '{_OPERATOR_KINDS.get(op, op)}'."
    )


def _column(attribute: Attribute) -> str:
    return '"' + attribute.name + '"'


def _is_text(attribute: Attribute) -> bool:
    return attribute.edm_type == "Edm.String"


def compile_filter(node: Any, entity: Entity, params: list[Any]) -> str:
    """A SQLite condition for ``node`` over ``entity``'s table; parameters go to ``params``."""
    if isinstance(node, Junction):
        joined = f" {node.kind.upper()} ".join(
            compile_filter(item, entity, params) for item in node.items
        )
        return f"({joined})"
    if isinstance(node, Negation):
        inner = compile_filter(node.item, entity, params)
        return f"(NOT COALESCE({inner}, 0))"
    if isinstance(node, Call):
        return _compile_call(node, entity, params)
    if isinstance(node, Compare):
        return _compile_compare(node, entity, params)
    raise query_error("The $filter expression is not a condition.")


def _sides(node: Compare, entity: Entity) -> tuple[Attribute, Lit, str]:
    left, right, op = node.left, node.right, node.op
    if isinstance(left, Lit) and isinstance(right, Prop):
        flipped = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
        left, right, op = right, left, flipped.get(op, op)
    if not (isinstance(left, Prop) and isinstance(right, Lit)):
        raise query_error("Comparisons must be between a property and a literal.")
    return attribute_of(entity, left), right, op


def _compile_compare(node: Compare, entity: Entity, params: list[Any]) -> str:
    attribute, literal, op = _sides(node, entity)
    _check_types(attribute, literal, op)
    column = _column(attribute)
    if literal.kind == "null":
        if op not in ("eq", "ne"):
            raise query_error(f"The operator '{op}' cannot be used with null.")
        return f"({column} IS {'' if op == 'eq' else 'NOT '}NULL)"
    params.append(sql_value(attribute, literal))
    collate = " COLLATE NOCASE" if _is_text(attribute) else ""
    return f"({column} IS NOT NULL AND {column}{collate} {_SQL_OPERATORS[op]} ?)"


def _compile_call(node: Call, entity: Entity, params: list[Any]) -> str:
    if not (isinstance(node.target, Prop) and isinstance(node.argument, Lit)):
        raise query_error(f"The arguments of '{node.function}' must be a property and a string.")
    attribute = attribute_of(entity, node.target)
    if not _is_text(attribute) or node.argument.kind != "string":
        raise query_error(
            f"The argument for an invocation of a function with name '{node.function}' is "
            "not valid."
        )
    escaped = str(node.argument.value).replace("\\", "\\\\").replace("%", "\\%")
    escaped = escaped.replace("_", "\\_")
    pattern = {"contains": f"%{escaped}%", "startswith": f"{escaped}%"}.get(
        node.function, f"%{escaped}"
    )
    params.append(pattern)
    return f"({_column(attribute)} LIKE ? ESCAPE '\\')"


# --- evaluating over dicts (metadata) -----------------------------------------------------

_PY_OPERATORS: Mapping[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge,
    "lt": operator.lt, "le": operator.le,
}  # fmt: skip


def evaluate(node: Any, row: Mapping[str, Any], type_name: str) -> bool:
    """Whether ``row`` (a metadata dict) matches ``node``; unknown properties are 400s."""
    if isinstance(node, Junction):
        results = (evaluate(item, row, type_name) for item in node.items)
        return all(results) if node.kind == "and" else any(results)
    if isinstance(node, Negation):
        return not evaluate(node.item, row, type_name)
    if isinstance(node, Call):
        value = _row_value(node.target, row, type_name)
        argument = str(getattr(node.argument, "value", "")).lower()
        text = str(value or "").lower()
        return {
            "contains": argument in text,
            "startswith": text.startswith(argument),
            "endswith": text.endswith(argument),
        }[node.function]
    if isinstance(node, Compare):
        left = _row_value(node.left, row, type_name)
        right = _row_value(node.right, row, type_name)
        if left is None or right is None:
            return (left is None and right is None) == (node.op == "eq")
        if isinstance(left, str) and isinstance(right, str):
            left, right = left.lower(), right.lower()
        try:
            return bool(_PY_OPERATORS[node.op](left, right))
        except TypeError:
            return False
    raise query_error("The $filter expression is not a condition.")


def _row_value(operand: Prop | Lit, row: Mapping[str, Any], type_name: str) -> Any:
    if isinstance(operand, Lit):
        return operand.value
    value: Any = row
    for part in operand.path:
        if not isinstance(value, Mapping) or part not in value:
            raise query_error(
                f"Could not find a property named '{part}' on type 'Microsoft.Dynamics.CRM."
                f"{type_name}'."
            )
        value = value[part]
    return value


def check_select(entity: Entity, names: Sequence[str]) -> list[Attribute]:
    """The attributes a ``$select`` names, in order; unknown names are 400s."""
    chosen = []
    for name in names:
        attribute = entity.by_wire_name.get(name)
        if attribute is None:
            raise no_property(entity, name)
        chosen.append(attribute)
    return chosen
