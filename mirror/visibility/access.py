"""The partner access table, kept current in the same transaction as each synced page.

Every row of ``mirror_access`` is one grant with its provenance: partner P sees record R of
object O through path X, derived from record ``via`` (the parent or child the path goes
through; empty for direct and self paths), on behalf of owner U (the partner user who owns the
record the grant chain starts from; empty when nobody does). Provenance is what makes the
table incremental: when a record changes, exactly the grants it derived are dropped and
derived again, and the records whose partner set changed pass the change on to their
dependents, until nothing changes. An object whose only path is its parent (contacts, line
items) stores no grants (``mirror.visibility.grants`` reads them through the parent): its records
take
their parent's change as it is, and only their entering and leaving is logged. ``rebuild``
computes the same table from scratch, object by object in dependency order.

On PostgreSQL, each sliced object table's ``_partners`` column (what the row-level-security
policies of ``mirror.visibility.postgres_rls`` compare) follows ``mirror_access`` in the same
transaction.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select

from mirror import feed
from mirror.pull.pages import PageOutcome
from mirror.store.bulk import execute_many
from mirror.store.database import MirrorTable, Store, utcnow
from mirror.store.idsets import batches, id_in
from mirror.store.tables import given_by_children, mirror_access
from mirror.types import Change, ChangeOrigin
from mirror.visibility import access_sets
from mirror.visibility import postgres_rls as rls
from mirror.visibility import sizes as slice_sizes
from mirror.visibility.grants import granted, is_inherited
from mirror.visibility.rules import SlicePath, VisibilityRules

Grants = dict[str, frozenset[tuple[str, str]]]
# one mirror_access row of an object: record_id, partner_id, owner_id, path, via_object, via_id
Grant = tuple[str, str, str, str, str, str]
GRANT_COLUMNS = ("record_id", "partner_id", "owner_id", "path", "via_object", "via_id")
# per record whose (partner, owner) set changed: that set before and after
Changes = dict[str, tuple[frozenset[tuple[str, str]], frozenset[tuple[str, str]]]]
NO_PAIRS: frozenset[tuple[str, str]] = frozenset()


class AccessMaintainer:
    """Keeps ``mirror_access`` of one source current; also a page hook for the sync."""

    def __init__(self, store: Store, rules: VisibilityRules, *, defer_settle: bool = False) -> None:
        """With ``defer_settle``, an object's first backfill only notes at its end that its
        grants are due; ``settle_pending`` derives those of every such object at once (how a
        sync of several objects derives its slices once instead of object by object)."""
        self.store = store
        self.defer_settle = defer_settle
        self.rules = rules
        self.source = rules.source
        self.dialect = store.dialect
        # objects whose first backfill this maintainer applied (for one sync, one maintainer)
        self.backfilled: set[str] = set()

    def __call__(self, conn: Connection, mirrored: MirrorTable, outcome: PageOutcome) -> None:
        """Page hook: refresh the grants of every record the page wrote or deleted; during an
        object's first backfill, derive them all at once when its last page is written."""
        if mirrored.spec.source != self.source:
            return
        name = mirrored.spec.name
        if outcome.initial:
            self.backfilled.add(name)
            if outcome.backfill_done and self.defer_settle:
                access_sets.defer(conn, self, name)
            elif outcome.backfill_done:
                access_sets.settle(conn, self, [name])
            return
        relevant = self.rules.access_fields(name)
        changed = [
            record_id
            for record_id in outcome.written_ids
            if (fields := outcome.changed_fields.get(record_id)) is None or fields & relevant
        ]
        changed += outcome.deleted_ids
        if not changed:
            return
        before = None
        if is_inherited(self.rules, name):
            before = self._inherited_before(conn, name, outcome, changed)
        self.refresh(conn, name, changed, before=before)

    def _inherited_before(
        self, conn: Connection, name: str, outcome: PageOutcome, ids: list[str]
    ) -> Grants:
        """What the records ``ids`` of an inheriting object saw before the page: their
        parent's grants through the reference they held (from the page's previous values;
        a deleted record keeps its reference); nothing for records new or undeleted."""
        path = self.rules.inherited_path(name)
        mirrored = self.table(name)
        if path is None or mirrored is None:
            return {}
        t = mirrored.table
        key, fk = t.c[mirrored.spec.key], t.c[path.field]
        deleted = set(outcome.deleted_ids)
        held: dict[str, Any] = {}
        for batch in batches(ids):
            for record_id, parent_id in conn.execute(
                select(key, fk).where(id_in(self.dialect, key, batch))
            ):
                if record_id in deleted:
                    held[record_id] = parent_id
                elif (previous := outcome.previous.get(record_id)) is not None:
                    held[record_id] = previous.get(path.field, parent_id)
        parents = self.grants(conn, path.other, {p for p in held.values() if p})
        return {i: parents[p] for i, p in held.items() if p in parents}

    @contextmanager
    def changing(self, conn: Connection, name: str, ids: Iterable[str]) -> Iterator[None]:
        """Around a local write of records ``ids`` of ``name`` (a portal's edit), in the
        caller's transaction: notes what they see before it, and refreshes the grants of
        everything the write affected after it."""
        ids = list(ids)
        before = self.grants(conn, name, ids) if is_inherited(self.rules, name) else None
        yield
        self.refresh(conn, name, ids, before=before)

    def table(self, name: str) -> MirrorTable | None:
        """The mirrored table of ``name``, or ``None`` before it is first synced."""
        try:
            return self.store.mirrored(self.source, name)
        except KeyError:
            return None

    def refresh(
        self, conn: Connection, name: str, ids: Iterable[str], *, before: Grants | None = None
    ) -> None:
        """Re-derive the grants of ``ids`` and of everything that depends on them. For an
        object whose grants are inherited (not stored), ``before`` says what the records saw
        before they changed (none for records it leaves out)."""
        # per object: records to derive again from their own fields and parents, and records
        # whose new grants are already stored (contribution targets, inheriting children)
        work: deque[tuple[str, set[str], Changes]] = deque([(name, set(ids), {})])
        while work:
            current, rederive, applied = work.popleft()
            changes = dict(applied)
            todo = rederive - applied.keys()
            if todo and is_inherited(self.rules, current):
                changes.update(self._recompare(conn, current, todo, before or {}))
            elif todo:
                changes.update(self._rederive(conn, current, todo))
            record_ids = rederive | applied.keys()
            for path in self.rules.child_paths_from(current):
                targets = self._rederive_contributions(conn, path, record_ids)
                if targets:
                    work.append((path.object, set(), targets))
            if not changes:
                continue
            for path in self.rules.parent_paths_from(current):
                if self._inherits_only(path):
                    inherited = self._inherit(conn, path, changes)
                    if inherited:
                        work.append((path.object, set(), inherited))
                else:
                    children = self._children(conn, path, set(changes))
                    if children:
                        work.append((path.object, children, {}))

    def settle_pending(self) -> list[str]:
        """Derive, in one transaction, the grants of every object whose first backfill ended
        with its settling deferred (by this maintainer or by a process that died before doing
        it); returns those objects."""
        with self.store.transaction() as conn:
            return access_sets.settle_pending(conn, self)

    def rebuild(self, conn: Connection) -> int:
        """Recompute the whole access table of the source from scratch; returns the row count."""
        conn.execute(delete(mirror_access).where(mirror_access.c.source == self.source))
        slice_sizes.recount(conn, self.source)
        names = [n for n in self.rules.order if self.table(n) is not None]
        total = access_sets.derive(conn, self, names)
        if conn.dialect.name == "postgresql":
            rls.refresh_partner_columns(conn, self.store, self.rules)
        return total

    def grants(self, conn: Connection, name: str, ids: Iterable[str]) -> Grants:
        """Per record: the set of (partner, owner) pairs that see it."""
        return _grants(self._stored(conn, name, ids))

    def _stored(self, conn: Connection, name: str, ids: Iterable[str]) -> set[Grant]:
        """The grants of ``ids`` (records of ``name``): stored, or read through the parent."""
        a = mirror_access.c
        found: set[Grant] = set()
        if is_inherited(self.rules, name):
            for batch in batches(ids):
                query = granted(self.store, self.rules, name, record_ids=batch)
                found.update(tuple(row) for row in conn.execute(query))
            return found
        for batch in batches(ids):
            query = select(*(a[c] for c in GRANT_COLUMNS)).where(
                a.source == self.source, a.object == name, id_in(self.dialect, a.record_id, batch)
            )
            found.update(tuple(row) for row in conn.execute(query))
        return found

    def _rederive(self, conn: Connection, name: str, ids: set[str]) -> Changes:
        """Derive the grants of ``ids`` again and store the difference; returns the records
        whose (partner, owner) set changed, with that set before and after."""
        before = self._stored(conn, name, ids)
        after: set[Grant] = set()
        for batch in batches(ids):
            after.update(self._own_rows(conn, name, batch))
        return self._apply(conn, name, before, after)

    def _apply(self, conn: Connection, name: str, before: set[Grant], after: set[Grant]) -> Changes:
        """Store ``after`` in place of ``before`` (the grants of the same records), writing
        only the rows that differ; logs partners entering and leaving; returns the records
        whose (partner, owner) set changed, with that set before and after."""
        removed, added = before - after, after - before
        if not removed and not added:
            return {}
        self._delete(conn, name, removed)
        self._insert(conn, name, added)
        touched = {g[0] for g in removed} | {g[0] for g in added}
        old = _grants(g for g in before if g[0] in touched)
        new = _grants(g for g in after if g[0] in touched)
        changes = _changed(touched, old, new)
        self._log_membership(conn, name, set(changes), old, new)
        return changes

    def _recompare(self, conn: Connection, name: str, ids: set[str], before: Grants) -> Changes:
        """For records of an inheriting object: compare what they see now with ``before``,
        log the difference; returns the records whose (partner, owner) set changed."""
        after = self.grants(conn, name, ids)
        changes = _changed(ids, before, after)
        self._log_membership(conn, name, set(changes), before, after)
        return changes

    def _own_rows(self, conn: Connection, name: str, ids: list[str]) -> set[Grant]:
        """The grants records ``ids`` of ``name`` derive, from their fields and their
        parents' and children's grants (the paths' queries, narrowed to ``ids``)."""
        rows: set[Grant] = set()
        for query in access_sets.grant_queries(self, name):
            rows |= self._grant_rows(conn, query.narrowed(id_in(self.dialect, query.record, ids)))
        return rows

    def _grant_rows(self, conn: Connection, query: Any) -> set[Grant]:
        """The rows of a grant query, without their source and object."""
        return {tuple(row[2:]) for row in conn.execute(query)}

    def _rederive_contributions(
        self, conn: Connection, path: SlicePath, child_ids: set[str]
    ) -> Changes:
        """Re-derive the grants ``child_ids`` give their parents through ``path``; returns
        the parents whose (partner, owner) set changed, with that set before and after."""
        through = next(
            (q for q in access_sets.grant_queries(self, path.object) if q.path == path), None
        )
        if through is None or self.table(path.other) is None:
            return {}
        a = mirror_access.c
        given: set[Grant] = set()
        giving: set[Grant] = set()
        for batch in batches(child_ids):
            query = select(*(a[c] for c in GRANT_COLUMNS)).where(
                a.source == self.source,
                a.object == path.object,
                a.path == path.text,
                a.via_object == path.other,
                id_in(self.dialect, a.via_id, batch),
                given_by_children(a.path),
            )
            given.update(tuple(row) for row in conn.execute(query))
            giving |= self._grant_rows(
                conn, through.narrowed(id_in(self.dialect, through.via, batch))
            )
        if given == giving:
            return {}
        targets = {g[0] for g in given ^ giving}
        # the targets' other grants take part in deciding whether their partner set changed
        before = self._stored(conn, path.object, targets)
        after = (before - given) | giving
        return self._apply(conn, path.object, before, {g for g in after if g[0] in targets})

    def _children(self, conn: Connection, path: SlicePath, parent_ids: set[str]) -> set[str]:
        child = self.table(path.object)
        if child is None:
            return set()
        fk = child.table.c[path.field]
        key = child.table.c[child.spec.key]
        return {
            i
            for batch in batches(parent_ids)
            for i in conn.execute(select(key).where(id_in(self.dialect, fk, batch))).scalars()
        }

    def _inherits_only(self, path: SlicePath) -> bool:
        """Whether ``path`` is the only way to see its object: its records' grants are then
        their parent's, and follow the parent's changes without being derived again."""
        return self.rules.inherited_path(path.object) == path

    def _inherit(self, conn: Connection, path: SlicePath, parents: Changes) -> Changes:
        """Pass the (partner, owner) changes of ``parents`` on to their live children through
        ``path``, the children's only path (their grants, read through the parent, changed
        with it): logs their entering and leaving; returns the children's changes."""
        child = self.table(path.object)
        if child is None:
            return {}
        t = child.table
        key, fk = t.c[child.spec.key], t.c[path.field]
        changes: Changes = {}
        for batch in batches(parents):
            query = select(key, fk).where(id_in(self.dialect, fk, batch), t.c._deleted.is_(False))
            for child_id, parent_id in conn.execute(query):
                changes[child_id] = parents[parent_id]
        before = {i: old for i, (old, _new) in changes.items()}
        after = {i: new for i, (_old, new) in changes.items()}
        self._log_membership(conn, path.object, set(changes), before, after, live=True)
        return changes

    def _insert(self, conn: Connection, name: str, rows: Iterable[Grant]) -> None:
        values = [
            {"source": self.source, "object": name, **dict(zip(GRANT_COLUMNS, row, strict=True))}
            for row in rows
        ]
        execute_many(conn, insert(mirror_access), values)

    def _delete(self, conn: Connection, name: str, rows: Iterable[Grant]) -> None:
        a = mirror_access.c
        values = [{f"g_{c}": v for c, v in zip(GRANT_COLUMNS, row, strict=True)} for row in rows]
        if not values:
            return
        statement = delete(mirror_access).where(
            a.source == self.source,
            a.object == name,
            *(a[c] == bindparam(f"g_{c}") for c in GRANT_COLUMNS),
        )
        execute_many(conn, statement, values)

    def _log_membership(
        self,
        conn: Connection,
        name: str,
        changed: set[str],
        before: Grants,
        after: Grants,
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
        lost = {i for i in changed if _owned(before.get(i, ())) - _owned(after.get(i, ()))}
        deleted = set() if live else self._deleted(conn, name, set(left) | lost)
        for record_id in sorted(changed):
            gone = "delete" if record_id in deleted else "leave"
            for partner in sorted(entered.get(record_id, ())):
                events.append(self._event(name, record_id, "enter", partner, now))
            for partner in sorted(left.get(record_id, ())):
                events.append(self._event(name, record_id, gone, partner, now))
            old_pairs, new_pairs = (
                _owned(before.get(record_id, ())),
                _owned(after.get(record_id, ())),
            )
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
            rls.track_partner_changes(conn, self.store, self.rules, self.table(name), changed)

    def _deleted(self, conn: Connection, name: str, ids: set[str]) -> set[str]:
        """Which of ``ids`` are deleted (a partner is told "delete", not "leave")."""
        mirrored = self.table(name)
        if mirrored is None or not ids:
            return set()
        key = mirrored.table.c[mirrored.spec.key]
        return {
            i
            for batch in batches(ids)
            for i in conn.execute(
                select(key).where(
                    id_in(self.dialect, key, batch), mirrored.table.c._deleted.is_(True)
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


def _grants(rows: Iterable[Grant]) -> Grants:
    found: dict[str, set[tuple[str, str]]] = {}
    for row in rows:
        found.setdefault(row[0], set()).add((row[1], row[2]))
    return {k: frozenset(v) for k, v in found.items()}


def _owned(pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (partner, owner) pairs of reps' slices: grants without an owner belong to none."""
    return {(partner, owner) for partner, owner in pairs if owner}


def _changed(ids: Iterable[str], before: Grants, after: Grants) -> Changes:
    """The records of ``ids`` whose (partner, owner) set differs, with the set before and after."""
    return {
        i: (before.get(i, NO_PAIRS), after.get(i, NO_PAIRS))
        for i in ids
        if before.get(i, NO_PAIRS) != after.get(i, NO_PAIRS)
    }
