"""HubSpot's API rate limits as the sandbox enforces them, with their headers and 429s.

Three budgets, as a private app on a Professional portal has them: a burst limit of requests per
rolling ten seconds, a daily limit (per UTC day of the sandbox clock) and the separate, slower
search limit of requests per second. Non-search answers carry the ``X-HubSpot-RateLimit-*``
headers; a request over a budget is refused with 429 and HubSpot's ``RATE_LIMIT`` body, and not
counted. ``Retry-After`` is sent only when configured (HubSpot does not promise one).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from sandboxes.hubspot.errors import HsError

GROUP_NAME = "publicapi:private-app:48151623"


@dataclass(frozen=True)
class RateLimits:
    """The budgets: ``burst`` requests per ``interval_ms``, ``daily`` per day, and
    ``search_per_second`` searches per second; ``retry_after`` seconds on 429s if set."""

    burst: int = 190
    interval_ms: int = 10_000
    daily: int = 625_000
    search_per_second: int = 5
    retry_after: float | None = None


class RateLimiter:
    """Counts requests against the budgets and refuses those over them."""

    def __init__(self, limits: RateLimits | None = None) -> None:
        """Start with ``limits`` (HubSpot Professional's by default) and nothing spent."""
        self.limits = limits or RateLimits()
        self._lock = threading.Lock()
        self._window: deque[float] = deque()
        self._searches: deque[float] = deque()
        self._day: date | None = None
        self.daily_used = 0
        self.refused = 0

    def configure(self, **changes: float | int | None) -> RateLimits:
        """Change some budgets; the rest stay."""
        with self._lock:
            self.limits = replace(self.limits, **changes)  # type: ignore[arg-type]
            return self.limits

    def admit(self, search: bool, now_ms: int) -> dict[str, str]:
        """Spend one request; its rate headers, or ``HsError`` 429 when over a budget."""
        today = datetime.fromtimestamp(now_ms / 1000, UTC).date()
        moment = time.monotonic()
        with self._lock:
            limits = self.limits
            if self._day != today:
                self._day, self.daily_used = today, 0
            self._expire(moment)
            if self.daily_used >= limits.daily:
                raise self._refuse("DAILY", "daily", self._headers(limits))
            if search:
                if len(self._searches) >= limits.search_per_second:
                    raise self._refuse("SECONDLY", "secondly", {})
                self._searches.append(moment)
                self.daily_used += 1
                return {}
            if len(self._window) >= limits.burst:
                raise self._refuse("TEN_SECONDLY_ROLLING", "ten_secondly_rolling",
                                   self._headers(limits))  # fmt: skip
            self._window.append(moment)
            self.daily_used += 1
            return self._headers(limits)

    def _expire(self, moment: float) -> None:
        horizon = moment - self.limits.interval_ms / 1000
        while self._window and self._window[0] <= horizon:
            self._window.popleft()
        while self._searches and self._searches[0] <= moment - 1.0:
            self._searches.popleft()

    def _headers(self, limits: RateLimits) -> dict[str, str]:
        per_second = max(1, limits.burst * 1000 // max(limits.interval_ms, 1))
        recent = sum(1 for t in self._window if t > time.monotonic() - 1.0)
        return {
            "X-HubSpot-RateLimit-Daily": str(limits.daily),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, limits.daily - self.daily_used)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(limits.interval_ms),
            "X-HubSpot-RateLimit-Max": str(limits.burst),
            "X-HubSpot-RateLimit-Remaining": str(max(0, limits.burst - len(self._window))),
            "X-HubSpot-RateLimit-Secondly": str(per_second),
            "X-HubSpot-RateLimit-Secondly-Remaining": str(max(0, per_second - recent)),
        }

    def _refuse(self, policy: str, wording: str, headers: dict[str, str]) -> HsError:
        self.refused += 1
        if self.limits.retry_after is not None:
            headers = {**headers, "Retry-After": str(math.ceil(self.limits.retry_after))}
        return HsError(
            429,
            "",
            f"You have reached your {wording} limit.",
            headers=headers,
            errorType="RATE_LIMIT",
            policyName=policy,
            groupName=GROUP_NAME,
        )
