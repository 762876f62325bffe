"""Property: under random field rules (allow-lists and deny-lists), random CRM edits, partner
reassignments and fields the CRM adds along the way, no field a partner may not see ever reaches
it: not through ``select``, ``get``, the change feed or ``explain``, as admin or as rep, and on
PostgreSQL not through plain SQL as the portal role, whose column grants equal what the engine
serves after every sync.

Every string value written is a marker naming its object and field (``m:Opportunity.Secret:7``),
so any marker found in what a partner receives says which field it came from."""

from __future__ import annotations

import re
from contextlib import ExitStack
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import ProgrammingError

from mirror.portal.view import PartnerView
from mirror.types import FieldSpec, FieldType
from mirror.visibility.column_grants import follow_added_columns
from mirror.visibility.postgres_rls import install_partner_security, partner_session
from tests.conftest import BACKENDS, fresh_database
from tests.mirror.org import RULES, SCHEMAS, Org
from tests.mirror.visibility.test_rls import engine_as, portal_role

PARTNERS = ["P1", "P2"]
CUSTOMERS = ["C1", "C2"]
OPPS = ["o1", "o2", "o3", "o4"]
SHARED = ["User", "Account", "Contact", "Opportunity", "LineItem", "Product"]
MARKER = re.compile(r"m:(\w+)\.(\w+):\d+")


@st.composite
def field_rules(draw: Any) -> dict[str, dict[str, list[str]]]:
    """A random allow-list or deny-list per shared object."""
    rules = {}
    for name in SHARED:
        names = sorted(f.name for f in SCHEMAS[name])
        # partners see at least one field of a shared object (else the rules are refused)
        chosen = draw(st.lists(st.sampled_from(names), unique=True, min_size=1,
                               max_size=len(names) - 1))  # fmt: skip
        mode = draw(st.sampled_from(["visible", "hidden"]))
        rules[name] = {mode: chosen}
    return rules


step = st.one_of(
    st.tuples(st.just("opp"), st.sampled_from(OPPS), st.sampled_from([*PARTNERS, None]),
              st.sampled_from(CUSTOMERS)),
    st.tuples(st.just("contact"), st.sampled_from(["k1", "k2"]),
              st.sampled_from(CUSTOMERS + PARTNERS), st.none()),
    st.tuples(st.just("line"), st.sampled_from(["l1", "l2"]), st.sampled_from(OPPS), st.none()),
    st.tuples(st.just("new_field"), st.sampled_from(SHARED), st.none(), st.none()),
    st.tuples(st.just("delete_opp"), st.sampled_from(OPPS), st.none(), st.none()),
)  # fmt: skip


class Markers:
    """Fresh marker values for every string field of a record."""

    def __init__(self, org: Org) -> None:
        self.org = org
        self.count = 0

    def values(self, name: str, **fixed: Any) -> dict[str, Any]:
        """A marker in every string field of ``name`` not given in ``fixed``."""
        values = dict(fixed)
        for spec in self.org.crm.schemas[name]:
            if spec.type is FieldType.STRING and spec.name not in fixed:
                self.count += 1
                values[spec.name] = f"m:{name}.{spec.name}:{self.count}"
        return values

    def put(self, name: str, record_id: str, **fixed: Any) -> None:
        """Create or change a CRM record with markers in its string fields."""
        self.org.put(name, record_id, **self.values(name, **fixed))


def seed(org: Org, markers: Markers) -> None:
    for p in PARTNERS:
        markers.put("Account", p, IsPartner=True, Revenue=1.0)
        markers.put("User", f"U{p}", AccountId=p)
    for c in CUSTOMERS:
        markers.put("Account", c, IsPartner=False, Revenue=2.0)
    markers.put("Opportunity", "o1", AccountId="C1", PartnerAccountId="P1", OwnerId="UP1",
                Amount=1.0)  # fmt: skip
    markers.put("Product", "pr1")


def apply(org: Org, markers: Markers, kind: str, key: str, first: Any, second: Any) -> None:
    live = org.crm.stores
    if kind == "opp":
        owner = f"U{first}" if first else "V1"
        markers.put("Opportunity", key, PartnerAccountId=first, AccountId=second, OwnerId=owner,
                    Amount=2.0)  # fmt: skip
    elif kind == "contact":
        markers.put("Contact", key, AccountId=first)
    elif kind == "line":
        markers.put("LineItem", key, OpportunityId=first, Quantity=1.0)
    elif kind == "delete_opp" and key in live["Opportunity"]:
        org.remove("Opportunity", key)
    elif kind == "new_field":
        added = FieldSpec(f"Added{len(org.crm.schemas[key])}", FieldType.STRING)
        org.crm.schemas[key] = (*org.crm.schemas[key], added)
        for record_id in sorted(live[key]):
            markers.put(key, record_id, **{k: v for k, v in live[key][record_id].items()
                                           if k not in ("Id", "Modstamp")})  # fmt: skip


