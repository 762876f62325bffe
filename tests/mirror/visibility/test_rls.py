"""PostgreSQL row-level security and column grants, seen from a real non-owner portal role
without BYPASSRLS that queries the mirror with plain SQL."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, create_engine, insert, make_url, text
from sqlalchemy.exc import ProgrammingError

from mirror.errors import AccessDenied, ConfigError
from mirror.pull.sync import Puller
from mirror.store.database import Store, utcnow
from mirror.store.tables import mirror_access
from mirror.types import FieldSpec, FieldType
from mirror.visibility.partner_columns import partner_index_name, track_partner_changes
from mirror.visibility.postgres_rls import (
    engine_tables,
    install_partner_security,
    partner_session,
    set_partner,
)
from mirror.visibility.rules import parse_rules
from tests.conftest import PG_URL, fresh_database
from tests.mirror.org import RULES, Org, build_small_org

SLICED = ("Opportunity", "Account", "Contact", "LineItem", "User")
PARTNERS = ("P1", "P2")


@contextmanager
def portal_role(**attributes: str) -> Iterator[str]:
    """A fresh LOGIN role (cluster-wide), dropped with every privilege it was given."""
    role = f"prm_portal_{uuid.uuid4().hex[:10]}"
    admin = create_engine(str(PG_URL))
    extra = " ".join(attributes.values())
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN {extra}")
    try:
        yield role
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


def engine_as(db_url: str, role: str) -> Engine:
    """An engine on the same database and schema, logged in as ``role`` (trust auth)."""
    return create_engine(make_url(db_url).set(username=role))


@pytest.fixture
def pg_url(db_url: str, backend: str) -> str:
    """The test database, PostgreSQL only."""
    if backend != "postgresql":
        pytest.skip("row-level security is PostgreSQL only")
    return db_url


@pytest.fixture
def role(pg_url: str) -> Iterator[str]:
    """A portal role: LOGIN, not superuser, no BYPASSRLS, owns nothing."""
    with portal_role() as name:
        yield name


@pytest.fixture
def org(pg_url: str, role: str) -> Iterator[Org]:
    """The small org, synced, with partner security installed for ``role``."""
    org = Org(pg_url)
    build_small_org(org)
    install_partner_security(org.store, org.rules, role)
    yield org
    org.close()


@pytest.fixture
def portal(pg_url: str, role: str, org: Org) -> Iterator[Engine]:
    """The portal's own connection pool, as the portal role."""
    engine = engine_as(pg_url, role)
    yield engine
    engine.dispose()


def ids(portal: Engine, partner: str, obj: str) -> set[str]:
    """What plain SQL returns for ``partner`` on ``obj``'s table."""
    with partner_session(portal, partner) as conn:
        return set(conn.execute(text(f'SELECT "Id" FROM fake__{obj.lower()}')).scalars())


def rls_seen(portal: Engine, partner: str) -> dict[str, set[str]]:
    """Per sliced object, the ids plain SQL returns for ``partner``."""
    return {obj: ids(portal, partner, obj) for obj in SLICED}


def denied(conn: Connection, sql: str) -> bool:
    """Whether ``sql`` fails with a privilege error (the transaction is rolled back)."""
    try:
        with conn.begin():
            conn.execute(text(sql))
    except ProgrammingError as exc:
        return "permission denied" in str(exc.orig)
    return False


def test_each_partner_sees_exactly_its_slice_through_plain_sql(org: Org, portal: Engine) -> None:
    assert rls_seen(portal, "P1") == org.expected("P1")
    assert rls_seen(portal, "P1")["Account"] == {"P1", "C1"}
    assert rls_seen(portal, "P2") == org.expected("P2")
    assert rls_seen(portal, "C1") == {obj: set() for obj in SLICED}
    assert ids(portal, "P1", "Product") == {"pr1"}


def test_without_a_partner_setting_no_row_is_visible(org: Org, portal: Engine) -> None:
    tables = [*SLICED, "Product"]
    with portal.connect() as conn:
        for obj in tables:
            assert conn.execute(text(f'SELECT "Id" FROM fake__{obj.lower()}')).all() == []
        conn.execute(text("SELECT set_config('prm.partner_id', '', false)"))
        for obj in tables:
            assert conn.execute(text(f'SELECT "Id" FROM fake__{obj.lower()}')).all() == []
    with pytest.raises(AccessDenied):
        ids(portal, "", "Opportunity")


