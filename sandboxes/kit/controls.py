"""The test controls every sandbox has alike: dropped answers, clearing faults, the call log,
the write log and, for the sandboxes on a whole-second clock, the clock.

A sandbox class mixes these in after ``SandboxLifecycle``: each reads the live state through
``self._world`` (an object with ``faults``, ``calls``, ``store`` and ``clock``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sandboxes.kit.admin import ControlDispatch
from sandboxes.kit.faults import Fault
from sandboxes.kit.lifecycle import SandboxLifecycle
from sandboxes.kit.writelog import read_log


class CommonControls(SandboxLifecycle, ControlDispatch):
    """Faults, the call log and the write log of a sandbox."""

    def drop_next_response(self, count: int = 1, path_contains: str | None = None) -> None:
        """The next ``count`` matching requests are processed, then the connection is dropped."""
        faults = self._world.faults
        faults.add(faults.drops, Fault(count, path_contains))

    def clear_faults(self) -> None:
        """Forget every injected failure and dropped response and remove the added latency."""
        self._world.faults.clear()

    @property
    def calls(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every CRM-facing request, in order."""
        return list(self._world.calls.snapshot())

    def reset_calls(self) -> None:
        """Forget the call log."""
        self._world.calls.reset()

    def call_count(self, path_contains: str | None = None, method: str | None = None) -> int:
        """How many CRM-facing requests there were (matching path part and method)."""
        return int(self._world.calls.count(path_contains, method))

    def write_log(self, after: int = 0, limit: int = 10_000) -> list[dict[str, Any]]:
        """Committed record writes after sequence ``after`` (``sandboxes.kit.writelog``)."""
        store = self._world.store
        with store.lock:
            return read_log(store.conn, after, limit)


class ClockControls(SandboxLifecycle):
    """The controls of a whole-second ``SandboxClock``."""

    def now(self) -> datetime:
        """The sandbox clock (UTC, whole seconds)."""
        return self._world.clock.now()

    def advance_clock(self, seconds: float) -> datetime:
        """Move the sandbox clock forward (tokens and delta tokens, if any, age with it)."""
        return self._world.clock.advance(seconds)

    def set_clock(self, dt: datetime) -> datetime:
        """Set the sandbox clock (never backwards)."""
        return self._world.clock.set(dt)

    def freeze_clock(self) -> datetime:
        """Stop the sandbox clock (only ``advance_clock`` and ``set_clock`` move it then)."""
        return self._world.clock.freeze()

    def thaw_clock(self) -> datetime:
        """Let a frozen sandbox clock run on with the wall clock."""
        return self._world.clock.thaw()
