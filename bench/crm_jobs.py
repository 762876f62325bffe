"""The measured engine steps of ``bench.backfill --crm hubspot|dynamics``; each runs alone in a
spawned process (``isolation.run_isolated``), takes plain arguments (a database URL and the
source's settings) and returns a JSON-able dict.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bench.jobs import sync_report


def _config(database: str, source: dict[str, Any]) -> Any:
    from mirror.config import parse_config

    return parse_config({"store": {"database": database}, "sources": {source["crm"]: source}})


def fetch_only(source: dict[str, Any]) -> dict[str, Any]:
    """The bound: every object's backfill pages read through the adapter and thrown away.

    Also reports, per HubSpot object, how many association target types it reads
    (``targets``; -1 for an object read through another's listing), which the minimum of
    read calls depends on.
    """
    from mirror import Mirror

    logging.disable(logging.WARNING)
    objects: dict[str, dict[str, Any]] = {}
    name_of_source = source["crm"]
    started = time.perf_counter()
    with Mirror.open(_config("sqlite://", source)) as mirror:
        adapter = mirror.adapter(name_of_source)
        names = mirror.object_names(name_of_source)
        specs = {name: mirror.spec(name_of_source, name) for name in names}
        for name in names:
            calls, begun, records, pages = adapter.api_calls(), time.perf_counter(), 0, 0
            for page in adapter.read(specs[name], None):
                records += len(page.records) + len(page.tombstones)
                pages += 1
            objects[name] = {
                "records": records,
                "pages": pages,
                "seconds": round(time.perf_counter() - begun, 3),
                "api_calls": adapter.api_calls() - calls,
                "targets": _targets(adapter, name),
            }
        total_calls = adapter.api_calls()
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "api_calls_total": total_calls,
        "objects": objects,
    }


def _targets(adapter: Any, name: str) -> int:
    """Association target types a HubSpot object's reads fill (0 for Dataverse tables)."""
    catalog = getattr(adapter, "catalog", None)
    if catalog is None:
        return 0
    from adapters.hubspot.assoc import Associations
    from adapters.hubspot.catalog import EDGE_OBJECTS

    if name in EDGE_OBJECTS:
        return -1
    return len({f.target for f in Associations(adapter.connection, catalog, name).linked})


def sync_all(database: str, source: dict[str, Any]) -> dict[str, Any]:
    """``Mirror.sync()`` of every object (a backfill on a fresh store, else incremental)."""
    from mirror import Mirror

    logging.disable(logging.WARNING)
    with Mirror.open(_config(database, source)) as mirror:
        started = time.perf_counter()
        results = mirror.sync()
        seconds = time.perf_counter() - started
        total_calls = mirror.adapter(source["crm"]).api_calls()
        runs = {run["id"]: run for run in mirror.store.recent_runs(len(results))}
    return sync_report(runs, results, seconds, total_calls)
