"""Reading ahead: the next pages of a read come from the CRM on a background thread while the
current one is written, at most ``depth`` pages ahead, so a sync runs at the speed of the slower
of the CRM and the store instead of both added up."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Iterator
from typing import Any

from mirror.types import Page

_DONE = object()


def prefetched(pages: Iterator[Page], depth: int) -> Iterator[Page]:
    """Iterate ``pages`` with up to ``depth`` pages read ahead in a background thread."""
    if depth <= 0:
        yield from pages
        return
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        buffer.put(page, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            buffer.put(exc)
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()

    # the reader thread logs with the run's context (source, object, run id)
    context = contextvars.copy_context()
    worker = threading.Thread(
        target=context.run, args=(produce,), name="prm-mirror-prefetch", daemon=True
    )
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                buffer.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)
