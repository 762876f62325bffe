"""The live stream of a partner's page: CRM changes in its slice arrive, a deal moved to another
partner arrives as its leaving (and nothing of where it went), other partners' changes never."""

from __future__ import annotations

import json
import re
from typing import Any

from flask.testing import FlaskClient

from mirror import PartnerView
from tests.portal.conftest import (
    DEAL_B,
    PARTNER_B,
    Portal,
    open_deals,
    partner_client,
    text,
)


def cursor_of(client: FlaskClient, path: str = "/deals") -> int:
    found = re.search(r'data-feed-cursor="(\d+)"', text(client.get(path)))
    assert found
    return int(found.group(1))


def stream(client: FlaskClient, since: int | None = None, **headers: str) -> tuple[str, list[dict]]:
    """The raw stream of one connection (it ends after the test settings' duration) and its
    events, each with ``event``, ``id`` and ``data``."""
    query = {} if since is None else {"since": since}
    answer = client.get("/events", query_string=query, headers=headers)
    assert answer.status_code == 200 and answer.mimetype == "text/event-stream"
    raw = text(answer)
    events = []
    for block in raw.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append({**lines, "data": json.loads(lines["data"])})
    return raw, events


def changes(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["event"] == "change"]


def test_a_crm_change_in_the_slice_is_streamed(portal: Portal) -> None:
    client = partner_client(portal)
    deal = open_deals(portal)[5]
    since = cursor_of(client)
    portal.box.update("Opportunity", deal["Id"], {"NextStep": "Streamed from the CRM"})
    portal.mirror.sync()
    _, events = stream(client, since)
    mine = [c for c in changes(events) if c["record_id"] == deal["Id"]]
    assert mine and mine[-1]["fields"]["NextStep"] == "Streamed from the CRM"
    assert mine[-1]["op"] == "update" and mine[-1]["origin"] == "crm"


def test_a_deal_moved_to_another_partner_leaves_and_names_no_one(portal: Portal) -> None:
    client = partner_client(portal)
    deal = open_deals(portal)[6]
    since = cursor_of(client)
    portal.box.update("Opportunity", deal["Id"], {"PartnerAccountId": PARTNER_B})
    portal.mirror.sync()
    raw, events = stream(client, since)
    left = [c for c in changes(events) if c["record_id"] == deal["Id"]]
    assert left and left[-1]["op"] == "leave" and left[-1]["fields"] == {}
    assert PARTNER_B not in raw
    assert client.get(f"/deals/{deal['Id']}").status_code == 404


def test_another_partners_changes_are_never_streamed(portal: Portal) -> None:
    client = partner_client(portal)
    since = cursor_of(client)
    portal.box.update("Opportunity", DEAL_B, {"NextStep": "B's secret next step"})
    portal.mirror.sync()
    raw, _ = stream(client, 0)
    assert DEAL_B not in raw and "secret" not in raw
    raw, _ = stream(client, since)
    assert DEAL_B not in raw


def test_a_reconnect_resumes_after_the_last_event_id(portal: Portal) -> None:
    client = partner_client(portal)
    first, second = open_deals(portal)[7:9]
    since = cursor_of(client)
    portal.box.update("Opportunity", first["Id"], {"NextStep": "first"})
    portal.mirror.sync()
    _, events = stream(client, since)
    last = max(int(e["id"]) for e in events if e["event"] == "change")
    portal.box.update("Opportunity", second["Id"], {"NextStep": "second"})
    portal.mirror.sync()
    _, resumed = stream(client, since, **{"Last-Event-ID": str(last)})
    ids = {c["record_id"] for c in changes(resumed)}
    assert second["Id"] in ids and first["Id"] not in ids


def test_write_status_changes_are_streamed(portal: Portal) -> None:
    client = partner_client(portal)
    deal = open_deals(portal)[9]
    view = portal.mirror.as_partner("001Kj0000000002IAA")
    view.update("Opportunity", deal["Id"], {"NextStep": "status please"})
    portal.round()
    _, events = stream(client, cursor_of(client))
    writes = [e["data"] for e in events if e["event"] == "write"]
    assert any(w["record_id"] == deal["Id"] and w["state"] == "crm" for w in writes)


def test_a_bad_cursor_starts_from_the_beginning_of_the_partners_own_feed(portal: Portal) -> None:
    client = partner_client(portal)
    for since in ("-5", "abc", str(2**70)):
        answer = client.get("/events", query_string={"since": since})
        assert answer.status_code == 200 and DEAL_B not in text(answer)


def test_a_quiet_stream_reads_its_feed_only_when_the_mirror_changed(
    portal: Portal, monkeypatch: Any
) -> None:
    client = partner_client(portal)
    since = cursor_of(client)
    asked: list[int] = []
    real = PartnerView.changes

    def counted(view: PartnerView, since: int = 0, limit: int = 500) -> Any:
        asked.append(since)
        return real(view, since, limit)

    monkeypatch.setattr(PartnerView, "changes", counted)
    stream(client, since)  # about a dozen polls, nothing changed anywhere
    assert asked == []
    portal.box.update("Opportunity", DEAL_B, {"NextStep": "another partner's change"})
    portal.mirror.sync()
    raw, _ = stream(client, since)
    # the feed is read once, then the stream knows nothing of its own changed
    assert len(asked) == 1 and DEAL_B not in raw
    deal = open_deals(portal)[7]
    portal.box.update("Opportunity", deal["Id"], {"NextStep": "Seen after quiet polls"})
    portal.mirror.sync()
    _, events = stream(client, since)
    assert [c for c in changes(events) if c["record_id"] == deal["Id"]]
