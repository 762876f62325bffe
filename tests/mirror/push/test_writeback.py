"""Write-back end to end: portal edits through PartnerView, the outbox, the real Salesforce
adapter against the sandbox, and the pull that brings the CRM's side back; on both stores."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from mirror import AccessDenied, Mirror
from mirror.errors import ValidationError
from mirror.store.tables import mirror_changes, mirror_idmap
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


def crm_changes(mirror: Mirror, record_id: str) -> list[Any]:
    c = mirror_changes.c
    query = select(mirror_changes).where(c.record_id == record_id, c.origin == "crm")
    with mirror.store.engine.connect() as conn:
        return conn.execute(query.order_by(c.seq)).all()


def test_an_edit_reaches_the_crm_once_and_its_echo_is_not_a_change(mirror, box) -> None:  # noqa: F811
    partner, opp = fresh_opportunity(mirror, USED)
    view = mirror.as_partner(partner)
    seen = view.update("Opportunity", opp["Id"], {"Amount": 4242.0, "NextStep": "Call Tuesday"})
    assert (seen["Amount"], seen["NextStep"]) == (4242.0, "Call Tuesday")
    assert [w["status"] for w in view.writes()] == ["pending"]
    pushed = mirror.push()["salesforce"]
    assert (pushed.done, pushed.failed) == (1, 0)
    assert (crm(box, opp["Id"])["Amount"], crm(box, opp["Id"])["NextStep"]) == (
        4242.0,
        "Call Tuesday",
    )
    box.advance_clock(1)
    mirror.sync(["Opportunity"])
    assert crm_changes(mirror, opp["Id"]) == []
    assert mirror.outbox()[0]["confirmed"] is True
    assert view.get("Opportunity", opp["Id"])["Amount"] == 4242.0


def test_edits_to_different_fields_on_both_sides_merge(mirror, box) -> None:  # noqa: F811
    partner, opp = fresh_opportunity(mirror, USED)
    view = mirror.as_partner(partner)
    view.update("Opportunity", opp["Id"], {"NextStep": "Send quote"})
    box.advance_clock(1)
    box.update("Opportunity", opp["Id"], {"Amount": 777.0})
    assert mirror.push()["salesforce"].blocked == 1
    mirror.sync(["Opportunity"])
    assert mirror.push()["salesforce"].done == 1
    record = crm(box, opp["Id"])
    assert (record["Amount"], record["NextStep"]) == (777.0, "Send quote")
    mirrored = view.get("Opportunity", opp["Id"])
    assert (mirrored["Amount"], mirrored["NextStep"]) == (777.0, "Send quote")
    assert mirror.conflicts(status=None) == []


@pytest.mark.parametrize(
    ("policy", "winner"),
    [("crm_wins", "crm"), ("portal_wins", "portal"), ("latest_wins", "crm"), ("manual", "crm")],
)
def test_the_same_field_on_both_sides_follows_the_policy(db_url, box, policy, winner) -> None:  # noqa: F811
    mirror = open_mirror(db_url, box, default=policy)
    try:
        partner, opp = fresh_opportunity(mirror, USED)
        view = mirror.as_partner(partner)
        view.update("Opportunity", opp["Id"], {"NextStep": "portal says"})
        box.advance_clock(5)
        box.update("Opportunity", opp["Id"], {"NextStep": "crm says"})
        mirror.sync(["Opportunity"])
        mirror.push()
        box.advance_clock(1)
        mirror.sync(["Opportunity"])
        expected = "portal says" if winner == "portal" else "crm says"
        assert crm(box, opp["Id"])["NextStep"] == expected
        assert view.get("Opportunity", opp["Id"])["NextStep"] == expected
        conflicts = mirror.conflicts(status=None)
        assert [(c["field"], c["portal"], c["crm"]) for c in conflicts] == [
            ("NextStep", "portal says", "crm says")
        ]
        assert conflicts[0]["status"] == ("open" if policy == "manual" else "resolved")
    finally:
        mirror.close()


def test_a_parked_conflict_is_resolved_by_a_person(mirror, box) -> None:  # noqa: F811
    partner, opp = fresh_opportunity(mirror, USED)
    view = mirror.as_partner(partner)
    view.update("Opportunity", opp["Id"], {"NextStep": "mine"})
    box.advance_clock(2)
    box.update("Opportunity", opp["Id"], {"NextStep": "theirs"})
    mirror.sync(["Opportunity"])
    assert mirror.push()["salesforce"].sent == 0
    assert crm(box, opp["Id"])["NextStep"] == "theirs"
    (conflict,) = mirror.conflicts()
    mirror.resolve_conflict(conflict["id"], "value", "agreed", by="channel manager")
    assert mirror.push()["salesforce"].done == 1
    assert crm(box, opp["Id"])["NextStep"] == "agreed"
    assert mirror.conflicts() == []


def test_a_lost_response_is_retried_without_a_duplicate(mirror, box) -> None:  # noqa: F811
    partner, _opp = fresh_opportunity(mirror, USED)
    view = mirror.as_partner(partner)
    customer = view.create("Account", {"Name": "Lost Response Ltd"})
    before = box.count("Account")
    box.drop_next_response(1, path_contains="composite")
    first = mirror.push()["salesforce"]
    second = mirror.push()["salesforce"]
    assert first.done + second.done == 1
    assert box.count("Account") == before + 1
    with mirror.store.engine.connect() as conn:
        mapped = conn.execute(select(mirror_idmap).where(mirror_idmap.c.old_id == customer)).one()
    assert box.get("Account", mapped.new_id)["Name"] == "Lost Response Ltd"


def test_lock_errors_are_retried_and_then_succeed(mirror, box) -> None:  # noqa: F811
    partner, opp = fresh_opportunity(mirror, USED)
    view = mirror.as_partner(partner)
    view.update("Opportunity", opp["Id"], {"NextStep": "after the lock"})
    box.lock_rows([opp["Id"]])
    try:
        assert mirror.push()["salesforce"].retried >= 1
    finally:
        box.unlock_rows()
    assert mirror.push()["salesforce"].done == 1
    assert crm(box, opp["Id"])["NextStep"] == "after the lock"


def test_a_validation_error_fails_that_edit_and_restores_the_crm_value(mirror, box) -> None:  # noqa: F811
    partner, opp = fresh_opportunity(mirror, USED)
    _other_partner, other = fresh_opportunity(mirror, USED)
    view = mirror.as_partner(partner)
    view.update("Opportunity", opp["Id"], {"Amount": -5.0})
    mirror.as_partner(_other_partner).update("Opportunity", other["Id"], {"NextStep": "fine"})
    result = mirror.push()["salesforce"]
    assert (result.done, result.failed) == (1, 1)
    (failed,) = view.writes(status="failed")
    assert failed["error_code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert "zero or more" in failed["error_message"]
    assert view.get("Opportunity", opp["Id"])["Amount"] == opp["Amount"]
    assert crm(box, other["Id"])["NextStep"] == "fine"


def test_a_record_deleted_in_the_crm_while_edited_in_the_portal(mirror, box) -> None:  # noqa: F811
    partner, opp = fresh_opportunity(mirror, USED)
    view = mirror.as_partner(partner)
    view.update("Opportunity", opp["Id"], {"NextStep": "too late"})
    box.advance_clock(1)
    box.delete("Opportunity", opp["Id"])
    mirror.sync(["Opportunity"])
    (failed,) = view.writes(status="failed")
    assert failed["error_code"] == "ENTITY_IS_DELETED"
    assert mirror.push()["salesforce"].sent == 0
    with pytest.raises(AccessDenied):
        view.get("Opportunity", opp["Id"])


def test_a_create_chain_reaches_the_crm_parents_first(mirror, box) -> None:  # noqa: F811
    partner, _ = fresh_opportunity(mirror, USED)
    view = mirror.as_partner(partner)
    product = view.select("Product2", limit=1)[0]["Id"]
    account = view.create("Account", {"Name": "Chain Industries"})
    opp = view.create(
        "Opportunity",
        {"Name": "Chain deal", "AccountId": account, "StageName": "Prospecting",
         "CloseDate": "2027-01-31", "Amount": 1000.0},
    )  # fmt: skip
    line = view.create(
        "OpportunityLineItem",
        {"OpportunityId": opp, "Product2Id": product, "Quantity": 2.0, "UnitPrice": 500.0},
    )
    assert view.get("Opportunity", opp)["PartnerAccountId"] == partner
    assert mirror.push()["salesforce"].done == 3
    with mirror.store.engine.connect() as conn:
        ids = dict(conn.execute(select(mirror_idmap.c.old_id, mirror_idmap.c.new_id)).all())
    crm_opp = box.get("Opportunity", ids[opp])
    assert crm_opp["AccountId"] == ids[account] and crm_opp["PartnerAccountId"] == partner
    assert box.get("OpportunityLineItem", ids[line])["OpportunityId"] == ids[opp]
    assert view.get("OpportunityLineItem", ids[line])["Quantity"] == 2.0
    # the grants that went through the local ids (the line item's through its deal, the
    # customer's through the deal pointing at it) now go through the CRM's ids
    grants = mirror.access_rows()
    assert not [g for g in grants if g[1] in ids or g[6] in ids]
    assert ("OpportunityLineItem", ids[line]) in {(g[0], g[1]) for g in grants}
    mirror.rebuild_access()
    assert mirror.access_rows() == grants


def test_refused_writes_change_nothing(mirror, box) -> None:  # noqa: F811
    partner, opp = fresh_opportunity(mirror, USED)
    view = mirror.as_partner(partner)
    foreign = next(p["id"] for p in mirror.partners() if p["id"] != partner)
    with pytest.raises(AccessDenied, match="may not write"):
        view.update("Opportunity", opp["Id"], {"PartnerAccountId": foreign})
    with pytest.raises(ValidationError, match="CloseDate"):
        view.update("Opportunity", opp["Id"], {"CloseDate": "next spring"})
    other = mirror.as_partner(foreign).select("Opportunity", limit=1)[0]["Id"]
    with pytest.raises(AccessDenied):
        view.update("Opportunity", other, {"NextStep": "sneaky"})
    with pytest.raises(AccessDenied, match="outside your slice"):
        view.update("Opportunity", opp["Id"], {"AccountId": foreign})
    assert mirror.outbox() == []


def test_values_never_flip_flop_over_many_cycles(mirror, box) -> None:  # noqa: F811
    partner, opp = fresh_opportunity(mirror, USED)
    view = mirror.as_partner(partner)
    history = []
    for cycle in range(8):
        value = f"step {cycle}"
        view.update("Opportunity", opp["Id"], {"NextStep": value})
        stale = list(mirror.adapter("salesforce").read(
            mirror.store.mirrored("salesforce", "Opportunity").spec,
            mirror.store.load_checkpoint("salesforce", "Opportunity"),
        ))  # fmt: skip
        mirror.push()
        box.advance_clock(1)
        box.update("Opportunity", opp["Id"], {"Amount": 1000.0 + cycle})
        mirror.sync(["Opportunity"])
        history.append(view.get("Opportunity", opp["Id"])["NextStep"])
        assert crm(box, opp["Id"])["NextStep"] == value
        assert stale is not None
    assert history == [f"step {i}" for i in range(8)]
    assert all("NextStep" not in (c.fields or {}) for c in crm_changes(mirror, opp["Id"]))


def test_a_push_killed_with_sigkill_resumes_without_duplicates(tmp_path, box) -> None:  # noqa: F811
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    database = tmp_path / "mirror.db"
    config = tmp_path / "prm-mirror.toml"
    config.write_text(
        f"""
