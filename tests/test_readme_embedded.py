"""The README's "Embedded in a portal app" block runs as printed against the sandbox that
``prm-mirror sandbox serve`` serves by default (size small, seed 7): its ids belong together
there, the partner's session finds open deals, and its edit reaches the CRM."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sandboxes.kit.configs import config_toml
from sandboxes.salesforce.sandbox import SalesforceSandbox

ROOT = Path(__file__).resolve().parent.parent


def embedded_block() -> str:
    """The Python block under the README's "Embedded in a portal app" heading."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Embedded in a portal app", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "the section has no python block"
    return found.group(1)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The default served sandbox, with ``prm-mirror.toml`` mirroring it in the working
    directory (as ``sandbox serve --write-config prm-mirror.toml`` leaves it)."""
    with SalesforceSandbox(tmp_path / "sf.db", seed=7, size="small") as box:
        mirror_db = f"sqlite:///{tmp_path / 'mirror.db'}"
        (tmp_path / "prm-mirror.toml").write_text(config_toml("salesforce", box, mirror_db))
        monkeypatch.chdir(tmp_path)
        yield box


def test_the_embedded_block_runs_as_printed_and_its_edit_reaches_the_crm(served) -> None:
    scope: dict[str, Any] = {}
    exec(compile(embedded_block(), "README.md", "exec"), scope)
    deals, view = scope["deals"], scope["view"]
    assert deals and all(not d["IsClosed"] for d in deals)
    amounts = [d["Amount"] or 0 for d in deals]
    assert amounts == sorted(amounts, reverse=True)
    assert served.get("Opportunity", deals[0]["Id"])["StageName"] == "Negotiation/Review"
    assert {d["Id"] for d in view.select("Opportunity", limit=1000)} >= {d["Id"] for d in deals}
    assert scope["feed"].changes is not None
