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


@dataclass
class PortalState:
    """The app's shared state, stored in ``app.extensions["prm_portal"]``."""

    mirror: Mirror
    settings: PortalSettings
    identity: IdentityProvider
    _views: dict[tuple[str, str, str], tuple[float, PartnerView]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

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
