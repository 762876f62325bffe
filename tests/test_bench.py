"""The benchmarks run end to end at a tiny size and report sane figures (never timings)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import backfill, common, latency, visibility
from sandboxes.dataset.generate import Counts

SIZE = 300
PG_URL = os.environ.get("PRM_MIRROR_TEST_PG_URL")


@pytest.fixture(autouse=True)
def bench_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Cache and results under the test's own folder."""
    monkeypatch.setattr(common, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    return tmp_path


def test_parse_sizes_accepts_suffixes_and_empty() -> None:
    assert common.parse_sizes("10000, 100k,1M,2_000") == [10_000, 100_000, 1_000_000, 2_000]
    assert common.parse_sizes("") == []


def test_minimum_calls_counts_rest_pages_and_bulk_jobs() -> None:
    settings = {"page_size": 2000, "bulk_threshold": 50_000, "bulk_page_size": 50_000}
    assert backfill.minimum_calls(0, settings) == 1
    assert backfill.minimum_calls(4001, settings) == 3
    assert backfill.minimum_calls(50_000, settings) == 25
    assert backfill.minimum_calls(120_000, settings) == 1 + 2 + 3


def test_backfill_benchmark_reports_every_object(bench_dirs: Path) -> None:
    argv = ["--sizes", str(SIZE), "--changes", "20"]
    argv += ["--pg-sizes", str(SIZE), "--pg-url", PG_URL] if PG_URL else ["--pg-sizes", ""]
    payload = backfill.run(argv)

    size = payload["sizes"][0]
    counts = size["counts"]
    assert counts["Opportunity"] == SIZE
    assert size["records_total"] == sum(counts.values())
    for name, count in counts.items():
        assert size["bound"]["objects"][name]["records"] == count
        assert size["sqlite"]["objects"][name]["inserted"] == count
        assert size["sqlite"]["objects"][name]["api_calls"] >= size["minimum_calls"][name]
    for step in ("bound", "sqlite", "incremental"):
        assert size[step]["peak_rss_mb"] >= size[step]["start_rss_mb"] > 0
        assert size[step]["seconds"] > 0
    incremental = size["incremental"]["objects"]
    assert {o["kind"] for o in incremental.values()} == {"incremental"}
    assert incremental["Opportunity"]["updated"] == 20
    assert sum(o["updated"] + o["inserted"] for o in incremental.values()) == 20
    if PG_URL:
        assert size["postgresql"]["objects"]["Opportunity"]["inserted"] == SIZE

    summary = payload["summary"][0]
    assert summary["records"] == size["records_total"]
    assert summary["sqlite_rps"] > 0 and summary["bound_rps"] > 0
    assert summary["sqlite_calls"] >= summary["minimum_calls"]
    assert payload["targets"] and all(isinstance(t["met"], bool) for t in payload["targets"])
    written = json.loads(Path(payload["path"]).read_text())
    assert written["machine"]["nproc"] >= 1
    assert backfill.mirror_cache(SIZE, 7).exists()


def test_visibility_benchmark_measures_queries_and_upkeep() -> None:
    argv = ["--sizes", str(SIZE), "--queries", "30", "--scans", "3"]
    payload = visibility.run([*argv, "--changes", "10", "--rounds", "1"])

    size = payload["sizes"][0]
    queries = size["queries"]
    assert queries["partners"] == Counts.for_size(SIZE).partners
    assert queries["first_page"]["n"] == 30
    assert 0 < queries["first_page"]["p50_ms"] <= queries["first_page"]["p99_ms"]
    assert 0 < queries["page_rows"]["max"] <= 50
    assert queries["slice_sizes"]["mean"] >= queries["page_rows"]["mean"]
    assert set(queries["plain"]) == set(visibility.jobs.OPPORTUNITY_INDEXES)
    assert queries["plain"]["no index"]["n"] == 3
    assert any("mirror_access" in line for line in queries["plan"])
    assert queries["contacts_first_page"]["n"] == queries["contacts_count"]["n"] == 30
    assert queries["contact_slice_sizes"]["mean"] > 0
    # contacts are read through their account's grants, by their AccountId index
    assert any("contact" in line.lower() for line in queries["contacts_plan"])

    runs = size["upkeep"]["runs"]
    assert [r["with_access"] for r in runs] == list(visibility.ORDER)
    assert all(r["kind"] == "incremental" and r["updated"] == 10 for r in runs)
    assert all(r["hook_seconds"] > 0 for r in runs if r["with_access"])
    assert all(r["hook_seconds"] == 0 for r in runs if not r["with_access"])
    in_one = size["upkeep_one_process"]["runs"]
    assert [r["with_access"] for r in in_one] == [False, True, True, False]
    assert all(r["kind"] == "incremental" and r["updated"] == 10 for r in in_one)
    assert all(r["hook_seconds"] == 0 for r in in_one if not r["with_access"])
    assert sum(r["hook_seconds"] for r in in_one if r["with_access"]) > 0
    summary = payload["summary"][0]
    assert summary["changes"] == 10 and summary["sync_with_access_s"] > 0
    assert summary["sync_with_access_s_one_process"] > 0
    assert {t["target"] for t in payload["targets"]} >= {f"first page p50 < 5 ms ({SIZE})"}


def test_latency_benchmark_reports_both_directions_and_calls(bench_dirs: Path) -> None:
    latency.main(["--crm", "hubspot", "--rate", "5", "--seconds", "2", "--size", "40"])
    [path] = (bench_dirs / "results").glob("latency-*.json")
    result = json.loads(path.read_text())
    assert len(result["load_average"]["start"]) == 3
    [run] = result["runs"]
    assert run["crm"] == "hubspot" and run["changes"] == run["edits"] == 10
    for key in ("crm_to_mirror_s", "crm_to_feed_s", "portal_to_crm_s"):
        assert 0 < run[key]["p50"] <= run[key]["p99"] <= run[key]["max"]
    assert run["stream_calls"] > 0 and run["poll_round_calls"] > 0
    assert run["polling_calls"] == run["poll_round_calls"] * run["poll_rounds"]
    assert run["stream_calls_per_1000"] == run["stream_calls"] * 100
