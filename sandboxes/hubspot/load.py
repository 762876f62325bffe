"""The generated dataset in HubSpot's shape, written into the sandbox's store.

- partners and end customers become companies (``prm_is_partner`` tells them apart);
- contacts become contacts with a primary company association (``associatedcompanyid``); the
  first contact of each partner is its portal admin (``prm_portal_role``), the others reps;
- leads become contacts in lifecycle stage ``lead``, without a company;
- products become products, opportunities become deals of the default pipeline, associated
  with their customer as primary company and with their partner under the ``Partner`` label;
- line items become line items associated with their deal;
- deal registrations become records of the ``deal_registrations`` custom object.

Ids are stable: each kind gets a range above its object type's base, in dataset order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sandboxes.dataset.generate import Dataset, Record, key_index
from sandboxes.hubspot.derived import derive
from sandboxes.hubspot.records import Records
from sandboxes.hubspot.schema import ObjectType
from sandboxes.hubspot.values import canonical, to_ms

CHUNK = 5_000
OWNER_BASE = 70_000_000
STAGES = {
    "prospecting": "appointmentscheduled", "qualification": "qualifiedtobuy",
    "needs_analysis": "qualifiedtobuy", "value_proposition": "presentationscheduled",
    "decision_makers": "decisionmakerboughtin", "proposal": "contractsent",
    "negotiation": "contractsent", "closed_won": "closedwon", "closed_lost": "closedlost",
}  # fmt: skip
LEAD_STATUSES = {
    "Open - Not Contacted": "NEW", "Working - Contacted": "IN_PROGRESS",
    "Closed - Converted": "CONNECTED", "Closed - Not Converted": "UNQUALIFIED",
}  # fmt: skip
Row = tuple[str, int, dict[str, str], int, int]
Edge = tuple[str, int, str, int, int]


class PortalLoader:
    """Loads one :class:`Dataset` into a portal through its ``Records``."""

    def __init__(self, records: Records, dataset: Dataset) -> None:
        """Prepare to load ``dataset``."""
        self.records = records
        self.store = records.store
        self.dataset = dataset
        self.types = records.schema.types
        counts = dataset.counts
        self._partner_base = self.types["companies"].id_base + 1
        self._customer_base = self._partner_base + counts.partners
        self._lead_base = self.types["contacts"].id_base + 1 + counts.contacts
        self._product_names: dict[int, str] = {}

    # -- ids ------------------------------------------------------------------------------

    def company_id(self, key: str) -> int:
        """The company id of a ``partner-N`` or ``customer-N`` key."""
        base = self._partner_base if key.startswith("partner-") else self._customer_base
        return base + key_index(key)

    def id_of(self, type_name: str, key: str) -> int:
        """The id of a dataset key within its object type's range."""
        return self.types[type_name].id_base + 1 + key_index(key)

    # -- loading --------------------------------------------------------------------------

    def load(self) -> None:
        """Write every record and association, then the indexes and id sequences."""
        d = self.dataset
        self._write("companies", (self._partner(p) for p in d.partners()))
        self._write("companies", (self._customer(c) for c in d.customers()))
        self._write("contacts", (self._contact(c) for c in d.contacts()))
        self._write("contacts", (self._lead(i, lead) for i, lead in enumerate(d.leads())))
        self._write("products", (self._product(p) for p in d.products()))
        self._write("deals", self._deals_and_lines())
        self._write("deal_registrations", (self._registration(r) for r in d.deal_registrations()))
        self.store.build_indexes()
        self._set_sequences()

    def _write(self, type_name: str, items: Iterator[tuple[Row, list[Edge]]]) -> None:
        rows: list[Row] = []
        edges: list[Edge] = []
        for row, row_edges in items:
            rows.append(row)
            edges.extend(row_edges)
            if len(rows) >= CHUNK:
                self._flush(rows, edges)
                rows, edges = [], []
        self._flush(rows, edges)

    def _flush(self, rows: list[Row], edges: list[Edge]) -> None:
        if not rows:
            return
        self.store.insert_many(rows)
        self.store.add_associations(edges)
        uniques = [
            (row[0], "email", row[2]["email"].lower(), row[1])
            for row in rows
            if row[0] == "contacts" and row[2].get("email")
        ]
        with self.store.transaction() as conn:
            conn.executemany("INSERT OR IGNORE INTO hs_unique VALUES (?, ?, ?, ?)", uniques)

    def _set_sequences(self) -> None:
        with self.store.transaction() as conn:
            for object_type in self.types.values():
                highest = self.store.scalar(
                    "SELECT MAX(id) FROM hs_objects WHERE type = ?", (object_type.name,)
                )
                start = max(int(highest or 0), object_type.id_base) + 1
                conn.execute(
                    "INSERT OR REPLACE INTO hs_sequences (type, next) VALUES (?, ?)",
                    (object_type.name, start),
                )

    def _row(self, type_name: str, record_id: int, record: Record, values: dict[str, Any]) -> Row:
        object_type: ObjectType = self.types[type_name]
        props = {}
        for name, value in values.items():
            text = canonical(object_type.properties[name], value)
            if text is not None:
                props[name] = text
        row: dict[str, Any] = {
            "id": record_id,
            "props": props,
            "created_ms": to_ms(record["created"]),
            "modified_ms": to_ms(record["system_modified"]),
            "archived": False,
            "archived_ms": None,
            "merged_into": None,
        }
        derive(object_type, row)
        return (type_name, record_id, row["props"], row["created_ms"], row["modified_ms"])

    # -- shapes -----------------------------------------------------------------------------

    def _owner(self, record: Record) -> str:
        return str(OWNER_BASE + key_index(record["owner_key"]))

    def _partner(self, p: Record) -> tuple[Row, list[Edge]]:
        values = {
            "name": p["name"], "domain": p["domain"], "website": p["website"],
            "phone": p["phone"], "industry": p["industry"], "city": p["city"],
            "country": p["country"], "prm_is_partner": True,
            "prm_partner_tier": p["tier"], "hubspot_owner_id": self._owner(p),
        }  # fmt: skip
        return self._row("companies", self.company_id(p["key"]), p, values), []

    def _customer(self, c: Record) -> tuple[Row, list[Edge]]:
        values = {
            "name": c["name"], "domain": c["domain"], "website": c["website"],
            "phone": c["phone"], "industry": c["industry"], "city": c["city"],
            "country": c["country"], "address": c["street"], "zip": c["postal_code"],
            "numberofemployees": c["employees"], "annualrevenue": c["annual_revenue"],
            "prm_is_partner": False, "hubspot_owner_id": self._owner(c),
        }  # fmt: skip
        return self._row("companies", self.company_id(c["key"]), c, values), []

    def _contact(self, c: Record) -> tuple[Row, list[Edge]]:
        record_id = self.id_of("contacts", c["key"])
        company = self.company_id(c["account_key"])
        partner = c["account_key"].startswith("partner-")
        values: dict[str, Any] = {
            "email": c["email"], "firstname": c["first_name"], "lastname": c["last_name"],
            "jobtitle": c["title"], "phone": c["phone"], "associatedcompanyid": company,
            "lifecyclestage": "other" if partner else "customer",
            "hubspot_owner_id": self._owner(c),
        }  # fmt: skip
        if partner:
            values["prm_portal_role"] = "admin" if key_index(c["key"]) % 3 == 0 else "rep"
        edges = [
            ("contacts", record_id, "companies", company, 1),
            ("companies", company, "contacts", record_id, 2),
            ("contacts", record_id, "companies", company, 279),
            ("companies", company, "contacts", record_id, 280),
        ]
        return self._row("contacts", record_id, c, values), edges

    def _lead(self, index: int, lead: Record) -> tuple[Row, list[Edge]]:
        values: dict[str, Any] = {
            "email": lead["email"], "firstname": lead["first_name"],
            "lastname": lead["last_name"], "company": lead["company"], "phone": lead["phone"],
            "country": lead["country"], "lifecyclestage": "lead",
            "hs_lead_status": LEAD_STATUSES.get(lead["status"], "NEW"),
            "hubspot_owner_id": self._owner(lead),
        }  # fmt: skip
        if lead["partner_key"]:
            values["prm_partner_company_id"] = str(self.company_id(lead["partner_key"]))
        return self._row("contacts", self._lead_base + index, lead, values), []

    def _product(self, p: Record) -> tuple[Row, list[Edge]]:
        record_id = self.id_of("products", p["key"])
        self._product_names[record_id] = p["name"]
        kind = "service" if p["family"] in ("Services", "Support") else "non_inventory"
        values = {
            "name": p["name"], "hs_sku": p["code"], "price": p["list_price"],
            "description": f"{p['family']}: {p['name']}", "hs_product_type": kind,
            "prm_product_family": p["family"], "prm_active": p["active"],
        }  # fmt: skip
        return self._row("products", record_id, p, values), []

    def _deals_and_lines(self) -> Iterator[tuple[Row, list[Edge]]]:
        lines: list[tuple[Row, list[Edge]]] = []
        for deal, items in self.dataset.opportunities_with_line_items():
            yield self._deal(deal)
            lines.extend(self._line(line) for line in items)
            if len(lines) >= CHUNK:
                self._write("line_items", iter(lines))
                lines = []
        self._write("line_items", iter(lines))

    def _deal(self, o: Record) -> tuple[Row, list[Edge]]:
        record_id = self.id_of("deals", o["key"])
        customer = self.company_id(o["customer_key"])
        values: dict[str, Any] = {
            "dealname": o["name"], "amount": o["amount"], "dealstage": STAGES[o["stage"]],
            "pipeline": "default", "closedate": o["close_date"],
            "dealtype": "newbusiness" if o["type"] == "new_business" else "existingbusiness",
            "hubspot_owner_id": self._owner(o), "prm_lead_source": o["lead_source"],
        }  # fmt: skip
        edges = [
            ("deals", record_id, "companies", customer, 5),
            ("companies", customer, "deals", record_id, 6),
            ("deals", record_id, "companies", customer, 341),
            ("companies", customer, "deals", record_id, 342),
        ]
        if o["partner_key"]:
            partner = self.company_id(o["partner_key"])
            edges += [
                ("deals", record_id, "companies", partner, 37),
                ("companies", partner, "deals", record_id, 38),
                ("deals", record_id, "companies", partner, 341),
                ("companies", partner, "deals", record_id, 342),
            ]
        return self._row("deals", record_id, o, values), edges

    def _line(self, line: Record) -> tuple[Row, list[Edge]]:
        record_id = self.id_of("line_items", line["key"])
        deal = self.id_of("deals", line["opportunity_key"])
        product = self.id_of("products", line["product_key"])
        values = {
            "name": self._product_names.get(product, line["product_key"]),
            "hs_product_id": product, "hs_sku": f"PRD-{key_index(line['product_key']):05d}",
            "quantity": line["quantity"], "price": line["unit_price"],
            "hs_recurring_billing_start_date": line["service_date"],
        }  # fmt: skip
        edges = [
            ("line_items", record_id, "deals", deal, 20),
            ("deals", deal, "line_items", record_id, 19),
        ]
        return self._row("line_items", record_id, line, values), edges

    def _registration(self, r: Record) -> tuple[Row, list[Edge]]:
        record_id = self.id_of("deal_registrations", r["key"])
        partner = self.company_id(r["partner_key"])
        values: dict[str, Any] = {
            "name": r["name"], "partner_company_id": str(partner),
            "company_name": r["company_name"], "domain": r["domain"], "country": r["country"],
            "amount": r["amount"], "currency": "USD", "close_date": r["close_date"],
            "status": r["status"].capitalize(),
        }  # fmt: skip
        if r["opportunity_key"]:
            values["deal_id"] = str(self.id_of("deals", r["opportunity_key"]))
        edges = [
            ("deal_registrations", record_id, "companies", partner, 41),
            ("companies", partner, "deal_registrations", record_id, 42),
        ]
        return self._row("deal_registrations", record_id, r, values), edges
