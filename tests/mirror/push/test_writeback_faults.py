"""Write-back under faults, on every CRM and both stores: a create whose answer is lost (the
connection dropped after the CRM committed, or the pusher died right then) met by the next pull,
an outbox entry whose answer the store refuses to record, the delete sweep meeting portal
creates, an edit of a created record no pull has read yet met by a CRM change of its field, and
an edit blocked by a CRM change whose record is then deleted for good.

Each test drives the real adapters over HTTP against their sandboxes."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from mirror import Mirror
from mirror.config import parse_config
from mirror.push import lost_creates, writeback
from mirror.push.outbox import is_local
from mirror.store.records import field_value
from mirror.store.tables import mirror_changes, mirror_idmap

# the adapters' retries in these tests (``max_retries``): one more drop than that loses the
# answer for good
RETRIES = 4


class Killed(BaseException):
    """The pusher's process dying right after the CRM committed its write."""


@dataclass(frozen=True)
class Crm:
    """How one CRM's sandbox, objects and writes look to these tests."""

    name: str
    objects: tuple[str, ...]
    object: str
    key: str
    label: str
    partner_field: str
    values: Callable[[str], dict[str, Any]]
    edit: str
    drop: str
    source: dict[str, Any]

    def start(self, folder: Path) -> tuple[Any, Any]:
        """A started sandbox and an adapter on it."""
        if self.name == "salesforce":
            from sandboxes.salesforce.sandbox import SalesforceSandbox
            from tests.adapters.conftest import sandbox_adapter

            sf = SalesforceSandbox(folder / "sf.db", size="tiny").start()
            return sf, sandbox_adapter(sf, max_retries=RETRIES)
        if self.name == "hubspot":
            from sandboxes.hubspot.sandbox import HubSpotSandbox
            from tests.adapters.hubspot.fixtures import hubspot_adapter, unthrottled

            hs = unthrottled(HubSpotSandbox(folder / "hs.db", size="tiny").start())
            return hs, hubspot_adapter(hs, max_retries=RETRIES)
        from sandboxes.dynamics.sandbox import DynamicsSandbox
        from tests.adapters.dynamics.fixtures import sandbox_adapter as dynamics_adapter

        dv = DynamicsSandbox(folder / "dv.db", size="tiny").start()
        return dv, dynamics_adapter(dv, max_retries=RETRIES)


SALESFORCE = Crm(
    name="salesforce",
    objects=("User", "Account", "Opportunity"),
    object="Opportunity",
    key="Id",
    label="Name",
    partner_field="PartnerAccountId",
    values=lambda name: {"Name": name, "StageName": "Prospecting", "CloseDate": "2027-03-31"},
    edit="NextStep",
    drop="composite/sobjects",
    source={"auth": "password", "username": "u", "password": "p"},
)
HUBSPOT = Crm(
    name="hubspot",
    objects=("companies", "deals"),
    object="deals",
    key="hs_object_id",
    label="dealname",
    partner_field="partner_company_id",
    values=lambda name: {"dealname": name, "dealstage": "appointmentscheduled", "amount": 900.0},
    edit="hs_next_step",
    drop="batch/upsert",
    source={"access_token": "t"},
)
DYNAMICS = Crm(
    name="dynamics",
    objects=("systemuser", "account", "opportunity"),
    object="opportunity",
    key="opportunityid",
    label="name",
    partner_field="_prm_partneraccountid_value",
    values=lambda name: {"name": name, "estimatedvalue": 1000.0},
    edit="stepname",
    drop="$batch",
    source={"org_url": "https://x", "tenant_id": "t", "client_id": "c", "client_secret": "s"},
)


@dataclass
class Setup:
    """A sandbox, its adapter and a synced mirror of it."""

    crm: Crm
    box: Any
    adapter: Any
    mirror: Mirror


