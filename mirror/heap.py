"""Keeping the objects a daemon loads at start out of every later garbage collection."""

from __future__ import annotations

import gc

from mirror.api import Mirror


def settle_heap(mirror: Mirror) -> int:
    """Load what every sync of ``mirror`` uses (each mirrored object's table, the partner-slice
    rules), collect the garbage, then freeze what the process holds; returns how many objects
    were frozen.

    A full collection of Python's garbage collector scans every object the process holds: the
    libraries' own, some hundred thousand, take about 100 ms on a slow core, and the objects
    an incremental sync allocates set one off every few syncs. Frozen (``gc.freeze``), the
    objects loaded at start are left out of every later collection; they live as long as the
    process anyway.
    """
    for source in mirror.config.sources:
        for name in mirror.object_names(source):
            try:
                mirror.store.mirrored(source, name)
            except KeyError:
                continue  # not backfilled yet: its first sync prepares the table
        mirror.visibility(source)
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
