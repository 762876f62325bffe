"""PostgreSQL row-level security and column grants: a portal role that queries the mirror with
plain SQL sees only its partner's rows and never a hidden field.

Each object table whose slice follows paths carries ``_partners text[]`` (GIN-indexed): the
distinct partner ids its grants name (``partner_arrays``: stored in ``mirror_access``, or its
parent's for a record seen through its parent), kept current by ``AccessMaintainer`` in the
same transaction as every synced page (``track_partner_changes``) and recomputed set-based,
in one statement per table, after a first backfill and by a rebuild
(``refresh_partner_columns``). The policies compare that column with the session's
``prm.partner_id`` setting, a plain comparison the planner answers from the index; a policy
that looked rows up in ``mirror_access`` measured 9x slower (40x as a plpgsql function).

``install_partner_security`` grants a portal role ``SELECT`` on the visible fields (and
``_modstamp``) of each shared table, enables row-level security on every object table, creates
the policies, and revokes everything on the engine tables. Default deny throughout: no partner
setting, no rows; an object without a slice, no privileges at all.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    any_,
    bindparam,
    cast,
    column,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy import table as sql_table
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.types import Text

from mirror.errors import AccessDenied, ConfigError
from mirror.store.database import MirrorTable, Store
from mirror.store.tables import engine_metadata, mirror_access
from mirror.visibility.rule_check import served_rules
from mirror.visibility.rules import SliceRule, VisibilityRules, visible_fields

PARTNER_SETTING = "prm.partner_id"
PARTNERS_COLUMN = "_partners"
PARTNERS_TYPE = ARRAY(Text())
EMPTY_PARTNERS = literal_column("'{}'::text[]", PARTNERS_TYPE)
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


def is_sliced(rule: SliceRule | None) -> bool:
    """Whether the object's rows are filtered per partner (it has paths and is not public)."""
    return rule is not None and bool(rule.paths) and not rule.public


def is_shared(rule: SliceRule | None) -> bool:
    """Whether partners see the object at all (sliced or public)."""
    return rule is not None and (rule.public or bool(rule.paths))


def track_partner_changes(
    conn: Connection,
    store: Store,
    rules: VisibilityRules,
    mirrored: MirrorTable | None,
    ids: Collection[str],
) -> None:
    """Bring ``_partners`` of ``ids`` in line with their grants, inside the caller's
    transaction; adds (and fills) the column the first time a sliced table needs it."""
    if conn.dialect.name != "postgresql" or mirrored is None or not ids:
        return
    if not is_sliced(rules.rule(mirrored.spec.name)):
        return
    if not ensure_partner_column(conn, store, rules, mirrored):
        _write_partners(conn, store, rules, mirrored, list(ids))


def refresh_partner_columns(
    conn: Connection, store: Store, rules: VisibilityRules, names: Iterable[str] | None = None
) -> None:
    """Recompute ``_partners`` of the sliced tables of the source (of ``names`` only, when
    given) from their grants."""
    if conn.dialect.name != "postgresql":
        return
    wanted = None if names is None else set(names)
    for name in _mirrored_names(store, rules.source):
        if wanted is not None and name not in wanted:
            continue
        if is_sliced(rules.rule(name)):
            mirrored = store.mirrored(rules.source, name)
            if not ensure_partner_column(conn, store, rules, mirrored):
                _write_partners(conn, store, rules, mirrored, None)


def ensure_partner_column(
    conn: Connection, store: Store, rules: VisibilityRules, mirrored: MirrorTable
) -> bool:
    """Add ``_partners`` filled from the grants, then its GIN index, when missing; returns
    whether it was added.

    The catalog is asked every time rather than remembered, so a rolled-back page that added
    the column cannot leave a stale belief behind.
    """
    table = mirrored.spec.table_name
    found = conn.execute(
        text(
            "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(:table) "
            "AND attname = :column AND NOT attisdropped"
        ),
        {"table": _quote(conn, table), "column": PARTNERS_COLUMN},
    ).first()
    if found is not None:
        return False
    conn.exec_driver_sql(
        f"ALTER TABLE {_quote(conn, table)} ADD COLUMN IF NOT EXISTS "
        f"{PARTNERS_COLUMN} text[] NOT NULL DEFAULT '{{}}'"
    )
    _write_partners(conn, store, rules, mirrored, None, added=True)
    # built once over the filled column, not entry by entry as each row is filled
    _ensure_partner_index(conn, table)
    return True


def _ensure_partner_index(conn: Connection, table: str) -> None:
    name = partner_index_name(table)
    if conn.execute(text("SELECT to_regclass(:name)"), {"name": _quote(conn, name)}).scalar():
        return
    conn.exec_driver_sql(
        f"CREATE INDEX IF NOT EXISTS {_quote(conn, name)} ON {_quote(conn, table)} "
        f"USING gin ({PARTNERS_COLUMN})"
    )