def open_mirror(crm: Crm, url: str, adapter: Any) -> Mirror:
    """A mirror of ``crm`` through ``adapter`` in ``url``, synced once."""
    source = {"crm": crm.name, **crm.source, "objects": list(crm.objects)}
    config = parse_config(
        {
            "store": {"database": url},
            "sync": {"push_retry_delay": 0},
            "sources": {crm.name: {**source, "conflicts": {"default": "manual"}}},
        }
    )
    mirror = Mirror(config, adapters={crm.name: adapter})
    mirror.sync()
    return mirror


@pytest.fixture(params=[SALESFORCE, HUBSPOT, DYNAMICS], ids=lambda crm: crm.name)
def setup(request: pytest.FixtureRequest, tmp_path: Path, db_url: str) -> Iterator[Setup]:
    crm: Crm = request.param
    box, adapter = crm.start(tmp_path)
    mirror = open_mirror(crm, db_url, adapter)
    try:
        yield Setup(crm, box, adapter, mirror)
    finally:
        mirror.close()
        box.stop()


def busiest_partner(mirror: Mirror, name: str) -> str:
    """The partner with the most records of ``name`` in its slice."""
    return str(max(mirror.partners(), key=lambda p: p["slice"].get(name, 0))["id"])


def crm_id_of(mirror: Mirror, local: str) -> str:
    """The CRM id that replaced the local id ``local``."""
    m = mirror_idmap.c
    with mirror.store.engine.connect() as conn:
        return str(conn.execute(select(m.new_id).where(m.old_id == local)).scalar_one())


def mirror_rows(mirror: Mirror, crm: Crm, **equal: Any) -> list[dict[str, Any]]:
    """Every row of the object (deleted ones too) whose fields equal ``equal``."""
    table = mirror.store.mirrored(crm.name, crm.object).table
    query = select(table).where(*(table.c[k] == v for k, v in equal.items()))
    with mirror.store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def crm_named(s: Setup, label: str, name: str | None = None, field: str | None = None) -> list[str]:
    """The ids of the CRM's live records of the object (``name``) labelled ``label``."""
    name, field = name or s.crm.object, field or s.crm.label
    found = []
    for record_id in s.box.ids(name):
        record = s.box.get(name, record_id)
        if record is not None and record.get(field) == label:
            found.append(record_id)
    return found


def lose_the_answer(s: Setup, fault: str) -> Any:
    """Push with the create's answer lost after the CRM committed it; returns the result."""
    source = s.crm.name
    if fault == "dropped":
        s.box.drop_next_response(RETRIES + 1, path_contains=s.crm.drop)
        try:
            return s.mirror.push()[source]
        finally:
            # an adapter that does not repeat a write after a lost answer leaves drops unused
            s.box.clear_faults()
    write = s.adapter.write

    def dies_after_the_commit(spec: Any, writes: Any) -> Any:
        write(spec, writes)
        raise Killed

    s.adapter.write = dies_after_the_commit
    try:
        with pytest.raises(Killed):
            s.mirror.push()
    finally:
        del s.adapter.write
    return None


