"""Fixtures for adapter tests: a Salesforce sandbox per module and its contract controls."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.salesforce.adapter import SalesforceAdapter, SalesforceSettings
from sandboxes.testing.contract import SalesforceControls
from sandboxes.testing.settings import salesforce_settings

__all__ = ["SalesforceControls", "sandbox_adapter", "sandbox_settings"]


def sandbox_settings(sandbox: Any, **overrides: Any) -> SalesforceSettings:
    """Password-login settings for ``sandbox`` with fast retries and 200-record pages."""
    return SalesforceSettings(**salesforce_settings(sandbox, **overrides))


def sandbox_adapter(sandbox: Any, **overrides: Any) -> SalesforceAdapter:
    """A ``SalesforceAdapter`` logged in to ``sandbox`` with password auth."""
    return SalesforceAdapter(sandbox_settings(sandbox, **overrides))


@pytest.fixture(scope="module")
def salesforce_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A tiny Salesforce sandbox serving on 127.0.0.1 for one test module."""
    from sandboxes.salesforce.sandbox import SalesforceSandbox

    path = tmp_path_factory.mktemp("salesforce") / "sf.db"
    with SalesforceSandbox(path, size="tiny") as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def salesforce_controls(salesforce_sandbox: Any) -> SalesforceControls:
    """Contract controls over the module's Salesforce sandbox."""
    return SalesforceControls(salesforce_sandbox)
