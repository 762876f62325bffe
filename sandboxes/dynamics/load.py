"""Write the generated dataset into the Dataverse sandbox, in Dataverse's shape.

Users become ``systemuser`` rows (partner users carry the custom ``prm_partneraccountid``
lookup to their partner), partners and end customers ``account`` rows (partners flagged with
``prm_ispartner``), then ``contact``, ``lead``, ``opportunity`` (attributed to a partner
through ``prm_partneraccountid``) and the custom ``prm_dealregistration`` table. Keys are
guids derived from the seed and the dataset key, so the same seed always gives the same ids;
``modifiedon`` is the dataset's system modification instant (mass updates share one stamp).
Rows stream into ``executemany`` batches, so memory stays flat at any size.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from sandboxes.dataset.generate import Dataset, Record
from sandboxes.dynamics.schema import INTEGRATION_USER_ID, Entity
from sandboxes.dynamics.store import DataverseStore
from sandboxes.dynamics.tables import INDUSTRIES, TIERS
from sandboxes.dynamics.values import epoch

CHUNK = 5_000
KEY_NAMESPACE = uuid.UUID("0d9a8c1e-5f47-4b7e-a0c2-3e5b9f1d2c64")
LEAD_STATES = {
    "Open - Not Contacted": (0, 1), "Working - Contacted": (0, 2),
    "Closed - Converted": (1, 3), "Closed - Not Converted": (2, 4),
}  # fmt: skip
LEAD_SOURCE_CODES = {"Web": 8, "Phone Inquiry": 10, "Partner Referral": 4, "Partner": 4,
                     "Purchased List": 1, "Other": 10}  # fmt: skip
STAGES = {
    "prospecting": (0, "1-Qualify"), "qualification": (0, "1-Qualify"),
    "needs_analysis": (1, "2-Develop"), "value_proposition": (1, "2-Develop"),
    "decision_makers": (2, "3-Propose"), "proposal": (2, "3-Propose"),
    "negotiation": (3, "4-Close"), "closed_won": (3, "4-Close"), "closed_lost": (3, "4-Close"),
}  # fmt: skip
_INDUSTRY_CODES = {label: value for value, label in INDUSTRIES}
_TIER_CODES = {label: value for value, label in TIERS}


def record_guid(seed: int, key: str | None) -> str | None:
    """The guid of dataset record ``key`` (``None`` stays ``None``)."""
    if key is None:
        return None
    return str(uuid.uuid5(KEY_NAMESPACE, f"{seed}:{key}"))


class DataverseShaper:
    """Turns dataset records into stored rows of the sandbox's tables."""

    def __init__(self, dataset: Dataset) -> None:
        """Shape the records of ``dataset``."""
        self.dataset = dataset

    def guid(self, key: str | None) -> str | None:
        """The guid of a dataset key."""
        return record_guid(self.dataset.seed, key)

    def _stamps(self, record: Record) -> dict[str, Any]:
        return {
            "createdon": epoch(record["created"]),
            "modifiedon": epoch(record["system_modified"]),
        }

    def _owned(self, record: Record) -> dict[str, Any]:
        return {"ownerid": self.guid(record.get("owner_key")), "owneridtype": "systemuser"}

    def integration_user(self) -> dict[str, Any]:
        """The application user the Web API acts as."""
        anchor = epoch(self.dataset.anchor)
        return {
            "systemuserid": INTEGRATION_USER_ID, "firstname": "PRM", "lastname": "Mirror",
            "fullname": "# PRM Mirror", "internalemailaddress": "prm-mirror@vendor.example.com",
            "domainname": "prm-mirror@vendor.example.com", "isdisabled": 0,
            "createdon": anchor - 400 * 86_400, "modifiedon": anchor - 400 * 86_400,
        }  # fmt: skip

    def systemuser(self, record: Record) -> dict[str, Any]:
        """A user."""
        partner = self.guid(record["partner_key"])
        return {
            "systemuserid": self.guid(record["key"]),
            "firstname": record["first_name"], "lastname": record["last_name"],
            "fullname": f"{record['first_name']} {record['last_name']}",
            "internalemailaddress": record["email"], "domainname": record["username"],
            "isdisabled": int(not record["is_active"]), "prm_partneraccountid": partner,
            "prm_portalrole": 100000000 if partner else None, **self._stamps(record),
        }  # fmt: skip

    def partner(self, record: Record) -> dict[str, Any]:
        """A partner account."""
        return {
            **self._account(record), "prm_ispartner": 1,
            "prm_partnertier": _TIER_CODES[record["tier"]],
        }  # fmt: skip

    def customer(self, record: Record) -> dict[str, Any]:
        """An end-customer account."""
        return {
            **self._account(record), "prm_ispartner": 0,
            "address1_line1": record["street"], "address1_postalcode": record["postal_code"],
            "numberofemployees": record["employees"], "revenue": record["annual_revenue"],
        }  # fmt: skip

    def _account(self, record: Record) -> dict[str, Any]:
        return {
            "accountid": self.guid(record["key"]), "name": record["name"],
            "websiteurl": record["website"], "telephone1": record["phone"],
            "industrycode": _INDUSTRY_CODES[record["industry"]],
            "address1_city": record["city"], "address1_country": record["country"],
            "statecode": 0, "statuscode": 1, **self._owned(record), **self._stamps(record),
        }  # fmt: skip

    def contact(self, record: Record) -> dict[str, Any]:
        """A contact of a partner or customer account."""
        return {
            "contactid": self.guid(record["key"]),
            "firstname": record["first_name"], "lastname": record["last_name"],
            "fullname": f"{record['first_name']} {record['last_name']}",
            "emailaddress1": record["email"], "jobtitle": record["title"],
            "telephone1": record["phone"], "parentcustomerid": self.guid(record["account_key"]),
            "parentcustomeridtype": "account", "statecode": 0, "statuscode": 1,
            **self._owned(record), **self._stamps(record),
        }  # fmt: skip

    def lead(self, record: Record) -> dict[str, Any]:
        """A lead, partner-sourced in some cases."""
        state, status = LEAD_STATES[record["status"]]
        return {
            "leadid": self.guid(record["key"]),
            "subject": f"Interest from {record['company']}",
            "firstname": record["first_name"], "lastname": record["last_name"],
            "fullname": f"{record['first_name']} {record['last_name']}",
            "companyname": record["company"][:100], "emailaddress1": record["email"],
            "telephone1": record["phone"], "address1_country": record["country"],
            "leadsourcecode": LEAD_SOURCE_CODES.get(record["source"], 10),
            "prm_partneraccountid": self.guid(record["partner_key"]),
            "statecode": state, "statuscode": status,
            **self._owned(record), **self._stamps(record),
        }  # fmt: skip

    def opportunity(self, record: Record) -> dict[str, Any]:
        """An opportunity, attributed to a partner in most cases."""
        stage, step = STAGES[record["stage"]]
        won, lost = record["is_won"], record["is_closed"] and not record["is_won"]
        account = self.guid(record["customer_key"])
        return {
            "opportunityid": self.guid(record["key"]), "name": record["name"],
            "parentaccountid": account, "customerid": account, "customeridtype": "account",
            "prm_partneraccountid": self.guid(record["partner_key"]),
            "estimatedvalue": record["amount"],
            "estimatedclosedate": record["close_date"].isoformat(),
            "closeprobability": record["probability"], "salesstage": stage, "stepname": step,
            "description": record["type"].replace("_", " "),
            "msdyn_forecastcategory": _forecast(won, lost, record["probability"]),
            "statecode": 1 if won else 2 if lost else 0,
            "statuscode": 3 if won else 5 if lost else 1,
            **self._owned(record), **self._stamps(record),
        }  # fmt: skip

    def deal_registration(self, record: Record) -> dict[str, Any]:
        """A deal registration (the custom table)."""
        return {
            "prm_dealregistrationid": self.guid(record["key"]), "prm_name": record["name"],
            "prm_partneraccountid": self.guid(record["partner_key"]),
            "prm_opportunityid": self.guid(record["opportunity_key"]),
            "prm_status": record["status"].capitalize(),
            "prm_companyname": record["company_name"], "prm_domain": record["domain"],
            "prm_country": record["country"], "prm_amount": record["amount"],
            "prm_closedate": record["close_date"].isoformat(), "prm_currency": "USD",
            "statecode": 0, "statuscode": 1, **self._owned(record), **self._stamps(record),
        }  # fmt: skip


