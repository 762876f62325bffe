"""PostgreSQL row-level security and column grants: a portal role that queries the mirror with
plain SQL sees only its partner's rows and never a hidden field.

Each sliced object table carries ``_partners text[]`` (GIN-indexed), the partners its grants
name, kept current with the grants (``mirror.visibility.partner_columns``). The policies compare
that column with the session's ``prm.partner_id`` setting, a plain comparison the planner
answers from the index.

``install_partner_security`` grants a portal role ``SELECT`` on the visible fields (and
``_modstamp``) of each shared table, enables row-level security on every object table, creates
the policies, and revokes everything on the engine tables. Default deny throughout: no partner
setting, no rows; an object without a slice, no privileges at all. ``partner_session`` and
``set_partner`` set the partner a portal's transaction sees.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Text

from mirror.errors import AccessDenied, ConfigError
from mirror.store.database import MirrorTable, Store
from mirror.store.tables import engine_metadata
from mirror.visibility.partner_columns import (
    PARTNERS_COLUMN,
    ensure_partner_column,
    ensure_partner_index,
    is_shared,
    is_sliced,
    mirrored_names,
)
from mirror.visibility.rule_check import served_rules
from mirror.visibility.rules import SliceRule, VisibilityRules, visible_fields

PARTNER_SETTING = "prm.partner_id"
GRANTED_SYSTEM_COLUMNS = ("_modstamp",)
_CURRENT_PARTNER = f"current_setting('{PARTNER_SETTING}', true)"
SLICED_POLICY = f"{PARTNERS_COLUMN} @> ARRAY[{_CURRENT_PARTNER}]::text[] AND NOT _deleted"
PUBLIC_POLICY = f"NOT _deleted AND coalesce({_CURRENT_PARTNER}, '') <> ''"
POLICIES = {"sliced": SLICED_POLICY, "public": PUBLIC_POLICY}
MAX_IDENTIFIER = 63
CREATE_ROLE_HINT = (
    "create it first, as a superuser: CREATE ROLE {role} LOGIN PASSWORD '...' "
    "(not SUPERUSER, not BYPASSRLS, not a member of the role that owns the mirror tables)"
)


@dataclass(frozen=True)
class SecurityReport:
    """What ``install_partner_security`` installed for one portal role."""

    role: str
    schema: str
    sliced: tuple[str, ...] = ()
    public: tuple[str, ...] = ()
    denied: tuple[str, ...] = ()
    unmirrored: tuple[str, ...] = ()
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    engine_tables: tuple[str, ...] = ()


def engine_tables() -> tuple[str, ...]:
    """The engine's own tables (every table the store creates besides the object tables)."""
    return tuple(sorted(engine_metadata.tables))


def install_partner_security(store: Store, rules: VisibilityRules, role: str) -> SecurityReport:
    """Install row-level security and column grants for the portal role ``role``; idempotent.

    Run it after the first sync and again whenever objects, fields or slice rules change:
    tables and columns that appear later stay closed to ``role`` until then. Raises
    ``ConfigError`` when the store is not PostgreSQL, or ``role`` is missing or could bypass
    the policies (superuser, BYPASSRLS, owner of the tables, ``pg_read_all_data``).
    """
    if store.dialect != "postgresql":
        raise ConfigError(
            "row-level security needs a PostgreSQL store; on SQLite, portals read through "
            "PartnerView (Mirror.as_partner)"
        )
    rules = served_rules(store, rules)
    names = mirrored_names(store, rules.source)
    kinds: dict[str, list[str]] = {"sliced": [], "public": [], "denied": []}
    columns: dict[str, tuple[str, ...]] = {}
    with store.transaction() as conn:
        mirrored = [store.mirrored(rules.source, name) for name in names]
        _check_role(conn, role, [m.spec.table_name for m in mirrored])
        schema = str(conn.execute(text("SELECT current_schema()")).scalar_one())
        conn.exec_driver_sql(
            f"GRANT USAGE ON SCHEMA {_quote(conn, schema)} TO {_quote(conn, role)}"
        )
        for table in mirrored:
            kinds[_kind(rules.rule(table.spec.name))].append(table.spec.table_name)
            shown = _install_table(conn, store, rules, table, role)
            if shown:
                columns[table.spec.table_name] = shown
        for name in engine_tables():
            conn.exec_driver_sql(f"REVOKE ALL ON {_quote(conn, name)} FROM {_quote(conn, role)}")
        _verify(conn, role, columns)
    unmirrored = [n for n, r in rules.slices.items() if is_shared(r) and n not in names]
    return SecurityReport(
        role=role,
        schema=schema,
        sliced=tuple(kinds["sliced"]),
        public=tuple(kinds["public"]),
        denied=tuple(kinds["denied"]),
        unmirrored=tuple(sorted(unmirrored)),
        columns=columns,
        engine_tables=engine_tables(),
    )


