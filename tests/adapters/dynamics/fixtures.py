"""Fixtures for the Dynamics 365 tests: a Dataverse sandbox, its contract controls, adapters.

Test modules import the fixtures they use from here (``tests/adapters/conftest.py`` holds the
Salesforce ones).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from adapters.dynamics.adapter import DynamicsAdapter, DynamicsSettings
from sandboxes.dynamics.sandbox import DynamicsSandbox


class DynamicsControls:
    """``SandboxControls`` for the Dataverse sandbox.

    Each mutation first moves the sandbox clock on by a second: ``modifiedon`` has whole
    seconds, and the contract needs every change to carry a cursor value no reader saw yet.
    """

    def __init__(self, sandbox: DynamicsSandbox) -> None:
        """Controls over ``sandbox`` (a started ``DynamicsSandbox``)."""
        self.sandbox = sandbox

    def _tick(self) -> None:
        self.sandbox.advance_clock(1)

    def create(self, object_name: str, values: Mapping[str, Any]) -> str:
        """Create a row; its guid."""
        self._tick()
        return self.sandbox.create(object_name, dict(values))

    def update(self, object_name: str, record_id: str, values: Mapping[str, Any]) -> None:
        """Change a row."""
        self._tick()
        self.sandbox.update(object_name, record_id, dict(values))

    def delete(self, object_name: str, record_id: str) -> None:
        """Delete a row (change tracking reports it)."""
        self._tick()
        self.sandbox.delete(object_name, record_id)

    def hard_delete(self, object_name: str, record_id: str) -> None:
        """Delete a row without a change-tracking tombstone."""
        self._tick()
        self.sandbox.hard_delete(object_name, record_id)

    def set_same_modstamp(self, object_name: str, ids: Iterable[str]) -> None:
        """Give every id one new ``modifiedon``."""
        self._tick()
        self.sandbox.set_modstamp(object_name, list(ids), self.sandbox.now())

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox clock forward."""
        self.sandbox.advance_clock(seconds)

    def expire_sessions(self) -> None:
        """Invalidate every issued access token."""
        self.sandbox.expire_tokens()

    def fail_next(self, count: int, status: int) -> None:
        """Fail the next ``count`` Web API requests with ``status``."""
        self.sandbox.fail_next(count, status=status)

    def count(self, object_name: str) -> int:
        """Rows of the table."""
        return self.sandbox.count(object_name)

    def ids(self, object_name: str) -> list[str]:
        """Ids of the table's rows."""
        return self.sandbox.ids(object_name)

    def get(self, object_name: str, record_id: str) -> Mapping[str, Any] | None:
        """A row's values keyed by Web API property, or ``None``."""
        return self.sandbox.get(object_name, record_id)


class WebApi:
    """A bare Web API client on a sandbox: a requests session with a directly issued token."""

    def __init__(self, sandbox: DynamicsSandbox) -> None:
        """A client of ``sandbox`` (started)."""
        self.sandbox = sandbox
        self.session = requests.Session()
        self.session.trust_env = False
        self.token = sandbox.issue_token()

    def url(self, path: str) -> str:
        """An absolute URL for a path under ``/api/data/v9.2/`` (absolute URLs unchanged)."""
        if path.startswith("http"):
            return path
        return f"{self.sandbox.base_url}/api/data/v9.2/{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        prefer: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request with the OData headers and the token."""
        sent = {"Accept": "application/json", "OData-Version": "4.0",
                "OData-MaxVersion": "4.0", "Authorization": f"Bearer {self.token}",
                **(headers or {})}  # fmt: skip
        if prefer:
            sent["Prefer"] = prefer
        return self.session.request(method, self.url(path), headers=sent, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """``GET``."""
        return self.request("GET", path, **kwargs)


def sandbox_settings(sandbox: DynamicsSandbox, **overrides: Any) -> DynamicsSettings:
    """Client-secret settings for ``sandbox`` with fast retries and 50-row pages."""
    values: dict[str, Any] = {
        "org_url": sandbox.org_url,
        "authority_url": sandbox.authority_url,
        "tenant_id": sandbox.tenant_id,
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "page_size": 50,
        "max_retries": 4,
        "backoff_base": 0.01,
        "backoff_max": 2.0,
        "timeout": 30.0,
    }
    return DynamicsSettings(**(values | overrides))


def sandbox_adapter(sandbox: DynamicsSandbox, **overrides: Any) -> DynamicsAdapter:
    """A ``DynamicsAdapter`` on ``sandbox`` with a client secret."""
    return DynamicsAdapter(sandbox_settings(sandbox, **overrides))


def top_up(sandbox: DynamicsSandbox, table: str, wanted: int) -> None:
    """Create accounts (or named rows) until ``table`` has ``wanted`` rows."""
    for number in range(sandbox.count(table), wanted):
        sandbox.create(table, {"name": f"Filler {number}"})


@pytest.fixture(scope="module")
def dynamics_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynamicsSandbox]:
    """A tiny Dataverse sandbox serving on 127.0.0.1 for one test module."""
    path = Path(tmp_path_factory.mktemp("dynamics")) / "dv.db"
    with DynamicsSandbox(path, size="tiny") as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def dynamics_controls(dynamics_sandbox: DynamicsSandbox) -> DynamicsControls:
    """Contract controls over the module's Dataverse sandbox."""
    return DynamicsControls(dynamics_sandbox)
