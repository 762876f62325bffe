"""Partner slices on both stores: paths, moves, deletes, roles, field rules, feed, explain."""

from __future__ import annotations

import pytest

from mirror.errors import AccessDenied, ConfigError, QueryError
from mirror.portal.view import PartnerView, vendor_explanation
from mirror.store.tables import mirror_access
from mirror.visibility.rules import parse_path, parse_rules
from tests.mirror.org import RULES, Org, build_small_org


@pytest.fixture
def org(db_url: str):
    org = Org(db_url)
    build_small_org(org)
    yield org
    org.close()


ACCESS_COLUMNS = [c.name for c in mirror_access.columns]


def assert_consistent(org: Org) -> None:
    incremental = org.access_rows()
    with org.store.transaction() as conn:
        org.access.rebuild(conn)
    assert incremental == org.access_rows()
    for partner in ("P1", "P2"):
        assert org.seen(org.view(partner)) == org.expected(partner)


def test_each_partner_sees_exactly_its_slice(org: Org) -> None:
    assert org.seen(org.view("P1")) == {
        "Opportunity": {"o1"},
        "Account": {"P1", "C1"},
        "Contact": {"KP1", "KC1"},
        "LineItem": {"l1"},
        "User": {"UP1"},
    }
    assert org.seen(org.view("P2"))["Account"] == {"P2", "C1", "C2"}
    assert_consistent(org)


def test_reassignment_moves_the_deal_and_what_it_made_visible(org: Org) -> None:
    org.put("Opportunity", "o1", PartnerAccountId="P2")
    org.sync()
    p1 = org.seen(org.view("P1"))
    assert p1["Opportunity"] == set() and p1["Account"] == {"P1"}
    assert p1["LineItem"] == set() and p1["Contact"] == {"KP1"}
    assert org.seen(org.view("P2"))["LineItem"] == {"l1", "l3"}
    assert_consistent(org)


def test_records_seen_only_through_their_parent_follow_it_without_stored_grants(
    org: Org,
) -> None:
    # KC1 and the line items are seen only through their parent: nothing is stored for them
    assert {row[1] for row in org.access_rows()}.isdisjoint({"Contact", "LineItem"})
    org.put("Opportunity", "o1", PartnerAccountId="P2", OwnerId="UP2")
    org.sync()
    assert "KC1" not in org.seen(org.view("P1"))["Contact"]
    assert "KC1" in org.seen(org.view("P2", user_id="UP2", role="rep"))["Contact"]
    assert {row[1] for row in org.access_rows()}.isdisjoint({"Contact", "LineItem"})
    assert_consistent(org)


def test_a_stored_grant_of_a_record_seen_through_its_parent_is_ignored_and_rebuilt_away(
    org: Org,
) -> None:
    stray = ("fake", "Contact", "KC2", "P1", "", "AccountId -> Account", "Account", "C2")
    with org.store.transaction() as conn:
        conn.execute(mirror_access.insert().values(dict(zip(ACCESS_COLUMNS, stray, strict=True))))
    assert "KC2" not in org.seen(org.view("P1"))["Contact"]
    with pytest.raises(AccessDenied):
        org.view("P1").get("Contact", "KC2")
    with org.store.transaction() as conn:
        org.access.rebuild(conn)
    assert stray not in org.access_rows()
    assert_consistent(org)


def test_a_record_stays_visible_while_another_path_grants_it(org: Org) -> None:
    org.remove("Opportunity", "o3")
    org.sync()
    assert "C1" not in org.seen(org.view("P2"))["Account"]
    assert "C1" in org.seen(org.view("P1"))["Account"]
    org.put("Opportunity", "o1", AccountId="C2")
    org.sync()
    assert "C1" not in org.seen(org.view("P1"))["Account"]
    assert_consistent(org)


