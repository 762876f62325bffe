"""The generated dataset in Salesforce's shape: storage rows for each sObject.

Pure functions of the dataset: ids are computed from dataset keys (record n of an object gets
sequence number n + 1), so references need no lookup table, and any range of records can be
shaped on its own (in another process, for large sizes).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sandboxes.dataset.generate import Dataset, key_index
from sandboxes.salesforce.derive import address_json, fiscal_fields, full_name, stage_fields
from sandboxes.salesforce.ids import make_id
from sandboxes.salesforce.schema import SalesforceSchema

STAGE_NAMES = {
    "prospecting": "Prospecting", "qualification": "Qualification",
    "needs_analysis": "Needs Analysis", "value_proposition": "Value Proposition",
    "decision_makers": "Id. Decision Makers", "proposal": "Proposal/Price Quote",
    "negotiation": "Negotiation/Review", "closed_won": "Closed Won", "closed_lost": "Closed Lost",
}  # fmt: skip
OPPORTUNITY_TYPES = {
    "new_business": "New Customer",
    "existing_upgrade": "Existing Customer - Upgrade",
    "existing_replacement": "Existing Customer - Replacement",
    "existing_downgrade": "Existing Customer - Downgrade",
}
LEAD_SOURCES = {"Partner": "Partner Referral"}
_LINE_AUDIT = ("IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById",
               "SystemModstamp")  # fmt: skip
Row = dict[str, Any]
Rows = list[tuple[Any, ...]]


def stored_datetime(moment: datetime) -> str:
    """A UTC datetime in storage form (``isoformat`` is the fastest formatter)."""
    return moment.isoformat()[:19] + ".000Z"


def _day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def row_tuple(columns: list[str]) -> Callable[[Row], tuple[Any, ...]]:
    """A function turning a row dict (a subset of ``columns``) into a tuple in column order."""
    template = dict.fromkeys(columns)

    def to_tuple(row: Row) -> tuple[Any, ...]:
        full = template.copy()
        full.update(row)
        if len(full) != len(template):
            unknown = set(full) - set(template)
            raise KeyError(f"values for unknown columns: {sorted(unknown)}")
        return tuple(full.values())

    return to_tuple


class SalesforceShaper:
    """Shapes ranges of dataset records into storage rows of the sandbox's tables."""

    def __init__(self, dataset: Dataset, schema: SalesforceSchema) -> None:
        """Shape ``dataset`` for the tables of ``schema``."""
        self.dataset = dataset
        self.schema = schema
        self.api_user = make_id("005", 1)
        self._products: dict[int, tuple[str, str, float]] = {}
        self._tuples = {
            obj.name: row_tuple([f["name"] for f in obj.stored_fields()])
            for obj in schema.objects.values()
        }
        counts = dataset.counts
        # kind: (sobject, record getter, shape, id offset, record count)
        self.kinds: dict[str, tuple[str, Callable[[int], Row], Callable[[Row], Row], int, int]] = {
            "users": ("User", dataset.user, self._user, 0, counts.users),
            "partners": ("Account", dataset.partner, self._partner, 0, counts.partners),
            "customers": ("Account", dataset.customer, self._customer, counts.partners,
                          counts.customers),
            "contacts": ("Contact", dataset.contact, self._contact, 0, counts.contacts),
            "leads": ("Lead", dataset.lead, self._lead, 0, counts.leads),
            "products": ("Product2", dataset.product, self._product, 0, counts.products),
            "deal_registrations": ("Deal_Registration__c", dataset.deal_registration,
                                   self._deal_registration, 0, counts.deal_registrations),
        }  # fmt: skip

    def sizes(self) -> dict[str, int]:
        """Record count per kind, opportunities included."""
        sizes = {kind: spec[4] for kind, spec in self.kinds.items()}
        sizes["opportunities"] = self.dataset.counts.opportunities
        return sizes

    def chunk(self, kind: str, start: int, stop: int) -> list[tuple[str, Rows]]:
        """Rows of records ``start`` to ``stop`` of ``kind``, as ``[(sobject, rows), ...]``."""
        if kind == "opportunities":
            return self._opportunity_chunk(start, stop)
        sobject, record_of, shape, offset, _count = self.kinds[kind]
        prefix = self.schema.objects[sobject.lower()].key_prefix
        to_tuple = self._tuples[sobject]
        rows = []
        for index in range(start, stop):
            values = shape(record_of(index))
            values["Id"] = make_id(prefix, index + offset + 1)
            rows.append(to_tuple(values))
        return [(sobject, rows)]

    def _opportunity_chunk(self, start: int, stop: int) -> list[tuple[str, Rows]]:
        opportunity_rows, line_rows = [], []
        to_opportunity, to_line = self._tuples["Opportunity"], self._tuples["OpportunityLineItem"]
        for opportunity, lines in self.dataset.opportunities_with_line_items(start, stop):
            row = self._opportunity(opportunity)
            if lines:
                row["TotalOpportunityQuantity"] = sum(line["quantity"] for line in lines)
            row["Id"] = make_id("006", key_index(opportunity["key"]) + 1)
            opportunity_rows.append(to_opportunity(row))
            for line in lines:
                values = self._line_item(line, row)
                values["Id"] = make_id("00k", key_index(line["key"]) + 1)
                line_rows.append(to_line(values))
        return [("Opportunity", opportunity_rows), ("OpportunityLineItem", line_rows)]

    def account_id(self, key: str | None) -> str | None:
        """The Account id of a partner or customer key."""
        if key is None:
            return None
        index = key_index(key)
        if key.startswith("customer-"):
            index += self.dataset.counts.partners
        return make_id("001", index + 1)

    @staticmethod
    def ref(prefix: str, key: str | None) -> str | None:
        """The id of the record with dataset ``key`` in the object with ``prefix``."""
        return None if key is None else make_id(prefix, key_index(key) + 1)

    def _audit(self, record: Row) -> Row:
        owner = self.ref("005", record.get("owner_key")) or self.api_user
        return {
            "IsDeleted": 0, "OwnerId": owner,
            "CreatedDate": stored_datetime(record["created"]), "CreatedById": owner,
            "LastModifiedDate": stored_datetime(record["modified"]), "LastModifiedById": owner,
            "SystemModstamp": stored_datetime(record["system_modified"]),
        }  # fmt: skip

    def _partner(self, record: dict[str, Any]) -> dict[str, Any]:
        row = {
            **self._audit(record), "Name": record["name"], "Type": "Channel Partner / Reseller",
            "Industry": record["industry"], "Phone": record["phone"], "Website": record["website"],
            "BillingCity": record["city"], "BillingCountry": record["country"], "IsPartner": 1,
            "IsCustomerPortal": 0, "ChannelProgramName": "Partner Program",
            "ChannelProgramLevelName": record["tier"], "AccountSource": "Partner Referral",
        }  # fmt: skip
        row["BillingAddress"] = address_json(self.schema.objects["account"], "BillingAddress", row)
        return row

    def _customer(self, record: dict[str, Any]) -> dict[str, Any]:
        row = {
            **self._audit(record), "Name": record["name"], "Type": "Customer - Direct",
            "Industry": record["industry"], "Phone": record["phone"], "Website": record["website"],
            "BillingStreet": record["street"], "BillingCity": record["city"],
            "BillingPostalCode": record["postal_code"], "BillingCountry": record["country"],
            "NumberOfEmployees": record["employees"], "AnnualRevenue": record["annual_revenue"],
            "IsPartner": 0, "IsCustomerPortal": 0,
        }  # fmt: skip
        row["BillingAddress"] = address_json(self.schema.objects["account"], "BillingAddress", row)
        return row

    def _contact(self, record: dict[str, Any]) -> dict[str, Any]:
        return {
            **self._audit(record), "AccountId": self.account_id(record["account_key"]),
            "FirstName": record["first_name"], "LastName": record["last_name"],
            "Name": full_name(record["first_name"], record["last_name"]),
            "Email": record["email"], "Title": record["title"], "Phone": record["phone"],
            "IsEmailBounced": 0,
        }  # fmt: skip

    def _user(self, record: dict[str, Any]) -> dict[str, Any]:
        row = self._audit(record)
        row.pop("OwnerId")
        partner = record["partner_key"]
        return {
            **row, "CreatedById": self.api_user, "LastModifiedById": self.api_user,
            "Username": record["username"], "FirstName": record["first_name"],
            "LastName": record["last_name"],
            "Name": full_name(record["first_name"], record["last_name"]),
            "Email": record["email"], "Alias": record["alias"][:8],
            "IsActive": int(record["is_active"]),
            "UserType": "PowerPartner" if partner else "Standard",
            "ContactId": self.ref("003", record["contact_key"]),
            "AccountId": self.account_id(partner), "CompanyName": None if partner else "Vendor",
        }  # fmt: skip

    def _lead(self, record: dict[str, Any]) -> dict[str, Any]:
        row = {
            **self._audit(record), "FirstName": record["first_name"],
            "LastName": record["last_name"],
            "Name": full_name(record["first_name"], record["last_name"]),
            "Company": record["company"], "Email": record["email"], "Phone": record["phone"],
            "Country": record["country"], "Status": record["status"],
            "LeadSource": LEAD_SOURCES.get(record["source"], record["source"]),
            "IsConverted": int(record["status"] == "Closed - Converted"), "IsUnreadByOwner": 0,
        }  # fmt: skip
        row["Address"] = address_json(self.schema.objects["lead"], "Address", row)
        return row

    def _product(self, record: dict[str, Any]) -> dict[str, Any]:
        row = self._audit(record)
        row.pop("OwnerId")
        return {
            **row, "Name": record["name"], "ProductCode": record["code"],
            "Family": record["family"], "IsActive": int(record["active"]),
        }  # fmt: skip

    def _opportunity(self, record: dict[str, Any]) -> dict[str, Any]:
        stage = STAGE_NAMES[record["stage"]]
        close_date = _day(record["close_date"])
        return {
            **self._audit(record), "Name": record["name"],
            "AccountId": self.account_id(record["customer_key"]),
            "PartnerAccountId": self.account_id(record["partner_key"]),
            "StageName": stage, "Amount": record["amount"], "CloseDate": close_date,
            "Type": OPPORTUNITY_TYPES[record["type"]],
            "LeadSource": LEAD_SOURCES.get(record["lead_source"], record["lead_source"]),
            "IsPrivate": 0, "HasOpportunityLineItem": int(record["line_count"] > 0),
            "HasOpenActivity": 0, "HasOverdueTask": 0,
            **stage_fields(stage, record["probability"], record["amount"]),
            **fiscal_fields(record["close_date"]),
        }  # fmt: skip

    def _line_item(self, record: dict[str, Any], opportunity: dict[str, Any]) -> dict[str, Any]:
        product = self._product_summary(key_index(record["product_key"]))
        row = {key: opportunity[key] for key in _LINE_AUDIT}
        return {
            **row, "OpportunityId": opportunity["Id"],
            "Product2Id": self.ref("01t", record["product_key"]),
            "Quantity": record["quantity"], "UnitPrice": record["unit_price"],
            "ListPrice": product[2],
            "TotalPrice": round(record["quantity"] * record["unit_price"], 2),
            "ServiceDate": _day(record["service_date"]), "ProductCode": product[1],
            "Name": f"{opportunity['Name']} {product[0]}"[:376],
        }  # fmt: skip

    def _product_summary(self, index: int) -> tuple[str, str, float]:
        summary = self._products.get(index)
        if summary is None:
            product = self.dataset.product(index)
            summary = self._products[index] = (
                product["name"],
                product["code"],
                product["list_price"],
            )
        return summary

    def _deal_registration(self, record: dict[str, Any]) -> dict[str, Any]:
        return {
            **self._audit(record), "Name": record["name"],
            "Partner_Account__c": self.account_id(record["partner_key"]),
            "Company_Name__c": record["company_name"], "Domain__c": record["domain"],
            "Country__c": record["country"], "Amount__c": record["amount"],
            "Close_Date__c": _day(record["close_date"]),
            "Status__c": record["status"].capitalize(),
            "Opportunity__c": self.ref("006", record["opportunity_key"]),
        }  # fmt: skip
