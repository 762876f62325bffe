"""What the portal is configured with: secrets, sign-in passwords and the live feed's pace."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

MANAGER_PASSWORD_ENV = "PRM_PORTAL_MANAGER_PASSWORD"
PARTNER_PASSWORD_ENV = "PRM_PORTAL_PARTNER_PASSWORD"
SECRET_KEY_ENV = "PRM_PORTAL_SECRET_KEY"


@dataclass(frozen=True)
class PortalSettings:
    """The portal's settings; ``from_environment`` reads them from ``PRM_PORTAL_*`` variables.

    ``partner_password`` is the shared password of the default identity provider (the mirrored
    users); a real portal replaces that provider with its single sign-on (docs/portal.md).
    ``None`` for a password disables that kind of sign-in.
    """

    secret_key: str
    manager_password: str | None = None
    partner_password: str | None = None
    source: str | None = None
    page_size: int = 25
    feed_poll_seconds: float = 1.0
    feed_stream_seconds: float = 300.0
    view_cache_seconds: float = 30.0

    @classmethod
    def from_environment(cls, *, demo: bool = False, **overrides: object) -> PortalSettings:
        """Settings from the environment; ``demo`` makes ``demo`` the default passwords."""
        default = "demo" if demo else None
        values: dict[str, object] = {
            "secret_key": os.environ.get(SECRET_KEY_ENV) or secrets.token_urlsafe(32),
            "manager_password": os.environ.get(MANAGER_PASSWORD_ENV, default),
            "partner_password": os.environ.get(PARTNER_PASSWORD_ENV, default),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
