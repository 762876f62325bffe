"""Newer version wins, under any interleaving (hypothesis): CRM edits, stream deliveries that
are lost, duplicated or reordered, stream applies, polls, and poll pages read at one moment and
applied much later. No record's mirrored version ever goes back, and once the stream and a poll
have caught up, the mirror equals the CRM."""

from __future__ import annotations

import tempfile
from datetime import datetime
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mirror.types import Page
from tests.mirror.stream.world import World, deliver, world

STEPS = st.one_of(
    st.tuples(st.just("edit"), st.integers(0, 3)),
    st.tuples(
        st.sampled_from(["read", "stale", "poll", "deliver", "apply", "lose", "dup", "swap"]),
        st.just(0),
    ),
)


def versions(w: World) -> dict[str, datetime]:
    table = w.mirror.store.mirrored("tiny", "deals").table
    with w.mirror.store.engine.connect() as conn:
        return {r.id: r._modstamp for r in conn.execute(table.select())}


def stale_sync(w: World, pages: list[Page]) -> None:
    adapter: Any = w.mirror.adapter("tiny")
    read = adapter.read
    adapter.read = lambda _spec, _since: iter(pages)
    try:
        w.mirror.sync(["deals"])
    finally:
        adapter.read = read


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(STEPS, min_size=1, max_size=25))
@example([("edit", 0), ("read", 0), ("edit", 0), ("deliver", 0), ("apply", 0), ("stale", 0)])
def test_no_interleaving_puts_an_older_version_back(steps: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as folder, world(f"sqlite:///{folder}/m.db") as w:
        deals = sorted(w.crm.records["deals"])[:4]
        spec = w.mirror.spec("tiny", "deals")
        reads: list[list[Page]] = []
        seen = versions(w)
        for number, (step, index) in enumerate(steps):
            if step == "edit":
                w.crm.update("deals", deals[index], {"name": f"edit {number}"})
            elif step == "read":
                since = w.mirror.store.load_checkpoint("tiny", "deals")
                reads.append(list(w.mirror.adapter("tiny").read(spec, since)))
            elif step == "stale" and reads:
                stale_sync(w, reads.pop(0))
            elif step == "poll":
                w.mirror.sync(["deals"])
            elif step == "deliver":
                deliver(w)
            elif step == "apply":
                w.mirror.apply_stream("tiny")
            elif step == "lose":
                w.stream.lose_next()
            elif step == "dup":
                w.stream.duplicate_next()
            elif step == "swap":
                w.stream.reorder_next()
            now = versions(w)
            for record_id, version in now.items():
                before = seen.get(record_id)
                assert before is None or version >= before, (step, record_id)
            seen = now
        w.crm.update("deals", deals[0], {"name": "flush the held delivery"})
        deliver(w)
        w.mirror.apply_stream("tiny")
        w.mirror.sync(["deals"])
        assert w.matches_crm()
