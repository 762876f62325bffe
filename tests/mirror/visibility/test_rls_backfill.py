"""The PostgreSQL ``_partners`` column after a first backfill and a rebuild: the same partners
the reference model gives, whether a record's grants are stored or read through its parent
(over one hop or two), and derived in work that grows with the data, not with its square; the
grants are measured for the planner in the deriving transaction without holding up other syncs
that measure their tables."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, func, select, text

from mirror.pull.sync import Puller
from mirror.store.database import Store
from mirror.store.tables import mirror_access
from mirror.types import FieldSpec, FieldType
from mirror.visibility.rules import path_index_fields
from tests.mirror.org import ORDER, RULES, SCHEMAS, Org, build_small_org

SLICED_SMALL = ("Opportunity", "Account", "Contact", "LineItem", "User")
SLICED = (*SLICED_SMALL, "Note")
# notes are seen through their contact, itself seen only through its account: two hops
NOTE = (FieldSpec("Id", FieldType.ID), FieldSpec("ContactId", FieldType.REFERENCE),
        FieldSpec("Text", FieldType.STRING), FieldSpec("Modstamp", FieldType.DATETIME))  # fmt: skip
NOTE_RULES = {**RULES, "slices": {**RULES["slices"], "Note": {"paths": ["ContactId -> Contact"]}}}


@pytest.fixture
def pg_url(db_url: str, backend: str) -> str:
    """The test database, PostgreSQL only."""
    if backend != "postgresql":
        pytest.skip("the _partners column is PostgreSQL only")
    return db_url


@pytest.fixture
def org(pg_url: str) -> Iterator[Org]:
    """An org with notes, nothing synced yet."""
    org = Org(pg_url, page_size=3, schemas={**SCHEMAS, "Note": NOTE}, rules=NOTE_RULES)
    yield org
    org.close()


def first_backfill(org: Org) -> None:
    """Every object backfilled into the empty store, its slices derived once at the end, as
    ``Mirror.sync`` does it."""
    access = org.access.page_hook(deferred=True)
    puller = Puller(org.store, org.crm, hooks=[access], indexes=path_index_fields(org.rules))
    for name in (*ORDER, "Note"):
        puller.sync_object(org.crm.describe(name))
    assert access.settle_pending()


def partner_columns(org: Org, objects: tuple[str, ...] = SLICED) -> dict[str, dict[str, list]]:
    """Every ``_partners`` value, per sliced table."""
    with org.store.engine.connect() as conn:
        return {
            obj: dict(conn.execute(text(f'SELECT "Id", _partners FROM fake__{obj.lower()}')).all())
            for obj in objects
        }


def expected_columns(org: Org, objects: tuple[str, ...] = SLICED) -> dict[str, dict[str, list]]:
    """The column the reference model gives: per record, the partners that see it, sorted."""
    live = org.crm.stores
    candidates = sorted(
        {*live["Account"], *(o["PartnerAccountId"] for o in live["Opportunity"].values())} - {None}
    )
    seen = {p: org.expected(p) for p in candidates}
    for p in candidates:
        seen[p]["Note"] = {
            i for i, n in live.get("Note", {}).items() if n["ContactId"] in seen[p]["Contact"]
        }
    return {
        obj: {i: [p for p in candidates if i in seen[p][obj]] for i in live[obj]} for obj in objects
    }


def put_notes_and_edge_cases(org: Org) -> None:
    """Beside the small org: an account nobody sees, a contact without an account, a deal
    deleted with its line item left behind, notes on each kind of contact."""
    org.put("Account", "C3", Name="Customer C3", IsPartner=False, Revenue=1.0)
    org.put("Contact", "KC3", Name="contact at C3", AccountId="C3")
    org.put("Contact", "K0", Name="nobody's contact", AccountId=None)
    org.put("Opportunity", "o4", Name="deal 4", AccountId="C2", PartnerAccountId="P1",
            OwnerId="UP1", Amount=4.0, Secret="z")  # fmt: skip
    org.put("LineItem", "l4", OpportunityId="o4", Quantity=4.0)
    org.remove("Opportunity", "o4")
    for note, contact in (("n1", "KP1"), ("n2", "KC1"), ("n3", "KC3"), ("n4", None),
                          ("n5", "KC2"), ("n6", "K0")):  # fmt: skip
        org.put("Note", note, ContactId=contact, Text=note)


def test_a_first_backfill_fills_the_column_as_a_rebuild_does(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as unsynced:
        unsynced.setattr(org, "sync", lambda: None)
        build_small_org(org)
    put_notes_and_edge_cases(org)
    first_backfill(org)
    backfilled = partner_columns(org)
    assert backfilled == expected_columns(org)
    assert backfilled["Note"]["n2"] == ["P1", "P2"]
    assert backfilled["LineItem"]["l1"] == ["P1"] and backfilled["Contact"]["KC3"] == []
    with org.store.transaction() as conn:
        for obj in SLICED:
            conn.exec_driver_sql(f"UPDATE fake__{obj.lower()} SET _partners = '{{stale}}'")
        org.access.rebuild(conn)
    assert partner_columns(org) == backfilled


def grant_entries_read(conn: Connection) -> int:
    """Entries this transaction has read so far from the access table and its indexes."""
    return int(
        conn.execute(
            text(
                "SELECT sum(pg_stat_get_xact_tuples_returned(oid)) "
                "+ sum(pg_stat_get_xact_tuples_fetched(oid)) FROM pg_class "
                "WHERE oid = to_regclass('mirror_access') OR oid IN "
                "(SELECT indexrelid FROM pg_index WHERE indrelid = to_regclass('mirror_access'))"
            )
        ).scalar_one()
    )


def put_bulk(org: Org, deals: int) -> None:
    """A deal per line item, a contact per deal, a customer per four deals, 40 partners."""
    for i in range(deals // 4):
        org.put("Account", f"BA{i}", Name=f"a{i}", IsPartner=False)
    for i in range(deals):
        org.put("Opportunity", f"BO{i}", Name=f"o{i}", AccountId=f"BA{i // 4}",
                PartnerAccountId=f"BP{i % 40}", Amount=1.0)  # fmt: skip
        org.put("LineItem", f"BL{i}", OpportunityId=f"BO{i}", Quantity=1.0)
        org.put("Contact", f"BK{i}", Name=f"k{i}", AccountId=f"BA{i // 4}")


def test_deriving_slices_reads_each_grant_a_bounded_number_of_times(pg_url: str) -> None:
    # a first backfill measures the access table while it is still empty (its grants are
    # derived at the end), so the planner knows nothing of the grants it then joins
    deals = 2000
    org = Org(pg_url, page_size=500)
    try:
        put_bulk(org, deals)
        access = org.access.page_hook(deferred=True)
        puller = Puller(org.store, org.crm, hooks=[access], indexes=path_index_fields(org.rules))
        for name in ORDER:
            puller.sync_object(org.crm.describe(name))
        with org.store.transaction() as conn:
            before = grant_entries_read(conn)
            assert org.access.derivation.settle_pending(conn, access.backfilled)
            settled = grant_entries_read(conn) - before
            grants = conn.execute(select(func.count()).select_from(mirror_access)).scalar_one()
        backfilled = partner_columns(org, SLICED_SMALL)
        with org.store.transaction() as conn:
            for obj in SLICED_SMALL:
                conn.exec_driver_sql(f"UPDATE fake__{obj.lower()} SET _partners = '{{s}}'")
            before = grant_entries_read(conn)
            rebuilt = org.access.rebuild(conn)
            read = grant_entries_read(conn) - before
    finally:
        org.close()
    # a per-row probe of the parent's grants reads about deals * deals entries
    records = 4 * deals
    assert settled < 40 * (grants + records)
    assert read < 40 * (grants + records)
    # a grant per deal, and one per deal to its customer
    assert grants == 2 * deals and rebuilt == grants
    assert backfilled["LineItem"]["BL41"] == ["BP1"]
    # contact 41 is on account 10, the customer of deals 40 to 43
    assert backfilled["Contact"]["BK41"] == ["BP0", "BP1", "BP2", "BP3"]
    assert backfilled == expected_columns(org, SLICED_SMALL)


def test_a_sync_measuring_its_tables_does_not_wait_for_a_derivation(pg_url: str) -> None:
    org = Org(pg_url)
    impatient = Store(pg_url.replace("options=", "options=-clock_timeout%3D1000%20"))
    try:
        build_small_org(org)
        with org.store.transaction() as deriving:
            # what a derivation holds until it commits, once it has measured its grants
            deriving.exec_driver_sql("ANALYZE mirror_access")
            held = deriving.exec_driver_sql(
                "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() "
                "AND relation = to_regclass('mirror_access')"
            ).scalars()
            assert "ShareUpdateExclusiveLock" in set(held)
            impatient.refresh_statistics("fake__opportunity")
    finally:
        impatient.close()
        org.close()
