"""Grants derived from the rules set-based, in SQL: the whole-table path of the grant table.

Page by page, the upkeep (``mirror.visibility.upkeep``) re-derives the grants of the records a
page touched. After an object's first backfill (and for a rebuild) every record is new, so the
grants of the object and of every object whose grants depend on it are derived instead with one
``INSERT ... SELECT`` per path (``mirror.visibility.grant_queries``), in dependency order: the
database does in one statement what would otherwise be done row by row in Python, page after
page, as each page's records pass their grants on to parents and children already mirrored.

The partners' change feeds learn what such a derivation changed for records that were already
mirrored: the (object, record, partner) memberships of the affected objects are staged before,
compared after, and the difference is logged as "enter", "leave" and "delete" changes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    String,
    Table,
    case,
    delete,
    except_,
    func,
    insert,
    literal,
    literal_column,
    null,
    select,
    text,
    union,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from mirror import feed
from mirror.store.database import Store, utcnow
from mirror.store.tables import mirror_access, mirror_access_pending, mirror_changes
from mirror.types import ChangeOrigin
from mirror.visibility import sizes as slice_sizes
from mirror.visibility.grant_queries import ROW_COLUMNS, GrantQueries, GrantQuery
from mirror.visibility.grants import granted, is_inherited, mirrored_or_none
from mirror.visibility.partner_columns import refresh_partner_columns
from mirror.visibility.rules import VisibilityRules

_staging_metadata = MetaData()
membership_before = Table(
    "mirror_membership_before",
    _staging_metadata,
    Column("object", String(128)),
    Column("record_id", String(64)),
    Column("partner_id", String(64)),
    Column("owner_id", String(64)),
)
_CHANGE_COLUMNS = [
    "source",
    "object",
    "record_id",
    "op",
    "origin",
    "author",
    "fields",
    "at",
    "run_id",
    "partner_id",
    "owner_id",
]
# PostgreSQL: from this many grants written, the grant table is measured again
_MEASURED_FROM = 1000
# from this many records to derive per grant already stored, dropping the grant table's
# secondary indexes and building them again costs less than updating them row by row
_REBUILD_SHARE = 0.5


class GrantDerivation:
    """Derives, set-based, the grants of whole objects of one source."""

    def __init__(self, store: Store, rules: VisibilityRules) -> None:
        self.store = store
        self.rules = rules
        self.source = rules.source
        self.queries = GrantQueries(store, rules)

    def dependents(self, name: str) -> list[str]:
        """``name`` and every object whose grants derive, directly or not, from its records;
        in the order their grants must be derived."""
        affected = {name}
        pending = [name]
        while pending:
            current = pending.pop()
            paths = [*self.rules.child_paths_from(current), *self.rules.parent_paths_from(current)]
            for path in paths:
                if path.object not in affected:
                    affected.add(path.object)
                    pending.append(path.object)
        return [n for n in self.rules.order if n in affected]

    def derive(self, conn: Connection, names: Iterable[str]) -> int:
        """Drop and derive again, in SQL, the grants of every record of ``names`` (given in
        dependency order); returns how many grants were written."""
        a = mirror_access.c
        names = list(names)
        total = unmeasured = 0
        with self._bulk_load(conn, names):
            for name in names:
                conn.execute(delete(mirror_access).where(a.source == self.source, a.object == name))
                for query in self.queries.of(name):
                    result = conn.execute(_insert_grants(conn, query))
                    written = max(result.rowcount or 0, 0)
                    total += written
                    unmeasured += written
                if _measure_grants(conn, unmeasured):
                    unmeasured = 0
        inherited = {
            name: granted(self.store, self.rules, name)
            for name in names
            if is_inherited(self.rules, name)
        }
        slice_sizes.recount(conn, self.source, names, inherited)
        return total

    def settle(
        self, conn: Connection, backfilled: Collection[str], backfilled_by_sync: Collection[str]
    ) -> None:
        """Derive the grants of the objects ``backfilled`` (at the end of their first
        backfill) and of their dependents, logging the memberships that changed. The
        backfilled records themselves enter quietly, as their inserts did, and so do the
        records of dependents first backfilled by the same sync (``backfilled_by_sync``): a
        portal loads its first view of those once that sync is done."""
        quiet = set(backfilled)
        affected = {n for name in quiet for n in self.dependents(name)}
        names = [n for n in self.rules.order if n in affected]
        logged = [n for n in names if n in quiet or n not in backfilled_by_sync]
        conn.exec_driver_sql(
            "CREATE TEMPORARY TABLE IF NOT EXISTS mirror_membership_before "
            "(object VARCHAR(128), record_id VARCHAR(64), partner_id VARCHAR(64), "
            "owner_id VARCHAR(64))"
        )
        conn.execute(delete(membership_before))
        conn.execute(
            insert(membership_before).from_select(
                ["object", "record_id", "partner_id", "owner_id"], self._memberships(logged)
            )
        )
        self.derive(conn, names)
        for current in logged:
            self._log_differences(conn, current, entering=current not in quiet)
        conn.exec_driver_sql("DROP TABLE mirror_membership_before")
        if conn.dialect.name == "postgresql":
            refresh_partner_columns(conn, self.store, self.rules, names)

    def defer(self, conn: Connection, name: str) -> None:
        """Note, in the caller's transaction, that ``name``'s first backfill ended and its
        grants wait for ``settle_pending``."""
        p = mirror_access_pending.c
        pending = select(p.object).where(p.source == self.source, p.object == name)
        if conn.execute(pending).first() is None:
            conn.execute(insert(mirror_access_pending).values(source=self.source, object=name))

    @staticmethod
    def pending_objects(conn: Connection) -> set[tuple[str, str]]:
        """Every (source, object) whose grants wait for ``settle_pending``."""
        p = mirror_access_pending.c
        return {(source, name) for source, name in conn.execute(select(p.source, p.object))}

    def settle_pending(self, conn: Connection, backfilled_by_sync: Collection[str]) -> list[str]:
        """Settle, in one derivation, every object of the source whose grants were deferred;
        returns their names (none: nothing done)."""
        p = mirror_access_pending.c
        if conn.dialect.name == "postgresql":
            # one settler of a source at a time, so two workers ending syncs at once derive
            # the grants once: locking the due rows themselves took them in whatever order
            # each settler met them, and two settlers (one seeing a row the other's scan had
            # not) deadlocked
            conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"prm-access-pending:{self.source}"},
            )
        due = select(p.object).where(p.source == self.source).order_by(p.object)
        names = list(conn.execute(due).scalars())
        if not names:
            return []
        present = [n for n in names if mirrored_or_none(self.store, self.source, n) is not None]
        if present:
            self.settle(conn, present, backfilled_by_sync)
        # only the rows read: an object deferred since waits for the next settler
        conn.execute(
            delete(mirror_access_pending).where(p.source == self.source, p.object.in_(names))
        )
        return names

    @contextmanager
    def _bulk_load(self, conn: Connection, names: list[str]) -> Iterator[None]:
        """On SQLite, when ``names`` hold many records for the grants already stored, drop the
        grant table's secondary indexes for the derivation and build them once afterwards, in
        the same transaction (readers never see the table without them). PostgreSQL keeps
        them: dropping one would lock every partner query out for the whole derivation."""
        if conn.dialect.name != "sqlite" or not self._worth_rebuilding(conn, names):
            yield
            return
        indexes = sorted(mirror_access.indexes, key=lambda index: str(index.name))
        for index in indexes:
            index.drop(conn)
        yield
        for index in indexes:
            index.create(conn)

    def _worth_rebuilding(self, conn: Connection, names: list[str]) -> bool:
        # the largest rowid stands in for an object table's row count: read off the end of
        # its b-tree instead of counting millions of rows
        def size(table: Table) -> int:
            return int(
                conn.execute(select(func.max(literal_column("rowid"))).select_from(table)).scalar()
                or 0
            )

        tables = [mirrored_or_none(self.store, self.source, name) for name in names]
        records = sum(size(m.table) for m in tables if m is not None)
        # the grant table has no rowid: its grants are counted, but never more than decides
        enough = int(records / _REBUILD_SHARE) + 1
        stored = select(literal(1)).select_from(mirror_access).limit(enough).subquery()
        return int(conn.execute(select(func.count()).select_from(stored)).scalar_one()) < enough

    def _memberships(self, names: list[str]) -> Any:
        """The distinct (object, record, partner, owner) memberships of ``names``, stored or
        inherited: owner NULL for the partner's whole slice, a rep's user id for that rep's."""
        a = mirror_access.c
        stored = [n for n in names if not is_inherited(self.rules, n)]
        queries: list[Any] = []
        if stored or not names:
            rows = select(a.object, a.record_id, a.partner_id).where(
                a.source == self.source, a.object.in_(stored)
            )
            queries.append(rows.add_columns(null().label("owner_id")).distinct())
            queries.append(rows.add_columns(a.owner_id).where(a.owner_id != "").distinct())
        for name in names:
            if is_inherited(self.rules, name):
                g = granted(self.store, self.rules, name).subquery()
                rows = select(literal(name).label("object"), g.c.record_id, g.c.partner_id)
                queries.append(rows.add_columns(null().label("owner_id")).distinct())
                queries.append(rows.add_columns(g.c.owner_id).where(g.c.owner_id != "").distinct())
        # one plain SELECT: SQLite takes no parenthesised compound as an operand of EXCEPT
        found = union(*queries).subquery()
        return select(*found.c)

    def _log_differences(self, conn: Connection, name: str, *, entering: bool) -> None:
        """Log "enter" for memberships of ``name`` that are new (if ``entering``), "leave" or
        "delete" for lost ones."""
        b = membership_before.c
        before = select(b.object, b.record_id, b.partner_id, b.owner_id).where(b.object == name)
        after = self._memberships([name])
        if entering:
            self._log(conn, name, except_(after, before), entering=True)
        # nothing can leave a slice nobody had: the first backfill of ``name`` skips comparing
        # every membership it just derived against none
        if conn.execute(before.limit(1)).first() is not None:
            self._log(conn, name, except_(before, after), entering=False)

    def _log(self, conn: Connection, name: str, changes: Any, *, entering: bool) -> None:
        mirrored = mirrored_or_none(self.store, self.source, name)
        if mirrored is None:
            return
        diff = changes.subquery()
        t = mirrored.table
        if entering:
            op: Any = literal("enter")
            source: Any = diff
        else:
            source = diff.outerjoin(t, t.c[mirrored.spec.key] == diff.c.record_id)
            op = case((t.c._deleted.is_(True), "delete"), else_="leave")
        query = select(
            literal(self.source),
            literal(name),
            diff.c.record_id,
            op,
            literal(ChangeOrigin.ACCESS.value),
            null(),
            null(),
            literal(utcnow(), mirror_changes.c.at.type),
            null(),
            diff.c.partner_id,
            diff.c.owner_id,
        ).select_from(source)
        feed.append_selected(conn, _CHANGE_COLUMNS, query)


