"""Fixtures for the Dynamics 365 tests: a Dataverse sandbox, its contract controls, adapters.

Test modules import the fixtures they use from here (``tests/adapters/conftest.py`` holds the
Salesforce ones).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from adapters.dynamics.adapter import DynamicsAdapter, DynamicsSettings
from sandboxes.dynamics.sandbox import DynamicsSandbox
from sandboxes.testing.contract import DynamicsControls
from sandboxes.testing.settings import dynamics_settings, top_up

__all__ = ["DynamicsControls", "WebApi", "sandbox_adapter", "sandbox_settings", "top_up"]


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
    return DynamicsSettings(**dynamics_settings(sandbox, **overrides))


def sandbox_adapter(sandbox: DynamicsSandbox, **overrides: Any) -> DynamicsAdapter:
    """A ``DynamicsAdapter`` on ``sandbox`` with a client secret."""
    return DynamicsAdapter(sandbox_settings(sandbox, **overrides))


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
