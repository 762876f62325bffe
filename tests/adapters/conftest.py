"""Fixtures for adapter tests: a Salesforce sandbox per module and its contract controls."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytest

from adapters.salesforce.adapter import SalesforceAdapter, SalesforceSettings


class SalesforceControls:
    """``SandboxControls`` for the Salesforce sandbox.

    Each mutation first moves the sandbox clock on by a second: the sandbox stamps whole
    seconds, and the contract needs every change to carry a cursor value no reader saw yet.
    """

    def __init__(self, sandbox: Any) -> None:
        """Controls over ``sandbox`` (a started ``SalesforceSandbox``)."""
        self.sandbox = sandbox

    def _tick(self) -> None:
        self.sandbox.advance_clock(1)

    def create(self, object_name: str, values: Mapping[str, Any]) -> str:
        """Create a record; its 18-char id."""
        self._tick()
        return str(self.sandbox.create(object_name, dict(values)))

    def update(self, object_name: str, record_id: str, values: Mapping[str, Any]) -> None:
        """Change a record."""
        self._tick()
        self.sandbox.update(object_name, record_id, dict(values))

    def delete(self, object_name: str, record_id: str) -> None:
        """Soft-delete a record (recycle bin)."""
        self._tick()
        self.sandbox.delete(object_name, record_id)

    def hard_delete(self, object_name: str, record_id: str) -> None:
        """Delete a record and purge it from the recycle bin."""
        self._tick()
        self.sandbox.hard_delete(object_name, record_id)

    def set_same_modstamp(self, object_name: str, ids: Iterable[str]) -> None:
        """Stamp every id with one new SystemModstamp."""
        self._tick()
        self.sandbox.set_modstamp(object_name, list(ids), self.sandbox.now())

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox clock forward."""
        self.sandbox.advance_clock(seconds)

    def expire_sessions(self) -> None:
        """Invalidate every issued session."""
        self.sandbox.expire_sessions()

    def fail_next(self, count: int, status: int) -> None:
        """Fail the next ``count`` CRM requests with ``status``."""
        self.sandbox.fail_next(count, status=status)

    def count(self, object_name: str) -> int:
        """Live records of the object."""
        return int(self.sandbox.count(object_name))

    def ids(self, object_name: str) -> list[str]:
        """Live ids of the object."""
        return list(self.sandbox.ids(object_name))

    def get(self, object_name: str, record_id: str) -> Mapping[str, Any] | None:
        """A live record's stored values, or ``None``."""
        return self.sandbox.get(object_name, record_id)


def sandbox_settings(sandbox: Any, **overrides: Any) -> SalesforceSettings:
    """Password-login settings for ``sandbox`` with fast retries and 200-record pages."""
    values: dict[str, Any] = {
        "instance_url": sandbox.base_url,
        "login_url": sandbox.base_url,
        "auth": "password",
        "username": sandbox.username,
        "password": sandbox.password,
        "security_token": sandbox.security_token,
        "page_size": 200,
        "bulk_page_size": 200,
        "max_retries": 4,
        "backoff_base": 0.01,
        "backoff_max": 0.5,
        "timeout": 30.0,
    }
    return SalesforceSettings(**(values | overrides))


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
