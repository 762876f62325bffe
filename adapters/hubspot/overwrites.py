"""Whether an update would overwrite, or overwrote, a change made in HubSpot after the version
the portal edited.

Before the update, one batch read of the records checks their last-modified value and, since a
change made in the millisecond of the edited version leaves that value as it was, the
properties the update sets: one that no longer holds the value the portal edited
(``Write.expected_values``, compared by ``mirror.push.preconditions.changed_fields``) refuses the
update (``changed_since``). Record properties and association fields copied from a property are
compared; association fields kept as associations are not properties and are not.

HubSpot has no conditional writes: the writer checks each record's last-modified value before
updating it, and a change landing between that check and the update would be overwritten with
nothing to show for it. So after a versioned update the writer reads the written properties'
history back (``propertiesWithHistory``, one batch read per batch of updates): a value set
after the edited version and before our write, other than the one we sent, was overwritten by
it. Those properties are then given back the value they had just before our write, and the
update is reported ``precondition_failed``: the engine blocks the edit, and the next pull
merges it with that change under the field's conflict policy, as if the check had seen it. A
property changed again after our write keeps that later value (there is nothing to give back):
the same read takes the properties' current values, and one that no longer holds ours was
changed after it. The stamps alone cannot tell: HubSpot stamps a batch as its request arrives,
so a change applied between that moment and our write to the record carries a later stamp
than ours and is still overwritten.

An update whose answer was lost is not sent again; the same history says whether it landed
(``landed_at``): each property took the value sent, from an integration, after the edited
version. It then counts as written at that moment, so a later change stands as HubSpot's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from adapters._kit.writes import Staleness
from adapters.hubspot.assoc import Associations
from adapters.hubspot.types import KEY, RecordConverter, format_cursor, parse_instant, to_ms
from mirror.types import FieldSpec, Record, Write, WriteResult


class Checked(Protocol):
    """A write of a batch (``adapters._kit.writes.Item``)."""

    @property
    def write(self) -> Write:
        """The write."""
        ...


def checked_fields(
    associations: Associations, fields: Mapping[str, FieldSpec], items: Sequence[Checked]
) -> dict[str, str]:
    """``{field: property}`` of the fields whose edited values the version check reads: the
    record's properties and the association fields copied from one."""
    copied = {f.name: str(f.property) for f in associations.copied}
    names = {name for i in items for name in i.write.expected_values or ()}
    checked: dict[str, str] = {}
    for name in names:
        if name in copied:
            checked[name] = copied[name]
        elif name in fields and name != KEY and name not in associations.names:
            checked[name] = name
    return checked


def current_values(
    converter: RecordConverter, obj: Mapping[str, Any], checked: Mapping[str, str]
) -> Record:
    """The ``checked`` fields of a batch read's ``obj``, as the reads convert them."""
    props = obj.get("properties") or {}
    try:
        record = converter.from_json(obj)
    except ValueError:
        record = dict(props)
    values: Record = {}
    for name, prop in checked.items():
        if name == prop:
            values[name] = record.get(name)
        else:
            raw = props.get(prop)
            values[name] = str(raw) if raw not in (None, "") else None
    return values


STALE = Staleness("HubSpot", "last-modified value", "that millisecond", "the version edited")


def changed_since(record_id: str, version: str | None, fields: Sequence[str] = ()) -> WriteResult:
    """The refusal of an update whose record changed after the version edited (or, naming
    ``fields``, whose fields changed in that version's millisecond)."""
    return STALE.refusal(record_id, version, fields)


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
    current: Mapping[str, Any] | None = None,
) -> Overwritten | None:
    """What an update that sent ``sent`` (wire strings) to a record last modified at
    ``checked_at`` when it was checked, and that HubSpot stamped ``written_at``, overwrote,
    judged from the record's ``propertiesWithHistory`` and, when given, its ``current``
    property values read with that history; ``None`` when nothing.

    A property whose current value is not ours was changed again after our write: that value
    stands. One that still holds ours overwrote every other value set since the check, whatever
    their stamps: a change applied just before our write can carry a later stamp than the one
    our write got when its request arrived."""
    since, ours = _ms(checked_at), _ms(written_at)
    values: dict[str, str] = {}
    newest = since
    for name, value in sent.items():
        entries = [
            (_ms(str(entry.get("timestamp"))), str(entry.get("value") or ""))
            for entry in history.get(name) or ()
        ]
        mine = {value} | {old for stamp, old in entries if stamp == ours}
        if current is not None and name in current:
            if str(current[name] or "") not in mine:
                continue  # changed again after our write: that later value stands
        elif any(stamp > ours for stamp, _ in entries):
            continue
        others = [(stamp, old) for stamp, old in entries if stamp > since and old not in mine]
        if not others:
            continue
        stamp, old = max(others, key=lambda entry: entry[0])  # the first of equals: newest
        values[name] = old
        newest = max(newest, stamp)
    if not values:
        return None
    return Overwritten(values, _iso(newest))


def landed_at(
    history: Mapping[str, Sequence[Mapping[str, Any]]], sent: Mapping[str, str], since: str
) -> str | None:
    """When an update that sent ``sent`` (wire strings) to a record edited at version ``since``
    landed, judged from the record's ``propertiesWithHistory``: every property took the value
    sent from an integration after ``since``. ``None`` when one did not (the update did not
    land, or the history cannot show it)."""
    after, stamps = _ms(since), []
    for name, value in sent.items():
        ours = [
            _ms(str(entry.get("timestamp")))
            for entry in history.get(name) or ()
            if entry.get("sourceType") == "INTEGRATION" and str(entry.get("value") or "") == value
        ]
        ours = [stamp for stamp in ours if stamp > after]
        if not ours:
            return None
        stamps.append(min(ours))
    return _iso(max(stamps)) if stamps else None


def _ms(text: str) -> int:
    return to_ms(parse_instant(text))


def _iso(ms: int) -> str:
    return format_cursor(parse_instant(str(ms)))