@pytest.mark.parametrize("fault", ["dropped", "killed"])
def test_a_create_whose_answer_was_lost_is_one_record_after_the_next_sync(
    setup: Setup, fault: str
) -> None:
    s, crm = setup, setup.crm
    mirror, box = s.mirror, s.box
    partner = busiest_partner(mirror, crm.object)
    view = mirror.as_partner(partner)
    label = f"Lost answer {uuid.uuid4().hex[:8]}"
    before = box.count(crm.object)
    local = view.create(crm.object, crm.values(label))
    first = lose_the_answer(s, fault)
    assert first is None or (first.done, first.retried) == (0, 1)
    assert box.count(crm.object) == before + 1
    # the portal goes on: an edit of the lost create, another create, an edit elsewhere
    view.update(crm.object, local, {crm.edit: "queued under the local id"})
    second = view.create(crm.object, crm.values(f"{label} bis"))
    existing = next(
        r[crm.key] for r in view.select(crm.object, limit=50) if not is_local(r[crm.key])
    )
    view.update(crm.object, existing, {crm.edit: "an unrelated edit"})
    box.advance_clock(1)
    mirror.sync([crm.object])
    # the pull recognised the record as the create: one row, under the CRM's id
    crm_id = crm_id_of(mirror, local)
    assert [r[crm.key] for r in mirror_rows(mirror, crm, **{crm.label: label})] == [crm_id]
    assert [
        e["status"] for e in mirror.outbox() if e["op"] == "create" and e["record_id"] == crm_id
    ] == ["done"]
    pushed = mirror.push()[crm.name]
    assert (pushed.failed, pushed.blocked) == (0, 0), pushed.errors
    assert crm_named(s, label) == [crm_id]
    assert box.count(crm.object) == before + 2
    assert len(crm_named(s, f"{label} bis")) == 1 and crm_id_of(mirror, second)
    assert [r[crm.key] for r in mirror_rows(mirror, crm, **{crm.label: label})] == [crm_id]
    assert mirror_rows(mirror, crm, **{crm.key: local}) == []
    assert {e["status"] for e in mirror.outbox(limit=100)} == {"done"}
    assert box.get(crm.object, crm_id)[crm.edit] == "queued under the local id"
    assert box.get(crm.object, existing)[crm.edit] == "an unrelated edit"
    # the partner who kept the local id reads and edits the record by it
    assert view.get(crm.object, local)[crm.key] == crm_id
    assert [r[crm.key] for r in view.select(crm.object, where={crm.key: local})] == [crm_id]
    box.advance_clock(1)
    mirror.sync([crm.object])
    assert view.update(crm.object, local, {crm.edit: "by the local id"})[crm.key] == crm_id
    assert mirror.push()[crm.name].done == 1
    assert box.get(crm.object, crm_id)[crm.edit] == "by the local id"
    box.advance_clock(1)
    mirror.sync([crm.object])
    assert mirror.push()[crm.name].sent == 0
    assert [r[crm.key] for r in mirror_rows(mirror, crm, **{crm.label: label})] == [crm_id]
    assert view.get(crm.object, crm_id)[crm.edit] == "by the local id"
    assert box.get(crm.object, crm_id) is not None
    assert mirror_rows(mirror, crm, **{crm.key: crm_id})[0][crm.partner_field] == partner


@pytest.fixture
def salesforce(tmp_path: Path, db_url: str) -> Iterator[Setup]:
    box, adapter = SALESFORCE.start(tmp_path)
    mirror = open_mirror(SALESFORCE, db_url, adapter)
    try:
        yield Setup(SALESFORCE, box, adapter, mirror)
    finally:
        mirror.close()
        box.stop()


def poison(mirror: Mirror, label: str) -> Callable[[], None]:
    """Make the store refuse to swap the id of the Opportunity labelled ``label`` (as any
    failure to record one entry's answer would); returns what lifts it."""
    table = mirror.store.mirrored("salesforce", "Opportunity").spec.table_name
    with mirror.store.engine.begin() as conn:
        if mirror.store.dialect == "sqlite":
            conn.exec_driver_sql(
                f'CREATE TRIGGER poison BEFORE UPDATE OF "Id" ON {table} '
                f"WHEN OLD.\"Name\" = '{label}' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
                f'IF OLD."Name" = \'{label}\' AND NEW."Id" <> OLD."Id" THEN '
                "RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                f"CREATE TRIGGER poison BEFORE UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION poison()"
            )

    def lift() -> None:
        with mirror.store.engine.begin() as conn:
            suffix = "" if mirror.store.dialect == "sqlite" else f" ON {table}"
            conn.exec_driver_sql(f"DROP TRIGGER poison{suffix}")

    return lift


