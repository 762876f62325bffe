"""Portal writes whose answer was lost, over HTTP against the sandboxes: the CRM applied the
write, the connection dropped before its answer came back (``drop_next_response``), and a CRM
user changed the record afterwards. The write must reach the CRM once: never sent again over
the newer value, which stands (``mirror.push.landed``, the adapters' writes). The first test runs on
both stores, the others on SQLite (what they hold to is the adapters' and the pusher's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.hubspot.errors import OutcomeUnknown
from mirror import Mirror
from mirror.config import parse_config
from mirror.push.outbox import is_local
from tests.conftest import fresh_database
from tests.mirror.push.test_writeback_faults import (
    DYNAMICS,
    HUBSPOT,
    RETRIES,
    SALESFORCE,
    Crm,
    Setup,
)

# the path of each CRM's update requests
UPDATES = {"salesforce": "composite/sobjects", "hubspot": "batch/update", "dynamics": "$batch"}


def open_mirror(crm: Crm, url: str, adapter: Any, policy: str) -> Mirror:
    """A mirror of ``crm`` with ``policy`` for every conflict, synced once."""
    source = {"crm": crm.name, **crm.source, "objects": list(crm.objects)}
    config = parse_config(
        {
            "store": {"database": url},
            "sync": {"push_retry_delay": 0},
            "sources": {crm.name: {**source, "conflicts": {"default": policy}}},
        }
    )
    mirror = Mirror(config, adapters={crm.name: adapter})
    mirror.sync()
    return mirror


def started(crm: Crm, folder: Path, url: str, policy: str) -> Setup:
    """``crm``'s sandbox, its adapter and a synced mirror of it."""
    box, adapter = crm.start(folder)
    return Setup(crm, box, adapter, open_mirror(crm, url, adapter, policy))


def portal_update(s: Setup, value: str) -> str:
    """A partner's update of one of its records; returns the record's id."""
    crm, mirror = s.crm, s.mirror
    partner = str(max(mirror.partners(), key=lambda p: p["slice"].get(crm.object, 0))["id"])
    view = mirror.as_partner(partner)
    record_id = next(
        str(r[crm.key]) for r in view.select(crm.object, limit=50) if not is_local(r[crm.key])
    )
    view.update(crm.object, record_id, {crm.edit: value})
    return record_id


def api_values(s: Setup, record_id: str, field: str | None = None) -> list[Any]:
    """The values of ``field`` (the edited one by default) the engine's writes carried, in
    commit order."""
    name = field or s.crm.edit
    return [
        w["fields"][name]
        for w in s.box.write_log()
        if w["origin"] == "api" and name in w["fields"]
        and str(w["record_id"]).lower() == record_id.lower()
    ]  # fmt: skip


def settle(s: Setup) -> None:
    """Sync, push and sync again, a second apart: the mirror at rest."""
    for step in (s.mirror.sync, s.mirror.push, s.mirror.sync):
        s.box.advance_clock(1)
        step()


def open_entries(s: Setup) -> list[dict[str, Any]]:
    """The outbox entries not settled."""
    return [e for e in s.mirror.outbox(limit=100) if e["status"] != "done" or not e["confirmed"]]


@pytest.fixture
def sqlite_url() -> Iterator[str]:
    """A fresh SQLite mirror database."""
    with fresh_database("sqlite") as url:
        yield url


@pytest.fixture(params=[SALESFORCE, HUBSPOT, DYNAMICS], ids=lambda crm: crm.name)
def crm(request: pytest.FixtureRequest) -> Crm:
    return request.param  # type: ignore[no-any-return]


def push_losing_the_answer_then_edit(s: Setup, crm: Crm, record_id: str, value: str) -> None:
    """A push whose update lands but whose answer is lost; a CRM user sets ``value`` in the
    field at the adapter's first wait before a retry (or right after the push, if none)."""
    connection = s.adapter.connection
    sleep, edited = connection.sleep, []

    def a_crm_user_edits() -> None:
        if not edited:
            s.box.update(crm.object, record_id, {crm.edit: value})
            edited.append(True)

    def edit_then_sleep(seconds: float) -> None:
        a_crm_user_edits()
        sleep(seconds)

    connection.sleep = edit_then_sleep
    s.box.drop_next_response(1, path_contains=UPDATES[crm.name])
    try:
        s.mirror.push()
    finally:
        connection.sleep = sleep
    a_crm_user_edits()


def test_an_update_lost_past_the_retries_is_not_sent_again_over_a_later_crm_change(
    crm: Crm, tmp_path: Path, db_url: str
) -> None:
    s = started(crm, tmp_path, db_url, "portal_wins")
    try:
        record_id = portal_update(s, "the portal's value")
        s.box.drop_next_response(RETRIES + 1, path_contains=UPDATES[crm.name])
        s.mirror.push()
        s.box.clear_faults()
        assert api_values(s, record_id)[-1:] == ["the portal's value"]
        s.box.advance_clock(1)
        s.box.update(crm.object, record_id, {crm.edit: "a CRM user's later value"})
        settle(s)
        assert s.box.get(crm.object, record_id)[crm.edit] == "a CRM user's later value"
        assert set(api_values(s, record_id)) == {"the portal's value"}
        assert s.mirror.conflicts(status=None) == []
        assert open_entries(s) == []
        row = s.mirror.as_partner(portal_partner(s, record_id)).get(crm.object, record_id)
        assert row[crm.edit] == "a CRM user's later value"
    finally:
        s.mirror.close()
        s.box.stop()


