"""The SOQL syntax tree, the catalog the compiler resolves names against, the compiled query
and ``SoqlError`` with Salesforce's row, column and caret (``soql.py`` says what SOQL does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


class SoqlError(Exception):
    """A query Salesforce would refuse: ``code`` is its errorCode, ``message`` its text."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ColumnInfo:
    """One field: canonical name, column in the SQLite table, and describe ``type``."""

    name: str
    sql_column: str
    soql_type: str


@dataclass(frozen=True)
class RelationInfo:
    """A parent relationship: its relationshipName, the FK's SQL column and the target sObject."""

    name: str
    fk_column: str
    target: str


@dataclass(frozen=True)
class TableInfo:
    """An sObject's table; ``fields``/``relations`` are keyed by lower-case name."""

    sobject: str
    sql_table: str
    fields: Mapping[str, ColumnInfo]
    relations: Mapping[str, RelationInfo]


class Catalog(Protocol):
    """Where the compiler looks up sObjects."""

    def table(self, sobject: str) -> TableInfo:
        """The table of ``sobject`` (any case); raises ``KeyError`` when there is none."""
        ...


@dataclass(frozen=True)
class FieldPath:
    """A field reference as written (``Account.Owner.Name``), with its 1-based line and column."""

    parts: tuple[str, ...]
    line: int
    column: int


@dataclass(frozen=True)
class Value:
    """A literal in a condition.

    ``kind`` is string (``value`` is the unescaped text; ``\\%`` and ``\\_`` keep their
    backslash, as they only mean something to LIKE), number, boolean, null, date, datetime
    (UTC-aware) or date_keyword, whose ``value`` is ``(keyword, n)`` such as
    ``("LAST_N_DAYS", 7)`` or ``("TODAY", None)``. ``raw`` is the source text.
    """

    kind: str
    value: object
    raw: str
    line: int
    column: int


@dataclass(frozen=True)
class Comparison:
    """``field op value``; op is = != < <= > >= LIKE IN or NOT IN (IN takes a tuple)."""

    field: FieldPath
    op: str
    value: Value | tuple[Value, ...]


@dataclass(frozen=True)
class Not:
    """``NOT operand``."""

    operand: Condition


@dataclass(frozen=True)
class And:
    """All operands hold."""

    operands: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    """At least one operand holds."""

    operands: tuple[Condition, ...]


Condition = Comparison | Not | And | Or


@dataclass(frozen=True)
class OrderItem:
    """One ORDER BY key; ``nulls_first`` is already resolved (SOQL default: first when ASC)."""

    field: FieldPath
    descending: bool
    nulls_first: bool


@dataclass(frozen=True)
class Query:
    """A parsed query. ``count`` is None, ``"all"`` (COUNT()) or ``"field"`` (COUNT(fields[0]))."""

    text: str
    sobject: str
    sobject_line: int
    sobject_column: int
    fields: tuple[FieldPath, ...]
    count: str | None
    where: Condition | None
    order_by: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None


@dataclass(frozen=True)
class OutputColumn:
    """One output column: canonical path (``("Account", "Name")``) and describe type."""

    path: tuple[str, ...]
    soql_type: str


@dataclass(frozen=True)
class CompiledQuery:
    """SQLite SQL for a query. COUNT(field) yields the single column ``("expr0",)``."""

    sobject: str
    sql: str
    params: tuple
    columns: tuple[OutputColumn, ...]
    count_only: bool
    limit: int | None
    offset: int | None


def located(code: str, text: str, line: int | None, column: int | None, detail: str) -> SoqlError:
    """A ``SoqlError`` pointing at ``line`` and ``column`` of ``text``, as Salesforce prints it."""
    line, column = line or 1, column or 1
    lines = text.split("\n")
    row = lines[line - 1] if 0 < line <= len(lines) else ""
    caret = " " * (column - 1) + "^"
    return SoqlError(code, f"\n{row}\n{caret}\nERROR at Row:{line}:Column:{column}\n{detail}")