def test_an_entry_whose_answer_cannot_be_recorded_holds_back_no_other(salesforce: Setup) -> None:
    s = salesforce
    mirror, box = s.mirror, s.box
    partner = busiest_partner(mirror, "Opportunity")
    view = mirror.as_partner(partner)
    opportunity = view.select("Opportunity", limit=1)[0]["Id"]
    poisoned = view.create("Opportunity", SALESFORCE.values("Poisoned deal"))
    fine = view.create("Opportunity", SALESFORCE.values("Fine deal"))
    view.update("Opportunity", opportunity, {"NextStep": "behind the poisoned one"})
    lift = poison(mirror, "Poisoned deal")
    first = mirror.push()["salesforce"]
    assert (first.done, first.retried, first.failed) == (2, 1, 0)
    assert view.get("Opportunity", fine)["Id"] == crm_id_of(mirror, fine)
    assert box.get("Opportunity", crm_id_of(mirror, fine))["Name"] == "Fine deal"
    assert box.get("Opportunity", opportunity)["NextStep"] == "behind the poisoned one"
    (entry,) = [e for e in mirror.outbox() if e["record_id"] == poisoned]
    assert (entry["status"], entry["error_code"]) == ("pending", "NOT_RECORDED")
    assert "poisoned" in entry["error_message"]
    later = view.create("Opportunity", SALESFORCE.values("Later deal"))
    again = mirror.push()["salesforce"]
    assert (again.done, again.retried) == (1, 1)
    assert box.get("Opportunity", crm_id_of(mirror, later))["Name"] == "Later deal"
    lift()
    assert mirror.push()["salesforce"].done == 1
    crm_id = crm_id_of(mirror, poisoned)
    assert view.get("Opportunity", poisoned)["Id"] == crm_id
    assert crm_named(s, "Poisoned deal") == [crm_id]
    assert {e["status"] for e in mirror.outbox()} == {"done"}


def test_a_lost_create_recognised_by_a_pull_takes_its_children_and_grants_along(
    salesforce: Setup,
) -> None:
    s = salesforce
    mirror, box = s.mirror, s.box
    partner = busiest_partner(mirror, "Opportunity")
    view = mirror.as_partner(partner)
    account = view.create("Account", {"Name": "Parent of a lost answer"})
    lose_the_answer(s, "dropped")
    deal = view.create("Opportunity", {**SALESFORCE.values("Child deal"), "AccountId": account})
    box.advance_clock(1)
    mirror.sync(["Account"])
    crm_account = crm_id_of(mirror, account)
    assert view.get("Opportunity", deal)["AccountId"] == crm_account
    assert mirror.push()["salesforce"].done == 1
    crm_deal = crm_id_of(mirror, deal)
    assert box.get("Opportunity", crm_deal)["AccountId"] == crm_account
    assert crm_named(s, "Parent of a lost answer", "Account", "Name") == [crm_account]
    assert view.get("Account", account)["Id"] == crm_account
    grants = mirror.access_rows()
    assert not [g for g in grants if account in (g[1], g[6]) or deal in (g[1], g[6])]
    assert ("Account", crm_account) in {(g[0], g[1]) for g in grants}
    mirror.rebuild_access()
    assert mirror.access_rows() == grants


