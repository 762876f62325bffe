"""An edit parked in an open ``manual`` conflict never reaches the CRM, however the pull that
parked it and the push interleave. End to end over HTTP against the Salesforce sandbox, on both
stores.

The push takes its entries before it sends them, batch after batch; a pull that runs meanwhile
(a daemon syncs while it pushes) may park an entry of a later batch in a conflict, or rebase it
onto the CRM's newer values. The entry as the push read it earlier must then not be sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from adapters.salesforce.adapter import SalesforceAdapter
from mirror import Mirror
from mirror.config import parse_config
from mirror.store.tables import mirror_outbox
from mirror.types import ObjectSpec, Write, WriteResult
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.adapters.conftest import sandbox_settings
from tests.mirror.push.writeback_fixtures import OBJECTS, fresh_opportunity

USED: set[str] = set()
Hook = Callable[[ObjectSpec, Sequence[Write]], None]


class Interleaved(SalesforceAdapter):
    """The Salesforce adapter, running ``before_write`` once before the next write call."""

    before_write: Hook | None = None

    def write(self, spec: ObjectSpec, writes: Sequence[Write]) -> list[WriteResult]:
        """Run the hook (once), then write."""
        hook, self.before_write = self.before_write, None
        if hook is not None:
            hook(spec, writes)
        return super().write(spec, writes)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceSandbox]:
    path = Path(tmp_path_factory.mktemp("salesforce")) / "sf.db"
    with SalesforceSandbox(path, size="tiny") as sandbox:
        yield sandbox


def open_mirror(url: str, adapter: SalesforceAdapter, policy: str = "manual") -> Mirror:
    config = parse_config(
        {
            "store": {"database": url},
            "sync": {"push_retry_delay": 0},
            "sources": {
                "salesforce": {
                    "crm": "salesforce",
                    "auth": "password",
                    "username": "u",
                    "password": "p",
                    "objects": OBJECTS,
                    "conflicts": {"default": policy},
                }
            },
        }
    )
    mirror = Mirror(config, adapters={"salesforce": adapter})
    mirror.sync()
    return mirror


def entries(mirror: Mirror, record_id: str) -> list[tuple[str, dict[str, Any]]]:
    o = mirror_outbox.c
    query = select(o.status, o.new_values).where(o.record_id == record_id).order_by(o.seq)
    with mirror.store.engine.connect() as conn:
        return [(status, values) for status, values in conn.execute(query)]


def move_checkpoint_past(mirror: Mirror, box: SalesforceSandbox, record_id: str) -> None:
    """A later change of another opportunity, synced: the checkpoint passes the record's
    version, so a push no longer lists the record among those changed since."""
    box.advance_clock(2)
    other = fresh_opportunity(mirror, USED | {record_id})[1]["Id"]
    box.update("Opportunity", other, {"Description": "a later change elsewhere"})
    box.advance_clock(2)
    mirror.sync(["Opportunity"])


def test_an_edit_parked_while_the_push_was_under_way_is_never_written(db_url: str, box) -> None:
    adapter = Interleaved(sandbox_settings(box))
    mirror = open_mirror(db_url, adapter)
    try:
        partner, opp = fresh_opportunity(mirror, USED)
        record_id = opp["Id"]
        view = mirror.as_partner(partner)
        new_deal = {"Name": "first batch", "StageName": "Prospecting", "CloseDate": "2027-06-30"}
        view.create("Opportunity", new_deal)
        view.update("Opportunity", record_id, {"NextStep": "portal says"})

        def crm_change_then_pull(_spec: ObjectSpec, _writes: Sequence[Write]) -> None:
            # while the push sends its first batch (the create), the CRM changes the edited
            # field and a pull parks the edit of the second batch in a manual conflict
            box.advance_clock(1)
            box.update("Opportunity", record_id, {"NextStep": "crm says"})
            box.advance_clock(1)
            mirror.sync(["Opportunity"])

        adapter.before_write = crm_change_then_pull
        result = mirror.push()["salesforce"]
        assert result.sent == 1 and result.done == 1
        assert entries(mirror, record_id) == [("superseded", {"NextStep": "portal says"})]
        move_checkpoint_past(mirror, box, record_id)
        mirror.push()
        mirror.sync(["Opportunity"])
        assert box.get("Opportunity", record_id)["NextStep"] == "crm says"  # type: ignore[index]
        assert view.get("Opportunity", record_id)["NextStep"] == "crm says"
        conflicts = [(c["field"], c["portal"], c["crm"]) for c in mirror.conflicts()]
        assert conflicts == [("NextStep", "portal says", "crm says")]
        assert entries(mirror, record_id) == [("superseded", {"NextStep": "portal says"})]
    finally:
        mirror.close()


def test_an_edit_of_a_created_record_made_before_any_pull_holds_the_crm_to_the_create(
    db_url: str, box
) -> None:
    adapter = Interleaved(sandbox_settings(box))
    mirror = open_mirror(db_url, adapter)
    try:
        partner = fresh_opportunity(mirror, USED)[0]
        view = mirror.as_partner(partner)
        new_deal = {"Name": "made by the portal", "StageName": "Prospecting",
                    "CloseDate": "2027-06-30", "NextStep": "as created"}  # fmt: skip
        local = view.create("Opportunity", new_deal)
        assert mirror.push()["salesforce"].done == 1
        record_id = view.get("Opportunity", local)["Id"]
        box.advance_clock(1)
        box.update("Opportunity", record_id, {"NextStep": "crm says"})
        # the mirror has not read the record since its create: the edit has no version of its
        # own, and was made against the create's values
        view.update("Opportunity", record_id, {"NextStep": "portal says"})
        result = mirror.push()["salesforce"]
        assert (result.done, result.blocked) == (0, 1)
        mirror.sync(["Opportunity"])
        mirror.push()
        assert box.get("Opportunity", record_id)["NextStep"] == "crm says"  # type: ignore[index]
        conflicts = [(c["field"], c["portal"], c["crm"]) for c in mirror.conflicts()]
        assert conflicts == [("NextStep", "portal says", "crm says")]
    finally:
        mirror.close()
