"""Shared fixtures for the Salesforce sandbox tests: a running sandbox and SDK clients on it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from simple_salesforce import Salesforce

from adapters._kit.loopback import local_session
from sandboxes.salesforce.sandbox import SalesforceSandbox

ANCHOR = datetime(2026, 11, 1, tzinfo=UTC)


def client(sandbox: SalesforceSandbox, version: str = "59.0") -> Salesforce:
    """A simple-salesforce client on the sandbox with a directly issued session."""
    return Salesforce(
        instance_url=sandbox.base_url.replace("http", "https"),
        session_id=sandbox.issue_session(),
        session=local_session(sandbox.base_url),
        version=version,
    )


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceSandbox]:
    """A small sandbox shared by the read-only tests of a module."""
    path = tmp_path_factory.mktemp("sf-shared") / "org.db"
    with SalesforceSandbox(path, seed=7, size="small", anchor=ANCHOR) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SalesforceSandbox]:
    """A fresh tiny sandbox for one test that changes data."""
    with SalesforceSandbox(tmp_path / "org.db", seed=3, size="tiny", anchor=ANCHOR) as sandbox:
        yield sandbox


@pytest.fixture
def sf(sandbox: SalesforceSandbox) -> Salesforce:
    """A client on the per-test sandbox."""
    return client(sandbox)
