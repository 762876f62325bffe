"""Leases: which worker does which piece of work, with expiry, in the store itself.

Several daemon processes (on one machine or many) share one store. A piece of work (syncing
one object, pushing one source's outbox, reading one range of a split backfill) runs only under
its lease; a lease that is not renewed expires, and another worker takes the work over. Taking a
lease is one atomic upsert that only succeeds when the lease is free, expired, or already ours,
so it works the same on SQLite and PostgreSQL without advisory locks.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mirror.store.database import Store, utcnow
from mirror.store.tables import mirror_leases


class Leases:
    """Acquire, renew and release named leases for one worker."""

    def __init__(self, store: Store, holder: str, ttl_seconds: float = 300.0) -> None:
        self.store = store
        self.holder = holder
        self.ttl = dt.timedelta(seconds=ttl_seconds)
        self._claimed: set[str] = set()
        self._claims = threading.Lock()

    def acquire(self, name: str) -> bool:
        """Take (or renew) the lease ``name``; ``False`` when another worker holds it."""
        now = utcnow()
        table = mirror_leases
        insert = pg_insert(table) if self.store.dialect == "postgresql" else sqlite_insert(table)
        statement = insert.values(
            name=name, holder=self.holder, expires_at=now + self.ttl, acquired_at=now
        ).on_conflict_do_update(
            index_elements=["name"],
            set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
            where=(table.c.expires_at < now) | (table.c.holder == self.holder),
        )
        with self.store.transaction() as conn:
            conn.execute(statement)
            holder = conn.execute(select(table.c.holder).where(table.c.name == name)).scalar()
        return holder == self.holder

    def claim(self, name: str) -> bool:
        """Take the lease ``name`` for one thread of this worker: ``False`` when another worker
        holds it or another thread of ours has claimed it (``acquire`` renews it; ``release``
        ends the claim)."""
        with self._claims:
            if name in self._claimed:
                return False
            self._claimed.add(name)
        if self.acquire(name):
            return True
        with self._claims:
            self._claimed.discard(name)
        return False

    def release(self, name: str) -> None:
        """Give the lease up at once (only if we hold it)."""
        with self._claims:
            self._claimed.discard(name)
        with self.store.transaction() as conn:
            conn.execute(
                update(mirror_leases)
                .where(mirror_leases.c.name == name, mirror_leases.c.holder == self.holder)
                .values(expires_at=utcnow())
            )

    @contextmanager
    def held(self, name: str) -> Iterator[bool]:
        """``with leases.held(name) as ours:`` runs the body knowing whether it holds the lease,
        and releases it afterwards."""
        ours = self.acquire(name)
        try:
            yield ours
        finally:
            if ours:
                self.release(name)

    def holders(self) -> dict[str, tuple[str, dt.datetime]]:
        """Every unexpired lease: name -> (holder, expiry)."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(mirror_leases).where(mirror_leases.c.expires_at >= utcnow())
            ).all()
        return {r.name: (r.holder, r.expires_at) for r in rows}