def _forecast(won: bool, lost: bool, probability: int) -> int:
    if won:
        return 100000005
    if lost:
        return 100000006
    if probability >= 75:
        return 100000003
    return 100000002 if probability >= 50 else 100000001


class DataverseLoader:
    """Loads one :class:`Dataset` into a :class:`DataverseStore`."""

    def __init__(self, store: DataverseStore, dataset: Dataset) -> None:
        """Prepare to load ``dataset`` into ``store``."""
        self.store = store
        self.dataset = dataset
        self.shaper = DataverseShaper(dataset)

    def plan(self) -> list[tuple[str, Callable[[], Iterable[dict[str, Any]]]]]:
        """What to load, in order: (table, rows)."""
        data, shape = self.dataset, self.shaper
        return [
            ("systemuser", lambda: [shape.integration_user()]),
            ("systemuser", lambda: map(shape.systemuser, data.users())),
            ("account", lambda: map(shape.partner, data.partners())),
            ("account", lambda: map(shape.customer, data.customers())),
            ("contact", lambda: map(shape.contact, data.contacts())),
            ("lead", lambda: map(shape.lead, data.leads())),
            ("opportunity", lambda: map(shape.opportunity, data.opportunities())),
            ("prm_dealregistration", lambda: map(shape.deal_registration,
                                                 data.deal_registrations())),
        ]  # fmt: skip

    def load(self) -> dict[str, int]:
        """Create the tables and load every row; returns the number of rows per table."""
        self.store.create_tables()
        counts: dict[str, int] = {}
        for name, rows in self.plan():
            entity = self.store.schema.entity(name)
            for chunk in _chunks(rows(), CHUNK):
                counts[name] = counts.get(name, 0) + self._insert(entity, chunk)
        self.store.create_indexes()
        return counts

    def _insert(self, entity: Entity, chunk: list[dict[str, Any]]) -> int:
        columns = [a.name for a in entity.attributes]
        first = self.store.reserve_versions(len(chunk))
        values = (
            tuple({**row, "versionnumber": first + n}.get(c) for c in columns)
            for n, row in enumerate(chunk)
        )
        return int(self.store.insert_many(entity, columns, values))


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk
