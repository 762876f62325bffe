"""Split backfills: one object's backfill read as ranges, by several workers at once.

When ``[sync] backfill_ranges`` is above 1 and the adapter is a ``RangeReader``, the first
backfill of an object with at least ``backfill_range_min_records`` records is planned as
ranges (Salesforce: record-id ranges bounded by the newest SystemModstamp at the start).

- The object's checkpoint stays in phase ``backfill`` and carries the plan
  (``state["ranges"]``); every range page saves it unchanged, so the object's own checkpoint
  never moves until the backfill is complete.
- Each range has a row in ``mirror_ranges`` with its own checkpoint and a version, and is read
  under the lease ``backfill:<source>:<object>:<range>``. A page is applied in the transaction
  that moves its range row on from the version its reader last saw; a worker whose lease
  expired and whose range another worker took over finds a newer version there, and its
  transaction rolls back (``RangeTaken``) instead of committing a page twice.
- When every range is done, one transaction (locking the range rows, then the checkpoint)
  moves the object's checkpoint to the plan's ``after`` (phase ``incremental`` from the
  watermark) and deletes the range rows: exactly once, by whichever worker finishes last. The
  page hooks' end of the backfill runs in that transaction too: partner access is derived for
  the whole object there (``mirror.visibility.derivation``), so range pages themselves write
  records
  only and run in parallel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from mirror.adapter import RangePlan
from mirror.errors import TransientError
from mirror.store.database import Store, utcnow
from mirror.store.tables import mirror_checkpoints, mirror_ranges
from mirror.types import Checkpoint, ObjectSpec

PLAN_KEY = "ranges"
DONE = "done"


class RangeTaken(TransientError):
    """Another worker moved this range on since this one read it (its lease had expired)."""


@dataclass(frozen=True)
class RangeRow:
    """One range of a split backfill as stored: its number, checkpoint and version."""

    number: int
    checkpoint: Checkpoint | None
    version: int

    @property
    def done(self) -> bool:
        """Whether the range has been read to its end."""
        return self.checkpoint is not None and self.checkpoint.phase == DONE


def range_lease(spec: ObjectSpec, number: int) -> str:
    """The lease name of range ``number`` of ``spec``'s backfill."""
    return f"backfill:{spec.source}:{spec.name}:{number}"


def plan_checkpoint(plan: RangePlan) -> Checkpoint:
    """The object's checkpoint while its backfill is split by ``plan``."""
    raw = {
        "bounds": [list(bound) for bound in plan.bounds],
        "after": _checkpoint_row(plan.after),
        "state": dict(plan.state),
    }
    return Checkpoint(phase="backfill", state={PLAN_KEY: raw})


def plan_of(checkpoint: Checkpoint | None) -> RangePlan | None:
    """The plan a split backfill's object checkpoint carries (``None``: not split)."""
    if checkpoint is None or checkpoint.phase != "backfill":
        return None
    raw = checkpoint.state.get(PLAN_KEY)
    if not isinstance(raw, Mapping):
        return None
    bounds = tuple((lower, upper) for lower, upper in raw["bounds"])
    return RangePlan(bounds, _checkpoint_from(raw["after"]), dict(raw.get("state") or {}))


