"""Every ```python block of the README and of docs/ runs as printed, in a directory holding the
``prm-mirror.toml`` that ``prm-mirror sandbox serve --write-config prm-mirror.toml`` writes for
the default sandbox (Salesforce, size small, seed 7). Fragments that do not claim to run are
fenced ```py instead. Each block gets a fresh sandbox and mirror, so blocks stand alone as a
reader copies them. The blocks that show the engine's main promises are checked further: what
they leave behind is what the text around them says."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandboxes.kit.configs import config_toml
from sandboxes.salesforce.sandbox import SalesforceSandbox

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def blocks() -> Iterator[Any]:
    """(document, line, code) for each runnable block, as pytest parameters."""
    for document in DOCUMENTS:
        text = document.read_text()
        for found in RUNNABLE.finditer(text):
            line = text.count("\n", 0, found.start()) + 1
            name = f"{document.relative_to(ROOT)}:{line}"
            yield pytest.param(name, found.group(1), id=name)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SalesforceSandbox]:
    """The default served sandbox and the config that mirrors it, in the working directory."""
    with SalesforceSandbox(tmp_path / "sf.db", seed=7, size="small") as box:
        (tmp_path / "prm-mirror.toml").write_text(
            config_toml("salesforce", box, "sqlite:///mirror.db")
        )
        monkeypatch.chdir(tmp_path)
        yield box


def test_the_documents_have_runnable_blocks() -> None:
    names = {param.values[0].split(":")[0] for param in blocks()}
    assert {"README.md", "docs/writeback.md", "docs/visibility.md"} <= names


@pytest.mark.parametrize(("where", "code"), list(blocks()))
def test_each_python_block_runs_as_printed(where: str, code: str, served: Any) -> None:
    exec(compile(code, where, "exec"), {"__name__": "__doc_block__"})


def test_the_readme_embedded_block_edits_an_open_deal_that_reaches_the_crm(served: Any) -> None:
    scope = run_block("README.md")
    deals, view = scope["deals"], scope["view"]
    assert deals and all(not d["IsClosed"] for d in deals)
    amounts = [d["Amount"] or 0 for d in deals]
    assert amounts == sorted(amounts, reverse=True)
    assert served.get("Opportunity", deals[0]["Id"])["StageName"] == "Negotiation/Review"
    assert {d["Id"] for d in view.select("Opportunity", limit=1000)} >= {d["Id"] for d in deals}
    assert scope["feed"].changes is not None


def test_the_writeback_block_reaches_the_crm(served: SalesforceSandbox) -> None:
    scope = run_block("docs/writeback.md")
    (result,) = scope["results"].values()
    assert (result.done, result.failed) == (4, 0) and scope["refused"] == []
    assert served.get("Opportunity", scope["deal_id"])["Amount"] == 125000
    assert served.get("OpportunityLineItem", scope["item"]["Id"]) is None


def test_the_visibility_block_shows_a_slice_and_refuses_outside_it(served: Any) -> None:
    scope = run_block("docs/visibility.md")
    amounts = [d["Amount"] for d in scope["deals"]]
    assert amounts and amounts == sorted(amounts, reverse=True)
    assert all(10_000 <= a < 500_000 for a in amounts)
    assert scope["open_deals"] >= len(amounts) and scope["why"].visible


def test_the_registration_block_submits_a_clear_registration(served: Any) -> None:
    scope = run_block("docs/registrations.md")
    receipt = scope["receipt"]
    assert (receipt.status, receipt.verdict) == ("Submitted", "clear")
    assert receipt.registration_id in {r["Id"] for r in scope["mine"]}


def run_block(document: str) -> dict[str, Any]:
    """Run the document's first runnable block and return the names it left behind."""
    code = next(p.values[1] for p in blocks() if p.values[0].startswith(document + ":"))
    scope: dict[str, Any] = {"__name__": "__doc_block__"}
    exec(compile(code, document, "exec"), scope)
    return scope