def test_the_partner_setting_ends_with_its_transaction(org: Org, portal: Engine) -> None:
    with portal.connect() as conn:
        with partner_session(conn, "P1"):
            assert conn.execute(text('SELECT "Id" FROM fake__opportunity')).scalars().all() == [
                "o1"
            ]
        assert conn.execute(text('SELECT "Id" FROM fake__opportunity')).all() == []
        with pytest.raises(ValueError, match="inside a transaction"), partner_session(conn, "P2"):
            pass
        conn.rollback()
        with conn.begin():
            set_partner(conn, "P2")
            assert set(conn.execute(text('SELECT "Id" FROM fake__opportunity')).scalars()) == {
                "o2",
                "o3",
            }


def test_hidden_and_system_columns_are_refused(org: Org, portal: Engine) -> None:
    with portal.connect() as conn:
        set_partner(conn, "P1")
        row = conn.execute(text('SELECT "Id", "Amount", "Name", _modstamp FROM fake__opportunity'))
        assert row.one()[:2] == ("o1", 10.0)
        conn.rollback()
        for sql in (
            'SELECT "Secret" FROM fake__opportunity',
            "SELECT * FROM fake__opportunity",
            """SELECT "Id" FROM fake__opportunity WHERE "Secret" LIKE 'margin%'""",
            'SELECT "Revenue" FROM fake__account',
            "SELECT _partners FROM fake__opportunity",
            "SELECT _hash FROM fake__contact",
            "SELECT _deleted FROM fake__product",
        ):
            assert denied(conn, sql), sql


def test_engine_tables_and_writes_are_refused(org: Org, portal: Engine) -> None:
    with portal.connect() as conn:
        for table in engine_tables():
            assert denied(conn, f"SELECT count(*) FROM {table}"), table
        assert denied(conn, """UPDATE fake__opportunity SET "Amount" = 0""")
        assert denied(conn, """DELETE FROM fake__opportunity""")


def test_objects_without_a_rule_are_closed(role: str, org: Org, portal: Engine) -> None:
    lead = (
        FieldSpec("Id", FieldType.ID),
        FieldSpec("Name", FieldType.STRING),
        org.crm.schemas["Product"][-1],
    )
    org.crm.schemas["Lead"] = lead
    org.crm.stores["Lead"], org.crm.tombs["Lead"] = {}, {}
    org.put("Lead", "le1", Name="a lead")
    Puller(org.store, org.crm, hooks=[org.pages]).sync_object(org.crm.describe("Lead"))
    report = install_partner_security(org.store, org.rules, role)
    assert report.denied == ("fake__lead",)
    assert "fake__lead" not in report.columns
    with portal.connect() as conn:
        assert denied(conn, 'SELECT "Id" FROM fake__lead')
    with org.store.engine.connect() as conn:
        secured = conn.execute(
            text("SELECT relrowsecurity FROM pg_class WHERE oid = 'fake__lead'::regclass")
        )
        assert secured.scalar_one() is True


def test_install_is_idempotent_and_follows_rule_changes(
    org: Org, role: str, portal: Engine
) -> None:
    again = install_partner_security(org.store, org.rules, role)
    assert set(again.sliced) == {f"fake__{o.lower()}" for o in SLICED}
    assert again.public == ("fake__product",)
    assert "Secret" not in again.columns["fake__opportunity"]
    assert "_modstamp" in again.columns["fake__opportunity"]
    assert rls_seen(portal, "P1") == org.expected("P1")
    fields = {**RULES["fields"], "Opportunity": {"hidden": ["Secret", "Amount"]}}
    slices = {**RULES["slices"], "Lead": {"paths": ["PartnerId"]}}
    stricter = parse_rules("fake", {**RULES, "fields": fields, "slices": slices})
    report = install_partner_security(org.store, stricter, role)
    assert report.unmirrored == ("Lead",)
    with portal.connect() as conn:
        assert denied(conn, 'SELECT "Amount" FROM fake__opportunity')
        assert denied(conn, 'SELECT "Secret" FROM fake__opportunity')
        assert not denied(conn, 'SELECT "Name" FROM fake__opportunity')
    assert ids(portal, "P1", "Opportunity") == {"o1"}


def test_install_adds_and_fills_the_column_on_a_mirror_synced_without_it(
    org: Org, role: str, portal: Engine
) -> None:
    with org.store.transaction() as conn:
        for obj in SLICED:
            conn.exec_driver_sql(f"ALTER TABLE fake__{obj.lower()} DROP COLUMN _partners CASCADE")
    install_partner_security(org.store, org.rules, role)
    for partner in PARTNERS:
        assert rls_seen(portal, partner) == org.expected(partner)


