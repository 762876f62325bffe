"""Whether an update overwrote a change made in HubSpot after the version it was checked at.

HubSpot has no conditional writes: the writer checks each record's last-modified value before
updating it, and a change landing between that check and the update would be overwritten with
nothing to show for it. So after a versioned update the writer reads the written properties'
history back (``propertiesWithHistory``, one batch read per batch of updates): a value set
after the edited version and before our write, other than the one we sent, was overwritten by
it. Those properties are then given back the value they had just before our write, and the
update is reported ``precondition_failed``: the engine blocks the edit, and the next pull
merges it with that change under the field's conflict policy, as if the check had seen it. A
property changed again after our write keeps that later value (there is nothing to give back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.hubspot_types import format_cursor, parse_instant, to_ms


@dataclass(frozen=True)
class Overwritten:
    """The properties one update overwrote: the value each had just before it, and when the
    newest of those values was set (ISO-8601)."""

    values: dict[str, str]
    changed_at: str


def overwritten(
    history: Mapping[str, Sequence[Mapping[str, Any]]],
    sent: Mapping[str, str],
    checked_at: str,
    written_at: str,
) -> Overwritten | None:
    """What an update that sent ``sent`` (wire strings) to a record last modified at
    ``checked_at`` when it was checked, and that HubSpot stamped ``written_at``, overwrote,
    judged from the record's ``propertiesWithHistory``; ``None`` when nothing."""
    since, ours = _ms(checked_at), _ms(written_at)
    values: dict[str, str] = {}
    newest = since
    for name, value in sent.items():
        entries = [
            (_ms(str(entry.get("timestamp"))), str(entry.get("value") or ""))
            for entry in history.get(name) or ()
        ]
        if any(stamp > ours for stamp, _ in entries):
            continue  # changed again after our write: that later value stands
        before = [(stamp, old) for stamp, old in entries if since < stamp < ours]
        if not before:
            continue
        stamp, old = max(before, key=lambda entry: entry[0])  # the first of equals: newest
        if old != value:
            values[name] = old
            newest = max(newest, stamp)
    if not values:
        return None
    return Overwritten(values, _iso(newest))


def _ms(text: str) -> int:
    return to_ms(parse_instant(text))


def _iso(ms: int) -> str:
    return format_cursor(parse_instant(str(ms)))
