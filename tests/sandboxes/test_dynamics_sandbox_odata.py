"""The Dataverse sandbox's OData parser and SQL compiler, without a server."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime

import pytest

from sandboxes.dynamics.errors import DataverseError
from sandboxes.dynamics.odata import (
    Compare,
    Junction,
    Lit,
    Negation,
    Prop,
    compile_filter,
    evaluate,
    parse_filter,
    parse_orderby,
    parse_select,
)
from sandboxes.dynamics.schema import DataverseSchema
from sandboxes.dynamics.store import quote, sql_type

SCHEMA = DataverseSchema.default()
ACCOUNT = SCHEMA.entity("account")
GUID = "6f1d2c9e-3b7a-4c55-9e2d-7d1f0c3a9b10"


def test_precedence_not_binds_tighter_than_and_tighter_than_or() -> None:
    tree = parse_filter("not name eq 'a' and telephone1 eq 'b' or revenue gt 5")
    assert isinstance(tree, Junction) and tree.kind == "or"
    left = tree.items[0]
    assert isinstance(left, Junction) and left.kind == "and"
    assert isinstance(left.items[0], Negation)
    assert tree.items[1] == Compare("gt", Prop(("revenue",)), Lit("number", 5))


@pytest.mark.parametrize(
    ("text", "literal"),
    [
        ("'O''Brien'", Lit("string", "O'Brien")),
        (GUID.upper(), Lit("guid", GUID)),
        ("2024-11-05T10:00:00Z", Lit("datetime", datetime(2024, 11, 5, 10, tzinfo=UTC))),
        ("2024-11-05T12:00:00+02:00", Lit("datetime", datetime(2024, 11, 5, 10, tzinfo=UTC))),
        ("2024-11-05", Lit("date", date(2024, 11, 5))),
        ("-12.5", Lit("number", -12.5)),
        ("null", Lit("null", None)),
        ("true", Lit("true", True)),
        ("Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'", Lit("enum", "Picklist")),
    ],
)
def test_literals(text: str, literal: Lit) -> None:
    tree = parse_filter(f"x eq {text}")
    assert isinstance(tree, Compare) and tree.right == literal


def test_keywords_do_not_swallow_names_that_start_with_them() -> None:
    tree = parse_filter("notes eq 'a' or orders eq 'b' and nullable eq null")
    assert isinstance(tree, Junction)
    assert [i.left.path[0] for i in (tree.items[0], *tree.items[1].items)] == [
        "notes", "orders", "nullable"]  # fmt: skip


@pytest.mark.parametrize("text", ["name eq", "name == 'a'", "(name eq 'a'", "name EQ 'a'", ""])
def test_syntax_errors_are_400s(text: str) -> None:
    with pytest.raises(DataverseError) as caught:
        parse_filter(text)
    assert caught.value.status == 400 and caught.value.code == "0x80060888"


def test_orderby_and_select() -> None:
    assert [(i.name, i.descending) for i in parse_orderby("name desc, accountid")] == [
        ("name", True), ("accountid", False)]  # fmt: skip
    assert parse_select("name,_parentaccountid_value") == ["name", "_parentaccountid_value"]


@pytest.fixture
def db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    columns = ", ".join(f"{quote(a.name)} {sql_type(a)}" for a in ACCOUNT.attributes)
    conn.execute(f"CREATE TABLE account ({columns})")
    rows = [
        ("a", "Contoso Ltd", 1, 100.0, None, 1_700_000_000),
        ("b", "contoso 100%", 0, None, GUID, 1_700_000_100),
        ("c", "Fabrikam", 1, 50.0, None, 1_700_000_200),
        ("d", None, 0, 10.0, None, 1_700_000_300),
    ]
    conn.executemany(
        "INSERT INTO account (accountid, name, prm_ispartner, revenue, parentaccountid, "
        "modifiedon) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    return conn


def matching(db: sqlite3.Connection, text: str) -> list[str]:
    params: list = []
    where = compile_filter(parse_filter(text), ACCOUNT, params)
    return [r[0] for r in db.execute(f"SELECT accountid FROM account WHERE {where} ORDER BY 1",
                                     params)]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("name eq 'CONTOSO LTD'", ["a"]),
        ("name ne 'Fabrikam'", ["a", "b"]),
        ("name eq null", ["d"]),
        ("name ne null and revenue ge 50", ["a", "c"]),
        ("not (revenue gt 20)", ["b", "d"]),
        ("contains(name, '100%')", ["b"]),
        ("startswith(name, 'con') and prm_ispartner eq false", ["b"]),
        ("endswith(name, 'ltd') or revenue lt 20", ["a", "d"]),
        (f"_parentaccountid_value eq {GUID}", ["b"]),
        ("modifiedon ge 2023-11-14T22:15:01Z", ["c", "d"]),
        ("modifiedon gt 2023-11-14T22:13:20.500Z", ["b", "c", "d"]),
        ("20 lt revenue", ["a", "c"]),
    ],
)
def test_filters_compile_to_dataverse_semantics(db, text: str, ids: list[str]) -> None:
    assert matching(db, text) == ids


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope eq 1", "Could not find a property named 'nope'"),
        ("parentaccountid eq null", "Could not find a property named 'parentaccountid'"),
        (f"_parentaccountid_value eq '{GUID}'", "'Edm.Guid' and 'Edm.String'"),
        ("modifiedon ge 'yesterday'", "'Edm.DateTimeOffset' and 'Edm.String'"),
        ("contains(revenue, '1')", "function with name 'contains' is not valid"),
        ("primarycontactid/fullname eq 'x'", "Navigation path"),
    ],
)
def test_type_and_name_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(DataverseError, match=message):
        compile_filter(parse_filter(text), ACCOUNT, [])


def test_evaluate_runs_filters_over_metadata_dicts() -> None:
    rows = [
        {"LogicalName": "account", "ChangeTrackingEnabled": True, "AttributeType": "Picklist"},
        {"LogicalName": "contact", "ChangeTrackingEnabled": False, "AttributeType": "String"},
    ]
    condition = parse_filter("ChangeTrackingEnabled eq true or LogicalName eq 'CONTACT'")
    assert [r["LogicalName"] for r in rows if evaluate(condition, r, "EntityMetadata")] == [
        "account", "contact"]  # fmt: skip
    enum = parse_filter("AttributeType eq Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'")
    assert [evaluate(enum, r, "AttributeMetadata") for r in rows] == [True, False]
    with pytest.raises(DataverseError, match="Targets"):
        evaluate(parse_filter("Targets eq null"), rows[0], "AttributeMetadata")
