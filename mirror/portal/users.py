"""Partner users as the mirror holds them: who a sign-in name (an e-mail or a user id) is.

The visibility rules name the user object, its partner field, its role field and the fields a
user signs in with (``[partner_users] login_fields``, the CRM's e-mail field in the shipped
schemas); one query on the mirrored user object finds the user among every partner's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select

from mirror.store.database import Store
from mirror.visibility.rules import VisibilityRules

MAX_LOGIN = 255


@dataclass(frozen=True)
class PartnerUser:
    """A mirrored partner user: its partner's id, its CRM user id and its role (``admin``
    or ``rep``, as ``Mirror.as_partner`` reads it from the CRM)."""

    partner_id: str
    user_id: str
    role: str


def crm_role(rules: VisibilityRules, value: Any) -> str:
    """The portal role of a user whose role field holds ``value``."""
    if rules.user_role_field and value in rules.admin_roles:
        return "admin"
    return "rep"


def find_partner_user(store: Store, rules: VisibilityRules, login: str) -> PartnerUser | None:
    """The live partner user whose id or login field (exactly) is ``login``; ``None`` when
    there is none, it has no partner, or several users answer to it."""
    if not (rules.user_object and rules.user_partner_field) or not login:
        return None
    if len(login) > MAX_LOGIN:
        return None
    try:
        users = store.mirrored(rules.source, rules.user_object)
    except KeyError:
        return None
    table = users.table
    names = [users.spec.key, *rules.user_login_fields]
    matches = [table.c[name] == login for name in names if name in table.c]
    partner = table.c[rules.user_partner_field]
    role_field = rules.user_role_field
    role = table.c[role_field] if role_field and role_field in table.c else None
    query = select(table.c[users.spec.key], partner, *([role] if role is not None else []))
    query = query.where(or_(*matches), table.c._deleted.is_(False), partner.is_not(None))
    with store.engine.connect() as conn:
        rows = conn.execute(query.limit(2)).all()
    if len(rows) != 1:
        return None
    row = rows[0]
    value = row[2] if role is not None else None
    return PartnerUser(str(row[1]), str(row[0]), crm_role(rules, value))
