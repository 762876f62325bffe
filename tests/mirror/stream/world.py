"""A mirror of a seeded TinyCRM whose change stream the tests drive: the CRM, its stream, the
mirror (synced once), and the reads the tests compare."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from mirror import Mirror
from mirror.config import parse_config
from mirror.registry import register_adapter, unregister_adapter
from mirror.store.tables import mirror_changes, mirror_outbox
from tests.adapters.fourth.adapter import CRM, plugin
from tests.adapters.fourth.crm import TinyCrm, seeded
from tests.adapters.fourth.stream import TinyStream, as_item, stream_of

SECRET = "hook-secret"


@dataclass
class World:
    """One TinyCRM, its stream and a mirror of it."""

    crm: TinyCrm
    stream: TinyStream
    mirror: Mirror

    def row(self, name: str, record_id: str) -> dict[str, Any]:
        """The mirror row of one record (deleted ones too)."""
        table = self.mirror.store.mirrored("tiny", name).table
        with self.mirror.store.engine.connect() as conn:
            found = conn.execute(select(table).where(table.c.id == record_id)).first()
        assert found is not None, record_id
        return dict(found._mapping)

    def deal(self, index: int = 0) -> str:
        """The id of one deal (oldest first)."""
        return sorted(self.crm.records["deals"])[index]

    def feed(self, origin: str = "crm") -> list[Any]:
        """The change feed entries of ``origin`` (inserts left out), oldest first."""
        c = mirror_changes.c
        query = select(mirror_changes).where(c.origin == origin, c.op != "insert").order_by(c.seq)
        with self.mirror.store.engine.connect() as conn:
            return list(conn.execute(query))

    def outbox(self) -> list[Any]:
        """Every outbox entry, oldest first."""
        with self.mirror.store.engine.connect() as conn:
            return list(conn.execute(select(mirror_outbox).order_by(mirror_outbox.c.seq)))

    def matches_crm(self, name: str = "deals") -> bool:
        """Every live CRM record is in the mirror at its CRM values, and no other is live."""
        mirrored = self.mirror.store.mirrored("tiny", name)
        with self.mirror.store.engine.connect() as conn:
            rows = {
                r.id: dict(r._mapping)
                for r in conn.execute(select(mirrored.table))
                if not r._deleted
            }
        crm = self.crm.records[name]
        if set(rows) != set(crm):
            return False
        return all(rows[i][f] == v for i, record in crm.items() for f, v in record.items())


def config_for(db_url: str, crm: TinyCrm, kind: str, **daemon: Any) -> Any:
    """A config of one TinyCRM source with its stream on."""
    source = {
        "crm": CRM,
        "url": crm.address,
        "api_key": "tiny-key",
        "stream": kind != "",
        "stream_kind": kind,
        "webhook_secret": SECRET,
    }
    settings = {"metrics_port": 0, "log_format": "text", **daemon}
    return parse_config(
        {"store": {"database": db_url}, "daemon": settings, "sources": {"tiny": source}}
    )


@contextmanager
def registered() -> Iterator[None]:
    """TinyCRM's adapter registered for the duration."""
    register_adapter(CRM, plugin)
    try:
        yield
    finally:
        unregister_adapter(CRM)


@contextmanager
def world(db_url: str, kind: str = "listen", *, deals: int = 3, **daemon: Any) -> Iterator[World]:
    """A synced mirror of a seeded TinyCRM with its stream (``kind``: listen or webhook)."""
    crm = seeded(partners=2, deals_each=deals)
    stream = stream_of(crm)
    stream.secret = SECRET
    try:
        with registered(), Mirror(config_for(db_url, crm, kind, **daemon)) as mirror:
            mirror.sync()
            yield World(crm, stream, mirror)
    finally:
        stream.close()
        crm.stop()


def deliver(w: World) -> int:
    """Hand every entry the stream emitted since the saved position to the mirror, as a
    listener would (position saved with them); returns how many items."""
    saved = w.mirror.stream_status()[0].position
    start = int(saved) if saved else 0
    items = [as_item(entry, str(after)) for after, entry in w.stream.read(start)]
    w.mirror.record_stream("tiny", items)
    return len(items)
