"""The mirror store: a SQLAlchemy engine (SQLite by default, PostgreSQL to scale out), the engine's
own tables, and the typed object tables with their additive migrations.

The sync's hot path goes through SQLAlchemy Core with executemany, never the ORM. SQLite runs in
WAL mode so a portal reads while the daemon writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    Table,
    create_engine,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy import delete as sql_delete
from sqlalchemy import insert as sql_insert
from sqlalchemy import update as sql_update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.schema import CreateTable

from mirror.errors import ConfigError
from mirror.pull.runs import RunHeartbeat
from mirror.schema import Migration, field_from_json, plan_migration, spec_from_json, spec_to_json
from mirror.store import stream_tables  # noqa: F401  (its tables join every store's metadata)
from mirror.store.bulk import upsert
from mirror.store.idsets import batches, id_in
from mirror.store.records import RecordChecker
from mirror.store.sqlite_writes import WriterLock, configure_connection, writer_lock
from mirror.store.tables import (
    column_for,
    engine_metadata,
    mirror_checkpoints,
    mirror_objects,
    mirror_runs,
    mirror_slice_sizes,
    object_table,
)
from mirror.store.upgrades import (
    ensure_indexes,
    field_json,
    merge_removed,
    upgrade_engine_columns,
    upgrade_engine_indexes,
)
from mirror.store.wal import WalCheckpointer, database_file
from mirror.types import Checkpoint, FieldSpec, ObjectSpec
from mirror.visibility import sizes as slice_sizes

# (transaction, the object's new spec, the names of the columns just added)
ColumnHook = Callable[[Connection, ObjectSpec, tuple[str, ...]], None]


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


@dataclass
class MirrorTable:
    """One mirrored object as stored: effective spec, table, and fields kept after removal."""

    spec: ObjectSpec
    table: Table
    removed: tuple[FieldSpec, ...]
    checker: RecordChecker
    migration: Migration | None = None


def _engine(url: str, echo: bool, pool: tuple[int, int]) -> Engine:
    # an in-memory SQLite database is one connection, without a pool to size
    memory = url.startswith("sqlite") and make_url(url).database in (None, "", ":memory:")
    sizes = {} if memory else {"pool_size": pool[0], "max_overflow": pool[1]}
    try:
        return create_engine(url, echo=echo, **sizes)
    except ModuleNotFoundError as exc:
        extra = " (pip install 'prm-mirror[postgres]')" if url.startswith("postgres") else ""
        raise ConfigError(
            f"store.database: the database driver {exc.name!r} is not installed{extra}"
        ) from exc


class Store:
    """The mirror database: engine tables, object tables and the primitives the sync composes."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        run_lease_seconds: float = 300.0,
        pool: tuple[int, int] = (5, 10),
    ) -> None:
        """Open (and create or upgrade) the store at ``url``; a run this process records is
        closed as interrupted by other processes once ``run_lease_seconds`` pass without a
        heartbeat from it (``mirror.pull.runs``). ``pool``: the connections kept open, and
        those opened beyond them when busy (closed after use)."""
        self.url = url
        self.engine: Engine = _engine(url, echo, pool)
        # SQLite: one writer at a time (``mirror.store.sqlite_writes``); PostgreSQL locks rows
        self._writer: WriterLock | None = None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", configure_connection)
            self._writer = writer_lock(database_file(self.engine.url))
        self.metadata = MetaData()
        self._tables: dict[tuple[str, str], MirrorTable] = {}
        # the path-index fields each prepared table was built with
        self._indexed: dict[tuple[str, str], tuple[str, ...]] = {}
        self.checkpointer: WalCheckpointer | None = None
        self.heartbeat = RunHeartbeat(self, run_lease_seconds)
        # called in the transaction that adds columns to an existing object table
        self.column_hooks: list[ColumnHook] = []
        try:
            with self.transaction() as conn:
                self.lock_schema(conn)
                sizes_kept = inspect(conn).has_table(mirror_slice_sizes.name)
                engine_metadata.create_all(conn)
                upgrade_engine_columns(conn)
                upgrade_engine_indexes(conn)
                if not sizes_kept:
                    slice_sizes.recount_every_source(conn)
        except OperationalError as exc:
            raise ConfigError(f"store.database: cannot open {self.safe_url}: {exc.orig}") from exc
        path = database_file(self.engine.url)
        if path is not None:
            self.checkpointer = WalCheckpointer(path)

    def lock_schema(self, conn: Connection) -> None:
        """Serialise schema changes between processes sharing the store, for the rest of
        ``conn``'s transaction (PostgreSQL: an advisory lock; SQLite: the write lock, which
        every write transaction holds from its start)."""
        if self.dialect == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7262606)")

    @property
    def safe_url(self) -> str:
        """The database URL with any password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def close(self) -> None:
        """Release every pooled connection (and, on SQLite, checkpoint the log)."""
        self.heartbeat.close()
        if self.checkpointer is not None:
            self.checkpointer.close()
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One database transaction: committed on success, rolled back on any error. On
        SQLite it holds the write lock from its start (``BEGIN IMMEDIATE``), after the
        process's earlier writers of the same file."""
        with self._write_turn(), self.engine.begin() as conn:
            if self._writer is not None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn
        if self.checkpointer is not None:
            self.checkpointer.committed()

    def _write_turn(self) -> AbstractContextManager[None]:
        return self._writer.held() if self._writer is not None else nullcontext()

    def refresh_statistics(self, table_name: str) -> None:
        """PostgreSQL: re-analyse a growing table and the access table (at pages 1, 2, 4, 8,
        ... of a sync), so the planner keeps using their indexes instead of planning for the
        empty tables it last measured. A table another transaction is analysing or altering
        (a slice derivation of another sync) is skipped, not waited for. SQLite needs
        nothing."""
        if self.dialect != "postgresql":
            return
        quote = self.engine.dialect.identifier_preparer.quote
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql(f"ANALYZE (SKIP_LOCKED) {quote(table_name)}")
            conn.exec_driver_sql("ANALYZE (SKIP_LOCKED) mirror_access")

    def prepare_object(
        self, described: ObjectSpec, indexed: tuple[str, ...] = (), *, defer_indexes: bool = False
    ) -> MirrorTable:
        """Create or migrate the object's table to fit ``described``; never drops a column.

        ``indexed`` names fields to index besides the cursor and partner fields (the
        reference fields that partner-slice paths follow). ``defer_indexes`` leaves missing
        secondary indexes to ``build_indexes`` (a first backfill: one sorted build at its end
        costs far less than keeping each index current row by row in random key order).
        """
        with self.transaction() as conn:
            self.lock_schema(conn)
            row = conn.execute(
                select(mirror_objects).where(
                    mirror_objects.c.source == described.source,
                    mirror_objects.c.object == described.name,
                )
            ).first()
            stored = spec_from_json(row.spec) if row else None
            removed_before = tuple(field_from_json(f) for f in row.removed_fields) if row else ()
            migration = plan_migration(stored, removed_before, described)
            removed = merge_removed(removed_before, migration)
            known = self._unchanged(described, migration, removed, indexed)
            table = (
                known.table
                if known is not None
                else object_table(migration.effective, self.metadata, removed, indexed)
            )
            self._apply(conn, table, migration, defer_indexes)
            if migration.added and not migration.new_table:
                for hook in self.column_hooks:
                    hook(conn, migration.effective, tuple(f.name for f in migration.added))
            self._save_spec(conn, migration, removed, row is None, row)
        checker = known.checker if known is not None else RecordChecker(migration.effective)
        mirrored = MirrorTable(migration.effective, table, removed, checker, migration)
        key = (described.source, described.name)
        self._tables[key] = mirrored
        self._indexed[key] = indexed
        return mirrored

    def _unchanged(
        self,
        described: ObjectSpec,
        migration: Migration,
        removed: tuple[FieldSpec, ...],
        indexed: tuple[str, ...],
    ) -> MirrorTable | None:
        """The prepared object, if preparing it again would build the same table: keeping
        the same table object keeps the statements compiled against it in the engine's cache
        (a daemon syncing every few minutes would otherwise compile them all again each time)."""
        key = (described.source, described.name)
        known = self._tables.get(key)
        if known is None or migration.changed or self._indexed.get(key) != indexed:
            return None
        if known.spec != migration.effective or known.removed != removed:
            return None
        return known

    def build_indexes(self, conn: Connection, mirrored: MirrorTable) -> None:
        """Create the object's secondary indexes that do not exist yet."""
        ensure_indexes(conn, mirrored.table)

    def _apply(self, conn: Connection, table: Table, migration: Migration, defer: bool) -> None:
        if migration.new_table:
            conn.execute(CreateTable(table, if_not_exists=True))
            if not defer:
                ensure_indexes(conn, table)
            return
        preparer = self.engine.dialect.identifier_preparer
        for field in migration.added:
            column = column_for(field, migration.effective.key)
            ddl = column.type.compile(dialect=self.engine.dialect)
            conn.exec_driver_sql(
                f"ALTER TABLE {preparer.quote(table.name)} "
                f"ADD COLUMN {preparer.quote(field.name)} {ddl}"
            )
        if not defer:
            ensure_indexes(conn, table)

    def _save_spec(
        self,
        conn: Connection,
        migration: Migration,
        removed: tuple[FieldSpec, ...],
        is_new: bool,
        row: Any,
    ) -> None:
        spec = migration.effective
        retyped = dict(row.type_changes) if row else {}
        retyped.update({k: list(v) for k, v in migration.retyped.items()})
        values = {
            "table_name": spec.table_name,
            "spec": spec_to_json(spec),
            "removed_fields": [field_json(f) for f in removed],
            "type_changes": retyped,
            "updated_at": utcnow(),
        }
        if is_new:
            conn.execute(
                sql_insert(mirror_objects).values(source=spec.source, object=spec.name, **values)
            )
        elif migration.changed or row.spec != values["spec"]:
            conn.execute(
                sql_update(mirror_objects)
                .where(mirror_objects.c.source == spec.source, mirror_objects.c.object == spec.name)
                .values(**values)
            )

    def mirrored(self, source: str, name: str) -> MirrorTable:
        """The prepared object ``name`` of ``source`` (prepared from the stored spec if needed)."""
        key = (source, name)
        if key not in self._tables:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(mirror_objects).where(
                        mirror_objects.c.source == source, mirror_objects.c.object == name
                    )
                ).first()
            if row is None:
                raise KeyError(f"{source}.{name} is not mirrored yet (run a backfill first)")
            spec = spec_from_json(row.spec)
            removed = tuple(field_from_json(f) for f in row.removed_fields)
            table = object_table(spec, self.metadata, removed)
            self._tables[key] = MirrorTable(spec, table, removed, RecordChecker(spec))
            self._indexed[key] = ()
        return self._tables[key]

    def objects(self) -> list[tuple[str, str]]:
        """Every (source, object) the store has a table for."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(mirror_objects.c.source, mirror_objects.c.object)).all()
        return sorted((r.source, r.object) for r in rows)

    def object_info(self, source: str, name: str) -> Mapping[str, Any]:
        """The stored schema bookkeeping of one object (removed fields, type changes)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(mirror_objects).where(
                    mirror_objects.c.source == source, mirror_objects.c.object == name
                )
            ).one()
        return row._asdict()

    def load_checkpoint(self, source: str, name: str) -> Checkpoint | None:
        """The saved checkpoint of one object, or ``None`` before its first page."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(mirror_checkpoints).where(
                    mirror_checkpoints.c.source == source, mirror_checkpoints.c.object == name
                )
            ).first()
        if row is None:
            return None
        return Checkpoint(row.cursor, tuple(row.ids_at_cursor), row.phase, dict(row.state))

    def save_checkpoint(
        self, conn: Connection, source: str, name: str, checkpoint: Checkpoint
    ) -> None:
        """Save ``checkpoint`` inside the caller's transaction (the page's own)."""
        values = {
            "phase": checkpoint.phase,
            "cursor": checkpoint.cursor,
            "ids_at_cursor": list(checkpoint.ids_at_cursor),
            "state": dict(checkpoint.state),
            "updated_at": utcnow(),
        }
        self.upsert(conn, mirror_checkpoints, [{"source": source, "object": name, **values}])

    def reset_checkpoint(self, source: str, name: str) -> None:
        """Forget an object's checkpoint, so the next sync is a full backfill."""
        with self.transaction() as conn:
            conn.execute(
                sql_delete(mirror_checkpoints).where(
                    mirror_checkpoints.c.source == source, mirror_checkpoints.c.object == name
                )
            )

    def upsert(self, conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``rows``, replacing rows with the same primary key; one executemany."""
        upsert(conn, table, rows)

    def rows_by_id(
        self, conn: Connection, table: Table, key: str, ids: Iterable[str], columns: Sequence[str]
    ) -> dict[str, Any]:
        """The rows whose key is in ``ids``, keyed by id, with ``columns`` selected."""
        found: dict[str, Any] = {}
        wanted = list(ids)
        selected = [table.c[key], *(table.c[name] for name in columns)]
        for batch in batches(wanted):
            query = select(*selected).where(id_in(self.dialect, table.c[key], batch))
            for row in conn.execute(query):
                found[row[0]] = row
        return found

    def count(self, table: Table, *, include_deleted: bool = False) -> int:
        """How many rows ``table`` holds (live rows only unless ``include_deleted``)."""
        query = select(func.count()).select_from(table)
        if not include_deleted:
            query = query.where(table.c._deleted.is_(False))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def recent_runs(self, limit: int = 20) -> list[Mapping[str, Any]]:
        """The latest sync runs, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(mirror_runs).order_by(mirror_runs.c.id.desc()).limit(limit))
            return [row._asdict() for row in rows]
