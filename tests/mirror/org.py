"""A small partner org on the fake CRM, synced through the real pull path, plus a reference
model of who sees what computed straight from the CRM's state (independent of the engine)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from sqlalchemy import select

from mirror.portal.view import PartnerView
from mirror.pull.sync import Puller
from mirror.store.database import Store
from mirror.store.tables import mirror_access
from mirror.types import FieldSpec, FieldType
from mirror.visibility.rules import VisibilityRules, parse_rules, path_index_fields
from mirror.visibility.upkeep import GrantUpkeep
from tests.mirror.fakes import FakeCrm

F = FieldType
STAMP = FieldSpec("Modstamp", F.DATETIME)
SCHEMAS = {
    "User": (FieldSpec("Id", F.ID), FieldSpec("Name", F.STRING),
             FieldSpec("AccountId", F.REFERENCE), FieldSpec("Role", F.STRING), STAMP),
    "Account": (FieldSpec("Id", F.ID), FieldSpec("Name", F.STRING),
                FieldSpec("IsPartner", F.BOOLEAN), FieldSpec("Revenue", F.FLOAT), STAMP),
    "Contact": (FieldSpec("Id", F.ID), FieldSpec("Name", F.STRING),
                FieldSpec("AccountId", F.REFERENCE, references=("Account",)), STAMP),
    "Opportunity": (FieldSpec("Id", F.ID), FieldSpec("Name", F.STRING),
                    FieldSpec("AccountId", F.REFERENCE), FieldSpec("PartnerAccountId", F.REFERENCE),
                    FieldSpec("OwnerId", F.REFERENCE), FieldSpec("Amount", F.FLOAT),
                    FieldSpec("Secret", F.STRING), STAMP),
    "LineItem": (FieldSpec("Id", F.ID), FieldSpec("OpportunityId", F.REFERENCE),
                 FieldSpec("Quantity", F.FLOAT), STAMP),
    "Product": (FieldSpec("Id", F.ID), FieldSpec("Name", F.STRING), STAMP),
}  # fmt: skip
ORDER = ("User", "Account", "Contact", "Product", "Opportunity", "LineItem")
RULES = {
    "partners": {"object": "Account", "flag_field": "IsPartner"},
    "partner_users": {
        "object": "User",
        "partner_field": "AccountId",
        "role_field": "Role",
        "admin_roles": ["Manager"],
    },
    "slices": {
        "Account": {"paths": ["self", "Opportunity.AccountId <-"]},
        "Contact": {"paths": ["AccountId -> Account"]},
        "User": {"paths": ["AccountId"]},
        "Opportunity": {"paths": ["PartnerAccountId"], "owner_field": "OwnerId"},
        "LineItem": {"paths": ["OpportunityId -> Opportunity"]},
        "Product": {"public": True},
    },
    "fields": {
        "Opportunity": {"hidden": ["Secret"], "writable": ["Amount", "Name"]},
        "Account": {"hidden": ["Revenue"]},
    },
}


class Org:
    """The fake CRM, a store, and the pull path with the access hook wired in."""

    def __init__(
        self,
        url: str,
        page_size: int = 4,
        schemas: dict[str, tuple[FieldSpec, ...]] | None = None,
        rules: dict[str, Any] | None = None,
    ) -> None:
        self.crm = FakeCrm(page_size=page_size, objects=dict(schemas or SCHEMAS))
        self.store = Store(url)
        self.rules: VisibilityRules = parse_rules("fake", rules or RULES)
        self.access = GrantUpkeep(self.store, self.rules)
        self.pages = self.access.page_hook()
        self.clock = 0

    def put(self, obj: str, record_id: str, **values: Any) -> None:
        """Create or change a CRM record (each edit one second later than the last)."""
        self.clock += 1
        self.crm.put(record_id, self.clock, obj=obj, **values)

    def remove(self, obj: str, record_id: str) -> None:
        """Delete a CRM record."""
        self.clock += 1
        self.crm.remove(record_id, self.clock, obj=obj)

    def sync(self, around: Callable[[str], AbstractContextManager[None]] | None = None) -> None:
        """Pull every object, parents first, through the real sync path (each object's pull
        inside ``around(name)`` when given)."""
        puller = Puller(
            self.store,
            self.crm,
            hooks=[self.pages],
            indexes=path_index_fields(self.rules),
        )
        for name in ORDER:
            with around(name) if around else nullcontext():
                puller.sync_object(self.crm.describe(name))

    def view(self, partner: str, **kw: Any) -> PartnerView:
        """The partner's view."""
        return PartnerView(self.store, self.rules, partner, **kw)

    def access_rows(self) -> set[tuple]:
        """Every row of the access table."""
        with self.store.engine.connect() as conn:
            return {tuple(r) for r in conn.execute(select(mirror_access))}

    def close(self) -> None:
        """Release the store."""
        self.store.close()

    def mirrored(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The mirror's live records per object, read straight from the tables."""
        found: dict[str, dict[str, dict[str, Any]]] = {}
        with self.store.engine.connect() as conn:
            for name in SCHEMAS:
                try:
                    table = self.store.mirrored(self.rules.source, name).table
                except KeyError:
                    found[name] = {}
                    continue
                rows = conn.execute(select(table).where(table.c._deleted.is_(False)))
                found[name] = {row.Id: dict(row._mapping) for row in rows}
        return found

    def expected(
        self,
        partner: str,
        owner: str | None = None,
        live: dict[str, dict[str, dict[str, Any]]] | None = None,
    ) -> dict[str, set[str]]:
        """Who should see what, from the CRM's live records alone (or from ``live``)."""
        live = self.crm.stores if live is None else live
        opps = {
            i for i, o in live["Opportunity"].items()
            if o["PartnerAccountId"] == partner and (owner is None or o["OwnerId"] == owner)
        }  # fmt: skip
        accounts = {live["Opportunity"][o]["AccountId"] for o in opps} & set(live["Account"])
        own = live["Account"].get(partner)
        if owner is None and own and own["IsPartner"]:
            accounts.add(partner)
        return {
            "Opportunity": opps,
            "Account": accounts,
            "Contact": {i for i, c in live["Contact"].items() if c["AccountId"] in accounts},
            "LineItem": {i for i, li in live["LineItem"].items() if li["OpportunityId"] in opps},
            "User": set()
            if owner
            else {i for i, u in live["User"].items() if u["AccountId"] == partner},
        }

    def seen(self, view: PartnerView) -> dict[str, set[str]]:
        """What ``view`` actually returns, per object."""
        return {
            name: {r["Id"] for r in view.select(name, fields=["Id"], limit=1000)}
            for name in ("Opportunity", "Account", "Contact", "LineItem", "User")
        }


def build_small_org(org: Org) -> None:
    """Two partners, two customers, three deals, line items, a catalogue product."""
    for p in ("P1", "P2"):
        org.put("Account", p, Name=f"Partner {p}", IsPartner=True, Revenue=1e6)
        org.put("User", f"U{p}", Name=f"rep of {p}", AccountId=p, Role="Rep")
        org.put("Contact", f"K{p}", Name=f"contact at {p}", AccountId=p)
    for c in ("C1", "C2"):
        org.put("Account", c, Name=f"Customer {c}", IsPartner=False, Revenue=5e6)
        org.put("Contact", f"K{c}", Name=f"contact at {c}", AccountId=c)
    org.put("Opportunity", "o1", Name="deal 1", AccountId="C1", PartnerAccountId="P1",
            OwnerId="UP1", Amount=10.0, Secret="margin 40%")  # fmt: skip
    org.put("Opportunity", "o2", Name="deal 2", AccountId="C2", PartnerAccountId="P2",
            OwnerId="UP2", Amount=20.0, Secret="x")  # fmt: skip
    org.put("Opportunity", "o3", Name="deal 3", AccountId="C1", PartnerAccountId="P2",
            OwnerId="V1", Amount=30.0, Secret="y")  # fmt: skip
    org.put("LineItem", "l1", OpportunityId="o1", Quantity=1.0)
    org.put("LineItem", "l3", OpportunityId="o3", Quantity=3.0)
    org.put("Product", "pr1", Name="Widget")
    org.put("Product", "pr2", Name="Retired widget")
    org.remove("Product", "pr2")
    org.sync()