def test_outside_records_and_hidden_fields_are_refused(org: Org) -> None:
    view = org.view("P1")
    with pytest.raises(AccessDenied, match="not in your slice"):
        view.get("Opportunity", "o2")
    record = view.get("Opportunity", "o1")
    assert "Secret" not in record and record["Amount"] == 10.0
    assert "Revenue" not in view.get("Account", "C1")
    for misuse in (
        lambda: view.select("Opportunity", where={"Secret": "margin 40%"}),
        lambda: view.select("Opportunity", order_by="Secret"),
        lambda: view.get("Opportunity", "o1", fields=["Secret"]),
    ):
        with pytest.raises(AccessDenied) as caught:
            misuse()
        assert "40%" not in str(caught.value)
    with pytest.raises(AccessDenied, match="not shared"):
        view.select("Lead")
    with pytest.raises(AccessDenied, match="partner id is required"):
        org.view("")


def test_filters_ordering_paging_and_count(org: Org) -> None:
    view = org.view("P2")
    assert [r["Id"] for r in view.select("Opportunity", order_by="-Amount")] == ["o3", "o2"]
    assert view.select("Opportunity", where={"Amount": (">", 25)}, fields=["Id"]) == [{"Id": "o3"}]
    assert [r["Id"] for r in view.select("Account", limit=1, offset=1)] == ["C2"]
    assert view.count("Account") == 3
    assert view.count("Opportunity", where={"Name": ("like", "deal%")}) == 2
    assert {r["Id"] for r in view.select("Product")} == {"pr1"}


def test_a_rep_sees_only_what_its_own_records_lead_to(org: Org) -> None:
    rep = org.view("P2", user_id="UP2", role="rep")
    assert org.seen(rep) == org.expected("P2", owner="UP2")
    assert org.seen(rep)["Account"] == {"C2"}
    with pytest.raises(AccessDenied):
        rep.get("Opportunity", "o3")


def test_the_change_feed_reports_edits_and_records_leaving(org: Org) -> None:
    p1 = org.view("P1")
    start = p1.changes().cursor
    org.put("Opportunity", "o1", Amount=11.0, Secret="margin 45%")
    org.sync()
    batch = p1.changes(since=start)
    edit = next(c for c in batch.changes if c["op"] == "update")
    assert edit["record_id"] == "o1" and "Secret" not in edit["fields"]
    assert edit["fields"]["Amount"] == [10.0, 11.0]
    org.put("Opportunity", "o1", PartnerAccountId="P2")
    org.sync()
    left = {(c["object"], c["record_id"]) for c in p1.changes(since=batch.cursor).changes
            if c["op"] == "leave"}  # fmt: skip
    assert {("Opportunity", "o1"), ("Account", "C1"), ("LineItem", "l1")} <= left
    assert ("Contact", "KC1") in left  # seen only through C1, it leaves with it
    assert all(c["record_id"] != "o2" for c in p1.changes().changes)


def test_explain_says_which_path_and_why_not(org: Org) -> None:
    why = org.view("P1").explain("Contact", "KC1")
    assert why.visible
    text = "\n".join(why.reasons)
    assert "via Account C1" in text and "via Opportunity o1" in text
    assert "attributed to you (PartnerAccountId)" in text
    assert not org.view("P1").explain("Opportunity", "o2").visible
    org.remove("Opportunity", "o2")
    org.sync()
    assert "deleted" in vendor_explanation(org.view("P2"), "Opportunity", "o2").reasons[0]


def test_a_partner_cannot_tell_a_deleted_missing_or_unreached_record_apart(org: Org) -> None:
    org.remove("Opportunity", "o2")
    org.sync()
    view = org.view("P1")
    answers = {
        record_id: view.explain("Opportunity", record_id)
        for record_id in ("o2", "o3", "no-such-deal")  # deleted, another's, not mirrored
    }
    assert {a.visible for a in answers.values()} == {False}
    assert {a.reasons[0].replace(r, "?") for r, a in answers.items()} == {
        "Opportunity ? is not in your slice"
    }
    rep = org.view("P2", user_id="UP2", role="rep")
    assert rep.explain("Opportunity", "o3").reasons == ("Opportunity o3 is not in your slice",)
    details = {r: vendor_explanation(view, "Opportunity", r).reasons[0] for r in answers}
    assert "deleted" in details["o2"] and "not in the mirror" in details["no-such-deal"]
    assert "no path" in details["o3"]


