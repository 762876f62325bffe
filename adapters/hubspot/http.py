"""HTTP under hubspot-api-client: one rate governor and request counter per adapter.

hubspot-api-client sends every request through a ``urllib3.PoolManager``; the adapter gives all
its API objects one ``GovernedPoolManager``, so every request, whatever SDK package it comes
from, is counted, paced and retried on throttling in one place:

- General requests share HubSpot's burst budget (requests per rolling ten seconds). The window
  size and budget come from the ``X-HubSpot-RateLimit-Max`` / ``-Interval-Milliseconds`` /
  ``-Remaining`` headers; the governor keeps ``reserve`` requests free and waits for the window
  to roll instead of sending into a 429.
- Searches have their own, slower budget and no headers: they are spaced ``1 /
  search_per_second`` apart.
- A 429 is waited out (``Retry-After`` if sent, else the interval the headers announced, else a
  second for searches and ten for the rest) and repeated, at most ``max_waits`` times; a 429
  for the daily limit is handed back at once (waiting would not help).

Bodies are read eagerly so a repeated request never holds a connection, and urllib3's own
retries are off: connection failures surface to ``hubspot_client``, which knows whether the
request may be repeated safely.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson
import urllib3
from urllib3.util.retry import Retry

from adapters._kit.http_retry import parse_retry_after

NO_RETRIES = Retry(total=0, connect=0, read=0, redirect=0, status=0, other=0, raise_on_status=False)
DEFAULT_BURST = 100
DEFAULT_INTERVAL = 10.0


def _int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class RateGovernor:
    """Paces requests under HubSpot's burst and search limits and times 429 waits."""

    def __init__(
        self,
        search_per_second: float = 4.0,
        reserve: int = 5,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """A governor spacing searches ``1 / search_per_second`` apart and keeping
        ``reserve`` requests of each burst window free."""
        self.search_spacing = 1.0 / search_per_second
        self.reserve = reserve
        self.sleep = sleep
        self.clock = clock
        self.burst = DEFAULT_BURST
        self.interval = DEFAULT_INTERVAL
        self.daily_remaining: int | None = None
        self.waited = 0.0
        self.throttled = 0
        self._sent: deque[float] = deque()
        self._last_search = -1e9
        self._lock = threading.Lock()

    def before(self, search: bool) -> None:
        """Wait, if needed, until one more request fits its budget, then count it."""
        with self._lock:
            now = self.clock()
            if search:
                wait = self._last_search + self.search_spacing - now
                self.pause(wait)
                self._last_search = self.clock()
                return
            horizon = now - self.interval
            while self._sent and self._sent[0] <= horizon:
                self._sent.popleft()
            budget = max(1, self.burst - self.reserve)
            if len(self._sent) >= budget:
                self.pause(self._sent[0] + self.interval - now)
                self._sent.popleft()
            self._sent.append(self.clock())

    def pause(self, seconds: float) -> None:
        """Sleep for ``seconds`` (counted in ``waited``)."""
        if seconds > 0:
            self.waited += seconds
            self.sleep(seconds)

    def observe(self, headers: Mapping[str, str], search: bool) -> None:
        """Learn the budgets from a response's ``X-HubSpot-RateLimit-*`` headers."""
        if search:
            return
        burst = _int(headers, "X-HubSpot-RateLimit-Max")
        interval = _int(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
        remaining = _int(headers, "X-HubSpot-RateLimit-Remaining")
        daily = _int(headers, "X-HubSpot-RateLimit-Daily-Remaining")
        with self._lock:
            if burst:
                self.burst = burst
            if interval:
                self.interval = interval / 1000
            if daily is not None:
                self.daily_remaining = daily
            if remaining is not None and burst:
                self._align(burst - remaining)

    def _align(self, used: int) -> None:
        """Others share the portal's budget: count as many requests as the portal says."""
        now = self.clock()
        while len(self._sent) < used:
            self._sent.append(now)

    def wait_after_429(self, headers: Mapping[str, str], body: bytes, search: bool) -> float | None:
        """Seconds to wait before repeating a throttled request; ``None`` for the daily limit."""
        self.throttled += 1
        policy = ""
        try:
            policy = str(orjson.loads(body or b"{}").get("policyName") or "")
        except (orjson.JSONDecodeError, AttributeError):
            policy = ""
        if policy == "DAILY":
            return None
        told = parse_retry_after(headers.get("Retry-After"))
        if told is not None:
            return told
        interval = _int(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
        if interval:
            return interval / 1000
        return 1.0 if search else self.interval


class GovernedPoolManager(urllib3.PoolManager):
    """A pool manager whose every request is counted and paced by one ``RateGovernor``."""

    def __init__(self, governor: RateGovernor, max_waits: int = 20, **kwargs: Any) -> None:
        """Pool connections as ``urllib3.PoolManager`` does, with ``governor`` in front."""
        kwargs.setdefault("retries", NO_RETRIES)
        super().__init__(**kwargs)
        self.governor = governor
        self.max_waits = max_waits
        self._count = 0
        self._count_lock = threading.Lock()

    @property
    def count(self) -> int:
        """Requests sent so far (every attempt, throttled ones included)."""
        return self._count

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:  # type: ignore[override]
        """Send one request, waiting for the budget and waiting out 429s."""
        search = urlsplit(url).path.endswith("/search")
        kw["preload_content"] = True
        kw["retries"] = NO_RETRIES
        waits = 0
        while True:
            self.governor.before(search)
            with self._count_lock:
                self._count += 1
            response = super().urlopen(method, url, redirect=redirect, **kw)
            self.governor.observe(response.headers, search)
            if response.status != 429 or waits >= self.max_waits:
                return response
            wait = self.governor.wait_after_429(response.headers, response.data, search)
            if wait is None:
                return response
            waits += 1
            self.governor.pause(wait)
