"""The measured engine steps; each runs alone in a spawned process (``isolation.run_isolated``).

Every job takes plain arguments (URLs and adapter settings) and returns a JSON-able dict, so
the driver process never holds an engine, a store or an adapter of its own.
"""

from __future__ import annotations

import logging
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.common import SOURCE
from bench.sandbox_process import mirror_config
from sandboxes.testing.admin import AdminClient


def fetch_only(base_url: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The bound: every object's backfill pages read through the adapter and thrown away."""
    from mirror import Mirror

    logging.disable(logging.WARNING)
    objects: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    with Mirror.open(mirror_config("sqlite://", base_url, **settings)) as mirror:
        adapter = mirror.adapter(SOURCE)
        names = mirror.object_names(SOURCE)
        specs = {name: mirror.spec(SOURCE, name) for name in names}
        for name in names:
            spec = specs[name]
            calls, begun, records, pages = adapter.api_calls(), time.perf_counter(), 0, 0
            for page in adapter.read(spec, None):
                records += len(page.records) + len(page.tombstones)
                pages += 1
            objects[name] = {
                "records": records,
                "pages": pages,
                "seconds": round(time.perf_counter() - begun, 3),
                "api_calls": adapter.api_calls() - calls,
            }
        total_calls = adapter.api_calls()
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "api_calls_total": total_calls,
        "objects": objects,
    }


def sync_all(
    database: str, base_url: str, settings: dict[str, Any], objects: list[str] | None = None
) -> dict[str, Any]:
    """``Mirror.sync()`` of every object (a backfill on a fresh store, else incremental)."""
    from mirror import Mirror

    logging.disable(logging.WARNING)
    with Mirror.open(mirror_config(database, base_url, **settings)) as mirror:
        started = time.perf_counter()
        results = mirror.sync(objects)
        seconds = time.perf_counter() - started
        total_calls = mirror.adapter(SOURCE).api_calls()
        runs = {run["id"]: run for run in mirror.store.recent_runs(len(results))}
    return sync_report(runs, results, seconds, total_calls)


def pull_opportunities(
    database: str, base_url: str, settings: dict[str, Any], with_access: bool
) -> dict[str, Any]:
    """An incremental ``Puller.sync_object`` of Opportunity, with or without the access hook,
    in a process of its own (statements compiled and tables loaded by this sync alone).

    The hook is wrapped to time it, so the result also says how much of the sync it took.
    """
    from mirror import Mirror

    logging.disable(logging.WARNING)
    with Mirror.open(mirror_config(database, base_url, **settings)) as mirror:
        return OpportunityPulls(mirror).pull(with_access)


def pull_opportunities_in_one_process(
    database: str,
    mirror_path: str,
    base_url: str,
    admin_token: str,
    settings: dict[str, Any],
    changes: int,
    rounds: int,
    seed: int,
) -> dict[str, Any]:
    """The same syncs in one long-lived process, as the daemon runs them: after one warm-up
    sync each way, ``rounds`` rounds of without / with / with / without, each after
    ``changes`` CRM edits made from this process."""
    from pathlib import Path

    from bench.changes import edit_opportunities, population
    from mirror import Mirror
    from mirror.daemon import settle_heap

    logging.disable(logging.WARNING)
    controls = AdminClient(base_url, admin_token)
    people = population(Path(mirror_path))
    rng = random.Random(seed)
    runs = []
    with Mirror.open(mirror_config(database, base_url, **settings)) as mirror:
        pulls = OpportunityPulls(mirror)
        settle_heap(mirror)
        for with_access in (False, True):
            edit_opportunities(controls, people, changes, rng)
            pulls.pull(with_access)
        for _round in range(rounds):
            for with_access in (False, True, True, False):
                edit_opportunities(controls, people, changes, rng)
                runs.append(pulls.pull(with_access))
    return {"runs": runs}


class OpportunityPulls:
    """Incremental syncs of Opportunity from one mirror, with the access hook (timed) or
    without it; the pullers are made once and reused."""

    def __init__(self, mirror: Any) -> None:
        from mirror.pull.sync import Puller
        from mirror.visibility.rules import path_index_fields

        self.mirror = mirror
        self.spec = mirror.spec(SOURCE, "Opportunity", refresh=True)
        rules = mirror.visibility(SOURCE)
        self.maintainer = mirror.grant_upkeep(SOURCE).page_hook()
        self.hook_seconds = 0.0
        self.pullers = {
            with_access: Puller(
                mirror.store,
                mirror.adapter(SOURCE),
                prefetch_pages=mirror.config.sync.prefetch_pages,
                hooks=[self._timed_hook] if with_access else [],
                indexes=path_index_fields(rules),
            )
            for with_access in (False, True)
        }

    def _timed_hook(self, conn: Any, mirrored: Any, outcome: Any) -> None:
        begun = time.perf_counter()
        self.maintainer(conn, mirrored, outcome)
        self.hook_seconds += time.perf_counter() - begun

    def pull(self, with_access: bool) -> dict[str, Any]:
        """One incremental sync of Opportunity; its time, the hook's and its counts."""
        self.hook_seconds = 0.0
        started = time.perf_counter()
        result = self.pullers[with_access].sync_object(self.spec)
        seconds = time.perf_counter() - started
        totals = result.totals
        return {
            "with_access": with_access,
            "kind": result.kind,
            "seconds": round(seconds, 4),
            "hook_seconds": round(self.hook_seconds, 4),
            "updated": totals.updated,
            "inserted": totals.inserted,
            "api_calls": result.api_calls,
        }


OPPORTUNITY_INDEXES = {
    "index (partner, Id)": "INDEXED BY ix_salesforce__opportunity__partner",
    "no index": "NOT INDEXED",
}
NO_CRM = "http://127.0.0.1:9"