[store]
database = "sqlite:///{database}"
[sync]
push_batch_size = 20
[sources.salesforce]
crm = "salesforce"
objects = ["User", "Account", "Contact", "Product2", "Opportunity", "OpportunityLineItem"]
login_url = "{box.base_url}"
username = "{box.username}"
password = "{box.password}"
security_token = "{box.security_token}"
"""
    )
    mirror = Mirror.open(config)
    mirror.sync()
    edits: dict[str, str] = {}
    for partner in mirror.partners():
        view = mirror.as_partner(partner["id"])
        for opp in view.select("Opportunity", fields=["Id"], limit=1000):
            if opp["Id"] not in USED:
                edits[opp["Id"]] = f"killed push {len(edits)}"
                view.update("Opportunity", opp["Id"], {"NextStep": edits[opp["Id"]]})
    creates = [
        mirror.as_partner(mirror.partners()[0]["id"]).create("Account", {"Name": f"Kill {i}"})
        for i in range(30)
    ]
    mirror.close()
    accounts_before = box.count("Account")
    box.throttle(0.15)
    command = [sys.executable, "-m", "cli", "-c", str(config), "push"]
    try:
        process = subprocess.Popen(
            command, cwd=root, env=dict(os.environ), stdout=subprocess.DEVNULL
        )
        mirror = Mirror.open(config)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            e["status"] == "done" for e in mirror.outbox(limit=1000)
        ):
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        statuses = {e["status"] for e in mirror.outbox(limit=1000)}
        assert "done" in statuses and statuses & {"pending", "sending"}, statuses
    finally:
        box.throttle(0)
    mirror.push()
    assert {e["status"] for e in mirror.outbox(limit=1000)} == {"done"}
    assert box.count("Account") == accounts_before + len(creates)
    for record_id, value in edits.items():
        assert crm(box, record_id)["NextStep"] == value
    mirror.close()