def _kind(rule: SliceRule | None) -> str:
    if is_sliced(rule):
        return "sliced"
    return "public" if is_shared(rule) else "denied"


def _install_table(
    conn: Connection, store: Store, rules: VisibilityRules, mirrored: MirrorTable, role: str
) -> tuple[str, ...]:
    """Secure one object table for ``role``; returns the columns granted.

    Grants change without locking the table; the statements that take an exclusive lock
    (adding the column, enabling RLS, creating a policy) run only when something is missing,
    so running the install again does not wait for the portal's open transactions.
    """
    table = mirrored.spec.table_name
    quoted, grantee = _quote(conn, table), _quote(conn, role)
    rule = rules.rule(mirrored.spec.name)
    if is_sliced(rule) and not ensure_partner_column(conn, store, rules, mirrored):
        ensure_partner_index(conn, table)
    shown = _granted_columns(mirrored, rule) if is_shared(rule) else ()
    conn.exec_driver_sql(f"REVOKE ALL ON {quoted} FROM {grantee}")
    if shown:
        listed = ", ".join(_quote(conn, c) for c in shown)
        conn.exec_driver_sql(f"GRANT SELECT ({listed}) ON {quoted} TO {grantee}")
    secured = conn.execute(
        text("SELECT relrowsecurity FROM pg_class WHERE oid = to_regclass(:table)"),
        {"table": quoted},
    ).scalar_one()
    if not secured:
        conn.exec_driver_sql(f"ALTER TABLE {quoted} ENABLE ROW LEVEL SECURITY")
    _place_policy(conn, table, role, _kind(rule))
    return shown


def _place_policy(conn: Connection, table: str, role: str, kind: str) -> None:
    """Leave exactly the ``kind`` policy of ``role`` on ``table`` (none when denied)."""
    existing = set(
        conn.execute(
            text("SELECT polname FROM pg_policy WHERE polrelid = to_regclass(:table)"),
            {"table": _quote(conn, table)},
        ).scalars()
    )
    wanted = policy_name(role, kind) if kind in POLICIES else None
    for other in POLICIES:
        name = policy_name(role, other)
        if name in existing and name != wanted:
            conn.exec_driver_sql(f"DROP POLICY {_quote(conn, name)} ON {_quote(conn, table)}")
    if wanted is not None and wanted not in existing:
        conn.exec_driver_sql(
            f"CREATE POLICY {_quote(conn, wanted)} ON {_quote(conn, table)} AS PERMISSIVE "
            f"FOR SELECT TO {_quote(conn, role)} USING ({POLICIES[kind]})"
        )


def policy_name(role: str, kind: str) -> str:
    """The name of ``role``'s ``sliced`` or ``public`` policy (cut to PostgreSQL's 63 bytes)."""
    return f"prm_{kind}_{role}".encode()[:MAX_IDENTIFIER].decode(errors="ignore")


def _granted_columns(mirrored: MirrorTable, rule: SliceRule | None) -> tuple[str, ...]:
    return (*visible_fields(rule, mirrored.spec.field_names), *GRANTED_SYSTEM_COLUMNS)


