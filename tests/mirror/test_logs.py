"""One logging setup for every command: lines carry their context, JSON lines parse, setting it up
twice leaves one handler, and the metrics server's per-request lines are plain and quiet."""

from __future__ import annotations

import io
import json
import logging
import urllib.request
from collections.abc import Iterator

import pytest

from mirror.logs import configure_logging, log_context
from mirror.observability import Health, Metrics, ObservabilityServer


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers, root.level = handlers, level
    logging.getLogger("werkzeug").setLevel(logging.NOTSET)


def test_text_lines_carry_the_context_they_were_logged_in(restore_root: None) -> None:
    stream = io.StringIO()
    configure_logging("text", logging.INFO, stream)
    with log_context(source="crm", object="Opportunity"), log_context(run_id=7, job=None):
        logging.getLogger("prm_mirror.sync").info("page %d applied", 3)
    logging.getLogger("prm_mirror.sync").info("outside")
    first, second = stream.getvalue().splitlines()
    assert first.endswith(
        "prm_mirror.sync: page 3 applied [source=crm object=Opportunity run_id=7]"
    )
    assert second.endswith("prm_mirror.sync: outside")


def test_json_lines_parse_and_hold_the_context_as_fields(restore_root: None) -> None:
    stream = io.StringIO()
    configure_logging("json", logging.INFO, stream)
    with log_context(source="crm", object="Account", run_id=12):
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("prm_mirror.sync").exception("run failed")
    line = json.loads(stream.getvalue())
    assert (line["level"], line["logger"], line["msg"]) == (
        "error",
        "prm_mirror.sync",
        "run failed",
    )
    assert (line["source"], line["object"], line["run_id"]) == ("crm", "Account", "12")
    assert "ValueError: boom" in line["exc"]


def test_setting_up_twice_keeps_one_handler_and_leaves_others_alone(restore_root: None) -> None:
    theirs = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(theirs)
    first, second = io.StringIO(), io.StringIO()
    configure_logging("text", logging.WARNING, first)
    configure_logging("text", logging.WARNING, second)
    logging.getLogger("prm_mirror").warning("once")
    assert theirs in logging.getLogger().handlers
    assert first.getvalue() == "" and second.getvalue().count("once") == 1


def test_below_the_chosen_level_nothing_is_written(restore_root: None) -> None:
    stream = io.StringIO()
    configure_logging("text", logging.WARNING, stream)
    logging.getLogger("prm_mirror.sync").info("a run finished")
    assert stream.getvalue() == ""


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
def test_metrics_scrapes_log_no_coloured_access_lines(restore_root: None, level: int) -> None:
    stream = io.StringIO()
    configure_logging("text", level, stream)
    server = ObservabilityServer(Metrics(), Health(), lambda: True, "127.0.0.1", 0).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics") as response:
            assert response.status == 200
    finally:
        server.stop()
    text = stream.getvalue()
    assert "\x1b[" not in text
    if level == logging.DEBUG:
        assert "prm_mirror.http: GET /metrics 200" in text
    else:
        assert "GET /metrics" not in text