def partner_queries(database: str, queries: int, scans: int, seed: int) -> dict[str, Any]:
    """Latency of partners' first page of 50 opportunities and of their count, over random
    partners, and the same for contacts (seen through their account); beside them the
    opportunities' page as a plain filtered scan of the opportunity table."""
    from sqlalchemy import event, select, text

    from mirror import Mirror
    from mirror.visibility.rules import visible_fields

    logging.disable(logging.WARNING)
    with Mirror.open(mirror_config(database, NO_CRM)) as mirror:
        store = mirror.store
        accounts = store.mirrored(SOURCE, "Account").table
        with store.engine.connect() as conn:
            partners = list(
                conn.execute(
                    select(accounts.c.Id).where(
                        accounts.c.IsPartner.is_(True), accounts.c._deleted.is_(False)
                    )
                ).scalars()
            )
        rng = random.Random(seed)
        picks = [rng.choice(partners) for _ in range(queries)]
        statements: list[tuple[str, Any]] = []

        def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            statements.append((statement, parameters))

        event.listen(store.engine, "before_cursor_execute", capture)
        mirror.as_partner(picks[0]).select("Opportunity", limit=50)
        event.remove(store.engine, "before_cursor_execute", capture)
        for partner in picks[:50]:
            mirror.as_partner(partner).select("Opportunity", limit=50)

        def first_page(partner: str) -> int:
            return len(mirror.as_partner(partner).select("Opportunity", limit=50))

        def count(partner: str) -> int:
            return mirror.as_partner(partner).count("Opportunity")

        def contacts_page(partner: str) -> int:
            return len(mirror.as_partner(partner).select("Contact", limit=50))

        def contacts_count(partner: str) -> int:
            return mirror.as_partner(partner).count("Contact")

        results: dict[str, Any] = {
            "partners": len(partners),
            "queries": queries,
            "first_page": latencies(first_page, picks),
            "count": latencies(count, picks),
            "plan": explain(store, *statements[-1]),
        }
        results["slice_sizes"] = results["count"].pop("results")
        results["page_rows"] = results["first_page"].pop("results")
        # contacts are seen through their account: no grants of their own, joined at query time
        statements.clear()
        event.listen(store.engine, "before_cursor_execute", capture)
        contacts_page(picks[0])
        event.remove(store.engine, "before_cursor_execute", capture)
        for partner in picks[:50]:
            contacts_page(partner)
        results["contacts_first_page"] = latencies(contacts_page, picks)
        results["contacts_count"] = latencies(contacts_count, picks)
        results["contacts_plan"] = explain(store, *statements[-1])
        results["contact_slice_sizes"] = results["contacts_count"].pop("results")
        results["contacts_first_page"].pop("results")
        if store.dialect == "sqlite":
            spec = store.mirrored(SOURCE, "Opportunity").spec
            visible = visible_fields(
                mirror.visibility(SOURCE).rule("Opportunity"), spec.field_names
            )
            columns = ", ".join(f'"{name}"' for name in visible)
            results["plain"] = {}
            for label, hint in OPPORTUNITY_INDEXES.items():
                sql = text(
                    f"SELECT {columns} FROM salesforce__opportunity {hint} "
                    'WHERE "PartnerAccountId" = :partner AND _deleted = 0 ORDER BY "Id" LIMIT 50'
                )
                sample = picks if hint.startswith("INDEXED") else picks[:scans]

                def plain(partner: str, sql: Any = sql) -> int:
                    with store.engine.connect() as conn:
                        return len(conn.execute(sql, {"partner": partner}).all())

                timing = latencies(plain, sample)
                timing.pop("results")
                results["plain"][label] = timing
    return results


def latencies(call: Callable[[str], int], partners: list[str]) -> dict[str, Any]:
    """p50/p90/p99/mean/max in milliseconds of ``call`` over ``partners``, plus its results."""
    timings, answers = [], []
    for partner in partners:
        begun = time.perf_counter()
        answers.append(call(partner))
        timings.append((time.perf_counter() - begun) * 1000)
    ordered = sorted(timings)

    def rank(share: float) -> float:
        return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]

    return {
        "n": len(timings),
        "p50_ms": round(rank(0.5), 3),
        "p90_ms": round(rank(0.9), 3),
        "p99_ms": round(rank(0.99), 3),
        "mean_ms": round(statistics.fmean(timings), 3),
        "max_ms": round(ordered[-1], 3),
        "results": {
            "mean": round(statistics.fmean(answers), 1),
            "min": min(answers),
            "max": max(answers),
        },
    }


def explain(store: Any, statement: str, parameters: Any) -> list[str]:
    """The database's plan of one captured partner-view query."""
    prefix = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(prefix + statement, parameters)
        return [" ".join(str(part) for part in row) for row in cursor.fetchall()]
    finally:
        raw.close()


def sync_report(
    runs: dict[Any, Any], results: list[Any], seconds: float, total_calls: int
) -> dict[str, Any]:
    """One ``Mirror.sync()``'s figures per object, from its results and their ``runs`` rows."""
    per_object = {}
    for result in results:
        run = runs[result.run_id]
        totals = result.totals
        per_object[result.object] = {
            "kind": result.kind,
            "records": totals.inserted + totals.updated + totals.unchanged + totals.deleted,
            "inserted": totals.inserted,
            "updated": totals.updated,
            "unchanged": totals.unchanged,
            "deleted": totals.deleted,
            "rejected": totals.rejected,
            "pages": result.pages,
            "api_calls": result.api_calls,
            "seconds": round((run["finished_at"] - run["started_at"]).total_seconds(), 3),
        }
    return {"seconds": round(seconds, 3), "api_calls_total": total_calls, "objects": per_object}
