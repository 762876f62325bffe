"""Unit tests of the Salesforce adapter's pure parts: metadata, values, cursors, errors, retries."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, time
from itertools import pairwise
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from requests.adapters import BaseAdapter

from adapters._kit.http_retry import RequestLog, RetryPolicy, parse_retry_after
from adapters._kit.writes import runs
from adapters.salesforce.adapter import SalesforceAdapter, SalesforceSettings
from adapters.salesforce.client import text_lines
from adapters.salesforce.cursor import resume, where
from adapters.salesforce.errors import ErrorAnswer, Outcome, mirror_error, outcome
from adapters.salesforce.read import PageBuilder, _deleted_check, select_soql
from adapters.salesforce.settings import url_kind
from adapters.salesforce.types import (
    RecordConverter,
    format_cursor,
    mirrorable_objects,
    object_spec,
    parse_datetime,
    soql_datetime,
    to_18,
    to_wire,
)
from adapters.salesforce.write import BATCH_SIZE, entry_result
from mirror.errors import AuthError, ConfigError, CrmError, QuotaExceeded, TransientError
from mirror.types import Checkpoint, FieldType, Write, WriteOp

SPECS = Path(__file__).parents[3] / "sandboxes" / "salesforce" / "specs"


def recorded(name: str) -> dict:
    return json.loads((SPECS / f"describe-{name}.json").read_text())


@pytest.fixture(scope="module")
def account():
    return object_spec(recorded("Account"))


# --- describe -> ObjectSpec ---------------------------------------------------------------


def test_account_describe_maps_keys_cursor_and_types(account):
    assert (account.key, account.cursor_field, account.external_id_field) == (
        "Id",
        "SystemModstamp",
        None,
    )
    assert account.partner_field is None
    types = {f.name: f.type for f in account.fields}
    assert types["Id"] is FieldType.ID
    assert types["ParentId"] is FieldType.REFERENCE
    assert types["Name"] is FieldType.STRING
    assert types["Description"] is FieldType.TEXT
    assert types["AnnualRevenue"] is FieldType.FLOAT
    assert types["NumberOfEmployees"] is FieldType.INTEGER
    assert types["IsDeleted"] is FieldType.BOOLEAN
    assert types["SystemModstamp"] is FieldType.DATETIME
    assert types["Type"] is FieldType.STRING  # picklist


def test_compound_fields_are_skipped_but_their_components_kept(account):
    assert not account.has_field("BillingAddress")
    assert account.has_field("BillingCity")
    assert account.has_field("BillingStreet")


def test_reference_fields_become_relations_with_polymorphic_targets_kept(account):
    parent = account.field("ParentId")
    assert parent.references == ("Account",) and parent.relationship_name == "Parent"
    assert any(
        r.field == "ParentId" and r.target == "Account" and r.name == "Parent"
        for r in account.relations
    )
    lead = object_spec(recorded("Lead"))
    owner_targets = {r.target for r in lead.relations if r.field == "OwnerId"}
    assert owner_targets == {"Group", "User"}


def test_field_attributes_are_carried(account):
    name = account.field("Name")
    assert (name.nullable, name.createable, name.updateable, name.length) == (
        False,
        True,
        True,
        255,
    )
    assert name.label == "Account Name" and name.crm_type == "string"


def test_cursor_falls_back_and_external_id_is_found():
    describe = recorded("Account")
    describe["fields"] = [f for f in describe["fields"] if f["name"] != "SystemModstamp"]
    describe["fields"].append(
        {
            "name": "Mirror_Key__c",
            "type": "string",
            "externalId": True,
            "unique": True,
            "length": 80,
        }
    )
    spec = object_spec(describe)
    assert spec.cursor_field == "LastModifiedDate"
    assert spec.external_id_field == "Mirror_Key__c"
    assert spec.field("Mirror_Key__c").external_id


def test_object_without_any_cursor_is_refused():
    with pytest.raises(ValueError, match="SystemModstamp"):
        object_spec(recorded("Custom__c"))


def test_base64_fields_are_skipped():
    describe = {
        "name": "Attachment",
        "fields": [
            {"name": "Id", "type": "id"},
            {"name": "Body", "type": "base64"},
            {"name": "SystemModstamp", "type": "datetime"},
        ],
    }
    assert object_spec(describe).field_names == ("Id", "SystemModstamp")


def test_global_describe_lists_queryable_objects():
    names = mirrorable_objects(recorded("Global"))
    assert "Account" in names and "Opportunity" in names
    assert all(isinstance(n, str) for n in names)


# --- ids and values -----------------------------------------------------------------------


def test_fifteen_char_ids_become_eighteen():
    assert to_18("001D000000IRFma") == "001D000000IRFmaIAH"
    assert to_18("001D000000IRFmaIAH") == "001D000000IRFmaIAH"


def test_json_rows_convert_to_python(account):
    converter = RecordConverter(account)
    record = converter.from_json(
        {
            "attributes": {"type": "Account"},
            "Id": "001D000000IRFma",
            "ParentId": None,
            "Name": "Acme",
            "NumberOfEmployees": 12.0,
            "AnnualRevenue": 10,
            "IsDeleted": False,
            "SystemModstamp": "2024-11-05T10:00:00.000+0000",
        }
    )
    assert record == {
        "Id": "001D000000IRFmaIAH",
        "ParentId": None,
        "Name": "Acme",
        "NumberOfEmployees": 12,
        "AnnualRevenue": 10.0,
        "IsDeleted": False,
        "SystemModstamp": datetime(2024, 11, 5, 10, tzinfo=UTC),
    }
    assert isinstance(record["AnnualRevenue"], float)


def test_csv_rows_convert_and_bad_values_become_rejects():
    spec = object_spec(recorded("Opportunity"))
    header = ["Id", "Name", "CloseDate", "IsWon", "Amount", "SystemModstamp"]
    rows = [
        ["006000000000001AAA", "Deal", "2024-02-29", "true", "12.5", "2024-11-05T10:00:00.000Z"],
        ["006000000000002AAA", "", "not-a-date", "false", "", "2024-11-05T10:00:00.000Z"],
    ]
    records, rejects = RecordConverter(spec).page(header, rows)
    assert records == [
        {
            "Id": "006000000000001AAA",
            "Name": "Deal",
            "CloseDate": date(2024, 2, 29),
            "IsWon": True,
            "Amount": 12.5,
            "SystemModstamp": datetime(2024, 11, 5, 10, tzinfo=UTC),
        }
    ]
    assert [r.record_id for r in rejects] == ["006000000000002AAA"]
    assert rejects[0].reason == "field CloseDate: 'not-a-date' is not a date"
    assert rejects[0].payload["CloseDate"] == "not-a-date"


def test_time_and_write_values():
    spec = object_spec(
        {
            "name": "X",
            "fields": [
                {"name": "Id", "type": "id"},
                {"name": "At", "type": "time"},
                {"name": "SystemModstamp", "type": "datetime"},
            ],
        }
    )
    assert RecordConverter(spec).from_json({"At": "10:30:00.000Z"})["At"] == time(10, 30)
    assert to_wire(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2024-01-02T03:04:05.000+0000"
    assert to_wire(date(2024, 1, 2)) == "2024-01-02"
    assert to_wire(True) is True and to_wire(None) is None


def test_cursor_formats():
    moment = datetime(2024, 11, 5, 10, 0, 0, 500_000, tzinfo=UTC)
    assert format_cursor(moment) == "2024-11-05T10:00:00.500Z"
    assert soql_datetime(moment) == "2024-11-05T10:00:00Z"


# --- cursor and pages ---------------------------------------------------------------------


def row(record_id: str, stamp: str, **extra):
    return {"attributes": {}, "Id": record_id, "SystemModstamp": stamp, **extra}


T1, T2 = "2024-11-05T10:00:00.000+0000", "2024-11-05T10:00:01.000+0000"


FENCE = datetime(2024, 11, 5, 10, 0, 5, tzinfo=UTC)


def test_cursor_carries_ids_at_an_unchanged_value_and_resets_when_it_moves():
    cursor = resume(None)
    cursor.began(FENCE)
    spec = object_spec(recorded("Account"))
    builder = PageBuilder(spec, RecordConverter(spec), cursor)
    builder.add(row("001000000000001AAA", T1))
    builder.add(row("001000000000002AAA", T1))
    first = builder.page(cursor.checkpoint("backfill", {})).checkpoint
    assert first.cursor == "2024-11-05T10:00:00.000Z"
    assert first.ids_at_cursor == ("001000000000001AAA", "001000000000002AAA")
    builder.add(row("001000000000003AAA", T1))
    assert cursor.checkpoint("backfill", {}).ids_at_cursor == (
        "001000000000001AAA",
        "001000000000002AAA",
        "001000000000003AAA",
    )
    builder.add(row("001000000000004AAA", T2))
    assert cursor.checkpoint("backfill", {}).ids_at_cursor == ("001000000000004AAA",)


def test_rows_at_or_after_the_fence_are_delivered_but_leave_the_checkpoint():
    cursor = resume(None)
    cursor.began(datetime(2024, 11, 5, 10, 0, 1, tzinfo=UTC))
    spec = object_spec(recorded("Account"))
    builder = PageBuilder(spec, RecordConverter(spec), cursor)
    builder.add(row("001000000000001AAA", T1))
    builder.add(row("001000000000009AAA", T2))  # changed after the snapshot began
    builder.add(row("001000000000002AAA", T1))
    page = builder.page(cursor.checkpoint("backfill", {}))
    assert [r["Id"] for r in page.records] == [
        "001000000000001AAA",
        "001000000000009AAA",
        "001000000000002AAA",
    ]
    assert page.checkpoint.cursor == "2024-11-05T10:00:00.000Z"
    assert page.checkpoint.ids_at_cursor == ("001000000000001AAA", "001000000000002AAA")
    assert cursor.position == parse_datetime(T2)


def test_without_a_fence_no_row_moves_the_checkpoint():
    cursor = resume(None)
    spec = object_spec(recorded("Account"))
    builder = PageBuilder(spec, RecordConverter(spec), cursor)
    builder.add(row("001000000000001AAA", T1))
    page = builder.page(cursor.checkpoint("backfill", {}))
    assert [r["Id"] for r in page.records] == ["001000000000001AAA"]
    assert page.checkpoint.cursor is None and page.checkpoint.ids_at_cursor == ()


def test_resumed_cursor_skips_only_ids_already_applied_at_the_checkpoint():
    spec = object_spec(recorded("Account"))
    since = Checkpoint(cursor="2024-11-05T10:00:00.000Z", ids_at_cursor=("001000000000001AAA",))
    cursor = resume(since)
    cursor.began(FENCE)
    assert where(cursor, "SystemModstamp") == "SystemModstamp >= 2024-11-05T10:00:00Z"
    builder = PageBuilder(spec, RecordConverter(spec), cursor)
    for record_id in ("001000000000001AAA", "001000000000002AAA"):
        builder.add(row(record_id, T1))
    page = builder.page(cursor.checkpoint("incremental", {}))
    assert [r["Id"] for r in page.records] == ["001000000000002AAA"]
    assert page.checkpoint.ids_at_cursor == ("001000000000001AAA", "001000000000002AAA")


def test_deleted_rows_become_tombstones_with_their_master():
    spec = object_spec(recorded("Account"))
    builder = PageBuilder(spec, RecordConverter(spec), resume(None))
    builder.add(row("001000000000001AAA", T1, IsDeleted=True, MasterRecordId="001000000000009"))
    builder.add(row("001000000000002AAA", T1, IsDeleted=True, MasterRecordId=None))
    page = builder.page(Checkpoint())
    assert page.records == []
    assert [(t.id, t.merged_into) for t in page.tombstones] == [
        ("001000000000001AAA", to_18("001000000000009")),
        ("001000000000002AAA", None),
    ]


def test_deleted_window_sets_sweep_and_watermark():
    start = datetime(2024, 11, 1, tzinfo=UTC)
    check = _deleted_check(
        {
            "deletedRecords": [{"id": "001000000000001", "deletedDate": T1}],
            "earliestDateAvailable": "2024-11-02T00:00:00.000+0000",
            "latestDateCovered": "2024-11-06T00:00:00.000+0000",
        },
        start,
    )
    assert check.needs_sweep
    assert check.checked_until == "2024-11-06T00:00:00.000Z"
    assert [t.id for t in check.tombstones] == [to_18("001000000000001")]
    covered = _deleted_check(
        {
            "deletedRecords": [],
            "earliestDateAvailable": "2024-10-01T00:00:00.000+0000",
            "latestDateCovered": "2024-11-06T00:00:00.000+0000",
        },
        start,
    )
    assert not covered.needs_sweep


def test_select_orders_by_cursor_then_id():
    spec = object_spec(
        recorded("Custom__c")
        | {"fields": [{"name": "Id", "type": "id"}, {"name": "SystemModstamp", "type": "datetime"}]}
    )
    assert select_soql(spec, "SystemModstamp >= 2024-01-01T00:00:00Z") == (
        "SELECT Id, SystemModstamp FROM Custom__c WHERE SystemModstamp >= "
        "2024-01-01T00:00:00Z ORDER BY SystemModstamp, Id"
    )


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, "INVALID_SESSION_ID", Outcome.RENEW_SESSION),
        (403, "REQUEST_LIMIT_EXCEEDED", Outcome.QUOTA),
        (403, "INSUFFICIENT_ACCESS", Outcome.AUTH),
        (400, "UNABLE_TO_LOCK_ROW", Outcome.RETRY),
        (503, "SERVER_UNAVAILABLE", Outcome.RETRY),
        (502, None, Outcome.RETRY),
        (500, "UNKNOWN_EXCEPTION", Outcome.RETRY),
        (400, "MALFORMED_QUERY", Outcome.FAIL),
        (400, "INVALID_FIELD", Outcome.FAIL),
        (400, "INVALID_QUERY_LOCATOR", Outcome.LOCATOR_EXPIRED),
        (404, "NOT_FOUND", Outcome.FAIL),
    ],
)
def test_error_table(status, code, expected):
    assert outcome(ErrorAnswer(status, code, "m")) is expected


def test_errors_map_to_the_mirror_tree_and_quote_salesforce():
    quota = mirror_error(
        ErrorAnswer(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
        "reading Account",
        retry_after=5,
    )
    assert isinstance(quota, QuotaExceeded) and quota.retry_after == 5
    assert "REQUEST_LIMIT_EXCEEDED" in str(quota)
    bad = mirror_error(ErrorAnswer(400, "INVALID_FIELD", "No such column 'Idd'"), "reading")
    assert isinstance(bad, CrmError) and bad.code == "INVALID_FIELD" and bad.status == 400
    assert isinstance(mirror_error(ErrorAnswer(503, None, ""), "x"), TransientError)
    assert isinstance(mirror_error(ErrorAnswer(403, "INSUFFICIENT_ACCESS", ""), "x"), AuthError)


def test_collection_entries_map_to_results():
    ok = entry_result({"id": "001000000000001", "success": True, "errors": [], "created": False})
    assert ok.ok and ok.record_id == to_18("001000000000001") and not ok.created
    locked = entry_result(
        {
            "success": False,
            "errors": [
                {"statusCode": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access"}
            ],
        }
    )
    assert not locked.ok and locked.retryable and locked.error_code == "UNABLE_TO_LOCK_ROW"
    invalid = entry_result(
        {
            "success": False,
            "errors": [
                {"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "Amount too big"}
            ],
        }
    )
    assert not invalid.retryable and invalid.message == "Amount too big"


def test_writes_are_batched_in_runs_of_one_op_up_to_200():
    writes = (
        [Write(WriteOp.CREATE, "Account", {})] * 250
        + [Write(WriteOp.UPDATE, "Account", {}, record_id="x")]
        + [Write(WriteOp.CREATE, "Account", {})]
    )
    sizes = [(len(batch), batch[0].write.op) for batch in runs(writes, BATCH_SIZE)]
    assert sizes == [
        (200, WriteOp.CREATE),
        (50, WriteOp.CREATE),
        (1, WriteOp.UPDATE),
        (1, WriteOp.CREATE),
    ]


# --- retries, settings, transport ---------------------------------------------------------


def test_backoff_grows_caps_and_honours_retry_after(monkeypatch):
    monkeypatch.setattr("random.uniform", lambda low, high: high)
    policy = RetryPolicy(max_retries=3, backoff_base=0.5, backoff_max=3.0)
    assert [policy.delay(n) for n in range(4)] == [0.5, 1.0, 2.0, 3.0]
    assert policy.delay(0, retry_after=2.5) == 2.5
    assert policy.gives_up(3) and not policy.gives_up(2)
    assert policy.gives_up(0, retry_after=3600)


def test_retry_after_parsing():
    now = datetime(2024, 11, 5, 10, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Tue, 05 Nov 2024 10:00:30 GMT", now) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_settings_report_every_problem_and_hide_secrets():
    settings = SalesforceSettings(
        instance_url="http://crm.example.com", auth="password", password="hunter2", page_size=10
    )
    problems = settings.problems()
    assert any("username" in p for p in problems)
    assert any("instance_url must be https" in p for p in problems)
    assert any("page_size" in p for p in problems)
    foreign = SalesforceSettings(login_url="https://login.example.com", username="u", password="p")
    assert any("login_url" in p for p in foreign.problems())
    assert "hunter2" not in repr(settings)
    with pytest.raises(ConfigError):
        SalesforceAdapter(settings)


def test_client_credentials_need_a_my_domain():
    app = {"auth": "client_credentials", "consumer_key": "k", "consumer_secret": "s"}
    assert any("My Domain" in p for p in SalesforceSettings(**app).problems())
    assert SalesforceSettings(**app, domain="acme.my").problems() == []
    assert SalesforceSettings(**app, login_url="https://acme.my.salesforce.com").problems() == []
    assert SalesforceSettings(**app, domain="acme.my").login_domain() == "acme.my"


def test_only_loopback_may_use_plain_http():
    assert url_kind("http://127.0.0.1:8080") == "loopback"
    assert url_kind("http://localhost:1") == "loopback"
    assert url_kind("http://[::1]:1") == "loopback"
    assert url_kind("https://acme.my.salesforce.com") == "https"
    assert url_kind("http://10.0.0.1:80") == "refused"


class CannedAdapter(BaseAdapter):
    """A transport answering from a list of (status, headers, body) without any network."""

    def __init__(self, answers):
        super().__init__()
        self.answers = list(answers)
        self.seen: list[str] = []

    def send(self, request, **kwargs):
        self.seen.append(f"{request.method} {request.url}")
        status, headers, body = self.answers.pop(0)
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response._content = json.dumps(body).encode()
        response.url = request.url
        response.request = request
        return response

    def close(self):
        pass


def canned_adapter(answers, **settings):
    session = requests.Session()
    transport = CannedAdapter(answers)
    session.mount("https://", transport)
    adapter = SalesforceAdapter(
        SalesforceSettings(
            auth="session",
            session_id="00Dx!secret",
            instance_url="https://acme.my.salesforce.com",
            backoff_base=0.001,
            **settings,
        ),
        session=session,
    )
    adapter.connection.sleep = lambda seconds: None
    return adapter, transport


GLOBAL = {"sobjects": [{"name": "Account", "queryable": True, "replicateable": True}]}


def test_server_errors_are_retried_and_every_request_counted():
    adapter, transport = canned_adapter(
        [
            (503, {}, [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}]),
            (500, {}, [{"errorCode": "UNKNOWN_EXCEPTION", "message": "oops"}]),
            (200, {}, GLOBAL),
        ]
    )
    assert adapter.list_objects() == ["Account"]
    assert adapter.api_calls() == 3 == len(transport.seen)


def test_retries_give_up_with_a_transient_error():
    adapter, _ = canned_adapter(
        [(503, {"Retry-After": "0"}, [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}])] * 3,
        max_retries=2,
    )
    with pytest.raises(TransientError, match="SERVER_UNAVAILABLE"):
        adapter.check()
    assert adapter.api_calls() == 3


def test_retry_after_sets_the_pause():
    adapter, _ = canned_adapter(
        [
            (503, {"Retry-After": "2"}, [{"errorCode": "SERVER_UNAVAILABLE", "message": "busy"}]),
            (200, {}, GLOBAL),
        ]
    )
    pauses: list[float] = []
    adapter.connection.sleep = pauses.append
    adapter.check()
    assert len(pauses) == 1 and pauses[0] >= 2.0


def test_expired_fixed_session_is_an_auth_error_without_the_token():
    adapter, _ = canned_adapter(
        [(401, {}, [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired"}])]
    )
    with pytest.raises(AuthError) as caught:
        adapter.check()
    assert "secret" not in str(caught.value) and "session_id" in str(caught.value)


def test_quota_is_raised_at_once():
    adapter, _ = canned_adapter(
        [(403, {}, [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests"}])]
    )
    with pytest.raises(QuotaExceeded):
        adapter.check()
    assert adapter.api_calls() == 1


def test_request_log_applies_the_default_timeout():
    seen = {}

    class Recorder(CannedAdapter):
        def send(self, request, **kwargs):
            seen["timeout"] = kwargs.get("timeout")
            return super().send(request, **kwargs)

    session = requests.Session()
    session.mount("https://", Recorder([(200, {"Date": "Tue, 05 Nov 2024 10:00:00 GMT"}, {})]))
    log = RequestLog(default_timeout=12.0)
    log.install(session).get("https://example.test/")
    assert seen["timeout"] == 12.0 and log.count == 1
    assert log.last_server_date == datetime(2024, 11, 5, 10, tzinfo=UTC)


csv_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@given(
    rows=st.lists(st.lists(csv_values, min_size=2, max_size=2), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_bulk_csv_parses_the_same_however_the_download_is_cut(rows, cuts):
    # quoted as Salesforce writes Bulk results: every value, so line breaks are data
    written = io.StringIO()
    csv.writer(written, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows(rows)
    body = written.getvalue().encode("utf-8")
    edges = sorted({0, len(body), *(c for c in cuts if c < len(body))})
    chunks = [body[a:b] for a, b in pairwise(edges)]
    assert list(csv.reader(text_lines(chunks))) == rows
