"""Guards that keep a paged read from going round in circles.

A paged read may start again when the CRM lets go of its place (an expired query locator, a
Bulk job gone): ``Restarts`` allows that a bounded number of times, after which the error
stands. A keyset read asks each page from where the last one ended: ``Progress`` raises when a
full page leaves the position where it was, since asking again would bring the same page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mirror.errors import CrmError


class Restarts:
    """How many more times a paged read may start again before its error stands."""

    def __init__(self, limit: int) -> None:
        """Allow ``limit`` restarts."""
        self.limit = limit
        self.count = 0

    def allowed(self) -> bool:
        """Count one more restart; whether it is still within the limit."""
        self.count += 1
        return self.count <= self.limit


class Progress:
    """The position of a keyset read, which every full page must move."""

    def __init__(self, position: Any) -> None:
        """Watch a read standing at ``position``."""
        self.before = position

    def check(self, position: Any, full: bool, stuck: Callable[[], str]) -> None:
        """After a page: ``CrmError(stuck())`` when it was full and ``position`` is where the
        read stood before it."""
        if full and position == self.before:
            raise CrmError(stuck())
