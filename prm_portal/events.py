"""Live changes: the partner's change feed (``PartnerView.changes``) and its writes' status,
pushed to open pages as server-sent events.

A page is rendered with the feed's cursor at that moment (``page_cursor``), and its
``EventSource`` asks ``/events?since=<cursor>``; on reconnect the browser sends the last event
id instead. The stream polls the partner's own view only: what it sends is what the view
serves, data changes of records while they are in the slice and records entering or leaving
it (a deal moved to another partner arrives as its "leave", without where it went).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, request

from mirror import MirrorError, PartnerView
from prm_portal.auth import current_view, partner_required
from prm_portal.state import FeedClock, portal_state
from prm_portal.write_status import partner_writes

blueprint = Blueprint("events", __name__)
FEED_PAGE = 500
HEARTBEAT_SECONDS = 15.0


def page_cursor(view: PartnerView) -> int:
    """The feed's cursor now, for a page being rendered (its stream starts there)."""
    return view.feed_cursor()


@blueprint.route("/events")
@partner_required
def events() -> Response:
    """The partner's live changes, as ``text/event-stream``."""
    state = portal_state()
    since = _since(request.headers.get("Last-Event-ID") or request.args.get("since"))
    stream = _stream(
        current_view(),
        since,
        state.settings.feed_poll_seconds,
        state.settings.feed_stream_seconds,
        state.clock,
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(stream, mimetype="text/event-stream", headers=headers)


def _since(raw: str | None) -> int:
    try:
        value = int(raw or 0)
    except ValueError:
        return 0
    return value if 0 <= value < 2**62 else 0


def _stream(
    view: PartnerView, since: int, poll: float, duration: float, clock: FeedClock
) -> Iterator[str]:
    """The events of one connection, until ``duration`` is up (the browser reconnects); the
    slice's feed is read only when the mirror has changes after the cursor."""
    cursor = since
    told: dict[int, str] = {}
    deadline = time.monotonic() + duration
    quiet_since = time.monotonic()
    yield "retry: 2000\n\n"
    while time.monotonic() < deadline:
        try:
            found: list[dict[str, Any]] = []
            latest = clock.latest(view)
            if latest > cursor:
                batch = view.changes(cursor, limit=FEED_PAGE)
                found = batch.changes
                # a short page is the whole feed up to ``latest``: other partners' changes
                # are not asked again
                done = len(found) < FEED_PAGE
                cursor = max(batch.cursor, latest) if done else batch.cursor
            writes = partner_writes(view, limit=20)
        except MirrorError:
            return
        sent = False
        for change in found:
            yield _event("change", _change(change), change["seq"])
            sent = True
        for write in writes:
            if told.get(write["seq"]) != write["state"]:
                told[write["seq"]] = write["state"]
                yield _event("write", write, None)
                sent = True
        if sent:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > HEARTBEAT_SECONDS:
            yield ": still here\n\n"
            quiet_since = time.monotonic()
        if len(found) < FEED_PAGE:
            time.sleep(poll)


def _change(change: dict[str, Any]) -> dict[str, Any]:
    """A feed entry as the page uses it: each changed field's new value."""
    fields = change.get("fields") or {}
    values = {
        name: value[1] if isinstance(value, list) and len(value) == 2 else value
        for name, value in fields.items()
    }
    return {
        "object": change["object"],
        "record_id": change["record_id"],
        "op": change["op"],
        "origin": change["origin"],
        "fields": values,
    }


def _event(kind: str, data: dict[str, Any], event_id: int | None) -> str:
    body = json.dumps(data, default=str, separators=(",", ":"))
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {body}\n\n"
