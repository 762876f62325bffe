"""Planning requests by their length (``adapters._kit.url_budget``): every id is read with every
field, no request is over the limit, and rows read in parts are joined only when whole."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters._kit.url_budget import (
    FetchShape,
    TooLong,
    fetch_joined,
    pack,
    prepared_url,
    url_bytes,
)
from mirror.errors import TransientError

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=40)


def shape(limit: int, max_ids: int | None = None) -> FetchShape:
    return FetchShape(
        limit=limit,
        fixed=30,
        field_cost=lambda name: len(name) + 2,
        id_cost=lambda record_id: len(record_id) + 4,
        max_ids=max_ids,
    )


def statement_length(plan_shape: FetchShape, ids: list[str], fields: list[str]) -> int:
    return (
        plan_shape.fixed
        + sum(plan_shape.field_cost(f) for f in fields)
        + sum(plan_shape.id_cost(i) for i in ids)
    )


@settings(max_examples=150, deadline=None)
@given(
    ids=st.lists(st.text(alphabet="0123456789abcdef", min_size=18, max_size=18), max_size=60,
                 unique=True),
    fields=st.lists(names, min_size=1, max_size=80, unique=True),
    limit=st.integers(min_value=200, max_value=3_000),
    max_ids=st.none() | st.integers(min_value=1, max_value=25),
)  # fmt: skip
def test_a_plan_covers_every_id_and_field_within_the_limit(ids, fields, limit, max_ids) -> None:
    plan_shape = shape(limit, max_ids)
    pinned = [fields[0]]
    try:
        plan = plan_shape.plan(ids, fields, pinned)
    except TooLong:
        one = statement_length(plan_shape, ids[:1], pinned) + max(
            plan_shape.field_cost(f) for f in fields
        )
        assert one > limit
        return
    covered = {(i, f) for chunk, group in plan for i in chunk for f in group}
    assert covered == {(i, f) for i in ids for f in fields}
    for chunk, group in plan:
        assert statement_length(plan_shape, chunk, group) <= limit
        assert group[: len(pinned)] == pinned
        assert max_ids is None or len(chunk) <= max_ids
    if ids and statement_length(plan_shape, ids, fields) <= limit and max_ids is None:
        assert len(plan) == 1, "what fits in one request is sent as one"


def test_pack_refuses_an_item_larger_than_the_room() -> None:
    assert pack(["aa", "bb", "c"], len, 4) == [["aa", "bb"], ["c"]]
    with pytest.raises(TooLong):
        pack(["aaaaa"], len, 4)


def test_urls_are_measured_as_requests_sends_them() -> None:
    soql = "SELECT Id, Name FROM Account WHERE Name = 'é'"
    url = prepared_url("https://x.example/q/", {"q": soql})
    assert url.endswith("q=SELECT+Id%2C+Name+FROM+Account+WHERE+Name+%3D+%27%C3%A9%27")
    assert url_bytes(url) == len(url)
    repeated = prepared_url("https://x.example/o", [("properties", "a"), ("properties", "b")])
    assert repeated.endswith("?properties=a&properties=b")


def rows_from(table: dict[str, dict[str, Any]], log: list[tuple[list[str], list[str]]]) -> Any:
    def run(chunk: list[str], fields: list[str]) -> list[dict[str, Any]]:
        log.append((chunk, fields))
        return [{f: table[i][f] for f in fields} for i in chunk if i in table]

    return run


TABLE = {
    f"id{n}": {"key": f"id{n}", "v": 1, **{f"field_{c:02d}": f"{n}-{c}" for c in range(12)}}
    for n in range(6)
}
FIELDS = ["key", "v", *(f"field_{c:02d}" for c in range(12))]


def test_rows_read_in_field_parts_are_joined_whole() -> None:
    log: list[tuple[list[str], list[str]]] = []
    rows = fetch_joined(shape(120), list(TABLE), FIELDS, key="key", pinned=["key", "v"],
                        version="v", run=rows_from(TABLE, log))  # fmt: skip
    assert rows == list(TABLE.values())
    assert len({tuple(fields) for _, fields in log}) > 1, "the fields were split"


def test_a_row_gone_from_one_part_is_left_out_and_a_torn_row_is_read_again() -> None:
    table = {i: dict(row) for i, row in TABLE.items()}
    log: list[tuple[list[str], list[str]]] = []
    run = rows_from(table, log)

    def changing(chunk: list[str], fields: list[str]) -> list[dict[str, Any]]:
        answer = run(chunk, fields)
        if len(log) == 1:
            del table["id1"]  # deleted after the first part was read
            table["id2"] = {**table["id2"], "v": 2, "field_11": "new"}  # changed in between
        return answer

    rows = fetch_joined(shape(120), list(TABLE), FIELDS, key="key", pinned=["key", "v"],
                        version="v", run=changing)  # fmt: skip
    by_id = {row["key"]: row for row in rows}
    assert "id1" not in by_id
    assert by_id["id2"] == table["id2"], "read again whole at its new version"
    assert [row["key"] for row in rows] == [i for i in TABLE if i != "id1"]


def test_a_row_that_keeps_changing_between_parts_is_a_transient_error() -> None:
    table = {i: dict(row) for i, row in TABLE.items()}
    run = rows_from(table, [])

    def always_changing(chunk: list[str], fields: list[str]) -> list[dict[str, Any]]:
        table["id0"]["v"] += 1
        return run(chunk, fields)

    with pytest.raises(TransientError):
        fetch_joined(shape(120), ["id0"], FIELDS, key="key", pinned=["key", "v"], version="v",
                     run=always_changing)  # fmt: skip
