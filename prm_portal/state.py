"""What every request of one app shares: the mirror, the settings, the identity provider and
the partner views of signed-in sessions (kept a short while, since views are immutable and
safe to share across threads)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from flask import current_app

from mirror import Mirror, PartnerView
from prm_portal.identity import IdentityProvider
from prm_portal.settings import PortalSettings

EXTENSION = "prm_portal"


class FeedClock:
    """The mirror's newest change sequence (``PartnerView.feed_cursor``: the same for every
    partner), read at most once per ``period`` for all the open streams together, so a
    stream with nothing new asks its own slice's feed nothing. A value read a moment ago is
    never ahead of the feed, so a stream that trusts it misses nothing: it asks its feed on
    its next poll."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._value = 0
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def latest(self, view: PartnerView) -> int:
        """The newest sequence, read through ``view`` when the last reading is too old."""
        with self._lock:
            if time.monotonic() - self._read_at < self.period:
                return self._value
            read_at = time.monotonic()
            self._value = view.feed_cursor()
            self._read_at = read_at
            return self._value


@dataclass
class PortalState:
    """The app's shared state, stored in ``app.extensions["prm_portal"]``."""

    mirror: Mirror
    settings: PortalSettings
    identity: IdentityProvider
    _views: dict[tuple[str, str, str], tuple[float, PartnerView]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    clock: FeedClock = field(init=False)

    def __post_init__(self) -> None:
        # half a poll: a change is seen within one and a half polls at worst
        self.clock = FeedClock(self.settings.feed_poll_seconds / 2)

    def view(self, partner_id: str, user_id: str, role: str) -> PartnerView:
        """The partner view of a session: ``Mirror.as_partner``, which checks that the user
        is still the partner's, at most ``view_cache_seconds`` old."""
        key = (partner_id, user_id, role)
        now = time.monotonic()
        with self._lock:
            cached = self._views.get(key)
        if cached and now - cached[0] < self.settings.view_cache_seconds:
            return cached[1]
        view = self.mirror.as_partner(partner_id, user_id, role=role, source=self.settings.source)
        with self._lock:
            self._views[key] = (now, view)
        return view

    def forget(self, partner_id: str, user_id: str) -> None:
        """Drop the cached views of one user (on sign-out)."""
        with self._lock:
            for key in [k for k in self._views if k[:2] == (partner_id, user_id)]:
                del self._views[key]


def portal_state() -> PortalState:
    """The current app's ``PortalState``."""
    state: PortalState = current_app.extensions[EXTENSION]
    return state
