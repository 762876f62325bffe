"""Injected faults: failures, dropped answers and added latency, queued by test controls.

A fault applies to the next ``remaining`` requests whose path (or path and query, as each
sandbox chooses) contains ``path_contains``. Each sandbox turns a failure into its own CRM's
error answer from ``status``, ``code``, ``message`` and ``retry_after``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Fault:
    """One injected fault for the next ``remaining`` matching requests."""

    remaining: int
    path_contains: str | None = None
    status: int = 503
    code: str = ""
    message: str = "Service Unavailable"
    retry_after: int | None = None

    def matches(self, path: str) -> bool:
        """Whether this fault applies to a request for ``path``."""
        return self.remaining > 0 and (self.path_contains is None or self.path_contains in path)

    def headers(self) -> dict[str, str]:
        """The fault's extra answer headers (``Retry-After`` when it has one)."""
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


@dataclass
class Faults:
    """The queued failures and dropped answers, and the latency added to every request."""

    failures: list[Fault] = field(default_factory=list)
    drops: list[Fault] = field(default_factory=list)
    delay_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, queue: list[Fault], fault: Fault) -> None:
        """Queue ``fault`` behind the faults already in ``queue``."""
        with self.lock:
            queue.append(fault)

    def take(self, queue: list[Fault], path: str) -> Fault | None:
        """Consume one use of the first fault in ``queue`` matching ``path``."""
        with self.lock:
            for fault in queue:
                if fault.matches(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        queue.remove(fault)
                    return fault
        return None

    def pause(self) -> None:
        """Wait the added latency, if any."""
        if self.delay_seconds:
            time.sleep(self.delay_seconds)

    def queues(self) -> list[list[Fault]]:
        """Every queue of faults (a sandbox with more kinds of fault adds its own)."""
        return [self.failures, self.drops]

    def clear(self) -> None:
        """Forget every queued fault and remove the added latency."""
        with self.lock:
            for queue in self.queues():
                queue.clear()
        self.delay_seconds = 0.0
