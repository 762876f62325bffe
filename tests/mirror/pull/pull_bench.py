"""A small mirror on SQLite for the pull side's fast tests: one object, portal edits and creates
made as ``PartnerView`` makes them, and pages applied as a sync applies them (no CRM, no HTTP)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from mirror.portal.writes import apply_update, insert_local
from mirror.pull.pages import PageContext, PageOutcome, apply_page
from mirror.push.diff import Policy
from mirror.push.local_ids import settle_create
from mirror.push.outbox import set_entry
from mirror.store.database import MirrorTable, Store
from mirror.store.tables import mirror_changes, mirror_conflicts, mirror_outbox
from mirror.types import Checkpoint, FieldSpec, FieldType, ObjectSpec, Page, Record, Tombstone

FIELDS = (
    FieldSpec("Id", FieldType.ID),
    FieldSpec("Name", FieldType.STRING, createable=True, updateable=True),
    FieldSpec("Stage", FieldType.STRING, createable=True, updateable=True),
    FieldSpec("Amount", FieldType.FLOAT, createable=True, updateable=True),
    FieldSpec("Closes", FieldType.DATETIME, createable=True, updateable=True),
    FieldSpec("Ext", FieldType.STRING, createable=True, external_id=True),
    FieldSpec("Score", FieldType.INTEGER),
    FieldSpec("LastModifiedDate", FieldType.DATETIME),
    FieldSpec("Modstamp", FieldType.DATETIME),
)
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    """A fixed UTC instant ``seconds`` after 2026-01-01."""
    return T0 + dt.timedelta(seconds=seconds)


def spec_of(source: str = "fake", external_id: str | None = None) -> ObjectSpec:
    """The ``Deal`` object (with ``Ext`` as its external-id field when asked)."""
    return ObjectSpec(source, "Deal", "Id", "Modstamp", FIELDS, external_id_field=external_id)


def deal(record_id: str, when: float, **values: Any) -> Record:
    """A CRM record of ``Deal`` stamped ``when`` seconds after T0 (unnamed fields empty)."""
    record: Record = {f.name: None for f in FIELDS}
    record.update({"Id": record_id, "Modstamp": at(when)}, **values)
    return record


class Bench:
    """One store with ``Deal`` prepared, and the ways the pull side meets it."""

    def __init__(self, folder: Path, spec: ObjectSpec | None = None) -> None:
        self.store = Store(f"sqlite:///{folder}/mirror.db")
        self.spec = spec or spec_of()
        self.mirrored: MirrorTable = self.store.prepare_object(self.spec)
        self.checkpoint = Checkpoint()

    def close(self) -> None:
        """Release the store."""
        self.store.close()

    def context(self, policy: Policy = Policy.MANUAL, **kw: Any) -> PageContext:
        """A sync's page context with every field under ``policy`` (unless ``policy_of`` is
        given)."""
        kw.setdefault("policy_of", lambda _o, _f: policy)
        return PageContext(7, log_inserts=True, **kw)

    def apply(
        self,
        records: Iterable[Record] = (),
        tombstones: Iterable[Tombstone] = (),
        ctx: PageContext | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> PageOutcome:
        """Apply one page in its own transaction."""
        page = Page(list(records), checkpoint or self.checkpoint, list(tombstones))
        with self.store.transaction() as conn:
            return apply_page(self.store, conn, self.mirrored, page, ctx or self.context())

    def edit(self, record_id: str, **values: Any) -> int:
        """A portal edit of ``record_id``; returns its outbox sequence."""
        with self.store.transaction() as conn:
            assert apply_update(conn, self.mirrored, record_id, values, "p1", "u1")
            return int(
                conn.execute(select(mirror_outbox.c.seq).order_by(-mirror_outbox.c.seq))
                .scalars()
                .first()
            )

    def edit_many(self, record_ids: Iterable[str], **values: Any) -> None:
        """The same portal edit of each of ``record_ids``, in one transaction."""
        with self.store.transaction() as conn:
            for record_id in record_ids:
                assert apply_update(conn, self.mirrored, record_id, values, "p1", "u1")

    def create(self, key: str | None = None, **values: Any) -> str:
        """A portal create; returns its local id."""
        with self.store.transaction() as conn:
            return insert_local(conn, self.mirrored, values, "p1", "u1", idempotency_key=key)

    def pushed(self, seq: int, version: dt.datetime | None, **more: Any) -> None:
        """Entry ``seq`` reached the CRM, which answered with ``version``."""
        stamp = version.isoformat() if version is not None else None
        with self.store.transaction() as conn:
            set_entry(conn, seq, status="done", pushed_version=stamp, **more)

    def settle(self, entry: Any, crm_id: str, version: dt.datetime) -> None:
        """The create ``entry`` was answered with ``crm_id`` at ``version`` (not echoed yet)."""
        with self.store.transaction() as conn:
            settle_create(
                conn,
                self.store,
                self.spec,
                entry,
                crm_id,
                version=version.isoformat(),
                confirmed=False,
            )

    def set_entry(self, seq: int, **values: Any) -> None:
        """Change entry ``seq`` directly."""
        with self.store.transaction() as conn:
            set_entry(conn, seq, **values)

    def stamp(self, seq: int, when: dt.datetime) -> None:
        """Entry ``seq`` last changed at ``when``."""
        with self.store.transaction() as conn:
            o = mirror_outbox.c
            conn.execute(update(mirror_outbox).where(o.seq == seq).values(updated_at=when))

    def entries(self) -> list[Any]:
        """Every outbox entry, oldest first."""
        with self.store.engine.connect() as conn:
            return list(conn.execute(select(mirror_outbox).order_by(mirror_outbox.c.seq)))

    def entry(self, seq: int) -> Any:
        """Outbox entry ``seq``."""
        (found,) = [e for e in self.entries() if e.seq == seq]
        return found

    def conflicts(self) -> list[Any]:
        """Every conflict recorded, oldest first."""
        with self.store.engine.connect() as conn:
            return list(conn.execute(select(mirror_conflicts).order_by(mirror_conflicts.c.id)))

    def changes(self, origin: str = "crm", inserts: bool = False) -> list[Any]:
        """The change feed of ``origin`` (inserts only when asked), oldest first."""
        c = mirror_changes.c
        query = select(mirror_changes).where(c.origin == origin).order_by(c.seq)
        if not inserts:
            query = query.where(c.op != "insert")
        with self.store.engine.connect() as conn:
            return list(conn.execute(query))

    def rows(self) -> dict[str, dict[str, Any]]:
        """The mirror rows (deleted ones included) by id."""
        with self.store.engine.connect() as conn:
            found = conn.execute(select(self.mirrored.table))
            return {r.Id: dict(r._mapping) for r in found}

    def row(self, record_id: str) -> dict[str, Any]:
        """One mirror row."""
        return self.rows()[record_id]

    def forget_hash(self, record_id: str) -> None:
        """Make the next page diff ``record_id`` again although its content is the same."""
        table = self.mirrored.table
        with self.store.transaction() as conn:
            conn.execute(update(table).where(table.c.Id == record_id).values(_hash=None))


def bench_at(folder: Path, spec: ObjectSpec | None = None) -> Iterator[Bench]:
    """A bench for a fixture, closed afterwards."""
    bench = Bench(folder, spec)
    try:
        yield bench
    finally:
        bench.close()