Rules = dict[str, dict[str, list[str]]]


def shown(rules: Rules, org: Org, name: str) -> set[str]:
    """What the generated rules let partners see of ``name``, from the CRM's fields now (a
    model independent of the engine's reading of the rules)."""
    fields = {f.name for f in org.crm.schemas[name]}
    if "visible" in rules[name]:
        return fields & set(rules[name]["visible"])
    return fields - set(rules[name]["hidden"])


def leaks(rules: Rules, org: Org, received: Any) -> list[str]:
    """The markers in ``received`` of fields partners may not see."""
    found = MARKER.findall(str(received))
    return [f"{o}.{f}" for o, f in found if f not in shown(rules, org, o)]


def check_view(rules: Rules, org: Org, view: PartnerView) -> None:
    for name in SHARED:
        allowed = shown(rules, org, name)
        rows = view.select(name, limit=1000)
        assert all(set(r) <= allowed for r in rows), name
        assert leaks(rules, org, rows) == []
        for record_id in {str(r["Id"]) for r in rows if "Id" in r}:
            assert set(view.get(name, record_id)) <= allowed
            assert leaks(rules, org, view.explain(name, record_id)) == []
        assert leaks(rules, org, view.explain(name, "o1")) == []
    feed = view.changes(since=0, limit=1000).changes
    for change in feed:
        if isinstance(change["fields"], dict):
            assert set(change["fields"]) <= shown(rules, org, change["object"]), change
    assert leaks(rules, org, feed) == []


def check_sql(rules: Rules, org: Org, admin: Engine, role: str, portal: Engine) -> None:
    tables = {f"fake__{name.lower()}": name for name in SHARED}
    with admin.connect() as conn:
        rows = conn.execute(
            text("SELECT attrelid::regclass::text, attname FROM pg_attribute "
                 "WHERE attrelid = ANY(CAST(:tables AS regclass[])) AND attnum > 0 "
                 "AND NOT attisdropped "
                 "AND has_column_privilege(:role, attrelid, attnum, 'SELECT')"),
            {"tables": list(tables), "role": role},
        ).all()  # fmt: skip
    granted: dict[str, set[str]] = {table: set() for table in tables}
    for table, column in rows:
        granted[table].add(column)
    for table, name in tables.items():
        assert granted[table] - {"_modstamp"} == shown(rules, org, name), name
    for partner in PARTNERS:
        with partner_session(portal, partner) as conn:
            for table, columns in granted.items():
                listed = ", ".join(f'"{c}"' for c in sorted(columns))
                assert (
                    leaks(rules, org, conn.execute(text(f"SELECT {listed} FROM {table}")).all())
                    == []
                )
    for table, name in tables.items():
        closed = sorted({f.name for f in org.crm.schemas[name]} - shown(rules, org, name))
        if closed:
            denied = pytest.raises(ProgrammingError, match="permission denied")
            with denied, partner_session(portal, PARTNERS[0]) as conn:
                conn.execute(text(f'SELECT "{closed[0]}" FROM {table}'))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fields=field_rules(),
    batches=st.lists(st.lists(step, min_size=1, max_size=5), min_size=1, max_size=2),
)
def test_no_field_a_partner_may_not_see_ever_reaches_it(backend, fields, batches) -> None:
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database(backend))
        org = Org(url, page_size=3, rules={**RULES, "fields": fields})
        stack.callback(org.close)
        follow_added_columns(org.store, lambda _source: org.rules)
        markers = Markers(org)
        seed(org, markers)
        org.sync()
        role = portal = admin = None
        if backend == "postgresql":
            role = stack.enter_context(portal_role())
            install_partner_security(org.store, org.rules, role)
            portal, admin = engine_as(url, role), create_engine(url)
            stack.callback(portal.dispose)
            stack.callback(admin.dispose)
        for batch in batches:
            for kind, key, first, second in batch:
                apply(org, markers, kind, key, first, second)
            org.sync()
            for partner in PARTNERS:
                check_view(fields, org, org.view(partner))
                check_view(fields, org, org.view(partner, user_id=f"U{partner}", role="rep"))
            if portal is not None and admin is not None and role is not None:
                check_sql(fields, org, admin, role, portal)