def test_rules_are_parsed_and_cycles_refused() -> None:
    assert parse_path("Contact", "AccountId -> Account").text == "AccountId -> Account"
    assert parse_path("Account", "Opportunity.AccountId <-").kind == "child"
    with pytest.raises(ValueError):
        parse_path("Contact", "AccountId => Account")
    cyclic = {**RULES, "slices": {**RULES["slices"],
              "Opportunity": {"paths": ["AccountId -> Account"]}}}  # fmt: skip
    with pytest.raises(ConfigError, match="cycle"):
        parse_rules("fake", cyclic)


def test_views_are_safe_to_share_across_threads_while_the_sync_writes(org: Org) -> None:
    from concurrent.futures import ThreadPoolExecutor

    views = {p: org.view(p) for p in ("P1", "P2")}

    def read(n: int) -> set[str]:
        partner = "P1" if n % 2 else "P2"
        seen = {r["Id"] for r in views[partner].select("Opportunity", fields=["Id"])}
        assert all(r["PartnerAccountId"] == partner for r in views[partner].select("Opportunity"))
        return seen

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(read, n) for n in range(60)]
        for i in range(5):
            org.put("Opportunity", f"t{i}", Name="threaded", AccountId="C2",
                    PartnerAccountId="P1", OwnerId="V1", Amount=1.0, Secret="s")  # fmt: skip
            org.sync()
        results = [f.result() for f in futures]
    assert all(r <= {"o1", *(f"t{i}" for i in range(5))} or r <= {"o2", "o3"} for r in results)
    assert org.seen(org.view("P1"))["Opportunity"] == {"o1", *(f"t{i}" for i in range(5))}


def test_a_deleted_record_leaves_the_feed_as_a_delete(org: Org) -> None:
    view = org.view("P2")
    start = view.changes().cursor
    org.remove("Opportunity", "o2")
    org.sync()
    ops = {(c["object"], c["record_id"]): c["op"] for c in view.changes(since=start).changes}
    assert ops[("Opportunity", "o2")] == "delete"
    assert ops[("Account", "C2")] == "leave"


def test_edits_outside_the_slice_fields_leave_the_access_table_alone(org: Org) -> None:
    assert org.rules.grant_fields("Opportunity") == {"PartnerAccountId", "OwnerId", "AccountId"}
    assert org.rules.grant_fields("Account") == {"IsPartner"}
    before = org.access_rows()
    with org.store.engine.connect() as conn:
        conn.exec_driver_sql("DELETE FROM mirror_access WHERE record_id = 'l1'")
        conn.commit()
    org.put("Opportunity", "o1", Amount=99.0, Name="renamed")
    org.sync()
    # the grant removed behind the engine's back stays removed: o1 was not re-derived
    assert org.access_rows() == {row for row in before if row[2] != "l1"}
    org.put("Opportunity", "o1", OwnerId="UP2")
    org.sync()
    assert org.access_rows() != before
    assert_consistent(org)


def test_a_first_backfill_enters_slices_without_enter_events(db_url: str) -> None:
    org = Org(db_url)
    try:
        build_small_org(org)
        feed = org.view("P1").changes()
        assert [
            c for c in feed.changes if c["op"] == "enter" and c["object"] == "Opportunity"
        ] == []
        org.put("Opportunity", "o2", PartnerAccountId="P1")
        org.sync()
        entered = {
            (c["object"], c["record_id"])
            for c in org.view("P1").changes(since=feed.cursor).changes
            if c["op"] == "enter"
        }
        assert ("Opportunity", "o2") in entered
    finally:
        org.close()


def test_records_first_mirrored_by_the_same_sync_enter_slices_quietly(db_url: str) -> None:
    org = Org(db_url)
    try:
        build_small_org(org)  # one sync: accounts, contacts, then the deals pointing at them
        changes = org.view("P1").changes().changes
        assert not [c for c in changes if c["op"] == "enter"]
        # yet the end customer and its contact are in the slice
        assert org.view("P1").get("Account", "C1")["Id"] == "C1"
        assert org.view("P1").get("Contact", "KC1")["Id"] == "KC1"
        assert_consistent(org)
    finally:
        org.close()


