"""Fixtures for HubSpot adapter tests: a sandbox per module, its contract controls, settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.hubspot.adapter import HubSpotAdapter, HubSpotSettings
from sandboxes.hubspot.sandbox import HubSpotSandbox
from sandboxes.testing.contract import HubSpotControls
from sandboxes.testing.settings import hubspot_settings as hubspot_settings_values
from sandboxes.testing.settings import unthrottled

__all__ = ["HubSpotControls", "hubspot_adapter", "hubspot_settings", "unthrottled"]


def hubspot_settings(sandbox: HubSpotSandbox, **overrides: Any) -> HubSpotSettings:
    """Settings for ``sandbox`` with fast retries and no search pacing to speak of."""
    return HubSpotSettings(**hubspot_settings_values(sandbox, **overrides))


def hubspot_adapter(sandbox: HubSpotSandbox, **overrides: Any) -> HubSpotAdapter:
    """A ``HubSpotAdapter`` on ``sandbox``."""
    return HubSpotAdapter(hubspot_settings(sandbox, **overrides))


@pytest.fixture(scope="module")
def hubspot_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSpotSandbox]:
    """A tiny HubSpot sandbox serving on 127.0.0.1 for one test module, unthrottled."""
    path = tmp_path_factory.mktemp("hubspot") / "hs.db"
    with HubSpotSandbox(path, size="tiny") as sandbox:
        yield unthrottled(sandbox)
