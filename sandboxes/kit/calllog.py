"""The call log: ``(method, path)`` of every CRM-facing request a sandbox answered, in order."""

from __future__ import annotations

import threading


class CallLog:
    """A thread-safe, ordered list of the requests a sandbox answered."""

    def __init__(self) -> None:
        """An empty log."""
        self._lock = threading.Lock()
        self._calls: list[tuple[str, str]] = []

    def record(self, method: str, path: str) -> None:
        """Log one request."""
        with self._lock:
            self._calls.append((method, path))

    def snapshot(self) -> list[tuple[str, str]]:
        """A copy of the log, oldest first."""
        with self._lock:
            return list(self._calls)

    def reset(self) -> None:
        """Forget every logged request."""
        with self._lock:
            self._calls.clear()

    def count(self, path_contains: str | None = None, method: str | None = None) -> int:
        """How many requests there were (whose path contains ``path_contains``, with
        ``method``)."""
        return sum(
            1
            for verb, path in self.snapshot()
            if (path_contains is None or path_contains in path) and method in (None, verb)
        )
