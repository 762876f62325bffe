"""Write the generated dataset into the Salesforce sandbox's tables.

Rows stream from :class:`SalesforceShaper` straight into ``executemany`` batches, so memory stays
flat at any size. Large datasets are shaped in forked worker processes, a few chunks ahead of
the inserts, which keeps every core busy; chunks are inserted in order, so the result is the
same as a serial load. Fork (not spawn) is used so that a caller's script is never re-imported
in the workers; where fork is unavailable the load is serial. The cyclic garbage collector is
paused while rows stream (they hold no cycles, and its scans of millions of live tuples would
dominate the run). Indexes are built last.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context

from sandboxes.dataset.generate import Dataset
from sandboxes.salesforce.ids import sequence_of
from sandboxes.salesforce.schema import SalesforceSchema
from sandboxes.salesforce.shape import Rows, SalesforceShaper
from sandboxes.salesforce.store import Store, quote

CHUNK_RECORDS = 10_000
PARALLEL_FROM_OPPORTUNITIES = 50_000
WORKERS = 2
CHUNKS_IN_FLIGHT = 4
ORDER = ("users", "partners", "customers", "contacts", "leads", "products",
         "deal_registrations", "opportunities")  # fmt: skip

_worker_shaper: SalesforceShaper | None = None
Task = tuple[str, int, int]


def _shape_in_worker(seed: int, size: str | int, anchor: str, task: Task) -> list[tuple[str, Rows]]:
    """Worker-process entry: shape one chunk (the shaper is built once per worker)."""
    global _worker_shaper
    if _worker_shaper is None:
        gc.disable()
        from datetime import datetime

        dataset = Dataset(seed, size, datetime.fromisoformat(anchor))
        _worker_shaper = SalesforceShaper(dataset, SalesforceSchema())
    return _worker_shaper.chunk(*task)


class DatasetLoader:
    """Loads one :class:`Dataset` into a :class:`Store`."""

    def __init__(self, store: Store, dataset: Dataset) -> None:
        """Prepare to load ``dataset`` into ``store``."""
        self.store = store
        self.dataset = dataset
        self.shaper = SalesforceShaper(dataset, store.schema)

    def tasks(self) -> list[Task]:
        """The chunks to shape, in load order."""
        sizes = self.shaper.sizes()
        return [
            (kind, start, min(start + CHUNK_RECORDS, sizes[kind]))
            for kind in ORDER
            for start in range(0, sizes[kind], CHUNK_RECORDS)
        ]

    def load(self) -> dict[str, int]:
        """Load every object; returns the number of rows per sObject."""
        self.store.create_tables()
        counts: dict[str, int] = {}
        parallel = (
            self.dataset.counts.opportunities >= PARALLEL_FROM_OPPORTUNITIES
            and "fork" in get_all_start_methods()
        )
        chunks = self._shaped_in_workers() if parallel else self._shaped_here()
        collecting = gc.isenabled()
        gc.disable()
        try:
            for shaped in chunks:
                for sobject, rows in shaped:
                    obj = self.store.schema.objects[sobject.lower()]
                    columns = [f["name"] for f in obj.stored_fields()]
                    counts[sobject] = counts.get(sobject, 0) + self.store.insert_many(
                        obj, columns, rows
                    )
        finally:
            if collecting:
                gc.enable()
        self._set_sequences()
        self.store.create_indexes()
        return counts

    def _shaped_here(self) -> Iterator[list[tuple[str, Rows]]]:
        for task in self.tasks():
            yield self.shaper.chunk(*task)

    def _shaped_in_workers(self) -> Iterator[list[tuple[str, Rows]]]:
        data = self.dataset
        arguments = (data.seed, data.size, data.anchor.isoformat())
        context = get_context("fork")
        with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
            pending: deque[Future[list[tuple[str, Rows]]]] = deque()
            for task in self.tasks():
                pending.append(pool.submit(_shape_in_worker, *arguments, task))
                if len(pending) >= CHUNKS_IN_FLIGHT:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _set_sequences(self) -> None:
        for obj in self.store.schema.objects.values():
            highest = self.store.scalar(f'SELECT MAX("Id") FROM {quote(obj.sql_table)}')
            count = 0 if highest is None else sequence_of(highest)
            self.store.reserve_sequences(obj.key_prefix, count)
