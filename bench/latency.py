"""Change streams (issue 26): how soon a change crosses between the CRM and the mirror.

``python -m bench.latency --crm all --rate 5 --seconds 20`` runs, per CRM, its sandbox in a
process of its own and the daemon (``python -m cli daemon``, the source's ``stream = true``,
the daemon's default settings but ``--sync-interval``, an hour by default so that everything
measured came through the stream) in another, with this process as the portal
(``bench.stream_rig``), and measures at ``--rate`` changes a second for ``--seconds``:

- CRM commit -> mirror row, and -> the partner's change feed (``PartnerView.changes``): a
  record's field edited through the sandbox's control (the commit happens inside the call; its
  start is taken as the commit, so a figure is at most the call's length high), then the
  mirror's row and each partner's feed read every 10 ms;
- portal write -> CRM: ``PartnerView.update`` of the same field, then the sandbox's write log
  read every 10 ms until the CRM has committed the value (the push wake-up at work);
- API calls: what the stream spent for the CRM's changes (every CRM-facing request the sandbox
  served meanwhile: the fetches of the changed records, Salesforce's Pub/Sub calls), against
  what polling at the default schedule spends for the same changes: one incremental sync of
  every object, measured, times the rounds ``sync_interval`` (60 s) makes over the window
  (at least one); and, for changes coming steadily at ``--rate``, one round per
  ``rate * sync_interval`` changes. All per 1,000 changes. Polling goes on beside the stream
  (the backstop), so the stream's calls come on top of polling's.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import machine, print_table, write_results
from bench.stream_rig import StreamRig, wait_for
from mirror.config import DaemonConfig

CRMS = ("salesforce", "hubspot", "dynamics")
LOOK = 0.01  # seconds between looks at the mirror, the feed and the CRM's write log


def percentiles(samples: list[float]) -> dict[str, float | None]:
    """p50 and p99 (and the max) of ``samples``, in seconds."""
    if not samples:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return {"p50": statistics.median(ordered), "p99": p99, "max": ordered[-1]}


def _paced(count: int, rate: float, act: Any) -> None:
    """Call ``act(n)`` ``count`` times at ``rate`` a second."""
    started = time.monotonic()
    for n in range(count):
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        act(n)


class _Watch:
    """A thread that looks every ``LOOK`` seconds for what is still awaited."""

    def __init__(self, look: Any) -> None:
        self.look = look
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.look()
            self.stop.wait(LOOK)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def crm_to_mirror(rig: StreamRig, count: int, rate: float) -> dict[str, Any]:
    """``count`` CRM edits at ``rate``: seconds to the mirror row and to the partner's feed,
    and the API calls the stream spent for them."""
    assert rig.mirror is not None
    field = rig.target.field
    pairs = rig.records(min(count, 50))
    views = {p: rig.mirror.as_partner(p) for _, p in pairs}
    cursors = {p: view.feed_cursor() for p, view in views.items()}
    sent: dict[str, float] = {}
    row_at: dict[str, float] = {}
    feed_at: dict[str, float] = {}
    lock = threading.Lock()

    def look() -> None:
        with lock:
            waiting = {t: sent[t] for t in sent if t not in row_at}
        mirrored = rig.mirror.store.mirrored(rig.crm, rig.target.object)  # type: ignore[union-attr]
        t = mirrored.table
        if waiting:
            with rig.mirror.store.engine.connect() as conn:  # type: ignore[union-attr]
                found = (
                    conn.execute(
                        t.select()
                        .with_only_columns(t.c[field])
                        .where(t.c[field].in_(list(waiting)))
                    )
                    .scalars()
                    .all()
                )
            now = time.monotonic()
            for token in found:
                row_at.setdefault(token, now)
        for partner, view in views.items():
            batch = view.changes(since=cursors[partner])
            cursors[partner] = batch.cursor
            now = time.monotonic()
            for change in batch.changes:
                values = change["fields"] if isinstance(change["fields"], dict) else {}
                new = values.get(field)
                token = new[1] if isinstance(new, list | tuple) else None
                if token in sent:
                    feed_at.setdefault(token, now)

    def act(n: int) -> None:
        record_id, _ = pairs[n % len(pairs)]
        token = f"crm {n} {os.urandom(3).hex()}"
        with lock:
            sent[token] = time.monotonic()
        rig.crm_update(record_id, token)

    rig.settle()
    calls = rig.calls()
    watch = _Watch(look)
    try:
        _paced(count, rate, act)
        wait_for(lambda: len(row_at) == len(feed_at) == count, 120, "every change applied", 0.05)
    finally:
        watch.close()
    rig.settle()
    time.sleep(1.0)  # a late duplicate or a retry would still cost its fetch
    stream_calls = rig.calls() - calls
    return {
        "changes": count,
        "crm_to_mirror_s": percentiles([row_at[t] - sent[t] for t in row_at]),
        "crm_to_feed_s": percentiles([feed_at[t] - sent[t] for t in feed_at]),
        "stream_calls": stream_calls,
    }


def polling_cost(rig: StreamRig, changes: int, window: float) -> dict[str, Any]:
    """What polling at the default schedule spends for ``changes`` made over ``window``
    seconds: one incremental sync of every object (the stream never moved the checkpoints,
    so it reads the same changes), times the rounds the default ``sync_interval`` makes."""
    assert rig.mirror is not None
    interval = DaemonConfig().sync_interval
    calls = rig.calls()
    rig.mirror.sync()
    round_calls = rig.calls() - calls
    rounds = max(1, math.ceil(window / interval))
    return {
        "default_sync_interval_s": interval,
        "poll_round_calls": round_calls,
        "poll_rounds": rounds,
        "polling_calls": round_calls * rounds,
    }


def portal_to_crm(rig: StreamRig, count: int, rate: float) -> dict[str, Any]:
    """``count`` portal edits at ``rate``: seconds until the CRM has committed each."""
    assert rig.mirror is not None
    field = rig.target.field
    pairs = rig.records(min(count, 50))
    views = {p: rig.mirror.as_partner(p) for _, p in pairs}
    sent: dict[str, float] = {}
    landed: dict[str, float] = {}
    lock = threading.Lock()
    head = [_log_head(rig)]

    def look() -> None:
        page = rig.box.admin("write_log", after=head[0], limit=10_000)
        now = time.monotonic()
        for entry in page:
            head[0] = entry["seq"]
            for value in (entry.get("fields") or {}).values():
                with lock:
                    if value in sent:
                        landed.setdefault(value, now)

    def act(n: int) -> None:
        record_id, partner = pairs[n % len(pairs)]
        token = f"portal {n} {os.urandom(3).hex()}"
        with lock:
            sent[token] = time.monotonic()
        views[partner].update(rig.target.object, record_id, {field: token})

    watch = _Watch(look)
    try:
        _paced(count, rate, act)
        wait_for(lambda: len(landed) == count, 120, "every portal edit in the CRM", 0.05)
    finally:
        watch.close()
    return {"edits": count, "portal_to_crm_s": percentiles([landed[t] - sent[t] for t in landed])}


def _log_head(rig: StreamRig) -> int:
    head = 0
    while page := rig.box.admin("write_log", after=head, limit=10_000):
        head = page[-1]["seq"]
    return head


def run_crm(crm: str, rate: float, seconds: float, size: int, sync_interval: float) -> dict:
    """Every figure of one CRM."""
    count = max(1, round(rate * seconds))
    with (
        tempfile.TemporaryDirectory(prefix=f"prm-bench-latency-{crm}-") as folder,
        StreamRig(crm, Path(folder), size=size, sync_interval=sync_interval) as rig,
    ):
        started = time.monotonic()
        inbound = crm_to_mirror(rig, count, rate)
        window = time.monotonic() - started
        polling = polling_cost(rig, count, max(window, seconds))
        outbound = portal_to_crm(rig, count, rate)
        status = rig.stream()
    per = 1000 / count
    return {
        "crm": crm,
        "rate": rate,
        "seconds": seconds,
        **inbound,
        **polling,
        **outbound,
        "stream_calls_per_1000": inbound["stream_calls"] * per,
        "polling_calls_per_1000": polling["polling_calls"] * per,
        # steady changes at ``rate``: each round reads ``rate * sync_interval`` of them
        "polling_steady_calls_per_1000": polling["poll_round_calls"]
        * 1000
        / (rate * polling["default_sync_interval_s"]),
        "stream_gaps": status.gaps,
        "stream_received": status.received,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def main(argv: list[str] | None = None) -> None:
    """Run and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crm", choices=(*CRMS, "all"), default="all")
    parser.add_argument("--rate", type=float, default=5.0, help="changes a second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", type=int, default=100, help="sandbox opportunities")
    parser.add_argument("--sync-interval", type=float, default=3600.0)
    args = parser.parse_args(argv)
    crms = CRMS if args.crm == "all" else (args.crm,)
    load = os.getloadavg()
    rows = [run_crm(crm, args.rate, args.seconds, args.size, args.sync_interval) for crm in crms]
    print_table(
        f"Change streams: {args.rate:g} changes/s for {args.seconds:g} s (ms; calls per 1,000)",
        [
            "crm",
            "->mirror p50",
            "p99",
            "->feed p50",
            "p99",
            "portal->CRM p50",
            "p99",
            "stream calls",
            "polling calls",
            "steady polling",
        ],
        [
            [
                r["crm"],
                _ms(r["crm_to_mirror_s"]["p50"]),
                _ms(r["crm_to_mirror_s"]["p99"]),
                _ms(r["crm_to_feed_s"]["p50"]),
                _ms(r["crm_to_feed_s"]["p99"]),
                _ms(r["portal_to_crm_s"]["p50"]),
                _ms(r["portal_to_crm_s"]["p99"]),
                round(r["stream_calls_per_1000"]),
                round(r["polling_calls_per_1000"]),
                round(r["polling_steady_calls_per_1000"]),
            ]
            for r in rows
        ],
    )
    write_results(
        "latency",
        {
            "machine": machine(),
            "load_average": {"start": load, "end": os.getloadavg()},
            "rate": args.rate,
            "seconds": args.seconds,
            "size": args.size,
            "sync_interval": args.sync_interval,
            "runs": rows,
        },
    )


if __name__ == "__main__":
    main()