def test_a_create_answered_after_a_pull_took_its_record_as_another_row_is_merged(
    salesforce: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = salesforce
    mirror, box = s.mirror, s.box
    partner = busiest_partner(mirror, "Opportunity")
    view = mirror.as_partner(partner)
    local = view.create("Opportunity", SALESFORCE.values("Taken twice"))
    lose_the_answer(s, "dropped")
    view.update("Opportunity", local, {"NextStep": "edited before the answer came"})
    # a store written by a pull that did not recognise the create: a second row
    with monkeypatch.context() as patched:
        patched.setattr("mirror.pull.pages.adopt_creates", lambda *_args: [], raising=False)
        box.advance_clock(1)
        mirror.sync(["Opportunity"])
    assert len(mirror_rows(mirror, SALESFORCE, Name="Taken twice")) == 2
    pushed = mirror.push()["salesforce"]
    assert (pushed.done, pushed.failed) == (2, 0), pushed.errors
    crm_id = crm_id_of(mirror, local)
    (row,) = mirror_rows(mirror, SALESFORCE, Name="Taken twice")
    assert (row["Id"], row["NextStep"], row["_deleted"]) == (
        crm_id,
        "edited before the answer came",
        False,
    )
    assert view.get("Opportunity", local)["Id"] == crm_id
    assert box.get("Opportunity", crm_id)["NextStep"] == "edited before the answer came"
    assert crm_named(s, "Taken twice") == [crm_id]
    grants, sizes = mirror.access_rows(), {p["id"]: p["slice"] for p in mirror.partners()}
    assert not [g for g in grants if local in (g[1], g[6])]
    mirror.rebuild_access()
    assert mirror.access_rows() == grants
    assert {p["id"]: p["slice"] for p in mirror.partners()} == sizes


def partner_feed(mirror: Mirror, partner: str, record_id: str) -> list[tuple[str, str]]:
    """``(op, origin)`` of the partner's feed entries about ``record_id``."""
    changes = mirror.as_partner(partner).changes(limit=500).changes
    return [(c["op"], c["origin"]) for c in changes if c["record_id"] == record_id]


def crm_deletes(mirror: Mirror, record_id: str) -> int:
    """The change feed's deletes of ``record_id`` made in the CRM (or found by the sweep)."""
    c = mirror_changes.c
    query = select(func.count()).where(
        c.record_id == record_id, c.op == "delete", c.origin == "crm"
    )
    with mirror.store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def test_the_delete_sweep_leaves_portal_creates_the_crm_cannot_have_listed(
    salesforce: Setup,
) -> None:
    s = salesforce
    mirror, box, adapter = s.mirror, s.box, s.adapter
    partner = busiest_partner(mirror, "Opportunity")
    view = mirror.as_partner(partner)
    unpushed = view.create("Opportunity", SALESFORCE.values("Not pushed yet"))
    pushed = view.create("Opportunity", SALESFORCE.values("Pushed during the sweep"))
    assert mirror.sweep(["Opportunity"]) == {"salesforce.Opportunity": 0}
    assert view.get("Opportunity", unpushed)["Name"] == "Not pushed yet"
    assert ("delete", "crm") not in partner_feed(mirror, partner, unpushed)
    assert crm_deletes(mirror, unpushed) == 0
    # the push lands while the sweep runs, after the listing it compares with was read
    read_ids = adapter.read_ids

    def listed_then_pushed(spec: Any) -> Iterator[list[str]]:
        listing = list(read_ids(spec))
        mirror.push()
        return iter(listing)

    adapter.read_ids = listed_then_pushed
    try:
        assert mirror.sweep(["Opportunity"]) == {"salesforce.Opportunity": 0}
    finally:
        del adapter.read_ids
    crm_id = crm_id_of(mirror, pushed)
    assert view.get("Opportunity", crm_id)["Name"] == "Pushed during the sweep"
    assert crm_deletes(mirror, crm_id) == 0
    assert box.get("Opportunity", crm_id) is not None


def blocked_edit(s: Setup) -> tuple[str, str]:
    """A partner and an opportunity whose portal edit the CRM blocked by a change of its own."""
    mirror, box = s.mirror, s.box
    partner = busiest_partner(mirror, "Opportunity")
    view = mirror.as_partner(partner)
    opportunity = view.select("Opportunity", limit=1)[0]["Id"]
    view.update("Opportunity", opportunity, {"NextStep": "blocked, then deleted"})
    box.advance_clock(1)
    box.update("Opportunity", opportunity, {"Amount": 777.0})
    assert mirror.push()["salesforce"].blocked == 1
    box.advance_clock(1)
    box.hard_delete("Opportunity", opportunity)
    return partner, opportunity


def test_a_blocked_edit_of_a_record_deleted_for_good_ends_after_the_next_sync(
    salesforce: Setup,
) -> None:
    s = salesforce
    partner, opportunity = blocked_edit(s)
    s.box.advance_clock(1)
    s.mirror.sync(["Opportunity"])
    result = s.mirror.push()["salesforce"]
    assert (result.sent, result.failed, result.blocked) == (1, 1, 0)
    (failed,) = s.mirror.as_partner(partner).writes(status="failed")
    assert failed["record_id"] == opportunity and failed["error_message"]
    assert failed["error_code"] in {"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "NOT_FOUND"}
    assert s.mirror.outbox(status="blocked") == []
    assert s.mirror.push()["salesforce"].sent == 0


def test_the_delete_sweep_ends_a_blocked_edit_of_a_record_deleted_for_good(
    salesforce: Setup,
) -> None:
    s = salesforce
    partner, opportunity = blocked_edit(s)
    assert s.mirror.sweep(["Opportunity"]) == {"salesforce.Opportunity": 1}
    (failed,) = s.mirror.as_partner(partner).writes(status="failed")
    assert (failed["record_id"], failed["error_code"]) == (opportunity, "ENTITY_IS_DELETED")
    assert "no longer in the CRM" in failed["error_message"]
    assert s.mirror.push()["salesforce"].sent == 0


def conflicts(mirror: Mirror) -> set[tuple[str, Any, Any, str]]:
    """Every conflict recorded: field, portal value, CRM value, status."""
    return {(c["field"], c["portal"], c["crm"], c["status"]) for c in mirror.conflicts(status=None)}


def created_once_dropped(s: Setup, view: Any, label: str) -> tuple[str, str]:
    """The local id and the CRM id of a create whose answer was dropped once and that the CRM
    made; no pull has read the record yet."""
    local = view.create(s.crm.object, s.crm.values(label))
    s.box.drop_next_response(1, path_contains=s.crm.drop)
    try:
        s.mirror.push()
        # an adapter that does not repeat a create after a lost answer looks it up by its key
        s.mirror.push()
    finally:
        s.box.clear_faults()
    return local, crm_id_of(s.mirror, local)


def test_an_edit_of_a_created_record_no_pull_has_read_is_held_to_the_values_created(
    setup: Setup,
) -> None:
    s, crm = setup, setup.crm
    view = s.mirror.as_partner(busiest_partner(s.mirror, crm.object))
    label = uuid.uuid4().hex[:8]
    # one deal edited by its local id after the CRM made it, its create's answer dropped once;
    # another edited while still local, the CRM changing it right after making it
    early, early_id = created_once_dropped(s, view, f"Edited after its create {label}")
    view.update(crm.object, early, {crm.edit: "the partner's step"})
    s.box.advance_clock(1)
    s.box.update(crm.object, early_id, {crm.edit: "a CRM user's step"})
    local = view.create(crm.object, crm.values(f"Edited while local {label}"))
    view.update(crm.object, local, {crm.edit: "the partner's step"})
    write = s.adapter.write

    def a_crm_user_follows_the_create(spec: Any, writes: Any) -> Any:
        answers = write(spec, writes)
        for sent, answer in zip(writes, answers, strict=True):
            if sent.op == "create" and answer.ok:
                s.box.advance_clock(1)
                s.box.update(crm.object, answer.record_id, {crm.edit: "a CRM user's step"})
        return answers

    s.adapter.write = a_crm_user_follows_the_create
    try:
        pushed = s.mirror.push()[crm.name]
    finally:
        del s.adapter.write
    assert (pushed.done, pushed.blocked) == (1, 2), pushed.errors
    made = [early_id, crm_id_of(s.mirror, local)]
    assert [s.box.get(crm.object, i)[crm.edit] for i in made] == ["a CRM user's step"] * 2
    s.box.advance_clock(1)
    s.mirror.sync([crm.object])
    assert conflicts(s.mirror) == {(crm.edit, "the partner's step", "a CRM user's step", "open")}
    assert len(s.mirror.conflicts()) == 2
    assert s.mirror.push()[crm.name].sent == 0
    assert [s.box.get(crm.object, i)[crm.edit] for i in made] == ["a CRM user's step"] * 2
    assert view.get(crm.object, early)[crm.edit] == "a CRM user's step"


def unconfirmed_entries(mirror: Mirror) -> list[dict[str, Any]]:
    """The outbox entries whose effect no read of the CRM confirmed yet."""
    return [e for e in mirror.outbox(limit=1000) if not e["confirmed"]]


def race_the_answer(s: Setup, monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """Push while a pull takes in the created record (PostgreSQL: the two interleave). The
    pull's page reads the mirror rows before the push records the create's answer, which
    commits before the page looks for the creates the record may be; returns the pull's
    errors."""
    reached, recorded = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    pending_creates = lost_creates.pending_creates

    def found_still_sending(conn: Any, spec: Any) -> list[Any]:
        creates = pending_creates(conn, spec)
        if creates and not reached.is_set():
            reached.set()
            assert recorded.wait(60), "the push never recorded its answer"
        return creates

    def pull() -> None:
        try:
            s.mirror.sync([s.crm.object])
        except BaseException as exc:
            errors.append(exc)
        finally:
            reached.set()

    record = writeback.Pusher._record

    def record_during_the_pull(pusher: Any, *args: Any) -> None:
        s.box.advance_clock(1)
        puller = threading.Thread(target=pull)
        puller.start()
        assert reached.wait(60), "the pull never reached the create"
        try:
            record(pusher, *args)
        finally:
            recorded.set()
            puller.join()

    monkeypatch.setattr(lost_creates, "pending_creates", found_still_sending)
    monkeypatch.setattr(writeback.Pusher, "_record", record_during_the_pull)
    try:
        s.mirror.push()
    finally:
        monkeypatch.undo()
    return errors


@pytest.fixture
def interleaving(backend: str) -> None:
    """Only a store whose writers interleave: SQLite serialises them."""
    if backend == "sqlite":
        pytest.skip("SQLite serialises the page and the push's answer: they cannot interleave")


def test_a_create_answered_while_a_pull_takes_its_record_in_is_confirmed(
    interleaving: None, setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, crm = setup, setup.crm
    mirror, box = s.mirror, s.box
    view = mirror.as_partner(busiest_partner(mirror, crm.object))
    label = f"Raced answer {uuid.uuid4().hex[:8]}"
    local = view.create(crm.object, crm.values(label))
    assert race_the_answer(s, monkeypatch) == []
    crm_id = crm_id_of(mirror, local)
    # the pull's page met the row the answer swapped in and merged the create's entry
    assert unconfirmed_entries(mirror) == []
    box.advance_clock(1)
    mirror.sync([crm.object])
    assert unconfirmed_entries(mirror) == []
    (row,) = mirror_rows(mirror, crm, **{crm.label: label})
    assert (row[crm.key], row["_pending"]) == (crm_id, False)
    assert crm_named(s, label) == [crm_id]
    spec, crm_record = mirror.store.mirrored(crm.name, crm.object).spec, box.get(crm.object, crm_id)
    fields = [*crm.values(label), spec.cursor_field]
    assert {k: row[k] for k in fields} == {k: field_value(spec, k, crm_record[k]) for k in fields}


def test_an_answered_create_whose_row_a_page_left_unmarked_is_confirmed_by_the_next_sync(
    setup: Setup,
) -> None:
    s, crm = setup, setup.crm
    mirror, box = s.mirror, s.box
    view = mirror.as_partner(busiest_partner(mirror, crm.object))
    label = f"Unmarked answer {uuid.uuid4().hex[:8]}"
    local = view.create(crm.object, crm.values(label))
    assert mirror.push()[crm.name].done == 1
    crm_id = crm_id_of(mirror, local)
    # the row as a page left it that took the record in over the answer committed under it
    # (a store written before pages read again the rows an answer swapped in)
    table = mirror.store.mirrored(crm.name, crm.object).table
    with mirror.store.transaction() as conn:
        conn.execute(update(table).where(table.c[crm.key] == crm_id).values(_pending=False))
    box.advance_clock(1)
    mirror.sync([crm.object])
    assert unconfirmed_entries(mirror) == []
    (row,) = mirror_rows(mirror, crm, **{crm.label: label})
    assert (row[crm.key], row["_pending"]) == (crm_id, False)
