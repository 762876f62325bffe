"""What a chaos run does on each CRM: the objects it mirrors, the fields both sides edit, what the
portal creates and deletes, what the CRM merges, and the config the engine's processes read.

Every field the portal or the CRM edits is a text field, so each edit can carry a value no other
edit ever writes (a token): the checker then tells every edit's writes apart in the CRM's write
log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Scenario:
    """One CRM's part of a chaos run."""

    crm: str
    partner_object: str
    objects: tuple[str, ...]
    edited: tuple[tuple[str, str], ...]
    crm_only: tuple[tuple[str, str], ...]
    creates: dict[str, dict[str, Any]]
    name_field: dict[str, str]
    deletable: tuple[str, ...] = ()
    mergeable: tuple[str, ...] = ()
    undeletes: bool = True
    bulk_stamped: str = ""
    skip_compare: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def source(self, base_url: str, admin: Any) -> dict[str, Any]:
        """The ``[sources.<crm>]`` settings that reach the sandbox at ``base_url``."""
        if self.crm == "hubspot":
            return {
                "crm": "hubspot",
                "host": base_url,
                "access_token": admin("access_token"),
                "page_size": 100,
                "search_per_second": 5.0,
            }
        if self.crm == "dynamics":
            return {
                "crm": "dynamics",
                "org_url": base_url,
                "authority_url": base_url,
                "tenant_id": admin("tenant_id"),
                "client_id": admin("client_id"),
                "client_secret": admin("client_secret"),
                "page_size": 50,
            }
        from sandboxes.salesforce.org import Credentials

        login = Credentials()
        return {
            "crm": "salesforce",
            "login_url": base_url,
            "username": login.username,
            "password": login.password,
            "security_token": login.security_token,
            "page_size": 200,
        }


SCENARIOS = {
    "salesforce": Scenario(
        crm="salesforce",
        partner_object="Account",
        objects=("User", "Account", "Contact", "Product2", "Opportunity", "OpportunityLineItem"),
        edited=(
            ("Opportunity", "NextStep"),
            ("Opportunity", "Name"),
            ("Account", "BillingCity"),
            ("Contact", "Title"),
        ),
        crm_only=(
            ("Opportunity", "Description"),
            ("Account", "Description"),
            ("User", "CompanyName"),
        ),
        creates={
            "Opportunity": {"StageName": "Prospecting", "CloseDate": "2027-06-30"},
            "Account": {},
        },
        name_field={"Opportunity": "Name", "Account": "Name"},
        deletable=("OpportunityLineItem",),
        mergeable=("Account", "Contact"),
        bulk_stamped="Opportunity",
    ),
    "hubspot": Scenario(
        crm="hubspot",
        partner_object="companies",
        objects=("companies", "contacts", "products", "deals", "line_items"),
        edited=(
            ("deals", "hs_next_step"),
            ("deals", "dealname"),
            ("companies", "city"),
            ("contacts", "jobtitle"),
        ),
        crm_only=(("deals", "description"), ("companies", "description"), ("contacts", "lastname")),
        creates={"deals": {"dealstage": "appointmentscheduled"}, "companies": {}},
        name_field={"deals": "dealname", "companies": "name"},
        deletable=("line_items",),
        mergeable=("companies", "contacts"),
        bulk_stamped="deals",
    ),
    "dynamics": Scenario(
        crm="dynamics",
        partner_object="account",
        objects=("systemuser", "account", "contact", "opportunity"),
        edited=(
            ("opportunity", "stepname"),
            ("opportunity", "name"),
            ("account", "address1_city"),
            ("contact", "jobtitle"),
        ),
        crm_only=(
            ("opportunity", "description"),
            ("account", "description"),
            ("systemuser", "firstname"),
        ),
        creates={"opportunity": {}, "account": {}},
        name_field={"opportunity": "name", "account": "name"},
        undeletes=False,
        bulk_stamped="opportunity",
    ),
}


def write_config(
    path: Path, database: str, source: dict[str, Any], objects: tuple[str, ...]
) -> Path:
    """The TOML config every engine process of the run reads.

    Short retry budgets (a burst of injected 503s outlasts them, so runs fail mid-read and
    resume), quick push retries, and a daemon that syncs every second and gives a dead worker's
    leases up after three.
    """
    settings = {**source, "objects": list(objects), "max_retries": 3}
    sections: dict[str, dict[str, Any]] = {
        "store": {"database": database},
        "sync": {"push_max_attempts": 6, "push_retry_delay": 0.05},
        "daemon": {
            "sync_interval": 1.0,
            "push_interval": 0.5,
            "jitter": 0.2,
            "lease_seconds": 3.0,
            "metrics_port": 0,
            "log_format": "json",
        },
        f"sources.{source['crm']}": settings,
    }
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