def test_unsafe_roles_and_stores_are_refused(org: Org, tmp_path) -> None:
    with pytest.raises(ConfigError, match="CREATE ROLE"):
        install_partner_security(org.store, org.rules, "prm_no_such_role")
    with pytest.raises(ConfigError, match="superuser"):
        install_partner_security(org.store, org.rules, "postgres")
    with (
        portal_role(bypass="BYPASSRLS") as bypassing,
        pytest.raises(ConfigError, match="BYPASSRLS"),
    ):
        install_partner_security(org.store, org.rules, bypassing)
    for membership, problem in (("postgres", "owner of"), ("pg_read_all_data", "ignores grants")):
        with portal_role() as member:
            with org.store.transaction() as conn:
                conn.exec_driver_sql(f"GRANT {membership} TO {member}")
            with pytest.raises(ConfigError, match=problem):
                install_partner_security(org.store, org.rules, member)
    sqlite = Store(f"sqlite:///{tmp_path}/mirror.db")
    with pytest.raises(ConfigError, match="PostgreSQL"):
        install_partner_security(sqlite, org.rules, "portal")
    sqlite.close()


@pytest.mark.parametrize(
    ("grant", "leak"),
    [
        ("GRANT SELECT ON mirror_changes TO PUBLIC", "mirror_changes"),
        ('GRANT SELECT ("Secret") ON fake__opportunity TO PUBLIC', "fake__opportunity.Secret"),
    ],
)
def test_install_fails_closed_when_public_reopens_what_it_closes(
    org: Org, role: str, grant: str, leak: str
) -> None:
    with org.store.transaction() as conn:
        conn.exec_driver_sql(grant)
    with pytest.raises(ConfigError, match=leak):
        install_partner_security(org.store, org.rules, role)


def test_running_the_install_again_does_not_wait_for_portal_readers(
    pg_url: str, org: Org, role: str, portal: Engine
) -> None:
    impatient = Store(pg_url.replace("options=", "options=-clock_timeout%3D1000%20"))
    try:
        with partner_session(portal, "P1") as reading:
            for obj in (*SLICED, "Product"):
                reading.execute(text(f'SELECT "Id" FROM fake__{obj.lower()}')).all()
            report = install_partner_security(impatient, org.rules, role)
        assert "fake__opportunity" in report.sliced
    finally:
        impatient.close()


def partner_columns(org: Org) -> dict[str, dict[str, list[str]]]:
    """Every ``_partners`` value, per sliced table, read as the owner."""
    found: dict[str, dict[str, list[str]]] = {}
    with org.store.engine.connect() as conn:
        for obj in SLICED:
            rows = conn.execute(text(f'SELECT "Id", _partners FROM fake__{obj.lower()}'))
            found[obj] = {record_id: partners for record_id, partners in rows}
    return found


def test_rls_follows_a_reassignment_incrementally_and_equals_a_rebuild(
    org: Org, portal: Engine
) -> None:
    org.put("Opportunity", "o1", PartnerAccountId="P2")
    org.put("Contact", "KC2", AccountId="C1")
    org.sync()
    assert rls_seen(portal, "P1")["Opportunity"] == set()
    assert rls_seen(portal, "P2")["LineItem"] == {"l1", "l3"}
    for partner in PARTNERS:
        assert rls_seen(portal, partner) == org.expected(partner)
    incremental = partner_columns(org)
    assert incremental["Account"]["C1"] == ["P2"]
    with org.store.transaction() as conn:
        for obj in SLICED:
            conn.exec_driver_sql(f"UPDATE fake__{obj.lower()} SET _partners = '{{stale}}'")
        org.access.rebuild(conn)
    assert partner_columns(org) == incremental
    org.remove("Opportunity", "o3")
    org.sync()
    assert rls_seen(portal, "P2") == org.expected("P2")


