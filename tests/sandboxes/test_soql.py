"""The sandbox's SOQL engine: parsing, compiling to SQLite, and running the result."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandboxes.salesforce.ids import make_id
from sandboxes.salesforce.soql import SoqlError, compile_query, parse
from sandboxes.salesforce.soql_nodes import (
    And,
    ColumnInfo,
    Comparison,
    CompiledQuery,
    Not,
    Or,
    OutputColumn,
    Query,
    RelationInfo,
    TableInfo,
)

NOW = datetime(2024, 11, 5, 15, 30, tzinfo=UTC)


def _table(sobject: str, fields: list[tuple[str, str]], *relations: RelationInfo) -> TableInfo:
    columns = {name.lower(): ColumnInfo(name, f"f_{name}", kind) for name, kind in fields}
    return TableInfo(
        sobject, f"sf_{sobject.lower()}", columns, {r.name.lower(): r for r in relations}
    )


SYSTEM = [("Id", "id"), ("IsDeleted", "boolean")]
USER = _table("User", [*SYSTEM, ("Name", "string")])
ACCOUNT = _table(
    "Account",
    [
        *SYSTEM,
        ("Name", "string"),
        ("Industry", "picklist"),
        ("AnnualRevenue", "currency"),
        ("NumberOfEmployees", "int"),
        ("IsPartner", "boolean"),
        ("CreatedDate", "datetime"),
        ("LastActivityDate", "date"),
        ("OwnerId", "reference"),
        ("ParentId", "reference"),
    ],
    RelationInfo("Owner", "f_OwnerId", "User"),
    RelationInfo("Parent", "f_ParentId", "Account"),
)
CONTACT = _table(
    "Contact",
    [*SYSTEM, ("LastName", "string"), ("Email", "email"), ("AccountId", "reference")],
    RelationInfo("Account", "f_AccountId", "Account"),
)
U1, U2 = make_id("005", 1), make_id("005", 2)
A1, A2, A3, A4, A5 = (make_id("001", n) for n in range(1, 6))
C1, C2, C3, C4 = (make_id("003", n) for n in range(1, 5))
ACCOUNT_ROWS = [
    (A1, 0, "Acme", "Tech", 1000.5, 10, 1, "2024-11-05T09:00:00.000Z", "2024-11-05", U1, None),
    (A2, 0, "beta corp", None, None, 5, 0, "2024-11-04T23:59:59.000Z", "2024-11-04", U2, A1),
    (A3, 0, "Gamma_50%", "Finance", 250, None, 0, "2024-10-01T00:00:00.000Z", None, None, A2),
    (A4, 1, "Deleted Co", "Tech", 5, 1, 0, "2024-11-06T00:00:00.000Z", None, U1, None),
    (A5, 0, "GammaX50", None, 0, 0, 0, None, None, make_id("005", 9), make_id("001", 99)),
]
CONTACT_ROWS = [
    (C1, 0, "Smith", "s@example.com", A1),
    (C2, 0, "Jones", None, A2),
    (C3, 0, "O'Brien", "ob@example.com", None),
    (C4, 0, "Zed", None, A3),
]


class DictCatalog:
    """A catalog over a fixed set of tables, case-insensitive like Salesforce."""

    def __init__(self, *tables: TableInfo) -> None:
        self._tables = {t.sobject.lower(): t for t in tables}

    def table(self, sobject: str) -> TableInfo:
        """The table named ``sobject`` in any case."""
        return self._tables[sobject.lower()]


CATALOG = DictCatalog(USER, ACCOUNT, CONTACT)


def _create(db: sqlite3.Connection, table: TableInfo, rows: list[tuple]) -> None:
    columns = [c.sql_column for c in table.fields.values()]
    db.execute(f"CREATE TABLE {table.sql_table} ({', '.join(columns)})")
    marks = ", ".join("?" * len(columns))
    db.executemany(f"INSERT INTO {table.sql_table} VALUES ({marks})", rows)


@pytest.fixture(scope="module")
def db() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    _create(connection, USER, [(U1, 0, "Ann"), (U2, 0, "Bob")])
    _create(connection, ACCOUNT, ACCOUNT_ROWS)
    _create(connection, CONTACT, CONTACT_ROWS)
    yield connection
    connection.close()


def run(db: sqlite3.Connection, soql: str, *, include_deleted: bool = False) -> list[tuple]:
    compiled = compile_query(soql, CATALOG, include_deleted=include_deleted, now=NOW)
    return db.execute(compiled.sql, compiled.params).fetchall()


def ids(db: sqlite3.Connection, where: str, *, include_deleted: bool = False) -> set[str]:
    rows = run(db, f"SELECT Id FROM Account WHERE {where}", include_deleted=include_deleted)
    return {row[0] for row in rows}


def error(soql: str) -> SoqlError:
    with pytest.raises(SoqlError) as caught:
        compile_query(soql, CATALOG, include_deleted=False, now=NOW)
    return caught.value


# --- parsing ---------------------------------------------------------------------------------


def test_parse_builds_the_whole_query() -> None:
    query = parse(
        "select Id, Account.Owner.Name from Contact where LastName = 'x' "
        "order by LastName desc, Id nulls last limit 5 offset 10"
    )
    assert query.sobject == "Contact"
    assert [f.parts for f in query.fields] == [("Id",), ("Account", "Owner", "Name")]
    assert isinstance(query.where, Comparison) and query.where.op == "="
    assert [(o.descending, o.nulls_first) for o in query.order_by] == [
        (True, False),
        (False, False),
    ]
    assert (query.limit, query.offset, query.count) == (5, 10, None)


def test_not_binds_tighter_than_and_and_and_tighter_than_or() -> None:
    where = parse("SELECT Id FROM A WHERE NOT a = 1 AND b = 2 OR c = 3").where
    assert isinstance(where, Or)
    first, second = where.operands
    assert isinstance(first, And) and isinstance(first.operands[0], Not)
    assert isinstance(second, Comparison) and second.field.parts == ("c",)
    grouped = parse("SELECT Id FROM A WHERE NOT (a = 1 OR b = 2) AND c = 3").where
    assert isinstance(grouped, And) and isinstance(grouped.operands[0].operand, Or)


def test_literals_are_decoded() -> None:
    where = parse(
        "SELECT Id FROM A WHERE s = 'it\\'s\\\\\\n' AND n IN (-2, 1.5) AND t = TRUE AND z = NULL"
        " AND d = 2024-11-05 AND m = 2024-11-05T10:00:00.000+0530 AND k = last_n_days:7"
    ).where
    values = [c.value for c in where.operands]
    assert values[0].value == "it's\\\n"
    assert [v.value for v in values[1]] == [-2, 1.5]
    assert (values[2].value, values[3].kind) == (True, "null")
    assert values[4].value == date(2024, 11, 5)
    assert values[5].value == datetime(2024, 11, 5, 4, 30, tzinfo=UTC)
    assert values[6].value == ("LAST_N_DAYS", 7)


def test_count_forms_parse() -> None:
    assert parse("SELECT COUNT() FROM Account").count == "all"
    query = parse("SELECT count(Id) FROM Account")
    assert query.count == "field" and query.fields[0].parts == ("Id",)


@pytest.mark.parametrize(
    ("soql", "row", "column", "detail"),
    [
        ("SELECT Id FROM", 1, 15, "unexpected token: '<EOF>'"),
        ("SELECT Id FROM Account WHERE Name == 'x'", 1, 36, "unexpected token: '='"),
        ("SELECT Id,\nName FROM Account LIMIT x", 2, 25, "unexpected token: 'x'"),
        ("SELECT Id FROM Account WHERE Name = 'a\\q'", 1, 37, "Illegal character sequence '\\q'"),
        ("SELECT Id FROM Account WHERE d = 2024-13-01", 1, 34, "invalid date or datetime literal"),
        ("SELECT Id FROM Account GROUP BY Name", 1, 24, "unexpected token: 'GROUP'"),
    ],
)
def test_syntax_errors_are_malformed_query_with_position(
    soql: str, row: int, column: int, detail: str
) -> None:
    with pytest.raises(SoqlError) as caught:
        parse(soql)
    assert caught.value.code == "MALFORMED_QUERY"
    assert f"ERROR at Row:{row}:Column:{column}\n" in caught.value.message
    assert detail in caught.value.message
    assert caught.value.message.split("\n")[2] == " " * (column - 1) + "^"


# --- compiling and running -------------------------------------------------------------------


def test_select_returns_canonical_columns_and_skips_deleted_rows(db: sqlite3.Connection) -> None:
    compiled = compile_query(
        "select NAME, isPARTNER from ACCOUNT where name = 'ACME'",
        CATALOG,
        include_deleted=False,
        now=NOW,
    )
    assert isinstance(compiled, CompiledQuery)
    assert compiled.sobject == "Account" and not compiled.count_only
    assert compiled.columns == (
        OutputColumn(("Name",), "string"),
        OutputColumn(("IsPartner",), "boolean"),
    )
    assert db.execute(compiled.sql, compiled.params).fetchall() == [("Acme", 1)]
    assert A4 not in ids(db, "Industry = 'Tech'")
    assert ids(db, "Industry = 'Tech'", include_deleted=True) == {A1, A4}


def test_parent_fields_join_once_per_path_and_are_null_without_parent(
    db: sqlite3.Connection,
) -> None:
    soql = (
        "SELECT LastName, Account.Name, account.industry, Account.Owner.Name,"
        " Account.Parent.Parent.Name FROM Contact ORDER BY LastName"
    )
    compiled = compile_query(soql, CATALOG, include_deleted=False, now=NOW)
    assert compiled.sql.count("LEFT JOIN") == 4
    assert [c.path for c in compiled.columns][1:3] == [("Account", "Name"), ("Account", "Industry")]
    assert db.execute(compiled.sql, compiled.params).fetchall() == [
        ("Jones", "beta corp", None, "Bob", None),
        ("O'Brien", None, None, None, None),
        ("Smith", "Acme", "Tech", "Ann", None),
        ("Zed", "Gamma_50%", "Finance", None, "Acme"),
    ]
    rows = run(db, "SELECT Name, Owner.Name, Parent.Name FROM Account WHERE Id = '" + A5 + "'")
    assert rows == [("GammaX50", None, None)]
    assert run(db, "SELECT Account.Name FROM Account WHERE Id = '" + A1 + "'") == [("Acme",)]


def test_filters_on_parent_fields(db: sqlite3.Connection) -> None:
    rows = run(db, "SELECT LastName FROM Contact WHERE Account.Owner.Name = 'ann'")
    assert rows == [("Smith",)]
    rows = run(db, "SELECT LastName FROM Contact WHERE Account.Name != 'Acme' ORDER BY LastName")
    assert rows == [("Jones",), ("O'Brien",), ("Zed",)]


def test_string_escapes_match_stored_text(db: sqlite3.Connection) -> None:
    assert run(db, "SELECT Id FROM Contact WHERE LastName = 'o\\'brien'") == [(C3,)]


def test_null_semantics_are_two_valued(db: sqlite3.Connection) -> None:
    assert ids(db, "Industry = null") == {A2, A5}
    assert ids(db, "Industry != null") == {A1, A3}
    assert ids(db, "Industry != 'Tech'") == {A2, A3, A5}
    assert ids(db, "Industry <> 'tech'") == {A2, A3, A5}
    assert ids(db, "NOT Industry = 'Tech'") == {A2, A3, A5}
    assert ids(db, "Industry NOT IN ('TECH')") == {A2, A3, A5}
    assert ids(db, "Industry IN ('tech', null)") == {A1, A2, A5}
    assert ids(db, "NOT AnnualRevenue > 100") == {A2, A5}


def test_numbers_and_booleans(db: sqlite3.Connection) -> None:
    assert ids(db, "AnnualRevenue > 999") == {A1}
    assert ids(db, "AnnualRevenue >= 250 AND AnnualRevenue <= 250.0") == {A3}
    assert ids(db, "NumberOfEmployees IN (5, 10) AND NumberOfEmployees < 10.5") == {A1, A2}
    assert ids(db, "AnnualRevenue > -1 AND AnnualRevenue < 1") == {A5}
    assert ids(db, "IsPartner = TRUE") == {A1}
    assert ids(db, "IsPartner = false AND IsPartner != true") == {A2, A3, A5}


def test_or_and_not_precedence_runs_as_parsed(db: sqlite3.Connection) -> None:
    assert ids(db, "Name = 'Acme' OR Name = 'GammaX50' AND Industry = 'Tech'") == {A1}
    assert ids(db, "(Name = 'Acme' OR Name = 'GammaX50') AND Industry = null") == {A5}
    assert ids(db, "NOT Name = 'Acme' AND NOT Name LIKE 'gamma%'") == {A2}


def test_like_is_case_insensitive_and_honours_escapes(db: sqlite3.Connection) -> None:
    assert ids(db, "Name LIKE 'a%'") == {A1}
    assert ids(db, "Name LIKE '%CORP'") == {A2}
    assert ids(db, "Name LIKE '_cme'") == {A1}
    assert ids(db, "Name LIKE 'gamma_50%'") == {A3, A5}
    assert ids(db, "Name LIKE 'Gamma\\_50\\%'") == {A3}
    assert ids(db, "NOT Industry LIKE 'T%'") == {A2, A3, A5}


def test_ids_match_in_15_and_any_case_18_char_form(db: sqlite3.Connection) -> None:
    assert ids(db, f"Id = '{A1[:15]}'") == {A1}
    assert ids(db, f"Id = '{A1.lower()}'") == {A1}
    assert ids(db, f"Id IN ('{A2[:15]}', '{A3.upper()}', '{A1}')") == {A1, A2, A3}
    assert ids(db, f"ParentId != '{A1[:15]}'") == {A1, A3, A5}
    rows = run(db, f"SELECT LastName FROM Contact WHERE AccountId = '{A1.lower()}'")
    assert rows == [("Smith",)]


def test_datetime_literals_are_compared_in_utc(db: sqlite3.Connection) -> None:
    assert ids(db, "CreatedDate = 2024-11-05T09:00:00Z") == {A1}
    assert ids(db, "CreatedDate = 2024-11-05T09:00:00.000+0000") == {A1}
    assert ids(db, "CreatedDate = 2024-11-05T10:00:00+01:00") == {A1}
    assert ids(db, "CreatedDate = 2024-11-04T18:29:59-05:30") == {A2}
    assert ids(db, "CreatedDate > 2024-11-04T23:59:59Z", include_deleted=True) == {A1, A4}
    assert ids(db, "CreatedDate <= 2024-11-04T23:59:59.000Z") == {A2, A3}


def test_date_literals_and_keywords_are_day_ranges(db: sqlite3.Connection) -> None:
    assert ids(db, "CreatedDate = 2024-11-04") == {A2}
    assert ids(db, "CreatedDate = TODAY") == {A1}
    assert ids(db, "CreatedDate = yesterday") == {A2}
    assert ids(db, "CreatedDate = TOMORROW", include_deleted=True) == {A4}
    assert ids(db, "CreatedDate > TODAY", include_deleted=True) == {A4}
    assert ids(db, "CreatedDate < TODAY") == {A2, A3}
    assert ids(db, "CreatedDate <= TODAY") == {A1, A2, A3}
    assert ids(db, "CreatedDate >= TODAY", include_deleted=True) == {A1, A4}
    assert ids(db, "CreatedDate != TODAY") == {A2, A3, A5}
    assert ids(db, "CreatedDate = LAST_N_DAYS:1") == {A1, A2}
    assert ids(db, "CreatedDate = LAST_N_DAYS:40") == {A1, A2, A3}
    assert ids(db, "CreatedDate = NEXT_N_DAYS:1", include_deleted=True) == {A4}
    assert ids(db, "LastActivityDate = TODAY") == {A1}
    assert ids(db, "LastActivityDate < 2024-11-05") == {A2}
    assert ids(db, "LastActivityDate IN (YESTERDAY, 2024-11-05)") == {A1, A2}
    assert ids(db, "LastActivityDate = NEXT_N_DAYS:3") == set()


def test_keywords_follow_now_and_treat_naive_now_as_utc(db: sqlite3.Connection) -> None:
    naive = datetime(2024, 11, 6, 1, 0)
    compiled = compile_query(
        "SELECT Id FROM Account WHERE CreatedDate = YESTERDAY",
        CATALOG,
        include_deleted=False,
        now=naive,
    )
    assert db.execute(compiled.sql, compiled.params).fetchall() == [(A1,)]


def test_order_by_is_case_insensitive_with_nulls_placement(db: sqlite3.Connection) -> None:
    names = run(db, "SELECT Name FROM Account ORDER BY Name")
    assert [n for (n,) in names] == ["Acme", "beta corp", "Gamma_50%", "GammaX50"]
    industries = run(db, "SELECT Industry, Id FROM Account ORDER BY Industry")
    assert industries == [(None, A2), (None, A5), ("Finance", A3), ("Tech", A1)]
    assert [i for i, _ in run(db, "SELECT Industry, Id FROM Account ORDER BY Industry DESC")] == [
        "Tech",
        "Finance",
        None,
        None,
    ]
    last = run(db, "SELECT Industry FROM Account ORDER BY Industry ASC NULLS LAST")
    assert [i for (i,) in last] == ["Finance", "Tech", None, None]
    first = run(db, "SELECT Industry FROM Account ORDER BY Industry DESC NULLS FIRST, Name DESC")
    assert [i for (i,) in first] == [None, None, "Tech", "Finance"]
    by_parent = run(db, "SELECT LastName FROM Contact ORDER BY Account.Name DESC NULLS LAST")
    assert [n for (n,) in by_parent] == ["Zed", "Jones", "Smith", "O'Brien"]


def test_limit_and_offset_are_compiled_and_exposed(db: sqlite3.Connection) -> None:
    soql = "SELECT Name FROM Account ORDER BY Name LIMIT 2 OFFSET 1"
    compiled = compile_query(soql, CATALOG, include_deleted=False, now=NOW)
    assert (compiled.limit, compiled.offset) == (2, 1)
    assert db.execute(compiled.sql, compiled.params).fetchall() == [("beta corp",), ("Gamma_50%",)]
    assert run(db, "SELECT Name FROM Account ORDER BY Name OFFSET 3") == [("GammaX50",)]
    assert run(db, "SELECT Name FROM Account LIMIT 0") == []


def test_unordered_rows_come_in_id_order(db: sqlite3.Connection) -> None:
    assert [i for (i,) in run(db, "SELECT Id FROM Account")] == [A1, A2, A3, A5]


def test_count_queries(db: sqlite3.Connection) -> None:
    compiled = compile_query("SELECT COUNT() FROM Account", CATALOG, include_deleted=False, now=NOW)
    assert compiled.count_only and compiled.columns == ()
    assert db.execute(compiled.sql, compiled.params).fetchall() == [(4,)]
    assert run(db, "SELECT COUNT() FROM Account", include_deleted=True) == [(5,)]
    assert run(db, "SELECT COUNT() FROM Account WHERE Industry = null") == [(2,)]
    assert run(db, "SELECT COUNT() FROM Account LIMIT 3") == [(3,)]
    assert run(db, "SELECT COUNT() FROM Account LIMIT 0") == [(0,)]
    assert run(db, "SELECT COUNT() FROM Account OFFSET 3") == [(1,)]
    assert run(db, "SELECT COUNT() FROM Account WHERE Account.Owner.Name = 'Bob'") == [(1,)]
    aggregate = compile_query(
        "SELECT COUNT(Industry) FROM Account", CATALOG, include_deleted=False, now=NOW
    )
    assert not aggregate.count_only
    assert aggregate.columns == (OutputColumn(("expr0",), "int"),)
    assert db.execute(aggregate.sql, aggregate.params).fetchall() == [(2,)]
    assert run(db, "SELECT COUNT(Id) FROM Account WHERE IsPartner = false") == [(3,)]


def test_a_parsed_query_compiles_like_its_text(db: sqlite3.Connection) -> None:
    soql = "SELECT Name FROM Account WHERE Industry IN ('Tech', 'Finance') ORDER BY Name"
    parsed: Query = parse(soql)
    from_ast = compile_query(parsed, CATALOG, include_deleted=False, now=NOW)
    assert from_ast == compile_query(soql, CATALOG, include_deleted=False, now=NOW)
    assert db.execute(from_ast.sql, from_ast.params).fetchall() == [("Acme",), ("Gamma_50%",)]


# --- errors ----------------------------------------------------------------------------------


def test_unknown_column_is_invalid_field_in_salesforce_words() -> None:
    caught = error("SELECT Idd FROM Account")
    assert caught.code == "INVALID_FIELD"
    assert caught.message == (
        "\nSELECT Idd FROM Account\n       ^\nERROR at Row:1:Column:8\n"
        "No such column 'Idd' on entity 'Account'. If you are attempting to use a custom field,"
        " be sure to append the '__c' after the custom field name. Please reference your WSDL or"
        " the describe call for the appropriate names."
    )
    assert str(caught) == caught.message


def test_unknown_object_is_invalid_type() -> None:
    caught = error("SELECT Id FROM Foo__c")
    assert caught.code == "INVALID_TYPE"
    assert "ERROR at Row:1:Column:16\nsObject type 'Foo__c' is not supported." in caught.message


@pytest.mark.parametrize(
    ("soql", "code", "detail"),
    [
        (
            "SELECT Acount.Name FROM Contact",
            "INVALID_FIELD",
            "Didn't understand relationship 'Acount'",
        ),
        (
            "SELECT Account.Nme FROM Contact",
            "INVALID_FIELD",
            "No such column 'Nme' on entity 'Account'",
        ),
        (
            "SELECT Account FROM Contact",
            "INVALID_FIELD",
            "No such column 'Account' on entity 'Contact'",
        ),
        ("SELECT Id FROM Account WHERE Nope = 1", "INVALID_FIELD", "No such column 'Nope'"),
        ("SELECT Id FROM Account ORDER BY Nope", "INVALID_FIELD", "No such column 'Nope'"),
        (
            "SELECT Id FROM Account WHERE AnnualRevenue = 'abc'",
            "INVALID_FIELD",
            "field 'AnnualRevenue' must be of type double and should not be enclosed in quotes",
        ),
        (
            "SELECT Id FROM Account WHERE CreatedDate = 'x'",
            "INVALID_FIELD",
            "value of filter criterion for field 'CreatedDate' must be of type dateTime and should"
            " not be enclosed in quotes",
        ),
        (
            "SELECT Id FROM Account WHERE Name = 5",
            "INVALID_FIELD",
            "field 'Name' must be of type string and should be enclosed in quotes",
        ),
        (
            "SELECT Id FROM Account WHERE LastActivityDate = 2024-11-05T00:00:00Z",
            "INVALID_FIELD",
            "field 'LastActivityDate' must be of type date",
        ),
        ("SELECT Id FROM Account WHERE IsPartner = 'true'", "INVALID_FIELD", "of type boolean"),
        ("SELECT Id FROM Account WHERE Industry IN ('a', 3)", "INVALID_FIELD", "of type string"),
        ("SELECT Id FROM Account WHERE AnnualRevenue LIKE '1%'", "INVALID_FIELD", "LIKE"),
        (
            "SELECT Id FROM Account WHERE Id = '001abc'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "invalid ID",
        ),
        (
            "SELECT Id FROM Account WHERE Name < null",
            "MALFORMED_QUERY",
            "invalid operator < for null",
        ),
        ("SELECT Name, name FROM Account", "MALFORMED_QUERY", "duplicate field selected: Name"),
        (
            "SELECT Id FROM Account OFFSET 2001",
            "NUMBER_OUTSIDE_VALID_RANGE",
            "offset allowed is 2000",
        ),
    ],
)
def test_query_errors(soql: str, code: str, detail: str) -> None:
    caught = error(soql)
    assert (caught.code, detail in caught.message) == (code, True), caught.message


def test_error_caret_points_at_the_offending_value() -> None:
    caught = error("SELECT Id FROM Account WHERE CreatedDate = 'x'")
    assert "\n" + " " * 43 + "^\nERROR at Row:1:Column:44\n" in caught.message


# --- property: compiled SQL agrees with a direct evaluation ----------------------------------

THING = _table(
    "Thing",
    [*SYSTEM, ("Name", "string"), ("Amount", "double"), ("Flag", "boolean"), ("Day", "date")],
)
THING_CATALOG = DictCatalog(THING)
TODAY = NOW.date()
NAMES = ["alpha", "ALPHA", "beta", "Beta x", "a_b", "a\\b", "it's", ""]
AMOUNTS = [-1, 0, 1.5, 2]
DAYS = [TODAY - timedelta(days=2), TODAY - timedelta(days=1), TODAY, TODAY + timedelta(days=1)]
RANGE_OPS = ["=", "!=", "<", "<=", ">", ">="]
ONE_DAY = timedelta(days=1)
DAY_KEYWORDS = {
    "TODAY": (TODAY, TODAY + ONE_DAY),
    "YESTERDAY": (TODAY - ONE_DAY, TODAY),
    "LAST_N_DAYS:1": (TODAY - ONE_DAY, TODAY + ONE_DAY),
}


def _soql_value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if value in DAY_KEYWORDS:
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return value.isoformat() if isinstance(value, date) else repr(value)


def _leaf() -> st.SearchStrategy[tuple]:
    def compare(field: str, ops: list[str], values: list) -> st.SearchStrategy[tuple]:
        return st.tuples(st.just(field), st.sampled_from(ops), st.sampled_from(values))

    def member(field: str, values: list) -> st.SearchStrategy[tuple]:
        listed = st.lists(st.sampled_from([*values, None]), min_size=1, max_size=3)
        return st.tuples(st.just(field), st.sampled_from(["IN", "NOT IN"]), listed)

    name = st.one_of(
        compare("Name", RANGE_OPS, NAMES),
        compare("Name", ["LIKE"], ["a%", "%A", "_eta", "%", "a\\_b", "a\\\\%", "%\\'%"]),
        member("Name", NAMES),
    )
    amount = st.one_of(compare("Amount", RANGE_OPS, [-1, 0, 1, 1.5, 3]), member("Amount", [0, 2]))
    flag = compare("Flag", ["=", "!="], [True, False, None])
    day_dates = compare("Day", RANGE_OPS, DAYS)
    day_keywords = compare("Day", RANGE_OPS, list(DAY_KEYWORDS))
    day_members = member("Day", [*DAYS[:2], *DAY_KEYWORDS])
    nulls = st.tuples(
        st.sampled_from(["Name", "Amount", "Day"]), st.sampled_from(["=", "!="]), st.none()
    )
    return st.one_of(name, amount, flag, day_dates, day_keywords, day_members, nulls)


def _trees() -> st.SearchStrategy[tuple]:
    return st.recursive(
        _leaf().map(lambda leaf: ("leaf", leaf)),
        lambda children: st.one_of(
            st.tuples(st.just("not"), children),
            st.tuples(st.sampled_from(["and", "or"]), st.lists(children, min_size=2, max_size=3)),
        ),
        max_leaves=8,
    )


PRECEDENCE = {"or": 1, "and": 2, "not": 3, "leaf": 4}


def _render(tree: tuple, minimum: int, parens: st.DataObject) -> str:
    kind = tree[0]
    if kind == "leaf":
        field, op, value = tree[1]
        if op == "LIKE":
            rendered = f"'{value}'"  # patterns are written as SOQL source already
        elif "IN" in op:
            rendered = f"({', '.join(map(_soql_value, value))})"
        else:
            rendered = _soql_value(value)
        text = f"{field} {op} {rendered}"
    elif kind == "not":
        text = "NOT " + _render(tree[1], 3, parens)
    else:
        text = f" {kind.upper()} ".join(_render(c, PRECEDENCE[kind] + 1, parens) for c in tree[1])
    if PRECEDENCE[kind] < minimum or parens.draw(st.booleans()):
        return f"({text})"
    return text


def _day_range(value: object) -> tuple[date, date]:
    if isinstance(value, date):
        return value, value + ONE_DAY
    return DAY_KEYWORDS[str(value)]


def _like_regex(pattern: str) -> str:
    parts, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            parts.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        index += 1
    return "".join(parts)


def _leaf_holds(field: str, op: str, value: object, actual: object) -> bool:
    """SOQL's two-valued meaning of one comparison, evaluated directly."""
    if op in ("IN", "NOT IN"):
        return any(_leaf_holds(field, "=", v, actual) for v in value) == (op == "IN")
    if value is None:
        return (actual is None) == (op == "=")
    if op == "!=":
        return not _leaf_holds(field, "=", value, actual)
    if actual is None:
        return False
    if op == "LIKE":
        return re.fullmatch(_like_regex(value), actual, re.IGNORECASE | re.DOTALL) is not None
    if field == "Day":
        low, high = _day_range(value)
        day = date.fromisoformat(actual)
        return {"=": low <= day < high, "<": day < low, "<=": day < high, ">": day >= high}.get(
            op, day >= low
        )
    if field == "Flag":
        value = int(value)
    if isinstance(actual, str):
        actual, value = actual.lower(), value.lower()
    comparisons = {"=": actual == value, "<": actual < value, "<=": actual <= value}
    return comparisons.get(op, actual > value if op == ">" else actual >= value)


