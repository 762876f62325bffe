"""The grants each path of a rule gives, as one ``SELECT`` per path.

A path's query yields grant rows in ``ROW_COLUMNS`` order for every record of the object it
reaches: directly (the record's own field names the partner, or it is the partner), through a
parent (the parent's grants, joined on the reference field) or through children (the
children's grants, joined back on their reference to the record). The set-based derivation
inserts whole answers (``mirror.visibility.derivation``); the page-by-page upkeep narrows them
to a few records (``mirror.visibility.upkeep``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, literal, select

from mirror.store.database import MirrorTable, Store
from mirror.store.tables import mirror_access
from mirror.visibility.grants import granted, is_inherited, mirrored_or_none
from mirror.visibility.rules import SlicePath, VisibilityRules

# a stored grant row of ``mirror_access``, in the order the path queries select it
ROW_COLUMNS = (
    "source",
    "object",
    "record_id",
    "partner_id",
    "owner_id",
    "path",
    "via_object",
    "via_id",
)


@dataclass(frozen=True)
class GrantQuery:
    """The grants one path gives, as a ``SELECT`` of rows in ``ROW_COLUMNS`` order, and the
    columns that narrow it: the granted record's id, and the id of the record the grant came
    through (the child, for a path through children)."""

    path: SlicePath
    rows: Select[Any]
    record: Any
    via: Any = None

    def narrowed(self, condition: Any) -> Select[Any]:
        """The rows meeting ``condition`` (a few records' ids), each once."""
        rows = self.rows.where(condition)
        if self.path.kind in ("self", "direct"):
            return rows
        # a join answers with duplicates; DISTINCT also keeps SQLite's planner on the
        # narrowing ids (without it, it reads every grant of the other object)
        return rows.distinct()


class GrantQueries:
    """Writes the grant queries of the objects of one source."""

    def __init__(self, store: Store, rules: VisibilityRules) -> None:
        self.store = store
        self.rules = rules
        self.source = rules.source

    def of(self, name: str) -> list[GrantQuery]:
        """One query of grant rows per path of ``name`` (none for an object whose grants
        are inherited, public, without a rule, or not mirrored yet)."""
        rule = self.rules.rule(name)
        mirrored = mirrored_or_none(self.store, self.source, name)
        if rule is None or mirrored is None or rule.public or is_inherited(self.rules, name):
            return []
        queries = []
        for path in rule.paths:
            if path.kind in ("self", "direct"):
                queries.append(self._direct(mirrored, path, rule.owner_field))
            elif path.kind == "parent":
                queries.append(self._through_parent(mirrored, path))
            else:
                child = mirrored_or_none(self.store, self.source, path.other)
                if child is not None:
                    queries.append(self._through_children(mirrored, child, path))
        return queries

    def through(self, path: SlicePath) -> GrantQuery | None:
        """The query of ``path`` among its object's, if it has one now."""
        return next((q for q in self.of(path.object) if q.path == path), None)

    def _rows(
        self, path: SlicePath, record: Any, partner: Any, owner: Any, via_object: Any, via_id: Any
    ) -> Select[Any]:
        """A ``SELECT`` of grant rows of ``path`` in ``ROW_COLUMNS`` order."""
        return select(
            literal(self.source),
            literal(path.object),
            record,
            partner,
            owner,
            literal(path.text),
            via_object,
            via_id,
        )

    def _direct(
        self, mirrored: MirrorTable, path: SlicePath, owner_field: str | None
    ) -> GrantQuery:
        t = mirrored.table
        key = t.c[mirrored.spec.key]
        owner: Any
        if path.kind == "self":
            flag = self.rules.partner_flag
            partner, owner = key, literal("")
            condition = t.c[flag].is_(True) if flag else key.is_not(None)
        else:
            partner = t.c[path.field]
            owner = func.coalesce(t.c[owner_field], "") if owner_field else literal("")
            condition = partner.is_not(None)
        rows = self._rows(path, key, partner, owner, literal(""), literal(""))
        return GrantQuery(path, rows.where(t.c._deleted.is_(False), condition), key)

    def _grants_of(self, name: str, record: Any) -> tuple[Any, Any, Any]:
        """The grants of ``name`` to join on ``record`` (their columns, the joined table or
        subquery, the join condition): stored, or read through the parent when inherited."""
        if is_inherited(self.rules, name):
            inherited = granted(self.store, self.rules, name).subquery()
            return inherited.c, inherited, inherited.c.record_id == record
        a = mirror_access.c
        on = and_(a.source == self.source, a.object == name, a.record_id == record)
        return a, mirror_access, on

    def _through_parent(self, mirrored: MirrorTable, path: SlicePath) -> GrantQuery:
        t = mirrored.table
        key, fk = t.c[mirrored.spec.key], t.c[path.field]
        g, joined, on = self._grants_of(path.other, fk)
        rows = (
            self._rows(path, key, g.partner_id, g.owner_id, literal(path.other), fk)
            .join(joined, on)
            .where(t.c._deleted.is_(False))
        )
        return GrantQuery(path, rows, key)

    def _through_children(
        self, parent: MirrorTable, child: MirrorTable, path: SlicePath
    ) -> GrantQuery:
        c, p = child.table, parent.table
        child_key, fk = c.c[child.spec.key], c.c[path.field]
        g, joined, on = self._grants_of(path.other, child_key)
        rows = (
            self._rows(path, fk, g.partner_id, g.owner_id, literal(path.other), child_key)
            .select_from(c)
            .join(joined, on)
            .join(p, and_(p.c[parent.spec.key] == fk, p.c._deleted.is_(False)))
            .where(c.c._deleted.is_(False))
        )
        return GrantQuery(path, rows, fk, child_key)
