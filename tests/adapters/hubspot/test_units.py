"""Unit checks of the HubSpot adapter's pure parts: the rate governor, the error table, value
conversion, the keyset cursor and the settings."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from adapters.hubspot.cursor import Keyset, split_full_page
from adapters.hubspot.errors import ErrorAnswer, Outcome, mirror_error, outcome
from adapters.hubspot.http import RateGovernor
from adapters.hubspot.overwrites import overwritten
from adapters.hubspot.settings import HubSpotSettings
from adapters.hubspot.types import RecordConverter, object_spec, to_wire
from mirror.errors import AuthError, CrmError, QuotaExceeded, TransientError
from mirror.types import Checkpoint, FieldType


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_governor_waits_for_the_burst_window_to_roll() -> None:
    time = FakeTime()
    governor = RateGovernor(reserve=1, sleep=time.sleep, clock=time.clock)
    governor.observe(
        {"X-HubSpot-RateLimit-Max": "4", "X-HubSpot-RateLimit-Interval-Milliseconds": "1000"}, False
    )
    for _ in range(3):
        governor.before(search=False)
    assert time.slept == []
    governor.before(search=False)
    assert time.slept == [pytest.approx(1.0)]


def test_searches_are_spaced_and_do_not_spend_the_burst_budget() -> None:
    time = FakeTime()
    governor = RateGovernor(search_per_second=4, sleep=time.sleep, clock=time.clock)
    for _ in range(3):
        governor.before(search=True)
    assert time.slept == [pytest.approx(0.25), pytest.approx(0.25)]
    assert len(governor._sent) == 0


def test_the_portals_remaining_budget_counts_other_apps_requests() -> None:
    time = FakeTime()
    governor = RateGovernor(reserve=0, sleep=time.sleep, clock=time.clock)
    headers = {"X-HubSpot-RateLimit-Max": "10", "X-HubSpot-RateLimit-Remaining": "1",
               "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}  # fmt: skip
    governor.observe(headers, False)
    governor.before(search=False)
    assert time.slept == []
    governor.before(search=False)
    assert time.slept == [pytest.approx(10.0)]


def test_429_waits_follow_retry_after_then_the_interval_and_never_the_daily_limit() -> None:
    governor = RateGovernor()
    assert governor.wait_after_429({"Retry-After": "3"}, b"{}", False) == 3.0
    interval = {"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}
    assert governor.wait_after_429(interval, b'{"policyName":"TEN_SECONDLY_ROLLING"}', False) == 10
    assert governor.wait_after_429({}, b"{}", True) == 1.0
    assert governor.wait_after_429({}, b'{"policyName":"DAILY"}', False) is None


@pytest.mark.parametrize(
    ("status", "body", "expected", "error"),
    [
        (401, {"category": "INVALID_AUTHENTICATION"}, Outcome.AUTH, AuthError),
        (403, {"category": "MISSING_SCOPES"}, Outcome.AUTH, AuthError),
        (429, {"policyName": "DAILY"}, Outcome.QUOTA, QuotaExceeded),
        (429, {"policyName": "TEN_SECONDLY_ROLLING"}, Outcome.RETRY, TransientError),
        (502, {}, Outcome.RETRY, TransientError),
        (409, {"category": "CONFLICT"}, Outcome.FAIL, CrmError),
        (400, {"category": "VALIDATION_ERROR"}, Outcome.FAIL, CrmError),
    ],
)
def test_the_error_table(status, body, expected, error) -> None:
    answer = ErrorAnswer(status, body.get("category"), "said", body.get("policyName"), body)
    assert outcome(answer) is expected
    assert isinstance(mirror_error(answer, "reading deals"), error)


PROPERTIES = [
    {"name": "hs_object_id", "type": "number", "fieldType": "number"},
    {"name": "hs_lastmodifieddate", "type": "datetime", "fieldType": "date"},
    {"name": "amount", "type": "number", "fieldType": "number"},
    {"name": "hs_is_closed", "type": "bool", "fieldType": "booleancheckbox", "calculated": True},
    {"name": "close_date", "type": "date", "fieldType": "date"},
    {"name": "notes", "type": "string", "fieldType": "textarea"},
    {"name": "associatedcompanyid", "type": "number", "fieldType": "number"},
    {"name": "prm_mirror_key", "type": "string", "fieldType": "text", "hasUniqueValue": True},
]


def test_property_types_and_string_values_convert() -> None:
    spec = object_spec("hubspot", "deals", "Deals", PROPERTIES, mirror_key="prm_mirror_key")
    assert spec.cursor_field == "hs_lastmodifieddate" and spec.external_id_field == "prm_mirror_key"
    assert spec.field("associatedcompanyid").type is FieldType.REFERENCE
    assert spec.field("notes").type is FieldType.TEXT
    assert not spec.field("hs_is_closed").updateable
    record = RecordConverter(spec).from_json({"id": "7", "properties": {
        "hs_lastmodifieddate": "1700000000000", "amount": "12.5", "hs_is_closed": "TRUE",
        "close_date": "1700006400000", "notes": "", "associatedcompanyid": "99",
    }})  # fmt: skip
    assert record["hs_lastmodifieddate"] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert (record["amount"], record["hs_is_closed"], record["notes"]) == (12.5, True, None)
    assert record["close_date"] == date(2023, 11, 15) and record["associatedcompanyid"] == "99"
    with pytest.raises(ValueError, match="field amount: 'lots' is not a number"):
        RecordConverter(spec).from_json({"id": "8", "properties": {"amount": "lots"}})


def test_values_go_out_as_hubspot_strings() -> None:
    assert to_wire(None, True) == "true" and to_wire(None, 1200.0) == "1200"
    assert to_wire(None, date(2024, 1, 31)) == "2024-01-31"
    assert to_wire(None, datetime(2024, 1, 31, 10, tzinfo=UTC)) == "2024-01-31T10:00:00.000Z"
    assert to_wire(None, None) == ""


def test_the_keyset_is_a_closed_range_with_an_id_tiebreak() -> None:
    keyset = Keyset.from_checkpoint(Checkpoint("2024-01-31T10:00:00.000Z", ("5", "9")))
    groups = keyset.advance_filters("hs_lastmodifieddate")
    assert groups[0]["filters"][0]["operator"] == "GT"
    assert [f["operator"] for f in groups[1]["filters"]] == ["EQ", "GT"]
    assert groups[1]["filters"][1] == {
        "propertyName": "hs_object_id",
        "operator": "GT",
        "value": "9",
    }
    assert Keyset().advance_filters("x") == []
    older, newest, tied = split_full_page([(3, "c"), (1, "a"), (3, "d"), (2, "b")])
    assert (older, newest, tied) == (["a", "b"], 3, False)
    assert split_full_page([(4, "x"), (4, "y")])[2] is True


def test_settings_list_every_problem_and_clamp_pages() -> None:
    problems = HubSpotSettings(host="http://example.com", search_per_second=0).problems()
    assert len(problems) == 3 and any("access_token" in p for p in problems)
    settings = HubSpotSettings(access_token="pat-x", page_size=2000)
    assert (settings.list_limit, settings.search_limit) == (100, 200)
    assert "pat-x" not in repr(settings)


def _history(*entries: tuple[str, str]) -> dict[str, list[dict[str, str]]]:
    """``hs_next_step``'s history, newest first as HubSpot lists it: (value, timestamp)."""
    return {"hs_next_step": [{"value": v, "timestamp": t} for v, t in entries]}


def test_a_change_our_write_overwrote_is_found_whatever_its_stamp() -> None:
    checked, ours = "2026-01-01T10:00:00.000Z", "2026-01-01T10:00:05.000Z"
    sent = {"hs_next_step": "portal"}
    # stamped before our write, or (applied while our batch was under way) after it
    for crm_stamp in ("2026-01-01T10:00:04.000Z", "2026-01-01T10:00:05.001Z"):
        history = _history(("crm", crm_stamp), ("portal", ours), ("base", checked))
        found = overwritten(history, sent, checked, ours, {"hs_next_step": "portal"})
        assert found is not None and found.values == {"hs_next_step": "crm"}
    # a change made after our write holds the record now: it stands
    history = _history(("later", "2026-01-01T10:00:06.000Z"), ("portal", ours))
    assert overwritten(history, sent, checked, ours, {"hs_next_step": "later"}) is None
    # our own value, and values from before the check, were overwritten by nobody
    history = _history(("portal", ours), ("base", checked), ("older", "2025-12-31T00:00:00Z"))
    assert overwritten(history, sent, checked, ours, {"hs_next_step": "portal"}) is None
