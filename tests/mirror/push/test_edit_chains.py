"""One field edited more than once in the portal before the CRM confirmed the first edit, end
to end against the Salesforce sandbox, on both stores.

The field's base is what the CRM held when the portal first changed it (or, once an edit of it
was pushed, the value that write put there): a later edit made on top of the portal's own
value is not a change the CRM has to have seen.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from mirror import Mirror
from mirror.pull.pages import PageContext, apply_page
from mirror.store.tables import mirror_outbox
from mirror.types import Page, Record
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.mirror.push.writeback_fixtures import box, fresh_opportunity, open_mirror  # noqa: F401

USED: set[str] = set()


@pytest.fixture
def mirror(db_url: str, box: SalesforceSandbox):  # noqa: F811
    mirror = open_mirror(db_url, box)
    yield mirror
    mirror.close()


def crm(box: SalesforceSandbox, record_id: str) -> dict[str, Any]:  # noqa: F811
    record = box.get("Opportunity", record_id)
    assert record is not None
    return record


def open_entries(mirror: Mirror, record_id: str) -> list[Any]:
    o = mirror_outbox.c
    query = select(mirror_outbox).where(
        o.record_id == record_id,
        (o.status.in_(("pending", "sending", "blocked")))
        | ((o.status == "done") & o.confirmed.is_(False)),
    )
    with mirror.store.engine.connect() as conn:
        return list(conn.execute(query))


def settle(mirror: Mirror, box: SalesforceSandbox, record_id: str) -> None:  # noqa: F811
    """Push and sync until the record's edits are all closed (a bounded number of rounds)."""
    for _ in range(6):
        mirror.push()
        box.advance_clock(1)
        mirror.sync(["Opportunity"])
        if not open_entries(mirror, record_id):
            return
    raise AssertionError(f"edits still open: {open_entries(mirror, record_id)}")


def apply_read(mirror: Mirror, records: list[Record]) -> None:
    """Apply ``records`` as a sync would apply a page it had read."""
    mirrored = mirror.store.mirrored("salesforce", "Opportunity")
    checkpoint = mirror.store.load_checkpoint("salesforce", "Opportunity")
    assert checkpoint is not None
    ctx = PageContext(None, log_inserts=True, policy_of=mirror.policy_of("salesforce"))
    with mirror.store.transaction() as conn:
        apply_page(mirror.store, conn, mirrored, Page(records, checkpoint), ctx)


def test_two_edits_of_a_field_before_a_push_are_no_conflict(mirror, box) -> None:  # noqa: F811
    partner, opp = fresh_opportunity(mirror, USED)
    synced = opp["NextStep"]
    view = mirror.as_partner(partner)
    view.update("Opportunity", opp["Id"], {"NextStep": "first thought"})
    view.update("Opportunity", opp["Id"], {"NextStep": "second thought"})
    box.advance_clock(1)
    box.update("Opportunity", opp["Id"], {"Amount": 4321.0})
    assert crm(box, opp["Id"])["NextStep"] == synced
    mirror.sync(["Opportunity"])
    assert mirror.conflicts(status=None) == []
    mirrored = view.get("Opportunity", opp["Id"])
    assert (mirrored["NextStep"], mirrored["Amount"]) == ("second thought", 4321.0)
    settle(mirror, box, opp["Id"])
    record = crm(box, opp["Id"])
    assert (record["NextStep"], record["Amount"]) == ("second thought", 4321.0)
    assert view.get("Opportunity", opp["Id"])["NextStep"] == "second thought"
    assert mirror.conflicts(status=None) == []


def test_a_crm_change_meets_two_portal_edits_of_the_field_as_one_conflict(mirror, box) -> None:  # noqa: F811
    partner, opp = fresh_opportunity(mirror, USED)
    synced = opp["NextStep"]
    view = mirror.as_partner(partner)
    view.update("Opportunity", opp["Id"], {"NextStep": "first thought"})
    view.update("Opportunity", opp["Id"], {"NextStep": "second thought"})
    box.advance_clock(1)
    box.update("Opportunity", opp["Id"], {"NextStep": "crm says"})
    mirror.sync(["Opportunity"])
    conflicts = mirror.conflicts()
    assert [(c["base"], c["portal"], c["crm"]) for c in conflicts] == [
        (synced, "second thought", "crm says")
    ]
    assert mirror.push()["salesforce"].sent == 0
    assert crm(box, opp["Id"])["NextStep"] == "crm says"


def test_an_edit_on_top_of_a_pushed_one_meets_a_read_from_before_the_write(mirror, box) -> None:  # noqa: F811
    partner, opp = fresh_opportunity(mirror, USED)
    view = mirror.as_partner(partner)
    before = crm(box, opp["Id"])
    box.advance_clock(1)
    view.update("Opportunity", opp["Id"], {"NextStep": "pushed"})
    assert mirror.push()["salesforce"].done == 1
    view.update("Opportunity", opp["Id"], {"NextStep": "on top"})
    # a read taken before our write landed, of a record the CRM had changed in another field
    spec = mirror.store.mirrored("salesforce", "Opportunity").spec
    (stale,) = mirror.adapter("salesforce").fetch(spec, [opp["Id"]])
    stale.update(
        NextStep=before["NextStep"], Amount=1234.0, SystemModstamp=before["SystemModstamp"]
    )
    apply_read(mirror, [stale])
    assert mirror.conflicts(status=None) == []
    assert view.get("Opportunity", opp["Id"])["NextStep"] == "on top"
    settle(mirror, box, opp["Id"])
    assert crm(box, opp["Id"])["NextStep"] == "on top"
    assert view.get("Opportunity", opp["Id"])["NextStep"] == "on top"
    assert mirror.conflicts(status=None) == []


def test_an_edit_on_top_of_a_pushed_one_meets_a_crm_change_after_the_write(mirror, box) -> None:  # noqa: F811
    partner, opp = fresh_opportunity(mirror, USED)
    view = mirror.as_partner(partner)
    box.advance_clock(1)
    view.update("Opportunity", opp["Id"], {"NextStep": "pushed"})
    assert mirror.push()["salesforce"].done == 1
    view.update("Opportunity", opp["Id"], {"NextStep": "on top"})
    box.advance_clock(1)
    box.update("Opportunity", opp["Id"], {"NextStep": "crm says"})
    mirror.sync(["Opportunity"])
    conflicts = mirror.conflicts()
    assert [(c["base"], c["portal"], c["crm"]) for c in conflicts] == [
        ("pushed", "on top", "crm says")
    ]
    assert crm(box, opp["Id"])["NextStep"] == "crm says"


def test_an_edit_on_top_of_a_rebased_one_goes_out_after_it(mirror, box) -> None:  # noqa: F811
    partner, opp = fresh_opportunity(mirror, USED)
    view = mirror.as_partner(partner)
    view.update("Opportunity", opp["Id"], {"NextStep": "first thought"})
    view.update("Opportunity", opp["Id"], {"NextStep": "second thought"})
    box.advance_clock(1)
    box.update("Opportunity", opp["Id"], {"Amount": 2468.0})
    assert mirror.push()["salesforce"].blocked == 1
    mirror.sync(["Opportunity"])  # both entries rebased onto the CRM's record
    pushed = mirror.push()["salesforce"]
    assert pushed.done >= 1
    box.advance_clock(1)
    mirror.sync(["Opportunity"])
    assert mirror.conflicts(status=None) == []
    settle(mirror, box, opp["Id"])
    record = crm(box, opp["Id"])
    assert (record["NextStep"], record["Amount"]) == ("second thought", 2468.0)
    assert mirror.conflicts(status=None) == []
