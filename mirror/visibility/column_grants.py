"""Column grants that follow the CRM's schema: a field the CRM adds is granted to the portal
roles exactly when the engine serves it.

``mirror.visibility.postgres_rls.install_partner_security`` grants each portal role the columns
partners see.
When the sync adds a column to a table the role is installed on, the store calls
``grant_added_columns`` in the same transaction as the ``ALTER TABLE``: with an allow-list the
new field is not named, so the engine hides it and nothing is granted; with a deny-list the
engine serves it at once, so it is granted at once. Either way plain SQL as the portal role and
``PartnerView`` agree on every field, with no window between them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import Connection, text

from mirror.store.database import Store
from mirror.types import ObjectSpec
from mirror.visibility.partner_columns import is_shared
from mirror.visibility.postgres_rls import POLICIES, policy_name
from mirror.visibility.rules import VisibilityRules


def follow_added_columns(store: Store, rules_of: Callable[[str], VisibilityRules | None]) -> None:
    """Keep the column grants in step with the engine when the CRM adds a field: the store
    calls ``grant_added_columns`` in the transaction that adds the columns (``rules_of``
    gives each source's rules)."""

    def hook(conn: Connection, spec: ObjectSpec, added: tuple[str, ...]) -> None:
        rules = rules_of(spec.source)
        if rules is not None:
            grant_added_columns(conn, rules, spec, added)

    store.column_hooks.append(hook)


def grant_added_columns(
    conn: Connection, rules: VisibilityRules, spec: ObjectSpec, added: Iterable[str]
) -> tuple[str, ...]:
    """Grant the columns just ``added`` to ``spec``'s table to every portal role installed
    on it, exactly when the engine serves them: with a deny-list a new field is served at
    once, so it is granted at once; with an allow-list it is hidden until named, so nothing
    is granted. Returns the columns granted."""
    rule = rules.rule(spec.name)
    if conn.dialect.name != "postgresql" or rule is None or not is_shared(rule):
        return ()
    shown = tuple(name for name in added if rule.declares_shown(name))
    if not shown:
        return ()
    table = spec.table_name
    installed = conn.execute(
        text(
            "SELECT DISTINCT r.rolname, p.polname FROM pg_policy p "
            "JOIN pg_roles r ON r.oid = ANY(p.polroles) WHERE p.polrelid = to_regclass(:table)"
        ),
        {"table": _quote(conn, table)},
    ).all()
    roles = sorted({r for r, pol in installed if pol in (policy_name(r, k) for k in POLICIES)})
    listed = ", ".join(_quote(conn, c) for c in shown)
    for role in roles:
        conn.exec_driver_sql(
            f"GRANT SELECT ({listed}) ON {_quote(conn, table)} TO {_quote(conn, role)}"
        )
    return shown if roles else ()


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)
