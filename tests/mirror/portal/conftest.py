"""Fixtures of the portal tests: a small Salesforce sandbox per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxes.salesforce.sandbox import SalesforceSandbox


@pytest.fixture
def box(tmp_path: Path) -> Iterator[SalesforceSandbox]:
    """A small seeded Salesforce sandbox of this test's own."""
    with SalesforceSandbox(tmp_path / "sf.db", size="small") as sandbox:
        yield sandbox
