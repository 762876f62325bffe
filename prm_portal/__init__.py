"""The reference partner portal: a Flask app that serves each partner its slice of the mirror.

``create_app`` builds the app over an open ``mirror.Mirror``; ``prm-mirror portal`` (the
``command`` module) starts it with a schedule that syncs and pushes in the same process. Flask
is the ``portal`` extra's: it is imported when the app is built, not with this package, so the
command line loads the ``portal`` command without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prm_portal.identity import IdentityProvider, MirroredUsers, PartnerIdentity
from prm_portal.settings import PortalSettings

if TYPE_CHECKING:
    from prm_portal.app import create_app

__all__ = ["IdentityProvider", "MirroredUsers", "PartnerIdentity", "PortalSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from prm_portal.app import create_app

        return create_app
    raise AttributeError(f"module 'prm_portal' has no attribute {name!r}")
