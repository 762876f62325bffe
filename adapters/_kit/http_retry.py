"""CRM-neutral HTTP plumbing for adapters: request counting, retry timing and server time.

Every adapter talks to its CRM through one ``requests.Session``. ``RequestLog.install`` wraps that
session's ``send`` so every HTTP request is counted (logins, retries and redirects included), gets
the adapter's default timeout, and leaves its response's ``Retry-After`` and ``Date`` headers
behind for the retry loop and for server-clock reads (``answer_time``: when the CRM answered the
calling thread's last request, for the fence of a change cursor). ``RetryPolicy`` computes
exponential backoff with full jitter and honours a server's ``Retry-After``.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from mirror.cursor import AnswerTime

CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
"""Exceptions meaning the request or its answer was lost on the way (worth a retry)."""


retry_log = logging.getLogger("prm_mirror.retry")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before retrying a failed request."""

    max_retries: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based).

        Full jitter spreads simultaneous clients apart; a server's ``Retry-After`` is a floor.
        """
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        wait = random.uniform(0.0, ceiling)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait

    def pause(
        self,
        sleep: Callable[[float], None],
        attempt: int,
        retry_after: float | None = None,
        *,
        what: str,
        cause: str,
    ) -> float:
        """Wait before retry number ``attempt``, saying first what failed and what the wait is
        for (a WARNING on ``prm_mirror.retry``: an operator watching a sync sees why it is
        quiet); returns the seconds waited."""
        wait = self.delay(attempt, retry_after)
        retry_log.warning(
            "%s (%s); retry %d of %d in %.1f s",
            what, cause, attempt + 1, self.max_retries, wait,
        )  # fmt: skip
        sleep(wait)
        return wait

    def gives_up(self, attempt: int, retry_after: float | None = None) -> bool:
        """Whether retry number ``attempt`` is one too many, or the server asks for too long."""
        if attempt >= self.max_retries:
            return True
        return retry_after is not None and retry_after > self.backoff_max


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); ``None`` if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def parse_http_date(value: str | None) -> datetime | None:
    """An aware UTC datetime from an HTTP ``Date`` header; ``None`` if absent or malformed."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


class RequestLog:
    """Counts a session's HTTP requests and remembers what the last response said about time."""

    def __init__(self, default_timeout: float | None = None) -> None:
        """A log that gives requests without an explicit timeout ``default_timeout`` seconds."""
        self.default_timeout = default_timeout
        self._lock = threading.Lock()
        self._count = 0
        self.last_retry_after: float | None = None
        self.last_server_date: datetime | None = None
        self.last_usage: tuple[int, int] | None = None
        self._answers = threading.local()

    @property
    def count(self) -> int:
        """How many requests went out through the session so far."""
        return self._count

    def install(self, session: requests.Session) -> requests.Session:
        """Wrap ``session.send`` so every request passes through this log; returns the session."""
        send: Callable[..., requests.Response] = session.send

        def counted_send(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            with self._lock:
                self._count += 1
            if kwargs.get("timeout") is None and self.default_timeout is not None:
                kwargs["timeout"] = self.default_timeout
            response = send(request, **kwargs)
            self._observe(response)
            return response

        session.send = counted_send  # type: ignore[method-assign]
        return session

    def _observe(self, response: requests.Response) -> None:
        self.last_retry_after = parse_retry_after(response.headers.get("Retry-After"))
        server_date = parse_http_date(response.headers.get("Date"))
        if server_date is not None:
            self.last_server_date = server_date
        answered = AnswerTime(server_date, response.elapsed) if server_date is not None else None
        self._answers.last = answered
        self._answers.status = response.status_code
        usage = parse_usage(response.headers.get("Sforce-Limit-Info"))
        if usage is not None:
            self.last_usage = usage

    def answer_time(self) -> AnswerTime | None:
        """When the CRM answered the last request this thread sent (``None``: no answer yet,
        or it carried no ``Date``). Per thread, so a request of another thread never stands
        in for the caller's."""
        answered: AnswerTime | None = getattr(self._answers, "last", None)
        return answered

    def answer_status(self) -> int | None:
        """The HTTP status of the last answer this thread received (``None``: none yet), for
        callers whose SDK keeps it to itself."""
        status: int | None = getattr(self._answers, "status", None)
        return status

    def take_retry_after(self) -> float | None:
        """The last response's ``Retry-After`` in seconds, cleared so it is used once."""
        value, self.last_retry_after = self.last_retry_after, None
        return value


def parse_usage(value: str | None) -> tuple[int, int] | None:
    """``(used, limit)`` from a usage header such as ``api-usage=18/15000``."""
    if not value or "api-usage=" not in value:
        return None
    try:
        used, limit = value.split("api-usage=", 1)[1].split(",")[0].strip().split("/")
        return int(used), int(limit)
    except ValueError:
        return None
