"""``bench.peers`` runs prm-mirror and dlt at a tiny size and reports sane figures (never
timings), and its correctness tally counts what each side's tables get wrong."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bench import common, peers
from bench.peers_steps import PeerUnavailable, dlt_python

SIZE = 300


def test_tally_counts_deleted_missing_and_old_rows() -> None:
    truth: dict[str, Any] = {
        "live": {"Opportunity": {"006A", "006B", "006C"}},
        "stamps": {"006B": "2026-12-07 10:02:00"},
    }
    held = {
        "Opportunity": [
            ["006A", False, "2026-12-01 00:00:00"],
            ["006B", False, "2026-12-07T10:00:00.000Z"],
            ["006D", True, "2026-12-07 10:02:00"],
            ["006E", False, "2026-12-01 00:00:00"],
        ]
    }
    tallied = peers.tally(held, truth)
    assert tallied["objects"]["Opportunity"] == {
        "rows": 4, "live": 3, "stale_rows": 2, "flagged": 1, "unflagged_stale": 1,
        "missing": 1, "old_values": 1,
    }  # fmt: skip
    assert tallied["exact_when_filtered"] is False
    held["Opportunity"] = [
        ["006A", False, "2026-12-01 00:00:00"],
        ["006B", False, "2026-12-07 10:02:00.000000"],
        ["006C", False, "2026-12-01 00:00:00"],
        ["006D", True, "2026-12-07 10:02:00"],
    ]
    assert peers.tally(held, truth)["exact_when_filtered"] is True


@pytest.mark.slow
def test_the_peer_benchmark_compares_both_sides_and_finds_dlts_stale_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = os.environ.get("PRM_BENCH_DLT_PYTHON")
    try:
        python = Path(given) if given else dlt_python()
    except PeerUnavailable as error:
        pytest.skip(f"dlt's virtual environment cannot be made here: {error}")
    monkeypatch.setattr(common, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    payload = peers.run(
        ["--size", str(SIZE), "--rounds", "2", "--changes", "15", "--deletes", "4",
         "--dlt-python", str(python), "--workdir", str(tmp_path / "work")]
    )  # fmt: skip

    assert len(payload["rounds"]) == 2
    first = payload["rounds"][0]
    for side in ("prm_mirror", "dlt"):
        for step in (first[side], payload["incremental"][side]):
            assert step["api_calls"] > 0 and step["wall_s"] > 0
            assert step["tree_peak_rss_mb"] > 0
        # every live record read by both: deleted ones in the recycle bin come too
        assert set(first[side]["rows"]) == set(peers.OBJECTS)
        for name, count in payload["counts"].items():
            assert first[side]["rows"][name] >= count
    assert first["dlt"]["rows"] == first["prm_mirror"]["rows"]
    # the edits and the deletes reach both incremental runs
    assert payload["incremental"]["changes"] == {"Opportunity": 15, "Contact": 15}
    for side in ("prm_mirror", "dlt"):
        assert payload["incremental"][side]["rows"]["Opportunity"] >= 15 + 4

    mirror, dlt = payload["correctness"]["prm_mirror"], payload["correctness"]["dlt"]
    assert mirror["exact_when_filtered"] is True
    assert mirror["total"]["missing"] == mirror["total"]["old_values"] == 0
    # dlt's merge keeps a row for every record deleted since its backfill (and before it)
    assert dlt["objects"]["Opportunity"]["stale_rows"] >= 4
    assert dlt["objects"]["Contact"]["stale_rows"] >= 4
    assert dlt["total"]["missing"] == dlt["total"]["old_values"] == 0

    summary = payload["summary"]
    assert summary["wall_ratio"] > 0 and summary["rss_ratio"] > 0
    assert len(summary["round_wall_ratios"]) == 2
    assert all(isinstance(met, bool) for met in summary["goals"].values())
    assert list((tmp_path / "results").glob("peers-*.json"))