def _check_role(conn: Connection, role: str, tables: list[str]) -> None:
    row = conn.execute(
        text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :role"), {"role": role}
    ).first()
    if row is None:
        raise ConfigError(f"role {role!r} does not exist; {CREATE_ROLE_HINT.format(role=role)}")
    problems = []
    if row.rolsuper:
        problems.append(f"role {role!r} is a superuser, which bypasses row-level security")
    if row.rolbypassrls:
        problems.append(f"role {role!r} has BYPASSRLS: ALTER ROLE {role} NOBYPASSRLS")
    owned = conn.execute(
        text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename = ANY(:tables) AND pg_has_role(:role, tableowner, 'USAGE') "
            "ORDER BY tablename"
        ).bindparams(bindparam("tables", type_=ARRAY(Text()))),
        {"role": role, "tables": tables},
    ).scalars()
    problems += [f"role {role!r} owns (or inherits the owner of) {t}" for t in owned]
    reads_all = conn.execute(
        text(
            "SELECT CASE WHEN to_regrole('pg_read_all_data') IS NULL THEN false "
            "ELSE pg_has_role(:role, 'pg_read_all_data', 'USAGE') END"
        ),
        {"role": role},
    ).scalar_one()
    if reads_all:
        problems.append(f"role {role!r} is a member of pg_read_all_data, which ignores grants")
    if problems:
        raise ConfigError(problems)


def _verify(conn: Connection, role: str, granted: Mapping[str, tuple[str, ...]]) -> None:
    """Ask PostgreSQL what ``role`` may read now, so a PUBLIC grant or a role membership
    that reopens a hidden column or an engine table fails the install instead of leaking."""
    problems = []
    for table in engine_tables():
        readable = conn.execute(
            text("SELECT has_table_privilege(:role, :table, 'SELECT')"),
            {"role": role, "table": _quote(conn, table)},
        ).scalar_one()
        if readable:
            problems.append(f"{role} can still read {table}: REVOKE ALL ON {table} FROM PUBLIC")
    for table, columns in granted.items():
        extra = conn.execute(
            text(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(:table) "
                "AND attnum > 0 AND NOT attisdropped AND NOT attname = ANY(:granted) "
                "AND has_column_privilege(:role, attrelid, attnum, 'SELECT') ORDER BY attnum"
            ).bindparams(bindparam("granted", type_=ARRAY(Text()))),
            {"role": role, "table": _quote(conn, table), "granted": list(columns)},
        ).scalars()
        problems += [f"{role} can still read {table}.{c}: revoke it from PUBLIC" for c in extra]
    if problems:
        raise ConfigError(problems)


def set_partner(conn: Connection, partner_id: str) -> None:
    """Set the partner of the current transaction on ``conn`` (``set_config(..., true)``: it
    ends with the transaction, so a pooled connection never carries it to the next user)."""
    if not partner_id:
        raise AccessDenied("no partner context: a partner id is required")
    conn.execute(
        text("SELECT set_config(:name, :value, true)"),
        {"name": PARTNER_SETTING, "value": partner_id},
    )


@contextmanager
def partner_session(bind: Engine | Connection, partner_id: str) -> Iterator[Connection]:
    """A transaction in which the policies show ``partner_id``'s slice; committed at the end.

    Given an engine, a pooled connection is taken for the block. Given a connection, it must
    not be inside a transaction yet (the block owns the transaction, so the partner setting can
    never outlive it); inside your own transaction, call ``set_partner`` instead.
    """
    if bind.dialect.name != "postgresql":
        raise ConfigError("partner_session needs PostgreSQL; on SQLite use PartnerView")
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            set_partner(conn, partner_id)
            yield conn
        return
    if bind.in_transaction():
        raise ValueError(
            "the connection is already inside a transaction: commit or roll it back first, "
            "or call set_partner(conn, partner_id) within your own transaction"
        )
    with bind.begin():
        set_partner(bind, partner_id)
        yield bind


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)
