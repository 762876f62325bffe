"""``bench.backfill --crm hubspot|dynamics`` runs end to end at a tiny size and reports every
object's records, read calls against the minimum and the incremental sync (never timings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import backfill, common, crm_sources

SIZE = 300
DEALS = {"hubspot": "deals", "dynamics": "opportunity"}


@pytest.fixture(autouse=True)
def bench_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Cache and results under the test's own folder."""
    monkeypatch.setattr(common, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    return tmp_path


def test_minimum_calls_at_each_crms_maxima() -> None:
    records = {"deals": 2_345, "deal_company_associations": 2_345, "products": 0}
    targets = {"deals": 1, "deal_company_associations": -1, "products": 0}
    assert crm_sources.minimum_calls("hubspot", records, targets) == {
        "deals": 24 + 1 + 3, "deal_company_associations": 24 + 3, "products": 1 + 1,
    }  # fmt: skip
    assert crm_sources.minimum_calls("dynamics", {"opportunity": 10_001}, {}) == {"opportunity": 3}


@pytest.mark.parametrize("crm", ["hubspot", "dynamics"])
def test_crm_backfill_benchmark_reports_every_object(crm: str) -> None:
    payload = backfill.run(["--crm", crm, "--sizes", str(SIZE), "--changes", "20"])
    size = payload["sizes"][0]
    bound, engine = size["bounds"][0]["objects"], size["backfills"][0]["objects"]
    assert set(bound) == set(engine) == set(size["minimum_calls"])
    assert engine[DEALS[crm]]["inserted"] == bound[DEALS[crm]]["records"] == SIZE
    for name, read in engine.items():
        assert read["inserted"] == bound[name]["records"]
        assert read["api_calls"] >= size["minimum_calls"][name]
    summary = payload["summary"][0]
    assert summary["calls_over_minimum_pct"] <= 5
    assert summary["sqlite_peak_rss_mb"] > 0
    incremental = size["incremental"]["objects"]
    assert {o["kind"] for o in incremental.values()} == {"incremental"}
    assert incremental[DEALS[crm]]["updated"] == 20
