"""The sandbox clocks, which follow the wall clock plus an offset that tests move.

``SandboxClock`` (Salesforce, Dataverse): UTC, whole seconds, never going backwards. Timestamps
written by the sandbox look like a live org's while tests can jump ahead (for example past the
15-minute query-locator expiry or the getDeleted window) without waiting. ``freeze`` stops it
(only ``advance`` and ``set`` move it then) so that a test can make several changes and
queries fall in one second on purpose; ``thaw`` lets it run on from where it stands.

``MillisecondClock`` (HubSpot) counts epoch milliseconds, and every write takes a fresh stamp
strictly after the last one, so two separate changes never share a last-modified value (records
written by one batch call do share it, as in HubSpot).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class SandboxClock:
    """A monotonic, whole-second UTC clock with a movable offset."""

    def __init__(self, offset_seconds: int = 0, floor: datetime | None = None) -> None:
        """Start at wall time plus ``offset_seconds``, never earlier than ``floor``."""
        self._lock = threading.Lock()
        self._offset = offset_seconds
        self._last = int(floor.timestamp()) if floor else 0
        self._frozen = False

    def _reading(self) -> int:
        if self._frozen:
            return self._last
        reading = max(int(time.time()) + self._offset, self._last)
        self._last = reading
        return reading

    def freeze(self) -> datetime:
        """Stop the clock at its current reading (``advance`` and ``set`` still move it)."""
        with self._lock:
            reading = self._reading()
            self._frozen = True
            return datetime.fromtimestamp(reading, UTC)

    def thaw(self) -> datetime:
        """Let a frozen clock follow the wall clock again, on from its current reading."""
        with self._lock:
            if self._frozen:
                self._frozen = False
                self._offset = self._last - int(time.time())
            return datetime.fromtimestamp(self._reading(), UTC)

    def now(self) -> datetime:
        """The current sandbox time (aware UTC, whole seconds)."""
        with self._lock:
            return datetime.fromtimestamp(self._reading(), UTC)

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by ``seconds`` (rounded down to whole seconds)."""
        if seconds < 0:
            raise ValueError("the sandbox clock never goes backwards; advance by seconds >= 0")
        with self._lock:
            self._offset += int(seconds)
            self._last += int(seconds)
            return datetime.fromtimestamp(self._reading(), UTC)

    def set(self, moment: datetime) -> datetime:
        """Set the clock to ``moment``; refuses to go back before the current reading."""
        if moment.tzinfo is None:
            raise ValueError("set_clock needs a timezone-aware datetime")
        target = int(moment.timestamp())
        with self._lock:
            if target < self._reading():
                current = datetime.fromtimestamp(self._last, UTC)
                raise ValueError(f"the sandbox clock never goes backwards (now {current})")
            self._offset = target - int(time.time())
            self._last = target
            return datetime.fromtimestamp(target, UTC)

    @property
    def offset_seconds(self) -> int:
        """The current offset from the wall clock, in seconds."""
        return self._offset

    def state(self) -> str:
        """The clock as a string to persist: ``"<offset> <last reading>"`` (a frozen clock
        is saved as running on from its reading)."""
        with self._lock:
            offset = self._last - int(time.time()) if self._frozen else self._offset
            return f"{offset} {self._last}"

    @classmethod
    def from_state(cls, state: str | None) -> SandboxClock:
        """A clock resumed from :meth:`state` output (or a fresh one)."""
        if not state:
            return cls()
        offset, last = (int(part) for part in state.split())
        return cls(offset, datetime.fromtimestamp(last, UTC))


class MillisecondClock:
    """Epoch milliseconds: wall clock plus an offset, with strictly increasing stamps."""

    def __init__(self, offset_ms: int = 0, last_ms: int = 0) -> None:
        """Start at wall time plus ``offset_ms``, never at or before ``last_ms``."""
        self._lock = threading.Lock()
        self._offset = offset_ms
        self._last = last_ms
        self._frozen_at: int | None = None

    def _wall(self) -> int:
        if self._frozen_at is not None:
            return self._frozen_at
        return int(time.time() * 1000) + self._offset

    def now_ms(self) -> int:
        """The current reading (not earlier than any stamp handed out)."""
        with self._lock:
            return max(self._wall(), self._last)

    def stamp(self) -> int:
        """A fresh stamp for a change, later than every earlier one."""
        with self._lock:
            self._last = max(self._wall(), self._last + 1)
            return self._last

    def advance(self, seconds: float) -> int:
        """Move the clock forward by ``seconds``; returns the new reading."""
        if seconds < 0:
            raise ValueError("the sandbox clock never goes backwards")
        with self._lock:
            self._offset += int(seconds * 1000)
            if self._frozen_at is not None:
                self._frozen_at += int(seconds * 1000)
        return self.now_ms()

    def freeze(self) -> int:
        """Stop the clock at its current reading (``advance`` still moves it; each change
        still gets a stamp of its own, a millisecond after the last one)."""
        with self._lock:
            self._frozen_at = max(self._wall(), self._last)
            return self._frozen_at

    def thaw(self) -> int:
        """Let a frozen clock follow the wall clock again, on from its current reading."""
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - int(time.time() * 1000)
                self._frozen_at = None
        return self.now_ms()

    def state(self) -> str:
        """``"<offset> <last>"`` to persist (a frozen clock is saved as running on)."""
        with self._lock:
            offset = self._offset
            if self._frozen_at is not None:
                offset = self._frozen_at - int(time.time() * 1000)
            return f"{offset} {self._last}"

    @classmethod
    def from_state(cls, state: str | None, floor_ms: int = 0) -> MillisecondClock:
        """A clock resumed from :meth:`state`, never before ``floor_ms``."""
        if not state:
            return cls(0, floor_ms)
        offset, last = (int(part) for part in state.split())
        return cls(offset, max(last, floor_ms))
