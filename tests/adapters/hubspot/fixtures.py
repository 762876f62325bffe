"""Fixtures for HubSpot adapter tests: a sandbox per module, its contract controls, settings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytest

from adapters.hubspot.adapter import HubSpotAdapter, HubSpotSettings
from sandboxes.hubspot.sandbox import HubSpotSandbox


class HubSpotControls:
    """``SandboxControls`` for the HubSpot sandbox.

    Every change gets a fresh last-modified instant from the sandbox clock, which never hands
    out the same millisecond twice. Private-app tokens do not expire, so there are no sessions
    to expire.
    """

    def __init__(self, sandbox: HubSpotSandbox) -> None:
        """Controls over ``sandbox`` (a started ``HubSpotSandbox``)."""
        self.sandbox = sandbox

    def create(self, object_name: str, values: Mapping[str, Any]) -> str:
        """Create a record; its id."""
        return self.sandbox.create(object_name, dict(values))

    def update(self, object_name: str, record_id: str, values: Mapping[str, Any]) -> None:
        """Change a record."""
        self.sandbox.update(object_name, record_id, dict(values))

    def delete(self, object_name: str, record_id: str) -> None:
        """Archive a record (the recycle bin still lists it)."""
        self.sandbox.delete(object_name, record_id)

    def hard_delete(self, object_name: str, record_id: str) -> None:
        """Delete a record for good."""
        self.sandbox.hard_delete(object_name, record_id)

    def set_same_modstamp(self, object_name: str, ids: Iterable[str]) -> None:
        """Put every id on one new last-modified instant."""
        self.sandbox.set_modstamp(object_name, list(ids))

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox clock forward."""
        self.sandbox.advance_clock(seconds)

    def expire_sessions(self) -> None:
        """Nothing to do: a private app's token stays valid until it is rotated."""

    def fail_next(self, count: int, status: int) -> None:
        """Fail the next ``count`` CRM requests with ``status``."""
        self.sandbox.fail_next(count, status=status)

    def count(self, object_name: str) -> int:
        """Live records of the object."""
        return self.sandbox.count(object_name)

    def ids(self, object_name: str) -> list[str]:
        """Live ids of the object."""
        return self.sandbox.ids(object_name)

    def get(self, object_name: str, record_id: str) -> Mapping[str, Any] | None:
        """A live record's values, or ``None``."""
        return self.sandbox.get(object_name, record_id)


def hubspot_settings(sandbox: HubSpotSandbox, **overrides: Any) -> HubSpotSettings:
    """Settings for ``sandbox`` with fast retries and no search pacing to speak of."""
    values: dict[str, Any] = {
        "access_token": sandbox.access_token,
        "host": sandbox.base_url,
        "page_size": 100,
        "max_retries": 4,
        "backoff_base": 0.01,
        "backoff_max": 0.5,
        "timeout": 30.0,
        "search_per_second": 10_000.0,
    }
    return HubSpotSettings(**(values | overrides))


def hubspot_adapter(sandbox: HubSpotSandbox, **overrides: Any) -> HubSpotAdapter:
    """A ``HubSpotAdapter`` on ``sandbox``."""
    return HubSpotAdapter(hubspot_settings(sandbox, **overrides))


def unthrottled(sandbox: HubSpotSandbox) -> HubSpotSandbox:
    """``sandbox`` with rate limits far above what a test sends."""
    sandbox.set_rate_limits(burst=1_000_000, daily=100_000_000, search_per_second=1_000_000)
    return sandbox


@pytest.fixture(scope="module")
def hubspot_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSpotSandbox]:
    """A tiny HubSpot sandbox serving on 127.0.0.1 for one test module, unthrottled."""
    path = tmp_path_factory.mktemp("hubspot") / "hs.db"
    with HubSpotSandbox(path, size="tiny") as sandbox:
        yield unthrottled(sandbox)
