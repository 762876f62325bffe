"""Parsing SOQL text into the syntax tree (grammar: ``soql.lark``, LALR), with Salesforce's
MALFORMED_QUERY messages for bad syntax and bad literals.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cache

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError

from sandboxes.salesforce.soql_nodes import (
    And,
    Comparison,
    Condition,
    FieldPath,
    Not,
    Or,
    OrderItem,
    Query,
    SoqlError,
    Value,
    located,
)

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


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
        raise located("MALFORMED_QUERY", text, exc.line, exc.column, detail) from None
    except UnexpectedInput as exc:
        token = getattr(exc, "token", None)
        if token is None or token.type == "$END":
            raise _at_end(text) from None
        detail = f"unexpected token: '{token}'"
        raise located("MALFORMED_QUERY", text, *_position(token), detail) from None
    try:
        return _ToAst(text).transform(tree)
    except VisitError as exc:
        error = exc.orig_exc
        if isinstance(error, _LiteralError):
            position = _position(error.token)
            raise located("MALFORMED_QUERY", text, *position, error.detail) from None
        raise error from None


def _position(token: Token) -> tuple[int, int]:
    """Line and column of a token; the LALR lexer always sets them."""
    return token.line or 1, token.column or 1


def _at_end(text: str) -> SoqlError:
    lines = text.rstrip().split("\n")
    return located(
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
            return "string", unescape(token, like=False)
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


def unescape(token: Token, *, like: bool) -> str:
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