def test_a_backfill_that_ends_logs_what_entered_for_records_already_mirrored(
    db_url: str,
) -> None:
    from mirror.pull.sync import Puller

    org = Org(db_url)
    try:
        build_small_org(org)
        # a later sync (its own maintainer) than the one that first mirrored the accounts
        puller = Puller(org.store, org.crm, hooks=[org.access.page_hook()])
        with org.store.transaction() as conn:
            conn.exec_driver_sql("DELETE FROM mirror_access WHERE record_id = 'C1'")
        cursor = org.view("P1").changes().cursor
        # the first backfill of an object (Opportunity again, from scratch) re-derives the
        # accounts its records point at: C1 enters P1's slice, o1 itself enters quietly
        puller.sync_object(org.crm.describe("Opportunity"), restart=True)
        changes = org.view("P1").changes(since=cursor).changes
        entered = {(c["object"], c["record_id"]) for c in changes if c["op"] == "enter"}
        assert ("Account", "C1") in entered and ("Account", "P1") not in entered
        assert not any(c["object"] == "Opportunity" for c in changes)
        assert_consistent(org)
    finally:
        org.close()


def test_the_default_page_read_off_the_access_index_equals_the_ordered_page(org: Org) -> None:
    view = org.view("P2")
    for name in ("Account", "Contact", "Opportunity"):
        total = view.count(name)
        for offset in range(total + 1):
            default = [r["Id"] for r in view.select(name, limit=1, offset=offset)]
            ordered = [r["Id"] for r in view.select(name, limit=1, offset=offset, order_by="Id")]
            assert default == ordered
        assert len(view.select(name, limit=50)) == total


def test_a_store_made_before_slice_sizes_were_kept_counts_them_when_opened(
    org: Org, db_url: str
) -> None:
    from mirror.store.database import Store

    expected = {p: org.view(p).count("Opportunity") for p in ("P1", "P2")}
    assert all(expected.values())
    with org.store.transaction() as conn:
        conn.exec_driver_sql("DROP TABLE mirror_slice_sizes")
    reopened = Store(db_url)
    try:
        counted = {p: PartnerView(reopened, org.rules, p).count("Opportunity") for p in expected}
    finally:
        reopened.close()
    assert counted == expected