class RangeBook:
    """The ``mirror_ranges`` rows of split backfills, and the move to incremental at the end."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def start(self, spec: ObjectSpec, plan: RangePlan) -> Checkpoint | None:
        """Save ``plan`` for ``spec`` unless the object already has a checkpoint; returns the
        object's checkpoint either way (another worker's if it planned first)."""
        now = utcnow()
        checkpoint = plan_checkpoint(plan)
        rows: list[dict[str, Any]] = [
            {
                **self._scope_values(spec.source, spec.name),
                "range_no": number,
                "lower": lower,
                "upper": upper,
                "phase": "backfill",
                "cursor": None,
                "ids_at_cursor": [],
                "state": {},
                "version": 0,
                "updated_at": now,
            }
            for number, (lower, upper) in enumerate(plan.bounds)
        ]
        try:
            with self.store.transaction() as conn:
                conn.execute(
                    insert(mirror_checkpoints).values(
                        **self._scope_values(spec.source, spec.name),
                        **_checkpoint_row(checkpoint),
                        updated_at=now,
                    )
                )
                conn.execute(delete(mirror_ranges).where(*self._scope(spec.source, spec.name)))
                conn.execute(insert(mirror_ranges), rows)
        except IntegrityError:
            pass
        return self.store.load_checkpoint(spec.source, spec.name)

    def open_ranges(self, source: str, name: str) -> list[RangeRow]:
        """The ranges of the object's split backfill not read to their end yet."""
        return [row for row in self._rows(source, name) if not row.done]

    def load(self, source: str, name: str, number: int) -> RangeRow | None:
        """One range as stored now (``None`` once the backfill is complete)."""
        rows = self._rows(source, name, number)
        return rows[0] if rows else None

    def advance(
        self,
        conn: Connection,
        source: str,
        name: str,
        number: int,
        version: int,
        checkpoint: Checkpoint,
    ) -> int:
        """Save range ``number``'s ``checkpoint`` in the page's transaction if the range is
        still at ``version``; returns the new version, or raises ``RangeTaken``."""
        result = conn.execute(
            update(mirror_ranges)
            .where(
                *self._scope(source, name),
                mirror_ranges.c.range_no == number,
                mirror_ranges.c.version == version,
                mirror_ranges.c.phase != DONE,
            )
            .values(**_checkpoint_row(checkpoint), version=version + 1, updated_at=utcnow())
        )
        if result.rowcount != 1:
            raise RangeTaken(
                f"range {number} of {source}.{name} was moved on by another worker; "
                "leaving it to that worker"
            )
        return version + 1

    def finish(
        self, source: str, name: str, on_finish: Callable[[Connection], None] | None = None
    ) -> bool:
        """Move the object to its incremental phase if every range is done; ``True`` when
        this call did it (it happens once, whichever worker calls first). ``on_finish`` runs
        in the same transaction (the page hooks' end of the backfill)."""
        scope = self._scope(source, name)
        with self.store.transaction() as conn:
            # an update first: row locks on PostgreSQL, the write lock on SQLite, in the same
            # order (ranges, then the checkpoint) as every page transaction takes them
            conn.execute(
                update(mirror_ranges).where(*scope).values(version=mirror_ranges.c.version)
            )
            row = conn.execute(
                select(mirror_checkpoints)
                .where(mirror_checkpoints.c.source == source, mirror_checkpoints.c.object == name)
                .with_for_update()
            ).first()
            current = _checkpoint_from(row._asdict()) if row is not None else None
            plan = plan_of(current)
            if plan is None:
                return False
            phases = list(conn.execute(select(mirror_ranges.c.phase).where(*scope)).scalars())
            if len(phases) != len(plan.bounds) or any(phase != DONE for phase in phases):
                return False
            self.store.save_checkpoint(conn, source, name, plan.after)
            conn.execute(delete(mirror_ranges).where(*scope))
            if on_finish is not None:
                on_finish(conn)
        return True

    def forget(self, source: str, name: str) -> None:
        """Drop the object's ranges (a restarted backfill plans anew)."""
        with self.store.transaction() as conn:
            conn.execute(delete(mirror_ranges).where(*self._scope(source, name)))

    def _rows(self, source: str, name: str, number: int | None = None) -> list[RangeRow]:
        query = select(mirror_ranges).where(*self._scope(source, name))
        if number is not None:
            query = query.where(mirror_ranges.c.range_no == number)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.order_by(mirror_ranges.c.range_no)).all()
        return [
            RangeRow(
                r.range_no, _checkpoint_from(r._asdict()) if r.version else None, int(r.version)
            )
            for r in rows
        ]

    @staticmethod
    def _scope(source: str, name: str) -> tuple[Any, ...]:
        return (mirror_ranges.c.source == source, mirror_ranges.c.object == name)

    @staticmethod
    def _scope_values(source: str, name: str) -> dict[str, str]:
        return {"source": source, "object": name}


def _checkpoint_row(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "phase": checkpoint.phase,
        "cursor": checkpoint.cursor,
        "ids_at_cursor": list(checkpoint.ids_at_cursor),
        "state": dict(checkpoint.state),
    }


def _checkpoint_from(raw: Mapping[str, Any]) -> Checkpoint:
    return Checkpoint(
        raw.get("cursor"),
        tuple(raw.get("ids_at_cursor") or ()),
        str(raw.get("phase") or "backfill"),
        dict(raw.get("state") or {}),
    )