def portal_partner(s: Setup, record_id: str) -> str:
    """The partner whose slice holds ``record_id``."""
    return next(
        str(p["id"])
        for p in s.mirror.partners()
        if s.mirror.as_partner(str(p["id"])).get(s.crm.object, record_id) is not None
    )


@pytest.mark.parametrize("crm", [SALESFORCE, HUBSPOT], ids=lambda crm: crm.name)
def test_an_update_whose_answer_was_lost_is_not_retried_over_a_change_made_since(
    crm: Crm, tmp_path: Path, sqlite_url: str
) -> None:
    """A CRM user changes the field right after the update landed and its answer was lost,
    before the adapter could send the update again."""
    s = started(crm, tmp_path, sqlite_url, "manual")
    try:
        record_id = portal_update(s, "the portal's value")
        push_losing_the_answer_then_edit(s, crm, record_id, "a CRM user's value")
        settle(s)
        assert s.box.get(crm.object, record_id)[crm.edit] == "a CRM user's value"
        assert api_values(s, record_id) == ["the portal's value"]
        assert [e["status"] for e in open_entries(s)] in ([], ["superseded"])
    finally:
        s.mirror.close()
        s.box.stop()


@pytest.mark.parametrize("crm", [HUBSPOT], ids=lambda crm: crm.name)
def test_hubspot_history_shows_a_lost_update_landed_before_a_change_made_right_after(
    crm: Crm, tmp_path: Path, sqlite_url: str
) -> None:
    """The CRM user's change lands the moment the update's answer is lost, before anything
    reads the record back: the property history still shows our write came first."""
    s = started(crm, tmp_path, sqlite_url, "portal_wins")
    try:
        record_id = portal_update(s, "the portal's value")
        connection = s.adapter.connection
        batch, sleep, edited = connection.batch, connection.sleep, []

        def a_crm_user_edits() -> None:
            if not edited:
                s.box.advance_clock(0.01)
                s.box.update(crm.object, record_id, {crm.edit: "a CRM user's value"})
                edited.append(True)

        def edit_when_lost(object_type: str, verb: str, body: Any, **kwargs: Any) -> Any:
            try:
                return batch(object_type, verb, body, **kwargs)
            except OutcomeUnknown:
                a_crm_user_edits()
                raise

        def edit_then_sleep(seconds: float) -> None:
            a_crm_user_edits()
            sleep(seconds)

        connection.batch, connection.sleep = edit_when_lost, edit_then_sleep
        s.box.drop_next_response(1, path_contains=UPDATES[crm.name])
        s.mirror.push()
        connection.batch, connection.sleep = batch, sleep
        assert edited
        settle(s)
        assert s.box.get(crm.object, record_id)[crm.edit] == "a CRM user's value"
        assert api_values(s, record_id) == ["the portal's value"]
        assert s.mirror.conflicts(status=None) == []
        assert open_entries(s) == []
    finally:
        s.mirror.close()
        s.box.stop()


def test_a_forced_update_whose_answer_was_lost_is_not_retried_over_a_change_made_since(
    crm: Crm, tmp_path: Path, sqlite_url: str
) -> None:
    """``portal_wins`` after a conflict writes with no precondition: a repeat after its lost
    answer would revert a change made in between, with nothing to refuse it."""
    s = started(crm, tmp_path, sqlite_url, "portal_wins")
    try:
        record_id = portal_update(s, "the portal's value")
        s.box.advance_clock(1)
        s.box.update(crm.object, record_id, {crm.edit: "a CRM user's first value"})
        s.box.advance_clock(1)
        s.mirror.sync()
        assert [c["policy"] for c in s.mirror.conflicts(status=None)] == ["portal_wins"]
        push_losing_the_answer_then_edit(s, crm, record_id, "a CRM user's second value")
        settle(s)
        assert s.box.get(crm.object, record_id)[crm.edit] == "a CRM user's second value"
        assert api_values(s, record_id) == ["the portal's value"]
        assert open_entries(s) == []
    finally:
        s.mirror.close()
        s.box.stop()


@pytest.mark.parametrize("crm", [SALESFORCE, HUBSPOT], ids=lambda crm: crm.name)
def test_a_create_whose_answer_was_lost_is_not_written_again_over_a_change_made_since(
    crm: Crm, tmp_path: Path, sqlite_url: str
) -> None:
    """A create by key sent again after its answer was lost would be an upsert of the record
    the first attempt made, over a change a CRM user made since."""
    s = started(crm, tmp_path, sqlite_url, "portal_wins")
    try:
        partner = str(max(s.mirror.partners(), key=lambda p: p["slice"].get(crm.object, 0))["id"])
        local = s.mirror.as_partner(partner).create(crm.object, crm.values("the portal's deal"))
        s.box.drop_next_response(RETRIES + 1, path_contains=crm.drop)
        s.mirror.push()
        s.box.clear_faults()
        [made] = [
            i for i in s.box.ids(crm.object)
            if s.box.get(crm.object, i)[crm.label] == "the portal's deal"
        ]  # fmt: skip
        s.box.advance_clock(1)
        s.box.update(crm.object, made, {crm.label: "renamed in the CRM"})
        s.box.advance_clock(1)
        s.mirror.push()
        settle(s)
        assert s.box.get(crm.object, made)[crm.label] == "renamed in the CRM"
        assert api_values(s, made, crm.label) == ["the portal's deal"]
        assert open_entries(s) == []
        row = s.mirror.as_partner(partner).get(crm.object, local)
        assert str(row[crm.key]) == str(made) and row[crm.label] == "renamed in the CRM"
    finally:
        s.mirror.close()
        s.box.stop()
