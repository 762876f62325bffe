"""Who signs in: the identity-provider seam, and its default over the mirrored partner users.

A portal signs partner users in through an ``IdentityProvider``: given what the sign-in form
sent, it answers with a ``PartnerIdentity`` (the CRM user, its partner and its role) or
``None``. The default, ``MirroredUsers``, finds the user among the partner users the mirror
holds (by e-mail) and checks one shared password; a production portal plugs its single
sign-on in instead (an OIDC or SAML callback that ends in the same ``PartnerIdentity``).
Whatever the provider says, the session's view is opened with ``Mirror.as_partner``, which
checks again that the user belongs to the partner.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from mirror import AccessDenied, Mirror, MirrorError


@dataclass(frozen=True)
class PartnerIdentity:
    """A signed-in partner user: its CRM user id, its partner's id, role and display name."""

    user_id: str
    partner_id: str
    role: str
    name: str


class IdentityProvider(Protocol):
    """Turns a sign-in into a partner identity (``None``: refused, whatever the reason)."""

    def sign_in(self, login: str, password: str) -> PartnerIdentity | None:
        """The identity ``login`` proves with ``password``, or ``None``."""


class MirroredUsers:
    """Partner users as the CRM has them, found in the mirror by e-mail; one shared password.

    The role is the CRM's (``[visibility.partner_users] role_field``), as ``as_partner``
    reads it; the password is the portal's ``partner_password`` setting.
    """

    def __init__(self, mirror: Mirror, password: str | None, source: str | None = None) -> None:
        self.mirror = mirror
        self.password = password
        self.source = source

    def sign_in(self, login: str, password: str) -> PartnerIdentity | None:
        """The mirrored partner user whose e-mail is ``login``, if ``password`` is right."""
        if not self.password or not hmac.compare_digest(
            password.encode("utf-8"), self.password.encode("utf-8")
        ):
            return None
        found = self._find(login.strip())
        if found is None:
            return None
        partner_id, user = found
        try:
            view = self.mirror.as_partner(partner_id, user["Id"], source=self.source)
        except AccessDenied:
            return None
        name = user.get("Name") or login
        return PartnerIdentity(user["Id"], partner_id, view.role, str(name))

    def _find(self, email: str) -> tuple[str, dict] | None:
        """(partner id, user row) of the partner user with this e-mail, if any.

        The engine has no lookup of a user across partners, so each partner's own user
        list is asked in turn, as that partner."""
        if not email or len(email) > 255:
            return None
        for partner in self.mirror.partners(self.source):
            try:
                view = self.mirror.as_partner(partner["id"], source=self.source)
                rows = view.select("User", where={"Email": email}, limit=2)
            except MirrorError:
                continue
            active = [r for r in rows if r.get("IsActive", True)]
            if len(active) == 1:
                return partner["id"], active[0]
        return None


def manager_password_ok(expected: str | None, given: str) -> bool:
    """Whether ``given`` is the channel manager's configured password (never when unset)."""
    if not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
