"""SOQL for the Salesforce sandbox: parse a query with a real grammar and compile it to SQLite.

``parse`` turns SOQL text into a small AST (grammar: ``soql.lark``, LALR). ``compile_query``
resolves every name against a ``Catalog`` (canonical names out, whatever case came in) and
emits one SQLite statement with ``?`` parameters whose SELECT list is the output columns.

Semantics follow Salesforce, not SQL:

- Conditions are two-valued: a comparison with a null field is false, never unknown, so
  ``Name != 'x'``, ``NOT Name = 'x'`` and ``Name NOT IN ('x')`` all match rows where Name is null.
- ``=``/``!=``/``<``/``>`` and ORDER BY on text fields ignore case (``COLLATE NOCASE``); LIKE
  ignores case and honours ``\\%`` and ``\\_`` as literal characters.
- Id literals (15-char case-sensitive or 18-char case-insensitive) are turned into the stored
  canonical 18-char form, so id filters are plain equality and can use an index.
- Datetime literals are converted to UTC in the stored form ``YYYY-MM-DDTHH:MM:SS.mmmZ``; date
  literals and ``TODAY``-style keywords are day ranges, computed from ``now`` in UTC.
- Parent fields (``Account.Owner.Name``) become one LEFT JOIN per distinct relationship path;
  a missing parent yields NULL.
- Without ORDER BY, and after it as a tie-breaker, rows come in root Id order, so pages cut by
  LIMIT/OFFSET are stable.

``SoqlError.code`` is Salesforce's errorCode: MALFORMED_QUERY (syntax, bad literal), INVALID_FIELD
(unknown field or relationship, value of the wrong type), INVALID_TYPE (unknown sObject),
INVALID_QUERY_FILTER_OPERATOR (malformed id literal) or NUMBER_OUTSIDE_VALID_RANGE (OFFSET over
2000). Messages carry the row, column and caret the way Salesforce prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import cast

from lark import Token

from sandboxes.salesforce.ids import SUFFIX_ALPHABET, case_safe_suffix
from sandboxes.salesforce.soql_nodes import (
    And,
    Catalog,
    ColumnInfo,
    Comparison,
    CompiledQuery,
    Condition,
    FieldPath,
    Not,
    Or,
    OutputColumn,
    Query,
    RelationInfo,
    SoqlError,
    TableInfo,
    Value,
    located,
)
from sandboxes.salesforce.soql_parse import MAX_STATEMENT_CHARS, parse, unescape

__all__ = ["MAX_OFFSET", "MAX_STATEMENT_CHARS", "SoqlError", "compile_query", "parse"]

MAX_OFFSET = 2000

_NO_COLUMN = (
    "No such column '{field}' on entity '{entity}'. If you are attempting to use a custom field,"
    " be sure to append the '__c' after the custom field name. Please reference your WSDL or the"
    " describe call for the appropriate names."
)
_NO_RELATION = (
    "Didn't understand relationship '{name}' in field path. If you are attempting to use a custom"
    " relationship, be sure to append the '__r' after the custom relationship name. Please"
    " reference your WSDL or the describe call for the appropriate names."
)
_NO_TYPE = (
    "sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure"
    " to append the '__c' after the entity name. Please reference your WSDL or the describe call"
    " for the appropriate names."
)
_WRONG_TYPE = (
    "value of filter criterion for field '{field}' must be of type {type} and should {neg}be"
    " enclosed in quotes"
)
_KIND_BY_TYPE = {
    "id": "id",
    "reference": "id",
    "boolean": "boolean",
    "int": "number",
    "long": "number",
    "double": "number",
    "currency": "number",
    "percent": "number",
    "date": "date",
    "datetime": "datetime",
}
_TYPE_NAMES = {"text": "string", "number": "double", "datetime": "dateTime"}


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _canonical_id(value: str) -> str | None:
    """The stored 18-char form of a 15-char or (any-case) 18-char id; None if malformed."""
    if not (value.isascii() and value.isalnum() and len(value) in (15, 18)):
        return None
    if len(value) == 18:
        suffix = value[15:].upper()
        if any(char not in SUFFIX_ALPHABET for char in suffix):
            return None
        masks = [SUFFIX_ALPHABET.index(char) for char in suffix]
        value = "".join(
            char.upper() if masks[i // 5] >> (i % 5) & 1 else char.lower()
            for i, char in enumerate(value[:15])
        )
    return value + case_safe_suffix(value)


def _utc_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _midnight(day: date) -> str:
    return f"{day.isoformat()}T00:00:00.000Z"


@dataclass(frozen=True)
class _Resolved:
    sql: str
    column: ColumnInfo
    path: tuple[str, ...]

    @property
    def kind(self) -> str:
        return _KIND_BY_TYPE.get(self.column.soql_type.lower(), "text")

    @property
    def collate(self) -> str:
        return " COLLATE NOCASE" if self.kind == "text" else ""


class _Compiler:
    """Compiles one parsed query; collects joins and parameters as it goes."""

    def __init__(self, query: Query, catalog: Catalog, now: datetime) -> None:
        self.query = query
        self.catalog = catalog
        moment = now if now.tzinfo else now.replace(tzinfo=UTC)
        self.today = moment.astimezone(UTC).date()
        self.joins: dict[tuple[str, ...], tuple[str, TableInfo]] = {}
        self.join_sql: list[str] = []
        self.params: list[object] = []
        try:
            self.root = catalog.table(query.sobject)
        except KeyError:
            line, column = query.sobject_line, query.sobject_column
            detail = _NO_TYPE.format(name=query.sobject)
            raise located("INVALID_TYPE", query.text, line, column, detail) from None

    def fail(self, code: str, where: FieldPath | Value, detail: str) -> SoqlError:
        return located(code, self.query.text, where.line, where.column, detail)

    def resolve(self, field: FieldPath) -> _Resolved:
        parts = field.parts
        prefix = parts[0].lower()
        if (
            len(parts) > 1
            and prefix == self.root.sobject.lower()
            and prefix not in self.root.relations
        ):
            parts = parts[1:]
        alias, table = "t0", self.root
        path: tuple[str, ...] = ()
        for part in parts[:-1]:
            relation = table.relations.get(part.lower())
            if relation is None:
                raise self.fail("INVALID_FIELD", field, _NO_RELATION.format(name=part))
            path += (relation.name,)
            alias, table = self._join(path, alias, relation, field)
        column = table.fields.get(parts[-1].lower())
        if column is None:
            detail = _NO_COLUMN.format(field=parts[-1], entity=table.sobject)
            raise self.fail("INVALID_FIELD", field, detail)
        return _Resolved(f"{alias}.{_quote(column.sql_column)}", column, (*path, column.name))

    def _join(
        self, path: tuple[str, ...], parent: str, relation: RelationInfo, field: FieldPath
    ) -> tuple[str, TableInfo]:
        if path not in self.joins:
            try:
                target = self.catalog.table(relation.target)
            except KeyError:
                raise self.fail(
                    "INVALID_FIELD", field, _NO_RELATION.format(name=path[-1])
                ) from None
            alias = f"t{len(self.joins) + 1}"
            id_column = _quote(target.fields["id"].sql_column)
            self.join_sql.append(
                f"LEFT JOIN {_quote(target.sql_table)} AS {alias}"
                f" ON {alias}.{id_column} = {parent}.{_quote(relation.fk_column)}"
            )
            self.joins[path] = (alias, target)
        return self.joins[path]

    def condition(self, node: Condition) -> str:
        match node:
            case And(operands):
                return "(" + " AND ".join(self.condition(op) for op in operands) + ")"
            case Or(operands):
                return "(" + " OR ".join(self.condition(op) for op in operands) + ")"
            case Not(operand):
                return f"NOT {self.condition(operand)}"
        return self.comparison(node)

    def comparison(self, node: Comparison) -> str:
        target = self.resolve(node.field)
        if isinstance(node.value, tuple):
            sql = self._membership(target, node.value)
            return sql if node.op == "IN" else f"NOT {sql}"
        if node.op == "LIKE":
            if target.kind not in ("text", "id"):
                detail = (
                    f"invalid operator on field '{target.column.name}': LIKE needs a text field"
                )
                raise self.fail("INVALID_FIELD", node.field, detail)
            self.params.append(unescape(Token("STRING", node.value.raw), like=True))
            return f"({target.sql} IS NOT NULL AND {target.sql} LIKE ? ESCAPE '\\')"
        return self._compare(target, node.op, node.value)

    def _compare(self, target: _Resolved, op: str, value: Value) -> str:
        col = target.sql
        if value.kind == "null":
            if op not in ("=", "!="):
                raise self.fail("MALFORMED_QUERY", value, f"invalid operator {op} for null")
            return f"{col} IS {'NOT ' if op == '!=' else ''}NULL"
        low, high = self._bounds(target, value)
        if high is None:
            self.params.append(low)
            if op in ("=", "!="):
                return f"{col} IS {'NOT ' if op == '!=' else ''}?{target.collate}"
            return f"({col} IS NOT NULL AND {col} {op} ?{target.collate})"
        if op in ("=", "!="):
            self.params.extend((low, high))
            inside = f"({col} IS NOT NULL AND {col} >= ? AND {col} < ?)"
            return inside if op == "=" else f"NOT {inside}"
        sql_op, bound = {"<": ("<", low), "<=": ("<", high), ">": (">=", high), ">=": (">=", low)}[
            op
        ]
        self.params.append(bound)
        return f"({col} IS NOT NULL AND {col} {sql_op} ?)"

    def _membership(self, target: _Resolved, values: tuple[Value, ...]) -> str:
        col, options, points = target.sql, [], []
        for value in values:
            if value.kind == "null":
                options.append(f"{col} IS NULL")
                continue
            low, high = self._bounds(target, value)
            if high is None:
                points.append(low)
            else:
                options.append(self._compare(target, "=", value))
        if points:
            marks = ", ".join("?" * len(points))
            options.append(f"({col} IS NOT NULL AND {col}{target.collate} IN ({marks}))")
            self.params.extend(points)
        return "(" + " OR ".join(options) + ")"

    def _bounds(self, target: _Resolved, value: Value) -> tuple[object, object | None]:
        """The parameter for a point value, or the half-open range ``[low, high)`` of a day."""
        kind, name = target.kind, target.column.name
        if kind == "text" and value.kind == "string":
            return value.value, None
        if kind == "id" and value.kind == "string":
            canonical = _canonical_id(str(value.value))
            if canonical is None:
                detail = f"invalid ID field: {value.value}"
                raise self.fail("INVALID_QUERY_FILTER_OPERATOR", value, detail)
            return canonical, None
        if kind == "number" and value.kind == "number":
            return value.value, None
        if kind == "boolean" and value.kind == "boolean":
            return int(bool(value.value)), None
        if kind == "date" and value.kind == "date":
            return str(value.raw), None
        if kind in ("date", "datetime") and value.kind in ("date", "date_keyword"):
            low, high = self._days(value)
            if kind == "date":
                return low.isoformat(), high.isoformat()
            return _midnight(low), _midnight(high)
        if kind == "datetime" and value.kind == "datetime":
            return _utc_text(cast(datetime, value.value)), None
        quoted = kind in ("text", "id")
        detail = _WRONG_TYPE.format(
            field=name, type=_TYPE_NAMES.get(kind, kind), neg="" if quoted else "not "
        )
        raise self.fail("INVALID_FIELD", value, detail)

    def _days(self, value: Value) -> tuple[date, date]:
        if value.kind == "date":
            day = cast(date, value.value)
            return day, day + timedelta(days=1)
        word, count = cast(tuple[str, int | None], value.value)
        today, one = self.today, timedelta(days=1)
        return {
            "TODAY": (today, today + one),
            "YESTERDAY": (today - one, today),
            "TOMORROW": (today + one, today + 2 * one),
            "LAST_N_DAYS": (today - (count or 0) * one, today + one),
            "NEXT_N_DAYS": (today + one, today + (1 + (count or 0)) * one),
        }[word]

    def select_list(self) -> tuple[list[str], tuple[OutputColumn, ...]]:
        query = self.query
        if query.count == "field":
            target = self.resolve(query.fields[0])
            return [f"COUNT({target.sql}) AS expr0"], (OutputColumn(("expr0",), "int"),)
        resolved = [self.resolve(field) for field in query.fields]
        seen: set[tuple[str, ...]] = set()
        for field, target in zip(query.fields, resolved, strict=True):
            if target.path in seen:
                detail = f"duplicate field selected: {'.'.join(target.path)}"
                raise self.fail("MALFORMED_QUERY", field, detail)
            seen.add(target.path)
        columns = tuple(OutputColumn(t.path, t.column.soql_type) for t in resolved)
        return [t.sql for t in resolved], columns

    def order_by(self) -> list[str]:
        keys = []
        for item in self.query.order_by:
            target = self.resolve(item.field)
            direction = "DESC" if item.descending else "ASC"
            nulls = "FIRST" if item.nulls_first else "LAST"
            keys.append(f"{target.sql}{target.collate} {direction} NULLS {nulls}")
        id_field = self.root.fields.get("id")
        tie_breaker = None if id_field is None else f"t0.{_quote(id_field.sql_column)}"
        if tie_breaker and not any(key.startswith(tie_breaker + " ") for key in keys):
            keys.append(tie_breaker)
        return keys


def compile_query(
    soql: str | Query, catalog: Catalog, *, include_deleted: bool, now: datetime
) -> CompiledQuery:
    """Compile SOQL (text or a parsed ``Query``) against ``catalog`` into one SQLite statement.

    ``include_deleted`` (queryAll) keeps soft-deleted root rows; ``now`` anchors TODAY and the
    other date keywords. Raises ``SoqlError``.
    """
    query = parse(soql) if isinstance(soql, str) else soql
    if query.offset is not None and query.offset > MAX_OFFSET:
        line, column = query.sobject_line, query.sobject_column
        detail = f"Maximum SOQL offset allowed is {MAX_OFFSET}"
        raise located("NUMBER_OUTSIDE_VALID_RANGE", query.text, line, column, detail)
    compiler = _Compiler(query, catalog, now)
    count_only = query.count == "all"
    select, columns = ([], ()) if count_only else compiler.select_list()
    filters = [] if query.where is None else [compiler.condition(query.where)]
    if not include_deleted:
        deleted = compiler.root.fields.get("isdeleted")
        filters.append(f"t0.{_quote(deleted.sql_column if deleted else 'IsDeleted')} = 0")
    order = [] if query.count else compiler.order_by()
    paging = _paging(query.limit, query.offset)
    body = " ".join(
        [f"FROM {_quote(compiler.root.sql_table)} AS t0", *compiler.join_sql]
        + ([f"WHERE {' AND '.join(filters)}"] if filters else [])
        + ([f"ORDER BY {', '.join(order)}"] if order else [])
        + paging
    )
    if not count_only:
        sql = f"SELECT {', '.join(select)} {body}"
    elif paging:
        sql = f"SELECT COUNT(*) FROM (SELECT 1 {body})"
    else:
        sql = f"SELECT COUNT(*) {body}"
    return CompiledQuery(
        compiler.root.sobject,
        sql,
        tuple(compiler.params),
        columns,
        count_only,
        query.limit,
        query.offset,
    )


def _paging(limit: int | None, offset: int | None) -> list[str]:
    if limit is None and offset is None:
        return []
    clause = f"LIMIT {-1 if limit is None else limit}"
    return [clause + (f" OFFSET {offset}" if offset is not None else "")]
