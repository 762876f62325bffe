"""Each real CRM sandbox, served from its own process, with the daemon running in another
(``stream = true``, the daemon's default settings but an hour between polls) and the portal in
this one: a change made in the CRM reaches the mirror row and the partner's feed through the
stream within seconds, a portal edit reaches the CRM within about a second (the push wake-up),
and a lost delivery is brought by the poll an injected gap asks for."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.stream_rig import StreamRig, wait_for
from sandboxes.testing.hubspot_webhooks import HubSpotWebhooks

SYNC_INTERVAL = 3600.0  # no scheduled poll runs during a test: what arrives came by stream


def _salesforce_faults(rig: StreamRig) -> tuple[Callable[[], None], Callable[[str], None]]:
    admin = rig.box.admin

    def gap(record_id: str) -> None:
        admin("cdc_inject_gap", sobject=rig.target.object, ids=[record_id])

    return lambda: admin("cdc_lose_next", count=1), gap


def _hubspot_faults(rig: StreamRig) -> tuple[Callable[[], None], Callable[[str], None]]:
    hooks = HubSpotWebhooks(rig.box.admin)

    def gap(record_id: str) -> None:
        # a delivery signed badly is refused (401, never retried by HubSpot): a gap, polled
        hooks.inject("bad_signature")
        rig.crm_update(record_id, "badly signed")

    return lambda: hooks.inject("lose"), gap


def _dynamics_faults(rig: StreamRig) -> tuple[Callable[[], None], Callable[[str], None]]:
    admin = rig.box.admin

    def gap(record_id: str) -> None:
        # a post with a wrong key is refused (401): a gap, polled
        admin("wrong_webhook_key", count=1)
        rig.crm_update(record_id, "wrong key")

    return lambda: admin("lose_webhooks", count=1), gap


FAULTS = {
    "salesforce": _salesforce_faults,
    "hubspot": _hubspot_faults,
    "dynamics": _dynamics_faults,
}


@pytest.mark.parametrize("crm", ["salesforce", "hubspot", "dynamics"])
def test_a_crm_change_streams_in_and_a_portal_edit_goes_out_at_once(
    crm: str, tmp_path: Path
) -> None:
    with StreamRig(crm, tmp_path, sync_interval=SYNC_INTERVAL) as rig:
        assert rig.mirror is not None
        field = rig.target.field
        (record_id, partner), (lost_id, _), (other_id, _) = rig.records(3)
        view = rig.mirror.as_partner(partner)
        cursor = view.feed_cursor()
        applied = rig.stream().applied

        rig.crm_update(record_id, "changed in the CRM")
        took = wait_for(lambda: rig.row(record_id).get(field) == "changed in the CRM", 30, "row")
        assert took < 5.0, f"{took:.2f} s"
        assert rig.stream().applied > applied
        changes = view.changes(since=cursor).changes
        ours = [c for c in changes if c["record_id"] == record_id and field in c["fields"]]
        assert ours and ours[-1]["fields"][field][1] == "changed in the CRM"

        view.update(rig.target.object, record_id, {field: "edited in the portal"})
        pushed = "edited in the portal"
        took = wait_for(lambda: rig.crm_value(record_id) == pushed, 30, "push", 0.02)
        assert took < 3.0, f"{took:.2f} s"

        lose, gap = FAULTS[crm](rig)
        rig.settle()  # the echo of our edit delivered: the fault meets the next change
        lose()
        rig.crm_update(lost_id, "lost delivery")
        time.sleep(3.0)
        assert rig.row(lost_id).get(field) != "lost delivery"  # lost: nothing brought it
        gaps = rig.stream().gaps
        gap(other_id)
        wait_for(lambda: rig.row(lost_id).get(field) == "lost delivery", 30, "the gap's poll")
        assert rig.stream().gaps > gaps
        wait_for(lambda: rig.stream().polls_requested == (), 30, "the requested poll cleared")
