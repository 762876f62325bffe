"""The partner access table, kept current in the same transaction as each synced page.

Every row of ``mirror_access`` is one grant with its provenance: partner P sees record R of
object O through path X, derived from record ``via`` (the parent or child the path goes
through; empty for direct and self paths), on behalf of owner U (the partner user who owns the
record the grant chain starts from; empty when nobody does). Provenance is what makes the
table incremental: when a record changes, exactly the grants it derived are dropped and
derived again, and the records whose partner set changed pass the change on to their
dependents, until nothing changes. ``rebuild`` computes the same table from scratch, object by
object in dependency order.

On PostgreSQL, each sliced object table's ``_partners`` column (what the row-level-security
policies of ``mirror.rls`` compare) follows ``mirror_access`` in the same transaction.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, insert, select

from mirror import rls
from mirror.pages import PageOutcome
from mirror.store import MirrorTable, Store, utcnow
from mirror.tables import mirror_access, mirror_changes
from mirror.visibility import SlicePath, VisibilityRules

CHUNK = 500
Grants = dict[str, frozenset[tuple[str, str]]]


def chunks(ids: Iterable[str]) -> Iterator[list[str]]:
    """``ids`` in lists of at most ``CHUNK`` (bound-parameter limits)."""
    batch: list[str] = []
    for record_id in ids:
        batch.append(record_id)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


class AccessMaintainer:
    """Keeps ``mirror_access`` of one source current; also a page hook for the sync."""

    def __init__(self, store: Store, rules: VisibilityRules) -> None:
        self.store = store
        self.rules = rules
        self.source = rules.source

    def __call__(self, conn: Connection, mirrored: MirrorTable, outcome: PageOutcome) -> None:
        """Page hook: refresh the grants of every record the page wrote or deleted."""
        if mirrored.spec.source != self.source:
            return
        changed = [*outcome.written_ids, *outcome.deleted_ids]
        if changed:
            self.refresh(conn, mirrored.spec.name, changed)

    def table(self, name: str) -> MirrorTable | None:
        """The mirrored table of ``name``, or ``None`` before it is first synced."""
        try:
            return self.store.mirrored(self.source, name)
        except KeyError:
            return None

    def refresh(self, conn: Connection, name: str, ids: Iterable[str]) -> None:
        """Re-derive the grants of ``ids`` and of everything that depends on them."""
        work: deque[tuple[str, set[str], set[str]]] = deque([(name, set(ids), set())])
        while work:
            current, record_ids, forced = work.popleft()
            if not record_ids:
                continue
            # records reached as a contribution target already have their new grants (only
            # their children changed); the rest re-derive from their own fields and parents
            if forced == record_ids:
                changed = forced
            else:
                changed = self._rederive(conn, current, record_ids) | forced
            for path in self.rules.child_paths_from(current):
                targets = self._rederive_contributions(conn, path, record_ids)
                if targets:
                    work.append((path.object, targets, targets))
            if changed:
                for path in self.rules.parent_paths_from(current):
                    children = self._children(conn, path, changed)
                    if children:
                        work.append((path.object, children, set()))

    def rebuild(self, conn: Connection) -> int:
        """Recompute the whole access table of the source from scratch; returns the row count."""
        conn.execute(delete(mirror_access).where(mirror_access.c.source == self.source))
        total = 0
        for name in self.rules.order:
            mirrored = self.table(name)
            if mirrored is None or self.rules.rule(name) is None:
                continue
            key = mirrored.table.c[mirrored.spec.key]
            live = select(key).where(mirrored.table.c._deleted.is_(False))
            ids = list(conn.execute(live).scalars())
            for batch in chunks(ids):
                rows = self._own_rows(conn, name, batch)
                _insert(conn, rows)
                total += len(rows)
        if conn.dialect.name == "postgresql":
            rls.refresh_partner_columns(conn, self.store, self.rules)
        return total

    def grants(self, conn: Connection, name: str, ids: Iterable[str]) -> Grants:
        """Per record: the set of (partner, owner) pairs that see it."""
        found: dict[str, set[tuple[str, str]]] = {}
        a = mirror_access.c
        for batch in chunks(ids):
            query = select(a.record_id, a.partner_id, a.owner_id).where(
                a.source == self.source, a.object == name, a.record_id.in_(batch)
            )
            for record_id, partner, owner in conn.execute(query):
                found.setdefault(record_id, set()).add((partner, owner))
        return {k: frozenset(v) for k, v in found.items()}

    def _rederive(self, conn: Connection, name: str, ids: set[str]) -> set[str]:
        before = self.grants(conn, name, ids)
        a = mirror_access.c
        for batch in chunks(ids):
            conn.execute(
                delete(mirror_access).where(
                    a.source == self.source, a.object == name, a.record_id.in_(batch)
                )
            )
            _insert(conn, self._own_rows(conn, name, batch))
        after = self.grants(conn, name, ids)
        changed = {i for i in ids if before.get(i) != after.get(i)}
        self._log_membership(conn, name, changed, before, after)
        return changed

    def _own_rows(self, conn: Connection, name: str, ids: list[str]) -> list[dict[str, Any]]:
        rule = self.rules.rule(name)
        mirrored = self.table(name)
        if rule is None or mirrored is None or rule.public:
            return []
        rows: list[dict[str, Any]] = []
        for path in rule.paths:
            if path.kind in ("self", "direct"):
                rows += self._direct_rows(conn, mirrored, path, ids, rule.owner_field)
            elif path.kind == "parent":
                rows += self._parent_rows(conn, mirrored, path, ids)
            else:
                rows += self._child_rows(conn, mirrored, path, ids)
        return _unique(rows)

    def _direct_rows(
        self,
        conn: Connection,
        mirrored: MirrorTable,
        path: SlicePath,
        ids: list[str],
        owner_field: str | None,
    ) -> list[dict[str, Any]]:
        t, key = mirrored.table, mirrored.table.c[mirrored.spec.key]
        owner = t.c[owner_field] if owner_field else None
        if path.kind == "self":
            flag = self.rules.partner_flag
            partner = key
            condition = t.c[flag].is_(True) if flag else key.is_not(None)
        else:
            partner = t.c[path.field]
            condition = partner.is_not(None)
        columns = [key, partner] + ([owner] if owner is not None and path.kind == "direct" else [])
        query = select(*columns).where(key.in_(ids), t.c._deleted.is_(False), condition)
        return [
            self._row(path, row[0], row[1], row[2] if len(row) > 2 else None, "", "")
            for row in conn.execute(query)
        ]

    def _parent_rows(
        self, conn: Connection, mirrored: MirrorTable, path: SlicePath, ids: list[str]
    ) -> list[dict[str, Any]]:
        t, key = mirrored.table, mirrored.table.c[mirrored.spec.key]
        fk = t.c[path.field]
        a = mirror_access.c
        query = (
            select(key, a.partner_id, a.owner_id, fk)
            .join(
                mirror_access,
                and_(a.source == self.source, a.object == path.other, a.record_id == fk),
            )
            .where(key.in_(ids), t.c._deleted.is_(False))
            .distinct()
        )
        return [
            self._row(path, record_id, partner, owner, path.other, parent_id)
            for record_id, partner, owner, parent_id in conn.execute(query)
        ]

    def _child_rows(
        self, conn: Connection, mirrored: MirrorTable, path: SlicePath, ids: list[str]
    ) -> list[dict[str, Any]]:
        child = self.table(path.other)
        if child is None:
            return []
        t = mirrored.table
        live = set(
            conn.execute(
                select(t.c[mirrored.spec.key]).where(
                    t.c[mirrored.spec.key].in_(ids), t.c._deleted.is_(False)
                )
            ).scalars()
        )
        if not live:
            return []
        return self._contribution_rows(conn, path, child, child.table.c[path.field].in_(live))

    def _contribution_rows(
        self, conn: Connection, path: SlicePath, child: MirrorTable, condition: Any
    ) -> list[dict[str, Any]]:
        c: Table = child.table
        child_key = c.c[child.spec.key]
        fk = c.c[path.field]
        a = mirror_access.c
        query = (
            select(fk, a.partner_id, a.owner_id, child_key)
            .join(
                mirror_access,
                and_(a.source == self.source, a.object == path.other, a.record_id == child_key),
            )
            .where(condition, c.c._deleted.is_(False), fk.is_not(None))
            .distinct()
        )
        return [
            self._row(path, target, partner, owner, path.other, child_id)
            for target, partner, owner, child_id in conn.execute(query)
        ]

    def _rederive_contributions(
        self, conn: Connection, path: SlicePath, child_ids: set[str]
    ) -> set[str]:
        """Re-derive the grants ``child_ids`` give their parents through ``path``; returns
        the parents whose partner set changed."""
        child, parent = self.table(path.other), self.table(path.object)
        if child is None or parent is None:
            return set()
        a = mirror_access.c
        targets: set[str] = set()
        scope = (a.source == self.source, a.object == path.object, a.path == path.text)
        for batch in chunks(child_ids):
            targets |= set(
                conn.execute(
                    select(a.record_id).where(
                        *scope, a.via_object == path.other, a.via_id.in_(batch)
                    )
                ).scalars()
            )
            fk = child.table.c[path.field]
            key = child.table.c[child.spec.key]
            targets |= {t for t in conn.execute(select(fk).where(key.in_(batch))).scalars() if t}
        before = self.grants(conn, path.object, targets)
        parent_key = parent.table.c[parent.spec.key]
        live_parents = {
            i
            for batch in chunks(targets)
            for i in conn.execute(
                select(parent_key).where(parent_key.in_(batch), parent.table.c._deleted.is_(False))
            ).scalars()
        }
        for batch in chunks(child_ids):
            conn.execute(
                delete(mirror_access).where(*scope, a.via_object == path.other, a.via_id.in_(batch))
            )
            key = child.table.c[child.spec.key]
            rows = self._contribution_rows(conn, path, child, key.in_(batch))
            _insert(conn, [r for r in rows if r["record_id"] in live_parents])
        after = self.grants(conn, path.object, targets)
        changed = {i for i in targets if before.get(i) != after.get(i)}
        self._log_membership(conn, path.object, changed, before, after)
        return changed

    def _children(self, conn: Connection, path: SlicePath, parent_ids: set[str]) -> set[str]:
        child = self.table(path.object)
        if child is None:
            return set()
        fk = child.table.c[path.field]
        key = child.table.c[child.spec.key]
        return {
            i
            for batch in chunks(parent_ids)
            for i in conn.execute(select(key).where(fk.in_(batch))).scalars()
        }

    def _row(
        self,
        path: SlicePath,
        record_id: str,
        partner: str,
        owner: str | None,
        via_object: str,
        via_id: str,
    ) -> dict[str, Any]:
        return {
            "source": self.source,
            "object": path.object,
            "record_id": record_id,
            "partner_id": partner,
            "owner_id": owner or "",
            "path": path.text,
            "via_object": via_object,
            "via_id": via_id,
        }

    def _log_membership(
        self, conn: Connection, name: str, changed: set[str], before: Grants, after: Grants
    ) -> None:
        events = []
        now = utcnow()
        deleted = self._deleted(conn, name, changed)
        for record_id in sorted(changed):
            old = {p for p, _ in before.get(record_id, ())}
            new = {p for p, _ in after.get(record_id, ())}
            for partner in sorted(new - old):
                events.append(self._event(name, record_id, "enter", partner, now))
            gone = "delete" if record_id in deleted else "leave"
            for partner in sorted(old - new):
                events.append(self._event(name, record_id, gone, partner, now))
        if events:
            conn.execute(insert(mirror_changes), events)
        if changed and conn.dialect.name == "postgresql":
            rls.track_partner_changes(conn, self.rules, self.table(name), changed)

    def _deleted(self, conn: Connection, name: str, ids: set[str]) -> set[str]:
        """Which of ``ids`` are deleted (a partner is told "delete", not "leave")."""
        mirrored = self.table(name)
        if mirrored is None or not ids:
            return set()
        key = mirrored.table.c[mirrored.spec.key]
        return {
            i
            for batch in chunks(ids)
            for i in conn.execute(
                select(key).where(key.in_(batch), mirrored.table.c._deleted.is_(True))
            ).scalars()
        }

    def _event(self, name: str, record_id: str, op: str, partner: str, now: Any) -> dict[str, Any]:
        return {
            "source": self.source,
            "object": name,
            "record_id": record_id,
            "op": op,
            "origin": "access",
            "author": None,
            "fields": None,
            "at": now,
            "run_id": None,
            "partner_id": partner,
        }


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        seen[tuple(row.values())] = row
    return list(seen.values())


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(mirror_access), _unique(rows))
