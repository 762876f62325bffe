"""The shared adapter contract on objects too wide for one request URL, on all three CRMs.

Every read (backfill, incremental, resumes, ids), every write (create, update, delete,
preconditions) and every retry of the contract runs against an object whose query with every
field is longer than the CRM's URL limit: a Salesforce Account with 450 more fields, HubSpot
companies with 400 more properties, a Dataverse account table with 800 more columns. The
writes set some of the added fields too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandboxes.dynamics.sandbox import DynamicsSandbox
from sandboxes.hubspot.sandbox import HubSpotSandbox
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.adapters.conftest import SalesforceControls, sandbox_adapter
from tests.adapters.contract import ContractSubject, CrmAdapterContract
from tests.adapters.dynamics.fixtures import DynamicsControls, top_up
from tests.adapters.dynamics.fixtures import sandbox_adapter as dynamics_adapter
from tests.adapters.hubspot.fixtures import HubSpotControls, hubspot_adapter, unthrottled
from tests.adapters.wide_fixtures import (
    DYNAMICS_WIDTH,
    HUBSPOT_WIDTH,
    SALESFORCE_WIDTH,
    dynamics_column,
    hubspot_property,
    salesforce_field,
    wide_values,
    widen_dynamics,
    widen_hubspot,
    widen_salesforce,
)


class TestWideSalesforceContract(CrmAdapterContract):
    """The contract on a Salesforce Account with 450 more fields (200-record pages)."""

    @pytest.fixture(scope="class")
    @classmethod
    def contract_subject(
        cls, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[ContractSubject]:
        path = Path(tmp_path_factory.mktemp("sf-wide-contract")) / "sf.db"
        with SalesforceSandbox(path, size="tiny") as sandbox:
            widen_salesforce(sandbox, "Account")
            for number in range(sandbox.count("Account"), 600):
                sandbox.create("Account", {"Name": f"Filler {number}"})

            def values(name: str, tag: str) -> dict[str, Any]:
                return {"Name": f"{name} {tag}",
                        **wide_values(salesforce_field, tag, 45, SALESFORCE_WIDTH)}  # fmt: skip

            yield ContractSubject(
                make_adapter=lambda: sandbox_adapter(sandbox),
                controls=SalesforceControls(sandbox),
                object_name="Account",
                new_values=lambda tag: values("Contract", tag),
                changed_values=lambda tag: values("Renamed", tag),
                page_size=200,
            )


class TestWideHubSpotContract(CrmAdapterContract):
    """The contract on HubSpot companies with 400 more properties (50-record pages)."""

    @pytest.fixture(scope="class")
    @classmethod
    def contract_subject(
        cls, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[ContractSubject]:
        path = Path(tmp_path_factory.mktemp("hs-wide-contract")) / "hs.db"
        with HubSpotSandbox(path, size="tiny") as sandbox:
            unthrottled(sandbox)
            widen_hubspot(sandbox, "companies")
            missing = 150 - sandbox.count("companies")
            sandbox.create_many("companies", [{"name": f"Filler {n}"} for n in range(missing)])

            def values(name: str, tag: str) -> dict[str, Any]:
                return {"name": f"{name} {tag}",
                        **wide_values(hubspot_property, tag, 40, HUBSPOT_WIDTH)}  # fmt: skip

            yield ContractSubject(
                make_adapter=lambda: hubspot_adapter(sandbox, page_size=50),
                controls=HubSpotControls(sandbox),
                object_name="companies",
                new_values=lambda tag: values("Contract", tag),
                changed_values=lambda tag: values("Renamed", tag),
                page_size=50,
            )


class TestWideDynamicsContract(CrmAdapterContract):
    """The contract on a Dataverse account table with 800 more columns (50-row pages)."""

    @pytest.fixture(scope="class")
    @classmethod
    def contract_subject(
        cls, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[ContractSubject]:
        path = Path(tmp_path_factory.mktemp("dv-wide-contract")) / "dv.db"
        with DynamicsSandbox(path, size="tiny") as sandbox:
            widen_dynamics(sandbox, "account")
            top_up(sandbox, "account", 150)

            def values(name: str, tag: str) -> dict[str, Any]:
                return {"name": f"{name} {tag}",
                        **wide_values(dynamics_column, tag, 80, DYNAMICS_WIDTH)}  # fmt: skip

            yield ContractSubject(
                make_adapter=lambda: dynamics_adapter(sandbox, page_size=50),
                controls=DynamicsControls(sandbox),
                object_name="account",
                new_values=lambda tag: values("Contract", tag),
                changed_values=lambda tag: values("Renamed", tag),
                page_size=50,
            )
