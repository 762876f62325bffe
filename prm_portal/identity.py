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

from mirror import Mirror, MirrorError


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


# the user object as the portal's pages name it (Salesforce's, like ``listing``)
USER_OBJECT = "User"


class MirroredUsers:
    """Partner users as the CRM has them, found in the mirror by e-mail
    (``Mirror.partner_user``); one shared password.

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
        try:
            found = self.mirror.partner_user(login.strip(), source=self.source)
            if found is None:
                return None
            # read as the partner: a rep's own slice need not hold its user record
            partner = self.mirror.as_partner(found.partner_id, source=self.source)
            user = partner.get(USER_OBJECT, found.user_id)
        except MirrorError:
            return None
        if not user.get("IsActive", True):
            return None
        name = user.get("Name") or login
        return PartnerIdentity(found.user_id, found.partner_id, found.role, str(name))


def manager_password_ok(expected: str | None, given: str) -> bool:
    """Whether ``given`` is the channel manager's configured password (never when unset)."""
    if not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
