"""Records entering and leaving slices, as the page-by-page upkeep changes their grants.

When the grants of some records change, each partner that gained a record is told "enter" and
each that lost one "leave" (or "delete", when the record itself was deleted) in the change
feed, once for the partner's slice and once for the rep's slice of each owner gained or lost.
The slice sizes follow the partners' changes, and on PostgreSQL so does each row's
``_partners`` column, all in the transaction that changed the grants.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from mirror import feed
from mirror.store.database import Store, utcnow
from mirror.store.idsets import batches, id_in
from mirror.types import Change, ChangeOrigin
from mirror.visibility import sizes as slice_sizes
from mirror.visibility.grants import Pairs, mirrored_or_none
from mirror.visibility.partner_columns import track_partner_changes
from mirror.visibility.rules import VisibilityRules


def owned(pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (partner, owner) pairs of reps' slices: grants without an owner belong to none."""
    return {(partner, owner) for partner, owner in pairs if owner}


class MembershipLog:
    """Logs the slice memberships that changed for the records of one source."""

    def __init__(self, store: Store, rules: VisibilityRules) -> None:
        self.store = store
        self.rules = rules
        self.source = rules.source

    def log(
        self,
        conn: Connection,
        name: str,
        changed: set[str],
        before: Pairs,
        after: Pairs,
        *,
        live: bool = False,
    ) -> None:
        """Log the partners ``changed`` records entered and left and adjust the slice sizes;
        with ``live``, the records are known not to be deleted."""
        events = []
        now = utcnow()
        entered: dict[str, set[str]] = {}
        left: dict[str, set[str]] = {}
        for record_id in sorted(changed):
            old = {p for p, _ in before.get(record_id, ())}
            new = {p for p, _ in after.get(record_id, ())}
            if new - old:
                entered[record_id] = new - old
            if old - new:
                left[record_id] = old - new
        lost = {i for i in changed if owned(before.get(i, ())) - owned(after.get(i, ()))}
        deleted = set() if live else self._deleted(conn, name, set(left) | lost)
        for record_id in sorted(changed):
            gone = "delete" if record_id in deleted else "leave"
            for partner in sorted(entered.get(record_id, ())):
                events.append(self._event(name, record_id, "enter", partner, now))
            for partner in sorted(left.get(record_id, ())):
                events.append(self._event(name, record_id, gone, partner, now))
            old_pairs, new_pairs = owned(before.get(record_id, ())), owned(after.get(record_id, ()))
            for partner, owner in sorted(new_pairs - old_pairs):
                events.append(self._event(name, record_id, "enter", partner, now, owner))
            for partner, owner in sorted(old_pairs - new_pairs):
                events.append(self._event(name, record_id, gone, partner, now, owner))
        feed.append(conn, events)
        deltas: Counter[str] = Counter()
        for partners in entered.values():
            deltas.update(partners)
        for partners in left.values():
            deltas.subtract(partners)
        slice_sizes.adjust(conn, self.source, name, deltas)
        if changed and conn.dialect.name == "postgresql":
            mirrored = mirrored_or_none(self.store, self.source, name)
            track_partner_changes(conn, self.store, self.rules, mirrored, changed)

    def _deleted(self, conn: Connection, name: str, ids: set[str]) -> set[str]:
        """Which of ``ids`` are deleted (a partner is told "delete", not "leave")."""
        mirrored = mirrored_or_none(self.store, self.source, name)
        if mirrored is None or not ids:
            return set()
        key = mirrored.table.c[mirrored.spec.key]
        return {
            i
            for batch in batches(ids)
            for i in conn.execute(
                select(key).where(
                    id_in(self.store.dialect, key, batch), mirrored.table.c._deleted.is_(True)
                )
            ).scalars()
        }

    def _event(
        self, name: str, record_id: str, op: str, partner: str, now: Any, owner: str | None = None
    ) -> Change:
        """One membership event: of the partner's slice, or with ``owner`` of that rep's."""
        return Change(
            self.source,
            name,
            record_id,
            op,
            ChangeOrigin.ACCESS,
            at=now,
            partner_id=partner,
            owner_id=owner,
        )
