"""The change feed: every change the mirror applied, appended to ``mirror_changes`` here only.

A pull appends the CRM's changes (``ChangeOrigin.CRM``), a portal edit its own (``PORTAL``), a
write the CRM refused for good the revert of its row (``WRITEBACK``), and the access upkeep the
records entering and leaving each partner's slice (``ACCESS``). Each append runs in the caller's
transaction, so a change is in the feed exactly when its effect is in the mirror. What a partner
may read of the feed is ``mirror.portal.feed``'s concern.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, insert, update

from mirror.store.bulk import execute_many
from mirror.store.database import utcnow
from mirror.store.records import json_safe
from mirror.store.tables import mirror_changes
from mirror.types import Change, ChangeOrigin


def append(conn: Connection, changes: Iterable[Change]) -> None:
    """Append ``changes`` to the feed within ``conn``'s transaction, in their order."""
    rows = [_row(change) for change in changes]
    if rows:
        execute_many(conn, insert(mirror_changes), rows)


def append_selected(conn: Connection, columns: Sequence[str], query: Any) -> None:
    """Append the changes ``query`` selects (its columns in the order of ``columns``), without
    reading them into Python: how the access upkeep logs a whole slice's entries at once."""
    conn.execute(insert(mirror_changes).from_select(list(columns), query))


def rename_record(conn: Connection, source: str, name: str, old_id: str, new_id: str) -> None:
    """The changes of record ``old_id`` become those of ``new_id``: a portal create's local id
    replaced by the id the CRM gave it."""
    c = mirror_changes.c
    conn.execute(
        update(mirror_changes)
        .where(c.source == source, c.object == name, c.record_id == old_id)
        .values(record_id=new_id)
    )


def _row(change: Change) -> dict[str, Any]:
    fields = change.fields
    return {
        "source": change.source,
        "object": change.object,
        "record_id": change.record_id,
        "op": change.op,
        "origin": ChangeOrigin(change.origin).value,
        "author": change.author,
        "fields": json_safe({k: list(v) for k, v in fields.items()})
        if fields is not None
        else None,
        "at": change.at or utcnow(),
        "run_id": change.run_id,
        "partner_id": change.partner_id,
        "owner_id": change.owner_id,
    }
