"""``bench.portal`` runs end to end at a tiny size and reports sane figures (never timings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import common
from bench import portal as bench_portal


@pytest.mark.slow
def test_the_portal_benchmark_browses_edits_and_times_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    payload = bench_portal.run(
        ["--size", "300", "--sessions", "4", "--seconds", "6", "--interval", "1",
         "--probes", "1", "--think", "0.1", "--edit-every", "4", "--threads", "16",
         "--workdir", str(tmp_path / "work")]
    )  # fmt: skip
    assert payload["errors"] == 0, payload["first_errors"]
    assert payload["requests"] > 0 and payload["p99_ms"] >= payload["p50_ms"] > 0
    assert {"deals", "deal", "edit"} <= set(payload["kinds"])
    assert len(payload["crm_to_page_seconds"]) == len(payload["portal_to_crm_seconds"]) == 1
    assert payload["store"] == "sqlite" and payload["portal_cpu_seconds"] > 0
    assert list((tmp_path / "results").glob("portal-*.json"))