def test_grants_given_by_children_are_found_off_their_partial_index(org: Org) -> None:
    from sqlalchemy import select

    from mirror.store.tables import given_by_children, mirror_access

    a = mirror_access.c
    given = select(a.record_id, a.partner_id).where(
        a.source == org.rules.source,
        a.object == "Account",
        a.path == "Opportunity.AccountId <-",
        a.via_object == "Opportunity",
        a.via_id.in_(["o1", "o2"]),
        given_by_children(a.path),
    )
    with org.store.engine.connect() as conn:
        found = set(conn.execute(given))
        if conn.dialect.name == "sqlite":
            sql = str(given.compile(conn, compile_kwargs={"literal_binds": True}))
            plan = " ".join(str(r) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
            assert "ix_mirror_access_given" in plan
    assert ("C1", "P1") in found


def test_an_index_an_earlier_version_kept_is_dropped_when_the_store_opens(
    org: Org, db_url: str
) -> None:
    from sqlalchemy import inspect

    from mirror.store.database import Store

    with org.store.transaction() as conn:
        conn.exec_driver_sql("CREATE INDEX ix_mirror_access_via ON mirror_access (via_id)")
    reopened = Store(db_url)
    try:
        with reopened.engine.connect() as conn:
            names = {i["name"] for i in inspect(conn).get_indexes("mirror_access")}
    finally:
        reopened.close()
    assert "ix_mirror_access_via" not in names
    assert "ix_mirror_access_given" in names


def _entered_and_left(view: PartnerView, cursor: str | None) -> dict[str, set[str]]:
    ops: dict[str, set[str]] = {"enter": set(), "leave": set()}
    for change in view.changes(since=cursor).changes:
        if change["op"] in ops:
            ops[change["op"]].add(change["record_id"])
    return ops


def test_a_contact_moved_to_another_account_by_a_sync_changes_slices(org: Org) -> None:
    p1, p2 = org.view("P1"), org.view("P2")
    cursors = {v.partner_id: v.changes().cursor for v in (p1, p2)}
    sizes = {v.partner_id: v.count("Contact") for v in (p1, p2)}
    org.put("Contact", "KP1", AccountId="C2")  # from partner P1's own account to P2's customer
    org.sync()
    assert "KP1" not in org.seen(p1)["Contact"] and "KP1" in org.seen(p2)["Contact"]
    assert "KP1" in _entered_and_left(p1, cursors["P1"])["leave"]
    assert "KP1" in _entered_and_left(p2, cursors["P2"])["enter"]
    assert p1.count("Contact") == sizes["P1"] - 1 and p2.count("Contact") == sizes["P2"] + 1
    assert_consistent(org)


def test_a_portal_write_moving_a_child_to_another_parent_changes_slices(org: Org) -> None:
    from mirror.visibility.upkeep import GrantUpkeep

    fields = {**RULES["fields"], "Contact": {"writable": ["AccountId"]}}
    rules = parse_rules("fake", {**RULES, "fields": fields})
    p2 = PartnerView(org.store, rules, "P2", upkeep=GrantUpkeep(org.store, rules))
    p1 = org.view("P1")
    cursor = p1.changes().cursor
    before = p1.count("Contact")
    p2.update("Contact", "KC1", {"AccountId": "C2"})  # P2 sees both C1 and C2; P1 only C1
    assert p2.get("Contact", "KC1")["AccountId"] == "C2"
    with pytest.raises(AccessDenied):
        p1.get("Contact", "KC1")
    assert "KC1" in _entered_and_left(p1, cursor)["leave"]
    assert p1.count("Contact") == before - 1
    with pytest.raises(AccessDenied):  # and P2 cannot hand it to an account it does not see
        p2.update("Contact", "KC1", {"AccountId": "P1"})
    assert p2.get("Contact", "KC1")["AccountId"] == "C2"
    incremental = org.access_rows()
    with org.store.transaction() as conn:
        org.access.rebuild(conn)
    assert org.access_rows() == incremental
    assert p1.count("Contact") == before - 1


def test_a_partners_children_are_read_off_the_reference_index_alone(org: Org) -> None:
    from sqlalchemy import inspect

    table = org.store.mirrored("fake", "Contact").table.name
    with org.store.engine.connect() as conn:
        columns = {i["name"]: i["column_names"] for i in inspect(conn).get_indexes(table)}
        assert columns[f"ix_{table}__accountid"] == ["AccountId", "_deleted", "Id"]
        if conn.dialect.name == "sqlite":
            query = org.view("P1").slice.grants("Contact")
            sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
            plan = " ".join(str(r) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
            assert f"COVERING INDEX ix_{table}__accountid" in plan


def test_a_reference_index_an_earlier_version_made_is_built_again(org: Org) -> None:
    from sqlalchemy import inspect

    table = org.store.mirrored("fake", "Contact").table.name
    with org.store.transaction() as conn:
        conn.exec_driver_sql(f"DROP INDEX ix_{table}__accountid")
        conn.exec_driver_sql(f'CREATE INDEX ix_{table}__accountid ON {table} ("AccountId")')
    org.put("Contact", "KC1", Name="renamed")
    org.sync()
    with org.store.engine.connect() as conn:
        columns = {i["name"]: i["column_names"] for i in inspect(conn).get_indexes(table)}
    assert columns[f"ix_{table}__accountid"] == ["AccountId", "_deleted", "Id"]
    assert org.seen(org.view("P1"))["Contact"] == org.expected("P1")["Contact"]


def test_paths_through_records_seen_through_their_parent(db_url: str) -> None:
    from mirror.types import FieldSpec, FieldType
    from tests.mirror.org import SCHEMAS

    # products are visible through the line items of the partner's deals, themselves seen
    # only through their opportunity (a child path over grants read through a parent)
    line_item = (*SCHEMAS["LineItem"], FieldSpec("ProductId", FieldType.REFERENCE))
    slices = {
        **RULES["slices"],
        "Product": {"paths": ["LineItem.ProductId <-"]},
    }
    org = Org(db_url, schemas={**SCHEMAS, "LineItem": line_item}, rules={**RULES, "slices": slices})
    try:
        build_small_org(org)
        org.put("Product", "pr3", Name="Gadget")
        org.put("LineItem", "l1", ProductId="pr1")
        org.put("LineItem", "l3", ProductId="pr3")
        org.sync()
        seen = {p: {r["Id"] for r in org.view(p).select("Product")} for p in ("P1", "P2")}
        assert seen == {"P1": {"pr1"}, "P2": {"pr3"}}
        org.put("Opportunity", "o1", PartnerAccountId="P2")
        org.sync()
        assert {r["Id"] for r in org.view("P1").select("Product")} == set()
        assert {r["Id"] for r in org.view("P2").select("Product")} == {"pr1", "pr3"}
        incremental = org.access_rows()
        with org.store.transaction() as conn:
            org.access.rebuild(conn)
        assert org.access_rows() == incremental
    finally:
        org.close()


def test_a_count_stops_at_its_bound_inside_the_slice(org: Org) -> None:
    view = org.view("P2")
    deals = {"Name": ("like", "deal%")}
    assert view.count("Opportunity", where=deals, at_most=1) == 1
    assert view.count("Opportunity", where=deals, at_most=5) == 2
    assert view.count("Account", at_most=2) == 2 and view.count("Account", at_most=9) == 3
    rep = org.view("P2", user_id="UP2", role="rep")
    assert rep.count("Account", at_most=1) == rep.count("Account") == 1
    with pytest.raises(QueryError):
        view.count("Account", at_most=0)


def test_a_query_narrowed_by_an_indexed_field_stays_inside_the_slice(org: Org) -> None:
    p1, p2 = org.view("P1"), org.view("P2")
    rep = org.view("P2", user_id="UP2", role="rep")

    def ids(view: PartnerView, name: str, **where: object) -> list[str]:
        found = [r["Id"] for r in view.select(name, where=where, fields=["Id"])]
        assert view.count(name, where=where) == len(found)
        return found

    # each record found through the index is checked against this slice's grants
    assert ids(p1, "LineItem", OpportunityId="o1") == ["l1"]
    assert ids(p1, "LineItem", OpportunityId="o3") == []
    assert ids(p2, "LineItem", OpportunityId="o3") == ["l3"]
    assert ids(p1, "Contact", AccountId="C2") == []
    assert ids(p1, "Contact", AccountId="C1") == ["KC1"]
    assert ids(p1, "Opportunity", Id=("in", ["o1", "o2", "o3"])) == ["o1"]
    assert ids(p1, "Account", Id=("in", ["P1", "P2", "C1", "C2"])) == ["C1", "P1"]
    assert ids(rep, "Opportunity", Id=("in", ["o1", "o2", "o3"])) == ["o2"]
    assert ids(rep, "LineItem", OpportunityId="o3") == []
    assert ids(p2, "Opportunity", PartnerAccountId="P2") == ["o2", "o3"]


def test_a_view_names_the_fields_it_reads(org: Org) -> None:
    view = org.view("P1")
    fields = view.fields("Opportunity")
    assert "Amount" in fields and "Secret" not in fields
    assert set(view.select("Opportunity", limit=1)[0]) == set(fields)
    with pytest.raises(AccessDenied):
        view.fields("Lead")


def test_narrowed_queries_and_a_partners_writes_are_read_off_indexes(org: Org) -> None:
    from sqlalchemy import event

    from mirror.portal.write_log import writes_query

    view = org.view("P1")
    with org.store.engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            return
        writes = writes_query(view.slice, None, None, 20)
        sql = str(writes.compile(conn, compile_kwargs={"literal_binds": True}))
        plan = " ".join(str(r) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        assert "ix_mirror_outbox_partner" in plan
    ran: list[tuple[str, object]] = []

    def record(_c: object, _k: object, sql: str, params: object, *_rest: object) -> None:
        ran.append((sql, params))

    event.listen(org.store.engine, "before_cursor_execute", record)
    try:
        assert [r["Id"] for r in view.select("LineItem", where={"OpportunityId": "o1"})] == ["l1"]
    finally:
        event.remove(org.store.engine, "before_cursor_execute", record)
    with org.store.engine.connect() as conn:
        sql, params = ran[-1]
        plan = " ".join(
            str(r)
            for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)  # type: ignore[arg-type]
        )
    # the deal's items found by their index, each one's grant probed: the slice is not read
    assert "MATERIALIZE" not in plan and "record_id=?" in plan
