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

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Protocol, cast

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError

from sandboxes.salesforce.ids import SUFFIX_ALPHABET, case_safe_suffix

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
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
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


def _located(code: str, text: str, line: int | None, column: int | None, detail: str) -> SoqlError:
    line, column = line or 1, column or 1
    lines = text.split("\n")
    row = lines[line - 1] if 0 < line <= len(lines) else ""
    caret = " " * (column - 1) + "^"
    return SoqlError(code, f"\n{row}\n{caret}\nERROR at Row:{line}:Column:{column}\n{detail}")


class _LiteralError(Exception):
    def __init__(self, token: Token, detail: str) -> None:
        super().__init__(detail)
        self.token = token
        self.detail = detail


@cache
def _parser() -> Lark:
    return Lark.open("soql.lark", rel_to=__file__, parser="lalr")


MAX_STATEMENT_CHARS = 100_000
"""Salesforce's limit on the length of one SOQL statement (SOQL and SOSL limits)."""


def parse(text: str) -> Query:
    """Parse SOQL text into a ``Query``; raises ``SoqlError`` (MALFORMED_QUERY) on bad syntax
    and on a statement longer than Salesforce takes."""
    if len(text) > MAX_STATEMENT_CHARS:
        message = f"SOQL statements can not be longer than {MAX_STATEMENT_CHARS} characters."
        raise SoqlError("MALFORMED_QUERY", message)
    try:
        tree = _parser().parse(text)
    except UnexpectedEOF:
        raise _at_end(text) from None
    except UnexpectedCharacters as exc:
        detail = f"unexpected token: '{exc.char}'"
        raise _located("MALFORMED_QUERY", text, exc.line, exc.column, detail) from None
    except UnexpectedInput as exc:
        token = getattr(exc, "token", None)
        if token is None or token.type == "$END":
            raise _at_end(text) from None
        detail = f"unexpected token: '{token}'"
        raise _located("MALFORMED_QUERY", text, *_position(token), detail) from None
    try:
        return _ToAst(text).transform(tree)
    except VisitError as exc:
        error = exc.orig_exc
        if isinstance(error, _LiteralError):
            position = _position(error.token)
            raise _located("MALFORMED_QUERY", text, *position, error.detail) from None
        raise error from None


def _position(token: Token) -> tuple[int, int]:
    """Line and column of a token; the LALR lexer always sets them."""
    return token.line or 1, token.column or 1


def _at_end(text: str) -> SoqlError:
    lines = text.rstrip().split("\n")
    return _located(
        "MALFORMED_QUERY", text, len(lines), len(lines[-1]) + 1, "unexpected token: '<EOF>'"
    )


@v_args(inline=True)
class _ToAst(Transformer):
    """Builds the AST bottom-up; each clause comes back tagged so ``start`` can place it."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def start(self, select: tuple, name: Token, *clauses: tuple) -> Query:
        count, fields = select
        found = dict(clauses)
        line, column = _position(name)
        return Query(
            text=self._text,
            sobject=str(name),
            sobject_line=line,
            sobject_column=column,
            fields=fields,
            count=count,
            where=found.get("where"),
            order_by=found.get("order", ()),
            limit=found.get("limit"),
            offset=found.get("offset"),
        )

    def count_all(self) -> tuple:
        return "all", ()

    def count_field(self, field: FieldPath) -> tuple:
        return "field", (field,)

    def field_list(self, *fields: FieldPath) -> tuple:
        return None, fields

    def field(self, *names: Token) -> FieldPath:
        return FieldPath(tuple(str(n) for n in names), *_position(names[0]))

    def where_clause(self, condition: Condition) -> tuple:
        return "where", condition

    def or_expr(self, *operands: Condition) -> Or:
        return Or(operands)

    def and_expr(self, *operands: Condition) -> And:
        return And(operands)

    def negation(self, operand: Condition) -> Not:
        return Not(operand)

    def compare(self, field: FieldPath, op: Token, value: Token) -> Comparison:
        return Comparison(field, "!=" if op == "<>" else str(op), _literal(value))

    def like(self, field: FieldPath, pattern: Token) -> Comparison:
        return Comparison(field, "LIKE", _literal(pattern))

    def in_list(self, field: FieldPath, values: tuple[Value, ...]) -> Comparison:
        return Comparison(field, "IN", values)

    def not_in_list(self, field: FieldPath, values: tuple[Value, ...]) -> Comparison:
        return Comparison(field, "NOT IN", values)

    def value_list(self, *tokens: Token) -> tuple[Value, ...]:
        return tuple(_literal(token) for token in tokens)

    def order_clause(self, *items: OrderItem) -> tuple:
        return "order", items

    def order_item(self, field: FieldPath, *words: Token) -> OrderItem:
        said = {str(word).upper() for word in words}
        descending = "DESC" in said
        nulls_first = "FIRST" in said or ("LAST" not in said and not descending)
        return OrderItem(field, descending, nulls_first)

    def limit_clause(self, count: Token) -> tuple:
        return "limit", int(count)

    def offset_clause(self, count: Token) -> tuple:
        return "offset", int(count)


def _literal(token: Token) -> Value:
    kind, value = _literal_value(token)
    return Value(kind, value, str(token), *_position(token))


def _literal_value(token: Token) -> tuple[str, object]:
    text = str(token)
    match token.type:
        case "STRING":
            return "string", _unescape(token, like=False)
        case "NUMBER":
            return "number", float(text) if "." in text else int(text)
        case "TRUE" | "FALSE":
            return "boolean", token.type == "TRUE"
        case "NULL":
            return "null", None
        case "DATE_KEYWORD":
            word, _, days = text.upper().partition(":")
            return "date_keyword", (word, int(days) if days else None)
    try:
        if token.type == "DATE":
            return "date", date.fromisoformat(text)
        return "datetime", datetime.fromisoformat(text.upper()).astimezone(UTC)
    except ValueError:
        raise _LiteralError(token, f"invalid date or datetime literal: {text}") from None


def _unescape(token: Token, *, like: bool) -> str:
    """The string's value, or with ``like`` a LIKE pattern for ``ESCAPE '\\'``."""
    body, out, index = str(token)[1:-1], [], 0
    while index < len(body):
        char = body[index]
        if char != "\\":
            out.append(char)
            index += 1
            continue
        escaped = body[index + 1]
        if escaped in "%_" or (like and escaped == "\\"):
            out.append("\\" + escaped)
        elif escaped in _ESCAPES:
            out.append(_ESCAPES[escaped])
        else:
            detail = f"Invalid string literal {token}. Illegal character sequence '\\{escaped}'"
            raise _LiteralError(token, detail)
        index += 2
    return "".join(out)


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
            raise _located("INVALID_TYPE", query.text, line, column, detail) from None

    def fail(self, code: str, where: FieldPath | Value, detail: str) -> SoqlError:
        return _located(code, self.query.text, where.line, where.column, detail)

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
            self.params.append(_unescape(Token("STRING", node.value.raw), like=True))
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
        raise _located("NUMBER_OUTSIDE_VALID_RANGE", query.text, line, column, detail)
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