def partner_index_name(table: str) -> str:
    """The name of the GIN index on ``table._partners``."""
    return f"ix_{table}__partners_gin"


def _write_partners(
    conn: Connection,
    store: Store,
    rules: VisibilityRules,
    mirrored: MirrorTable,
    ids: list[str] | None,
    *,
    added: bool = False,
) -> None:
    """Set ``_partners`` of ``ids`` (every row when ``None``) to the partners their grants
    name, touching only rows whose value differs, so an unchanged slice writes nothing;
    ``added``: the column was just added, every row holds ``{}``.

    Set-based, in plans that stay linear whatever the planner believes: rows are written from
    their partner arrays joined on the key, and the rows that lost every partner are found as
    those holding partners ``EXCEPT`` those granted (a hashed or sorted set operation). A
    probe per row (``NOT EXISTS`` over the grants) rescans an object's grants for every row
    whenever the statistics lag a bulk load: minutes for 40,000 contacts.
    """
    spec = mirrored.spec
    key = spec.key
    target = sql_table(spec.table_name, column(key), column(PARTNERS_COLUMN, PARTNERS_TYPE))
    narrow = None
    if ids is not None:
        narrow = _among(bindparam("ids", ids, type_=PARTNERS_TYPE))
        # Rows first: the updates then take their snapshot after any concurrent page holding
        # these rows has committed, so its grants are counted instead of overwritten.
        t = mirrored.table
        lock = select(t.c[key]).where(narrow(t.c[key])).order_by(t.c[key]).with_for_update()
        conn.execute(lock)
    arrays = partner_arrays(store, rules, spec.name, narrow)
    if arrays is not None:
        w = arrays.subquery("w")
        written = update(target).values({PARTNERS_COLUMN: w.c.partners})
        written = written.where(target.c[key] == w.c.record_id)
        if not added:
            written = written.where(target.c[PARTNERS_COLUMN].is_distinct_from(w.c.partners))
        conn.execute(written)
    if added:
        return
    held = select(target.c[key]).where(target.c[PARTNERS_COLUMN] != EMPTY_PARTNERS)
    if narrow is not None:
        held = held.where(narrow(target.c[key]))
    lost: Any = held if arrays is None else held.except_(select(arrays.subquery().c.record_id))
    gone = lost.subquery("gone")
    conn.execute(
        update(target).values({PARTNERS_COLUMN: EMPTY_PARTNERS}).where(target.c[key] == gone.c[key])
    )


# narrows a query to some records: a condition on the column holding their ids
Narrowing = Callable[[Any], Any]


def _among(ids: Any) -> Narrowing:
    return lambda record: record == any_(ids)


def _within(ids: Select[Any]) -> Narrowing:
    return lambda record: record.in_(ids)


def partner_arrays(
    store: Store, rules: VisibilityRules, name: str, narrow: Narrowing | None = None
) -> Select[Any] | None:
    """Per record of ``name`` granted to at least one partner: ``record_id`` and ``partners``
    (the distinct partner ids, sorted, as ``text[]``); of the records whose id meets
    ``narrow`` when given; ``None`` when the object can have no grants yet.

    Stored grants are aggregated per record. A record seen only through its parent takes the
    parent's array through its reference: the parent's grants are aggregated once per parent,
    not once per child, and joined to the children by the indexed reference field.
    """
    path = rules.inherited_path(name)
    if path is None:
        a = mirror_access.c
        conditions = [a.source == rules.source, a.object == name, a.partner_id != ""]
        if narrow is not None:
            conditions.append(narrow(a.record_id))
        partners = func.array_agg(aggregate_order_by(a.partner_id.distinct(), a.partner_id))
        return (
            select(a.record_id.label("record_id"), cast(partners, PARTNERS_TYPE).label("partners"))
            .where(*conditions)
            .group_by(a.record_id)
        )
    try:
        child = store.mirrored(rules.source, name)
    except KeyError:
        return None
    t = child.table
    key, reference = t.c[child.spec.key], t.c[path.field]
    parents_narrow = None
    if narrow is not None:
        n = t.alias()
        parents_narrow = _within(select(n.c[path.field]).where(narrow(n.c[child.spec.key])))
    parents = partner_arrays(store, rules, path.other, parents_narrow)
    if parents is None:
        return None
    p = parents.subquery()
    rows = select(key.label("record_id"), p.c.partners).join_from(t, p, p.c.record_id == reference)
    rows = rows.where(t.c._deleted.is_(False))
    if narrow is not None:
        rows = rows.where(narrow(key))
    return rows


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
    names = _mirrored_names(store, rules.source)
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
        _ensure_partner_index(conn, table)
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


def _mirrored_names(store: Store, source: str) -> list[str]:
    return [name for src, name in store.objects() if src == source]


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)
