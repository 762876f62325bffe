"""The trust model's recipe for partners who type SQL themselves: a login role pinned to its
partner (docs/visibility-postgres.md, "A role that cannot choose its partner") sees its own
slice, and nothing when it names another partner. The statements run are the document's."""

from __future__ import annotations

import re
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from mirror.visibility.postgres_rls import partner_session
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.conftest import PG_URL, fresh_database
from tests.mirror.visibility.test_field_rules import busiest_partner, make_mirror
from tests.mirror.visibility.test_rls import engine_as, portal_role


def pinning_recipe(portal: str, group: str, pinned: str, partner: str) -> list[str]:
    """The SQL of docs/visibility-postgres.md that pins a partner role, for these names."""
    doc = (Path(__file__).resolve().parents[3] / "docs" / "visibility-postgres.md").read_text()
    section = doc.split("### A role that cannot choose its partner", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.DOTALL)
    names = {
        "prm_sliced_portal": f"prm_sliced_{portal}",
        "prm_public_portal": f"prm_public_{portal}",
        "partner_sql": group,
        "partner_acme": pinned,
        "001xx000003DGb2AAG": partner,
    }
    pinned_blocks = []
    for block in blocks:
        for old, new in names.items():
            block = block.replace(old, new)
        pinned_blocks.append(re.sub(r"\bportal\b(?!_)", portal, block))
    return pinned_blocks


def slice_ids(bind: Engine, partner: str | None = None) -> set[str]:
    """The opportunity ids plain SQL returns (under ``partner`` when given)."""
    query = text('SELECT "Id" FROM salesforce__opportunity')
    if partner is None:
        with bind.connect() as conn:
            return set(conn.execute(query).scalars())
    with partner_session(bind, partner) as conn:
        return set(conn.execute(query).scalars())


@pytest.mark.postgres
def test_a_pinned_partner_role_cannot_choose_another_partner(tmp_path: Path) -> None:
    if not PG_URL:
        pytest.skip("PostgreSQL suite: set PRM_MIRROR_TEST_PG_URL (see README)")
    tag = uuid.uuid4().hex[:8]
    group, pinned = f"prm_pinsql_{tag}", f"prm_pinned_{tag}"
    with ExitStack() as stack:
        box = stack.enter_context(SalesforceSandbox(tmp_path / "sf.db", size="tiny"))
        url = stack.enter_context(fresh_database("postgresql"))
        portal = stack.enter_context(portal_role())
        mirror = make_mirror(url, box)
        stack.callback(mirror.close)
        mirror.sync()
        partner = busiest_partner(mirror)
        admin, owner = create_engine(str(PG_URL)), create_engine(url)
        stack.callback(admin.dispose)
        stack.callback(owner.dispose)
        mirror.install_partner_security(portal)
        roles, policies = pinning_recipe(portal, group, pinned, partner)
        with admin.begin() as conn:
            conn.exec_driver_sql(roles)
        stack.callback(drop_roles, admin, [pinned, group])
        with owner.begin() as conn:
            conn.exec_driver_sql(policies)
        stack.callback(drop_pinning, owner, group)
        as_pinned, as_portal = engine_as(url, pinned), engine_as(url, portal)
        stack.callback(as_pinned.dispose)
        stack.callback(as_portal.dispose)
        others = [p["id"] for p in mirror.partners() if p["id"] != partner]
        theirs = max(others, key=lambda p: len(slice_ids(as_portal, p)))
        mine = {r["Id"] for r in mirror.as_partner(partner).select("Opportunity", fields=["Id"],
                                                                   limit=1000)}  # fmt: skip
        assert mine and slice_ids(as_pinned) == mine
        assert slice_ids(as_pinned, partner) == mine
        assert slice_ids(as_portal, theirs)  # the application's role still names any partner
        assert slice_ids(as_pinned, theirs) == set()


def drop_roles(admin: Engine, roles: list[str]) -> None:
    with admin.begin() as conn:
        for role in roles:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")


def drop_pinning(owner: Engine, group: str) -> None:
    with owner.begin() as conn:
        tables = conn.execute(
            text("SELECT DISTINCT polrelid::regclass::text FROM pg_policy "
                 "WHERE polname = 'partner_pinned'")
        ).scalars().all()  # fmt: skip
        for table in tables:
            conn.exec_driver_sql(f"DROP POLICY partner_pinned ON {table}")
        conn.exec_driver_sql("DROP TABLE portal_partner_roles")
