"""What a sync says while it runs: done/total from the total the CRM reports, the rate and the time
left; a WARNING naming what a retry waits for while the CRM is down; one line per run with its
context (source, object, run id), in text or in JSON lines."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from adapters._kit.http_retry import RetryPolicy
from cli import main
from cli.progress import sync_progress
from mirror import Mirror, PageOutcome
from mirror.types import Checkpoint, Page
from sandboxes.kit.configs import config_toml
from sandboxes.salesforce.sandbox import SalesforceSandbox


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(tmp_path_factory.mktemp("progress") / "sf.db", size="tiny") as box:
        yield box


@pytest.fixture
def config(tmp_path: Path, box: SalesforceSandbox) -> Path:
    path = tmp_path / "prm-mirror.toml"
    path.write_text(config_toml("salesforce", box, f"sqlite:///{tmp_path / 'mirror.db'}"))
    return path


def page(records: int, total: int | None) -> Page:
    rows = [{"Id": f"r{i}"} for i in range(records)]
    return Page(rows, Checkpoint("crm", "Deal", None, "backfill"), total=total)


def test_the_bar_counts_records_out_of_the_reported_total() -> None:
    out = io.StringIO()
    with sync_progress(Console(file=out, width=200, force_terminal=False)) as advance:
        advance("Opportunity", PageOutcome(), page(30, 100))
        advance("Opportunity", PageOutcome(), page(20, 100))
        advance("Account", PageOutcome(), page(7, None))
    text = out.getvalue()
    assert "50/100 records, 2 pages" in text
    (account,) = [line for line in text.splitlines() if "Account" in line]
    assert "7 records, 1 pages" in account and not re.search(r"7/\d", account)


def test_a_total_exceeded_by_what_was_read_grows_instead_of_overflowing() -> None:
    out = io.StringIO()
    with sync_progress(Console(file=out, width=200, force_terminal=False)) as advance:
        advance("Opportunity", PageOutcome(), page(8, 10))
        advance("Opportunity", PageOutcome(), page(5, 10))
    assert "13/13 records" in out.getvalue()


def test_salesforce_pages_carry_the_query_total(config: Path, box: SalesforceSandbox) -> None:
    seen: list[tuple[str, int | None, int]] = []
    with Mirror.open(config) as mirror:
        mirror.sync(
            ["Account"],
            progress=lambda name, _o, p: seen.append((name, p.total, len(p.records))),
        )
    totals = {total for _name, total, _n in seen}
    assert totals == {box.count("Account")}
    assert sum(n for *_x, n in seen) == box.count("Account")


def test_a_retry_says_what_failed_and_how_long_it_waits(caplog: pytest.LogCaptureFixture) -> None:
    waited: list[float] = []
    policy = RetryPolicy(max_retries=6, backoff_base=0.5)
    with caplog.at_level(logging.WARNING, logger="prm_mirror.retry"):
        seconds = policy.pause(
            waited.append, 1, 3.0, what="Dataverse failed while reading account", cause="HTTP 503"
        )
    (record,) = caplog.records
    assert waited == [seconds] and seconds >= 3.0
    assert record.getMessage() == (
        f"Dataverse failed while reading account (HTTP 503); retry 2 of 6 in {seconds:.1f} s"
    )


def test_a_sync_against_a_failing_crm_says_it_is_retrying(
    config: Path, box: SalesforceSandbox
) -> None:
    box.fail_next(2, path_contains="/query")
    try:
        result = CliRunner().invoke(main, ["-c", str(config), "sync", "--object", "Account"])
    finally:
        box.clear_faults()
    assert result.exit_code == 0, result.output
    retries = [line for line in result.output.splitlines() if "prm_mirror.retry" in line]
    assert len(retries) == 2, result.output
    for number, line in enumerate(retries, 1):
        assert "Salesforce failed while reading Account (503 SERVER_UNAVAILABLE" in line
        assert f"retry {number} of 6 in" in line
        assert re.search(r"\[source=salesforce object=Account run_id=\d+\]$", line), line


def test_each_run_logs_one_line_with_its_context(config: Path) -> None:
    result = CliRunner().invoke(
        main, ["-c", str(config), "-v", "--log-format", "json", "sync", "--object", "Account"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    runs = [line for line in lines if line["logger"] == "prm_mirror.sync"]
    (run,) = [line for line in runs if "ok in" in line["msg"]]
    assert run["msg"].startswith("backfill of salesforce.Account ok in")
    assert (run["source"], run["object"]) == ("salesforce", "Account") and run["run_id"]


def test_without_verbose_a_good_run_logs_nothing(config: Path) -> None:
    result = CliRunner().invoke(main, ["-c", str(config), "sync", "--object", "Account"])
    assert result.exit_code == 0, result.output
    assert "prm_mirror.sync" not in result.stderr


def test_the_daemons_run_lines_name_their_job_and_worker(config: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["-c", str(config), "-v", "--log-format", "json", "daemon", "--once", "--worker-id", "w1"],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    runs = [
        line for line in lines if line["logger"] == "prm_mirror.sync" and " ok in " in line["msg"]
    ]
    assert runs and all(line["worker"] == "w1" for line in runs)
    assert all(line["job"] == f"sync:{line['source']}:{line['object']}" for line in runs)
