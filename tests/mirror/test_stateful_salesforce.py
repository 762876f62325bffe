"""Stateful property test of the mirror against the Salesforce sandbox (simple-salesforce over
HTTP), on SQLite and PostgreSQL: random interleavings of CRM changes, portal writes, pushes,
syncs, faults and interruptions at page boundaries, then the mirror at rest must equal the CRM
and every accepted portal edit must be applied once or recorded as a conflict or a refusal
(``tests/mirror/stateful_machine.py``, ``tests/mirror/stateful_checks.py``).

The run is bounded to stay within the suite's time; to search longer, set
``PRM_MIRROR_HYPOTHESIS_EXAMPLES`` (examples per test, default 6) and
``PRM_MIRROR_HYPOTHESIS_STEPS`` (steps per example, default 20), e.g.
``PRM_MIRROR_HYPOTHESIS_EXAMPLES=500 pytest tests/mirror/test_stateful_salesforce.py``;
``PRM_MIRROR_HYPOTHESIS_SHRINK=0`` reports a failure without shrinking it. The sequences that
found failures are replayed as they are (``tests/mirror/stateful_examples.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.adapters.conftest import sandbox_adapter
from tests.conftest import BACKENDS
from tests.mirror.crm_driver import CrmDriver, DealShape, Values
from tests.mirror.stateful_examples import found_params, replay
from tests.mirror.stateful_run import FAILS, base_features, pending_params, run_machine

# the REST pages hold at least 200 records: 450 opportunities are read in three pages
SIZE = 450

# Step families with a known failure not fixed yet run marked, one test each (``PENDING``); once
# fixed, a family leaves PENDING and joins the main test on both stores.
STILL_FAILING = ("concurrent_edits",)
PENDING = {name: reason for name, reason in FAILS.items() if name in STILL_FAILING}


class SalesforceDriver(CrmDriver):
    """The Salesforce sandbox through ``CrmDriver``."""

    source = crm = "salesforce"
    sandbox_class, size = SalesforceSandbox, SIZE
    objects = ("User", "Account", "Opportunity")
    deal = DealShape("Opportunity", ("Name", "NextStep"))
    account, account_field = "Account", "Name"
    side_fields = {"User": "FirstName"}
    compared = {
        "Opportunity": ("Name", "NextStep", "AccountId", "PartnerAccountId"),
        "Account": ("Name",),
        "User": ("FirstName",),
    }
    write_path = "composite"

    def _spy(self) -> None:
        records = self.box.org.records
        create, update, delete = records.create, records.update, records.delete

        def spied_create(obj: Any, values: Any, *, system: bool = False) -> str:
            record_id = create(obj, values, system=system)
            if not system:
                self.api_write(obj.name, record_id, "create", dict(values), {})
            return record_id

        def spied_update(obj: Any, record_id: str, values: Any, **kwargs: Any) -> None:
            system = kwargs.get("system", False)
            if not system:
                self.before_api_update(obj.name, record_id, dict(values))
            before = {} if system else (self.values(obj.name, record_id) or {})
            update(obj, record_id, values, **kwargs)
            if not system:
                canonical = self.box.get(obj.name, record_id)["Id"]
                self.api_write(obj.name, canonical, "update", dict(values), before)

        def spied_delete(obj: Any, record_id: str, *, system: bool = False) -> None:
            delete(obj, record_id, system=system)
            if not system:
                self.api_write(obj.name, record_id, "delete", {}, {})

        records.create, records.update, records.delete = spied_create, spied_update, spied_delete

    def adapter(self) -> Any:
        return sandbox_adapter(self.box, max_retries=2, backoff_base=0.001, backoff_max=0.002)

    def source_settings(self) -> Values:
        return {"username": "u", "password": "p"}

    def partnered_deals(self) -> list[tuple[str, str]]:
        deals = [self.box.get("Opportunity", i) for i in self.box.ids("Opportunity")]
        return [
            (deal["Id"], deal["PartnerAccountId"])
            for deal in deals
            if deal["PartnerAccountId"] and not deal["IsClosed"]
        ]

    def customer_accounts(self) -> list[str]:
        return [a for a in self.box.ids("Account") if not self.box.get("Account", a)["IsPartner"]]

    def new_deal(self, partner_id: str, name: str) -> Values:
        return {"Name": name, "StageName": "Prospecting", "CloseDate": "2027-01-31"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_mirror_converges_with_salesforce(backend: str) -> None:
    run_machine(SalesforceDriver, backend, base_features(PENDING))


@pytest.mark.parametrize("feature", pending_params(PENDING))
def test_mirror_converges_with_salesforce_pending(feature: str) -> None:
    run_machine(SalesforceDriver, "sqlite", base_features(PENDING) | {feature}, pending=True)


@pytest.mark.parametrize("name", found_params(SalesforceDriver, PENDING))
def test_found_sequences_replay_on_salesforce(name: str) -> None:
    replay(SalesforceDriver, name)