def _holds(tree: tuple, row: dict) -> bool:
    kind = tree[0]
    if kind == "not":
        return not _holds(tree[1], row)
    if kind in ("and", "or"):
        results = [_holds(child, row) for child in tree[1]]
        return all(results) if kind == "and" else any(results)
    field, op, value = tree[1]
    return _leaf_holds(field, op, value, row[field])


ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "Name": st.sampled_from([*NAMES, None]),
            "Amount": st.sampled_from([*AMOUNTS, None]),
            "Flag": st.sampled_from([0, 1]),
            "Day": st.sampled_from([*(d.isoformat() for d in DAYS), None]),
        }
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_trees(), rows=ROWS, parens=st.data())
def test_random_where_trees_match_direct_evaluation(
    tree: tuple, rows: list[dict], parens: st.DataObject
) -> None:
    where = _render(tree, 0, parens)
    records = [
        (make_id("a01", n), 0, r["Name"], r["Amount"], r["Flag"], r["Day"])
        for n, r in enumerate(rows)
    ]
    compiled = compile_query(
        f"SELECT Id FROM Thing WHERE {where}", THING_CATALOG, include_deleted=False, now=NOW
    )
    with closing(sqlite3.connect(":memory:")) as db:
        _create(db, THING, records)
        got = [row_id for (row_id,) in db.execute(compiled.sql, compiled.params)]
    expected = [record[0] for record, row in zip(records, rows, strict=True) if _holds(tree, row)]
    assert got == expected, where
