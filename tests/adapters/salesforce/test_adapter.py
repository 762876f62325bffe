"""The Salesforce adapter against the Salesforce sandbox: the shared contract plus its own cases."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import vcr

from adapters.salesforce.adapter import SalesforceAdapter, SalesforceSettings
from adapters.salesforce.types import parse_datetime
from mirror.errors import AuthError, QuotaExceeded
from mirror.types import Checkpoint, FieldSpec, FieldType, ObjectSpec, Write, WriteOp
from sandboxes.testing.settings import top_up as named_top_up
from tests.adapters.conftest import SalesforceControls, sandbox_adapter, sandbox_settings
from tests.adapters.contract import ContractSubject, CrmAdapterContract, Replica, read_all

PAGE = 200
SUBJECT = "Account"
CASSETTES = Path(__file__).parents[2] / "cassettes"


def top_up(sandbox: Any, object_name: str, wanted: int) -> None:
    """Create records until ``object_name`` has ``wanted`` live ones."""
    named_top_up(sandbox, object_name, wanted, name_field="Name")


@pytest.fixture(scope="module")
def sandbox(salesforce_sandbox: Any) -> Any:
    top_up(salesforce_sandbox, SUBJECT, 3 * PAGE)
    return salesforce_sandbox


@pytest.fixture(scope="module")
def controls(sandbox: Any, salesforce_controls: SalesforceControls) -> SalesforceControls:
    return salesforce_controls


@pytest.fixture(scope="module")
def contract_subject(sandbox: Any, controls: SalesforceControls) -> ContractSubject:
    return ContractSubject(
        make_adapter=lambda: sandbox_adapter(sandbox),
        controls=controls,
        object_name=SUBJECT,
        new_values=lambda tag: {"Name": f"Contract {tag}"},
        changed_values=lambda tag: {"Name": f"Renamed {tag}"},
        page_size=PAGE,
    )


class TestSalesforceContract(CrmAdapterContract):
    """The shared adapter contract on the Salesforce sandbox."""


@pytest.fixture
def adapter(sandbox: Any) -> SalesforceAdapter:
    return sandbox_adapter(sandbox)


@pytest.fixture(scope="module")
def account(sandbox: Any) -> ObjectSpec:
    return sandbox_adapter(sandbox).describe(SUBJECT)


def final_checkpoint(adapter: SalesforceAdapter, spec: ObjectSpec) -> Checkpoint:
    return read_all(adapter, spec, None)[1][-1].checkpoint


# --- metadata -----------------------------------------------------------------------------


def test_sandbox_objects_describe_with_mirror_key_and_relations(adapter):
    assert {"Account", "Opportunity", "Deal_Registration__c"} <= set(adapter.list_objects())
    deals = adapter.describe("Deal_Registration__c")
    assert deals.external_id_field == "Mirror_Key__c"
    assert deals.cursor_field == "SystemModstamp"
    assert any(r.field == "Partner_Account__c" and r.target == "Account" for r in deals.relations)
    assert deals.field("Close_Date__c").type is FieldType.DATE
    assert deals.field("Amount__c").type is FieldType.FLOAT


def test_new_fields_appear_in_describe_and_reads(sandbox, adapter):
    sandbox.add_field("Lead", "Partner_Tier__c", "string", length=40)
    spec = adapter.describe("Lead")
    assert spec.field("Partner_Tier__c").type is FieldType.STRING
    replica, _ = read_all(adapter, spec, None)
    assert all("Partner_Tier__c" in record for record in replica.rows.values())


# --- Bulk API 2.0 ---------------------------------------------------------------------------


def bulk_adapter(sandbox: Any) -> SalesforceAdapter:
    return sandbox_adapter(sandbox, bulk_threshold=10, bulk_page_size=PAGE)


def test_bulk_backfill_pages_by_locator_and_hands_over_at_job_creation(sandbox, account):
    adapter = bulk_adapter(sandbox)
    replica, pages = read_all(adapter, account, None)
    assert set(replica.rows) == set(sandbox.ids(SUBJECT))
    assert len(replica.deliveries) == len(replica.rows)
    assert len(pages) >= 3 and sandbox.call_count("/jobs/query") >= 3
    assert all(p.checkpoint.state["bulk_job"] and p.checkpoint.state["locator"] for p in pages[:-1])
    last = pages[-1].checkpoint
    started = parse_datetime(pages[0].checkpoint.state["started"])
    assert last.phase == "incremental" and last.ids_at_cursor == ()
    assert parse_datetime(str(last.cursor)) == started - timedelta(seconds=1)


def test_bulk_backfill_resumes_from_a_mid_job_checkpoint(sandbox, account):
    full, pages = read_all(bulk_adapter(sandbox), account, None)
    middle = pages[1]
    resumed = Replica(account.key)
    for page in pages[:2]:
        resumed.apply(page)
    jobs_before = sandbox.call_count("/jobs/query")
    _, rest = read_all(bulk_adapter(sandbox), account, middle.checkpoint, resumed)
    assert set(resumed.rows) == set(full.rows)
    assert len(rest) == len(pages) - 2
    assert sandbox.call_count("/jobs/query") - jobs_before == len(rest), "no new job"


def test_bulk_backfill_restarts_when_its_job_is_gone(sandbox, account):
    gone = Checkpoint(
        phase="backfill",
        state={
            "bulk_job": "750Kj000000GONEAAA",
            "locator": "MjAw",
            "started": "2020-01-01T00:00:00.000Z",
            "backfill_started": "2020-01-01T00:00:00.000Z",
        },
    )
    replica, pages = read_all(bulk_adapter(sandbox), account, gone)
    assert set(replica.rows) == set(sandbox.ids(SUBJECT))
    assert pages[-1].checkpoint.state["deleted_checked"] == "2019-12-31T23:59:59.000Z"


def test_session_expiry_during_bulk_paging_is_survived(sandbox, account):
    adapter = bulk_adapter(sandbox)
    pages = adapter.read(account, None)
    replica = Replica(account.key)
    replica.apply(next(pages))
    sandbox.expire_sessions()
    for page in pages:
        replica.apply(page)
    assert set(replica.rows) == set(sandbox.ids(SUBJECT))


def test_bulk_read_ids(sandbox, account):
    batches = list(bulk_adapter(sandbox).read_ids(account))
    assert len(batches) >= 3
    assert sorted(i for batch in batches for i in batch) == sorted(sandbox.ids(SUBJECT))


# --- deletes, merges, rejects ---------------------------------------------------------------


def test_merge_comes_as_a_tombstone_pointing_at_the_master(sandbox, controls, adapter, account):
    since = final_checkpoint(adapter, account)
    master = controls.create(SUBJECT, {"Name": "Survivor"})
    loser = controls.create(SUBJECT, {"Name": "Duplicate"})
    sandbox.advance_clock(1)
    sandbox.merge(SUBJECT, master, [loser])
    replica, pages = read_all(adapter, account, since)
    merged = [t for page in pages for t in page.tombstones if t.id == loser]
    assert merged and merged[0].merged_into == master
    assert master in replica.rows and loser not in replica.rows


def test_get_deleted_runs_from_the_watermark_and_advances_it(sandbox, controls, adapter, account):
    since = final_checkpoint(adapter, account)
    victim = controls.create(SUBJECT, {"Name": "Short-lived"})
    sandbox.advance_clock(180)
    controls.delete(SUBJECT, victim)
    calls = sandbox.call_count("/deleted")
    _, pages = read_all(adapter, account, since)
    assert sandbox.call_count("/deleted") == calls + 1
    assert victim in {t.id for page in pages for t in page.tombstones}
    assert not any(page.needs_sweep for page in pages)
    checked = parse_datetime(pages[-1].checkpoint.state["deleted_checked"])
    assert checked > parse_datetime(str(since.cursor))


def test_passed_get_deleted_window_asks_for_a_sweep(sandbox, controls, adapter, account):
    since = final_checkpoint(adapter, account)
    sandbox.set_deleted_window(1)
    try:
        sandbox.advance_clock(2 * 86_400)
        controls.update(SUBJECT, sandbox.ids(SUBJECT)[0], {"Name": "Touched later"})
        _, pages = read_all(adapter, account, since)
    finally:
        sandbox.set_deleted_window(15)
    assert pages[0].needs_sweep
    assert not any(page.needs_sweep for page in pages[1:])


def test_a_corrupted_value_becomes_a_reject_and_the_read_goes_on(sandbox, adapter):
    spec = adapter.describe("Opportunity")
    victim = sandbox.ids("Opportunity")[0]
    sandbox.corrupt("Opportunity", victim, "CloseDate", "not-a-date")
    for reader in (adapter, sandbox_adapter(sandbox, bulk_threshold=1)):
        replica = Replica(spec.key)
        rejects = []
        for page in reader.read(spec, None):
            replica.apply(page)
            rejects += page.rejects
        assert [(r.record_id, r.reason) for r in rejects] == [
            (victim, "field CloseDate: 'not-a-date' is not a date")
        ]
        assert set(replica.rows) == set(sandbox.ids("Opportunity")) - {victim}


# --- failures -------------------------------------------------------------------------------


def test_request_limit_is_quota_exceeded_without_hammering(sandbox, account):
    adapter = sandbox_adapter(sandbox)
    adapter.check()
    before = adapter.api_calls()
    sandbox.set_daily_limit(sandbox.api_usage)
    try:
        with pytest.raises(QuotaExceeded, match="REQUEST_LIMIT_EXCEEDED"):
            list(adapter.read(account, None))
    finally:
        sandbox.set_daily_limit(10_000_000)
    assert adapter.api_calls() == before + 1


def test_an_expired_query_locator_requeries_from_the_checkpoint(sandbox, adapter, account):
    pages = adapter.read(account, None)
    replica = Replica(account.key)
    replica.apply(next(pages))
    sandbox.advance_clock(16 * 60)
    requeries = sandbox.call_count("/queryAll")
    for page in pages:
        replica.apply(page)
    assert set(replica.rows) == set(sandbox.ids(SUBJECT))
    assert sandbox.call_count("/queryAll") == requeries + 1


def test_a_dropped_answer_to_a_read_is_retried(sandbox, adapter, account):
    sandbox.drop_next_response(1, path_contains="/query")
    replica, _ = read_all(adapter, account, None)
    assert set(replica.rows) == set(sandbox.ids(SUBJECT))


def test_client_credentials_login_renews_mid_pagination(sandbox, account):
    adapter = SalesforceAdapter(
        sandbox_settings(
            sandbox,
            auth="client_credentials",
            username=None,
            password=None,
            security_token=None,
            consumer_key=sandbox.consumer_key,
            consumer_secret=sandbox.consumer_secret,
        )
    )
    pages = adapter.read(account, None)
    replica = Replica(account.key)
    replica.apply(next(pages))
    sandbox.expire_sessions()
    for page in pages:
        replica.apply(page)
    assert set(replica.rows) == set(sandbox.ids(SUBJECT))


def test_a_fixed_session_works_until_it_expires(sandbox, account):
    adapter = SalesforceAdapter(
        SalesforceSettings(
            auth="session",
            session_id=sandbox.issue_session(),
            instance_url=sandbox.base_url,
            page_size=PAGE,
            backoff_base=0.01,
        )
    )
    assert adapter.list_objects()
    sandbox.expire_sessions()
    with pytest.raises(AuthError, match="session_id"):
        adapter.describe(SUBJECT)


def test_a_wrong_password_is_an_auth_error_naming_the_settings(sandbox):
    adapter = sandbox_adapter(sandbox, password="wrong-password-value")
    with pytest.raises(AuthError) as caught:
        adapter.check()
    message = str(caught.value)
    assert "INVALID_LOGIN" in message and "salesforce.password" in message
    assert "wrong-password-value" not in message and sandbox.security_token not in message


def test_every_request_is_counted(sandbox, account):
    adapter = sandbox_adapter(sandbox)
    before = sandbox.call_count()
    read_all(adapter, account, None)
    assert adapter.api_calls() == sandbox.call_count() - before


# --- writes ---------------------------------------------------------------------------------


def test_locked_rows_are_retried_then_reported_retryable(sandbox, controls, adapter, account):
    target = controls.create(SUBJECT, {"Name": "Locked"})
    sandbox.lock_rows([target])
    try:
        [result] = adapter.write(
            account, [Write(WriteOp.UPDATE, SUBJECT, {"Name": "Nope"}, record_id=target)]
        )
    finally:
        sandbox.unlock_rows()
    assert not result.ok and result.retryable and result.error_code == "UNABLE_TO_LOCK_ROW"
    [retried] = adapter.write(
        account, [Write(WriteOp.UPDATE, SUBJECT, {"Name": "Now"}, record_id=target)]
    )
    assert retried.ok and sandbox.get(SUBJECT, target)["Name"] == "Now"


def test_an_upsert_whose_answer_was_lost_is_looked_up_not_written_again(sandbox, adapter, account):
    before = sandbox.count(SUBJECT)
    sandbox.drop_next_response(1, path_contains="/composite/sobjects/Account/Mirror_Key__c")
    write = Write(WriteOp.CREATE, SUBJECT, {"Name": "Dropped"}, idempotency_key="drop-1")
    [lost] = adapter.write(account, [write])
    assert not lost.ok and lost.retryable and lost.error_code == "OUTCOME_UNKNOWN"
    assert sandbox.count(SUBJECT) == before + 1
    [made] = [i for i in sandbox.ids(SUBJECT) if sandbox.get(SUBJECT, i)["Name"] == "Dropped"]
    sandbox.update(SUBJECT, made, {"Name": "Renamed in Salesforce"})
    [again] = adapter.write(account, [replace(write, in_doubt=True)])
    assert again.ok and again.record_id == made and not again.created
    assert sandbox.get(SUBJECT, made)["Name"] == "Renamed in Salesforce"
    assert sandbox.count(SUBJECT) == before + 1


def test_a_dropped_answer_to_a_plain_create_is_not_repeated(sandbox, adapter):
    products = adapter.describe("Product2")
    assert products.external_id_field is None
    before = sandbox.count("Product2")
    sandbox.drop_next_response(1, path_contains="/composite/sobjects")
    [result] = adapter.write(products, [Write(WriteOp.CREATE, "Product2", {"Name": "Widget"})])
    assert not result.ok and result.error_code == "OUTCOME_UNKNOWN" and not result.retryable
    assert sandbox.count("Product2") == before + 1


def test_a_quota_hit_midway_keeps_the_applied_results(sandbox, account):
    adapter = sandbox_adapter(sandbox)
    adapter.check()
    writes = [
        Write(WriteOp.CREATE, SUBJECT, {"Name": f"Bulk {n}"}, idempotency_key=f"quota-{n}")
        for n in range(250)
    ]
    sandbox.set_daily_limit(sandbox.api_usage + 1)
    try:
        results = adapter.write(account, writes)
    finally:
        sandbox.set_daily_limit(10_000_000)
    assert all(r.ok and r.record_id for r in results[:200])
    assert all(
        not r.ok
        and r.retryable
        and r.error_code == "NOT_ATTEMPTED"
        and "API limit" in str(r.message)
        for r in results[200:]
    )
    with pytest.raises(QuotaExceeded):
        sandbox.set_daily_limit(sandbox.api_usage)
        try:
            adapter.write(account, writes[200:])
        finally:
            sandbox.set_daily_limit(10_000_000)


def test_write_reports_new_versions(sandbox, adapter, account):
    [created] = adapter.write(
        account,
        [Write(WriteOp.CREATE, SUBJECT, {"Name": "Versioned"}, idempotency_key="version-1")],
    )
    stored = sandbox.get(SUBJECT, created.record_id)
    assert parse_datetime(str(created.version)) == stored["SystemModstamp"]


# --- the pinned request sequence --------------------------------------------------------------

CASSETTE_CURSOR = "2031-01-01T00:00:00.000Z"
CASSETTE_SPEC = ObjectSpec(
    source="salesforce",
    name="Account",
    key="Id",
    cursor_field="SystemModstamp",
    fields=(
        FieldSpec("Id", FieldType.ID),
        FieldSpec("Name", FieldType.STRING),
        FieldSpec("IsDeleted", FieldType.BOOLEAN),
        FieldSpec("MasterRecordId", FieldType.REFERENCE, references=("Account",)),
        FieldSpec("SystemModstamp", FieldType.DATETIME),
    ),
)


def _scrub_request(request: Any) -> Any:
    if request.body and b"<n1:password>" in request.body:
        request.body = b"<scrubbed SOAP login>"
    return request


recorder = vcr.VCR(
    cassette_library_dir=str(CASSETTES),
    match_on=["method", "path", "query"],
    filter_headers=["authorization", "x-sfdc-session", "cookie", "set-cookie"],
    filter_post_data_parameters=["password", "client_secret", "assertion", "refresh_token"],
    before_record_request=_scrub_request,
    decode_compressed_response=True,
)


def _record_changes(tmp_path: Path) -> tuple[Any, str]:
    from sandboxes.salesforce.sandbox import SalesforceSandbox

    sandbox = SalesforceSandbox(tmp_path / "cassette.db", size="tiny").start()
    sandbox.set_clock(datetime(2031, 1, 1, 0, 5, tzinfo=UTC))
    ids = sandbox.ids("Account")
    sandbox.update("Account", ids[0], {"Name": "Changed for the cassette"})
    sandbox.advance_clock(1)
    sandbox.delete("Account", ids[1])
    return sandbox, sandbox.issue_session()


def test_incremental_read_request_sequence_is_pinned(tmp_path):
    cassette_path = CASSETTES / "salesforce_incremental_read.yaml"
    sandbox = None
    base_url, token = "http://127.0.0.1:9", "00DKj0000000001!replayed"
    if not cassette_path.exists():
        sandbox, token = _record_changes(tmp_path)
        base_url = sandbox.base_url
    adapter = SalesforceAdapter(
        SalesforceSettings(
            auth="session", session_id=token, instance_url=base_url, page_size=PAGE, max_retries=0
        )
    )
    try:
        with recorder.use_cassette(cassette_path.name, record_mode="once") as cassette:
            _, pages = read_all(
                adapter, CASSETTE_SPEC, Checkpoint(CASSETTE_CURSOR, phase="incremental")
            )
            assert sandbox is not None or cassette.all_played
    finally:
        if sandbox is not None:
            sandbox.stop()
    sequence = [(r.method, r.path) for r in cassette.requests]
    assert sequence == [
        ("GET", "/services/data/v59.0/sobjects"),
        ("GET", "/services/data/v59.0/queryAll/"),
        ("GET", "/services/data/v59.0/sobjects/Account/deleted/"),
    ]
    assert dict(cassette.requests[1].query)["q"].endswith("ORDER BY SystemModstamp, Id")
    assert len(pages) == 1
    assert {t.id for t in pages[0].tombstones} and len(pages[0].records) == 1
    assert "Authorization" not in cassette_path.read_text()


def test_a_record_changed_mid_backfill_does_not_move_the_resume_point_past_unread_ones(
    tmp_path: Path,
) -> None:
    from sandboxes.salesforce.sandbox import SalesforceSandbox

    with SalesforceSandbox(tmp_path / "sf.db", size="small") as box:
        adapter = sandbox_adapter(box)
        spec = adapter.describe("Opportunity")
        order = [[r["Id"] for r in page.records] for page in adapter.read(spec, None)]
        assert len(order) >= 3
        pages = adapter.read(spec, None)
        first = next(pages)
        # the locator's snapshot keeps the changed record in its old place, with its new stamp
        box.advance_clock(60)
        box.update("Opportunity", order[1][0], {"NextStep": "changed mid-backfill"})
        second = next(pages)
        assert order[1][0] in {r["Id"] for r in second.records}
        resumed = list(adapter.read(spec, second.checkpoint))
        seen = {r["Id"] for page in (first, second, *resumed) for r in page.records}
        assert seen == {i for page in order for i in page}
