"""The reference partner portal: a Flask app that serves each partner its slice of the mirror.

``create_app`` builds the app over an open ``mirror.Mirror``; ``prm-mirror portal`` (the
``command`` module) starts it with a scheduler that syncs and pushes in the same process.
"""

from prm_portal.app import create_app
from prm_portal.identity import IdentityProvider, MirroredUsers, PartnerIdentity
from prm_portal.settings import PortalSettings

__all__ = ["IdentityProvider", "MirroredUsers", "PartnerIdentity", "PortalSettings", "create_app"]