def _insert_grants(conn: Connection, query: GrantQuery) -> Any:
    """``INSERT ... SELECT`` of a path's grants. A grant the query yields twice (a record
    reached through two grants of the same child with the same partner and owner) is stored
    once by the primary key, which costs less than a ``DISTINCT`` over the whole answer."""
    rows = query.rows
    if query.via is not None:
        # through children the grants come in the children's order: sorted, they append to
        # the primary key instead of landing all over it
        rows = rows.order_by(*(literal_column(str(i)) for i in range(3, 9)))
    if conn.dialect.name == "postgresql":
        statement: Any = pg_insert(mirror_access).from_select(ROW_COLUMNS, rows)
        statement = statement.on_conflict_do_nothing()
    else:
        statement = insert(mirror_access).from_select(ROW_COLUMNS, rows).prefix_with("OR IGNORE")
    # an INSERT's row count is dropped with its cursor unless asked for
    return statement.execution_options(preserve_rowcount=True)


def _measure_grants(conn: Connection, written: int) -> bool:
    """On PostgreSQL, ``ANALYZE`` the grant table when ``written`` grants (of one object, or
    of several small ones) were written since it was last measured; returns whether it did.

    The statements after an object's derivation (the next objects' paths, the change feed,
    the slice sizes, the ``_partners`` column) join its grants. Planned on statistics that do
    not know them (a grant table measured empty, as a first backfill leaves it, or measured
    before this object had grants), they probe every grant of the object once per row.
    Autovacuum cannot help: it does not see rows this transaction has not committed, but an
    ``ANALYZE`` in the same transaction counts them.
    """
    if conn.dialect.name != "postgresql" or written < _MEASURED_FROM:
        return False
    conn.exec_driver_sql(f"ANALYZE {mirror_access.name}")
    return True