def test_a_concurrent_page_grant_is_counted_not_overwritten(org: Org) -> None:
    opportunity = org.store.mirrored("fake", "Opportunity")
    grant = dict(source="fake", object="Opportunity", record_id="o1", partner_id="P3",
                 owner_id="", path="PartnerAccountId", via_object="", via_id="")  # fmt: skip
    backend: queue.Queue[int] = queue.Queue()
    failures: list[BaseException] = []

    def track() -> None:
        try:
            with org.store.transaction() as conn:
                backend.put(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
                track_partner_changes(conn, org.store, org.rules, opportunity, ["o1"])
        except BaseException as exc:
            failures.append(exc)

    with org.store.engine.connect() as other, org.store.engine.connect() as watch:
        other.execute(insert(mirror_access), grant)
        other.exec_driver_sql("""UPDATE fake__opportunity SET "Amount" = 99 WHERE "Id" = 'o1'""")
        tracker = threading.Thread(target=track)
        tracker.start()
        pid = backend.get(timeout=10)
        for _ in range(500):
            waiting = watch.exec_driver_sql(
                f"SELECT wait_event_type FROM pg_stat_activity WHERE pid = {pid}"
            ).scalar()
            watch.rollback()
            if waiting == "Lock":
                break
            time.sleep(0.01)
        other.commit()
        tracker.join(timeout=10)
    assert failures == []
    assert partner_columns(org)["Opportunity"]["o1"] == ["P1", "P3"]


def test_a_partner_query_uses_the_gin_index(org: Org, portal: Engine) -> None:
    opportunity = org.store.mirrored("fake", "Opportunity").table
    now = utcnow()
    rows = [
        {"Id": f"bulk{i:05d}", "Name": f"bulk {i}", "PartnerAccountId": f"BP{i % 200:03d}",
         "Amount": float(i), "_synced_at": now, "_deleted": False, "_pending": False}
        for i in range(20_000)
    ]  # fmt: skip
    with org.store.transaction() as conn:
        conn.execute(insert(opportunity), rows)
        org.access.rebuild(conn)
    with org.store.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "ANALYZE fake__opportunity"
        )
    with partner_session(portal, "BP007") as conn:
        plan = "\n".join(conn.execute(text('EXPLAIN SELECT "Id" FROM fake__opportunity')).scalars())
        count = conn.execute(text("SELECT count(*) FROM fake__opportunity")).scalar_one()
    assert f"Bitmap Index Scan on {partner_index_name('fake__opportunity')}" in plan
    assert count == 100


PROPERTY_OPPS = ["o1", "o2", "o3", "o4"]
OPP_ACCOUNTS = st.sampled_from(["C1", "C2", "P1"])
CONTACT_ACCOUNTS = st.sampled_from(["C1", "C2", "P2"])
reassignment = st.one_of(
    st.tuples(st.just("opp"), st.sampled_from(PROPERTY_OPPS), OPP_ACCOUNTS,
              st.sampled_from([*PARTNERS, None])),
    st.tuples(st.just("delete_opp"), st.sampled_from(PROPERTY_OPPS), st.none(), st.none()),
    st.tuples(st.just("line"), st.sampled_from(["l1", "l3"]), st.sampled_from(PROPERTY_OPPS),
              st.none()),
    st.tuples(st.just("contact"), st.sampled_from(["KC1", "KC2"]), CONTACT_ACCOUNTS, st.none()),
    st.tuples(st.just("flag"), st.sampled_from(PARTNERS), st.booleans(), st.none()),
)  # fmt: skip


def reassign(org: Org, kind: str, key: str, first: object, second: object) -> None:
    """Apply one random CRM edit."""
    if kind == "opp":
        org.put("Opportunity", key, Name=key, AccountId=first, PartnerAccountId=second,
                OwnerId="UP1", Amount=1.0, Secret="s")  # fmt: skip
    elif kind == "delete_opp" and key in org.crm.stores["Opportunity"]:
        org.remove("Opportunity", key)
    elif kind == "line":
        org.put("LineItem", key, OpportunityId=first, Quantity=1.0)
    elif kind == "contact":
        org.put("Contact", key, Name=key, AccountId=first)
    elif kind == "flag":
        org.put("Account", key, IsPartner=first)


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="PostgreSQL suite: set PRM_MIRROR_TEST_PG_URL")
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(reassignment, min_size=1, max_size=5), min_size=1, max_size=3))
def test_rls_rows_equal_the_expected_slice_after_random_reassignments(batches) -> None:
    with fresh_database("postgresql") as url, portal_role() as role:
        org = Org(url, page_size=3)
        portal = engine_as(url, role)
        try:
            build_small_org(org)
            install_partner_security(org.store, org.rules, role)
            for batch in batches:
                for step in batch:
                    reassign(org, *step)
                org.sync()
                for partner in PARTNERS:
                    assert rls_seen(portal, partner) == org.expected(partner)
        finally:
            portal.dispose()
            org.close()
