"""The pull path on both stores: pages, checkpoints, deletes, rejects, drift, the sweep."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from mirror.pull.sync import Puller
from mirror.store.database import Store
from mirror.store.tables import mirror_changes, mirror_idmap, mirror_rejects
from mirror.types import FieldSpec, FieldType
from tests.mirror.fakes import FakeCrm, at


@pytest.fixture
def store(db_url: str):
    store = Store(db_url)
    yield store
    store.close()


def rows(store: Store, crm: FakeCrm) -> dict[str, dict]:
    table = store.mirrored("fake", "Deal").table
    with store.engine.connect() as conn:
        return {r.Id: r._asdict() for r in conn.execute(select(table))}


def sync(store: Store, crm: FakeCrm, **kw):
    return Puller(store, crm, **kw).sync_object(crm.describe("Deal"))


def test_backfill_then_incremental_sees_every_change(store: Store) -> None:
    crm = FakeCrm(page_size=2)
    for i in range(5):
        crm.put(f"d{i}", 10 + i, Name=f"Deal {i}", Amount=float(i))
    first = sync(store, crm)
    assert (first.kind, first.totals.inserted, first.pages) == ("backfill", 5, 3)
    crm.put("d1", 100, Amount=99.5)
    crm.put("d9", 101, Name="New")
    second = sync(store, crm)
    assert second.kind == "incremental"
    assert (second.totals.inserted, second.totals.updated) == (1, 1)
    mirrored = rows(store, crm)
    assert mirrored["d1"]["Amount"] == 99.5
    assert mirrored["d1"]["_modstamp"] == at(100)
    with store.engine.connect() as conn:
        change = conn.execute(
            select(mirror_changes).where(mirror_changes.c.record_id == "d1")
        ).one()
    assert change.op == "update"
    assert change.fields["Amount"] == [1.0, 99.5]


def test_unchanged_records_are_recognised_and_not_rewritten(store: Store) -> None:
    crm = FakeCrm(page_size=10)
    crm.put("a", 1, Name="A")
    sync(store, crm)
    synced_at = rows(store, crm)["a"]["_synced_at"]
    store.reset_checkpoint("fake", "Deal")
    again = sync(store, crm)
    assert (again.totals.unchanged, again.totals.updated) == (1, 0)
    assert rows(store, crm)["a"]["_synced_at"] == synced_at


def test_equal_cursor_values_across_pages_are_never_lost(store: Store) -> None:
    crm = FakeCrm(page_size=2)
    for i in range(7):
        crm.put(f"s{i}", 50, Name=str(i))
    pages = list(crm.read(crm.describe("Deal"), None))
    checkpoint = pages[1].checkpoint
    assert checkpoint.cursor == at(50).isoformat() and len(checkpoint.ids_at_cursor) == 4
    resumed = [r["Id"] for p in crm.read(crm.describe("Deal"), checkpoint) for r in p.records]
    assert sorted(resumed) == ["s4", "s5", "s6"]
    sync(store, crm)
    assert len(rows(store, crm)) == 7


def test_tombstones_merges_and_undeletes(store: Store) -> None:
    crm = FakeCrm()
    crm.put("a", 1, Name="A")
    crm.put("b", 2, Name="B")
    sync(store, crm)
    crm.remove("a", 3, merged_into="b")
    result = sync(store, crm)
    assert result.totals.deleted == 1
    assert rows(store, crm)["a"]["_deleted"] is True
    with store.engine.connect() as conn:
        merge = conn.execute(select(mirror_idmap)).one()
    assert (merge.old_id, merge.new_id, merge.kind) == ("a", "b", "merge")
    crm.put("a", 4, Name="A")
    sync(store, crm)
    assert rows(store, crm)["a"]["_deleted"] is False
    with store.engine.connect() as conn:
        ops = [
            r.op for r in conn.execute(select(mirror_changes.c.op).order_by(mirror_changes.c.seq))
        ]
    assert ops == ["delete", "undelete"]


def test_malformed_records_are_set_aside_and_the_sync_goes_on(store: Store) -> None:
    crm = FakeCrm()
    crm.put("good", 1, Name="ok", Amount=1.0)
    crm.put("bad", 2, Name="x", Amount="twelve")
    crm.put("flagged", 3, Name="y")
    crm.bad["flagged"] = "field CloseDate: 'nope' is not a date"
    result = sync(store, crm)
    assert (result.totals.inserted, result.totals.rejected) == (1, 2)
    with store.engine.connect() as conn:
        reasons = dict(
            conn.execute(select(mirror_rejects.c.record_id, mirror_rejects.c.reason)).all()
        )
    assert "Amount" in reasons["bad"] and "twelve" in reasons["bad"]
    assert "CloseDate" in reasons["flagged"]


def test_schema_drift_adds_columns_and_keeps_removed_and_retyped_ones(store: Store) -> None:
    crm = FakeCrm()
    crm.put("a", 1, Name="A", Amount=3.0)
    sync(store, crm)
    crm.fields = (
        *(f for f in crm.fields if f.name != "Amount"),
        FieldSpec("Region__c", FieldType.STRING),
    )
    crm.fields = tuple(
        dataclasses.replace(f, type=FieldType.INTEGER) if f.name == "Name" else f
        for f in crm.fields
    )
    crm.put("b", 2, Name="7", Region__c="EMEA")
    result = sync(store, crm)
    assert result.totals.inserted == 1 and result.totals.rejected == 0
    mirrored = rows(store, crm)
    assert mirrored["b"]["Region__c"] == "EMEA"
    assert mirrored["b"]["Name"] == "7"
    assert mirrored["a"]["Amount"] == 3.0
    info = store.object_info("fake", "Deal")
    assert [f["name"] for f in info["removed_fields"]] == ["Amount"]
    assert info["type_changes"] == {"Name": ["string", "integer"]}


def test_sweep_marks_records_the_crm_no_longer_has(store: Store) -> None:
    crm = FakeCrm()
    for i in range(5):
        crm.put(f"r{i}", i, Name=str(i))
    sync(store, crm)
    del crm.records["r1"], crm.records["r3"]
    crm.put("r4", 10, Name="changed")
    crm.sweep_next = True
    result = sync(store, crm)
    assert result.swept == 2
    mirrored = rows(store, crm)
    assert [i for i, r in sorted(mirrored.items()) if r["_deleted"]] == ["r1", "r3"]


def test_a_failing_read_keeps_the_pages_already_applied(store: Store) -> None:
    crm = FakeCrm(page_size=2)
    for i in range(6):
        crm.put(f"f{i}", i, Name=str(i))
    original = crm.read

    def failing(spec, since):
        for n, page in enumerate(original(spec, since)):
            if n == 2:
                raise ConnectionError("network down")
            yield page

    crm.read = failing  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        sync(store, crm, prefetch_pages=2)
    assert len(rows(store, crm)) == 4
    assert store.recent_runs(1)[0]["status"] == "failed"
    crm.read = original  # type: ignore[method-assign]
    resumed = sync(store, crm)
    assert resumed.kind == "backfill" and resumed.totals.inserted == 2
    assert len(rows(store, crm)) == 6
