"""The Dynamics demo runs end to end on a tiny sandbox and shows what it promises."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from prm_demo.dynamics import run_demo


def test_the_demo_mirrors_a_sandbox_and_shows_a_partner_feed(tmp_path: Path) -> None:
    console = Console(record=True, width=160)
    run_demo(console, tmp_path / "demo.db", tmp_path, "tiny", 7)
    text = console.export_text()
    assert "the partner's feed" in text and "refused" in text
    assert "moved to partner" in text and (tmp_path / "demo.db").exists()
