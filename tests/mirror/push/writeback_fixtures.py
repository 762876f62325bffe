"""A Salesforce sandbox mirrored through the real adapter, for the write-back tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mirror import Mirror
from mirror.config import parse_config
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.adapters.conftest import sandbox_adapter

OBJECTS = ["User", "Account", "Contact", "Product2", "Opportunity", "OpportunityLineItem"]


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceSandbox]:
    """A small sandbox org shared by the module (each test works on its own records)."""
    path = Path(tmp_path_factory.mktemp("sf")) / "sf.db"
    with SalesforceSandbox(path, size="tiny") as sandbox:
        yield sandbox


def open_mirror(url: str, box: SalesforceSandbox, **conflicts: str) -> Mirror:
    """A mirror of ``box`` in ``url`` with the given conflict policies, synced once."""
    config = parse_config(
        {
            "store": {"database": url},
            "sync": {"push_retry_delay": 0},
            "sources": {
                "salesforce": {
                    "crm": "salesforce",
                    "auth": "password",
                    "username": "u",
                    "password": "p",
                    "objects": OBJECTS,
                    "conflicts": conflicts or {"default": "manual"},
                }
            },
        }
    )
    mirror = Mirror(config, adapters={"salesforce": sandbox_adapter(box)})
    mirror.sync()
    return mirror


def fresh_opportunity(mirror: Mirror, used: set[str]) -> tuple[str, dict[str, Any]]:
    """A partner and one of its open opportunities that no earlier test in the module touched."""
    for partner in mirror.partners():
        view = mirror.as_partner(partner["id"])
        for row in view.select("Opportunity", where={"IsClosed": False}, limit=200):
            if row["Id"] not in used:
                used.add(row["Id"])
                return partner["id"], row
    raise AssertionError("the sandbox org ran out of open opportunities")
