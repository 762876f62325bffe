"""The HubSpot adapter against the HubSpot sandbox: the shared contract plus its own cases."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from adapters.hubspot.adapter import HubSpotAdapter
from adapters.hubspot.types import parse_instant
from mirror.errors import AuthError, ConfigError, QuotaExceeded
from mirror.types import Checkpoint, FieldType, ObjectSpec, Write, WriteOp
from sandboxes.hubspot.sandbox import HubSpotSandbox
from tests.adapters.contract import ContractSubject, CrmAdapterContract, Replica, read_all
from tests.adapters.hubspot.fixtures import HubSpotControls, hubspot_adapter, hubspot_sandbox

__all__ = ["hubspot_sandbox"]

PAGE = 50
BURST_PAGE = 10
SUBJECT = "companies"


@pytest.fixture(scope="module")
def sandbox(hubspot_sandbox: HubSpotSandbox) -> HubSpotSandbox:
    missing = 3 * PAGE - hubspot_sandbox.count(SUBJECT)
    hubspot_sandbox.create_many(SUBJECT, [{"name": f"Filler {n}"} for n in range(missing)])
    return hubspot_sandbox


@pytest.fixture(scope="module")
def controls(sandbox: HubSpotSandbox) -> HubSpotControls:
    return HubSpotControls(sandbox)


@pytest.fixture(scope="module")
def contract_subject(sandbox: HubSpotSandbox, controls: HubSpotControls) -> ContractSubject:
    return ContractSubject(
        make_adapter=lambda: hubspot_adapter(sandbox, page_size=PAGE),
        controls=controls,
        object_name=SUBJECT,
        new_values=lambda tag: {"name": f"Contract {tag}"},
        changed_values=lambda tag: {"name": f"Renamed {tag}"},
        page_size=PAGE,
    )


class TestHubSpotContract(CrmAdapterContract):
    """The shared adapter contract on the HubSpot sandbox."""


@pytest.fixture
def adapter(sandbox: HubSpotSandbox) -> HubSpotAdapter:
    return hubspot_adapter(sandbox, page_size=PAGE)


def final_checkpoint(adapter: HubSpotAdapter, spec: ObjectSpec) -> Checkpoint:
    return read_all(adapter, spec, None)[1][-1].checkpoint


# --- metadata -----------------------------------------------------------------------------


def test_describe_maps_property_types_and_association_fields(adapter):
    assert adapter.list_objects()[-2:] == ["deal_registrations", "deal_company_associations"]
    deals = adapter.describe("deals")
    assert deals.key == "hs_object_id" and deals.cursor_field == "hs_lastmodifieddate"
    assert deals.field("amount").type is FieldType.FLOAT
    assert deals.field("closedate").type is FieldType.DATETIME
    assert deals.field("hs_is_closed").type is FieldType.BOOLEAN
    assert not deals.field("hs_is_closed").updateable
    assert deals.external_id_field == "prm_mirror_key"
    assert {(r.field, r.target) for r in deals.relations} >= {
        ("partner_company_id", "companies"),
        ("primary_company_id", "companies"),
    }
    assert adapter.describe("contacts").cursor_field == "lastmodifieddate"
    registrations = adapter.describe("deal_registrations")
    assert registrations.field("close_date").type is FieldType.DATE
    assert registrations.field("notes").type is FieldType.TEXT


def test_a_missing_partner_label_is_a_config_error_naming_the_labels(sandbox):
    adapter = hubspot_adapter(sandbox, partner_label="Reseller")
    with pytest.raises(ConfigError, match="Partner"):
        adapter.describe("deals")


def test_new_properties_appear_in_describe_and_reads(sandbox, adapter):
    sandbox.add_property("products", "prm_region", "enumeration", options=[{"value": "EMEA"}])
    target = sandbox.ids("products")[0]
    sandbox.update("products", target, {"prm_region": "EMEA"})
    spec = adapter.describe("products")
    assert spec.field("prm_region").type is FieldType.STRING
    replica, _ = read_all(adapter, spec, None)
    assert replica.rows[target]["prm_region"] == "EMEA"


# --- reads --------------------------------------------------------------------------------


def test_deals_carry_their_partner_and_primary_company(sandbox, adapter):
    spec = adapter.describe("deals")
    replica, _ = read_all(adapter, spec, None)
    for deal_id in sandbox.ids("deals")[:20]:
        links = sandbox.associations("deals", deal_id, "companies")
        partner = [a["id"] for a in links if a["label"] == "Partner"]
        primary = [a["id"] for a in links if a["label"] == "Primary"]
        assert replica.rows[deal_id]["partner_company_id"] == (partner[0] if partner else None)
        assert replica.rows[deal_id]["primary_company_id"] == primary[0]


def test_a_partner_property_replaces_the_label(sandbox):
    sandbox.add_property("deals", "partner_company", "string")
    deal = sandbox.ids("deals")[0]
    sandbox.update("deals", deal, {"partner_company": "2000002"})
    adapter = hubspot_adapter(sandbox, partner_property="partner_company")
    spec = adapter.describe("deals")
    [fetched] = adapter.fetch(spec, [deal])
    assert fetched["partner_company_id"] == "2000002"


def test_an_association_change_is_caught_by_the_sweep_not_the_search(sandbox):
    spec = hubspot_adapter(sandbox).describe("deals")
    # changes of earlier tests fall before the backfill's fence: the quiet read re-reads none
    sandbox.advance_clock(2)
    since = final_checkpoint(hubspot_adapter(sandbox), spec)
    deal = next(d for d in sandbox.ids("deals") if sandbox.get("deals", d)["dealstage"])
    old = next(a["id"] for a in sandbox.associations("deals", deal, "companies")
               if a["label"] == "Primary")  # fmt: skip
    new = next(c for c in sandbox.ids("companies") if c != old)
    sandbox.associate("deals", deal, "companies", new, label="Primary")
    quiet, _ = read_all(hubspot_adapter(sandbox), spec, since)
    assert deal not in quiet.rows, "an association change does not move hs_lastmodifieddate"
    swept, pages = read_all(hubspot_adapter(sandbox, association_sweep_seconds=0), spec, since)
    assert swept.rows[deal]["primary_company_id"] == new
    assert pages[-1].checkpoint.state["assoc_swept"] > str(since.state["assoc_swept"])
    assert "sweep_after" not in pages[-1].checkpoint.state


def test_association_edges_are_read_through_their_deals(sandbox, adapter):
    spec = adapter.describe("deal_company_associations")
    assert (
        spec.key == "id"
        and adapter.write(spec, [Write(WriteOp.DELETE, spec.name, {})])[0].ok is False
    )
    replica, pages = read_all(adapter, spec, None)
    expected = {
        f"{deal}:{link['id']}:{link['type_id']}"
        for deal in sandbox.ids("deals")
        for link in sandbox.associations("deals", deal, "companies")
    }
    assert set(replica.rows) == expected
    assert {i for batch in adapter.read_ids(spec) for i in batch} == expected
    deal = sandbox.ids("deals")[4]
    sandbox.update("deals", deal, {"dealname": "Touched"})
    later, incremental = read_all(hubspot_adapter(sandbox, association_sweep_seconds=0), spec,
                                  pages[-1].checkpoint)  # fmt: skip
    assert deal in {r["deal_id"] for r in later.rows.values()}
    assert set(later.rows) == expected, "a due sweep lists every edge again"
    assert incremental[0].needs_sweep


def test_a_merge_comes_as_a_tombstone_pointing_at_the_survivor(sandbox, controls, adapter):
    spec = adapter.describe(SUBJECT)
    since = final_checkpoint(adapter, spec)
    survivor = controls.create(SUBJECT, {"name": "Survivor"})
    loser = controls.create(SUBJECT, {"name": "Duplicate"})
    sandbox.merge(SUBJECT, survivor, [loser])
    replica, pages = read_all(adapter, spec, since)
    merged = [t for page in pages for t in page.tombstones if t.id == loser]
    assert merged and merged[0].merged_into == survivor
    assert replica.rows[survivor]["hs_merged_object_ids"] == loser
    assert loser not in sandbox.ids(SUBJECT)


def test_archive_then_restore_comes_back_as_a_record(sandbox, controls, adapter):
    spec = adapter.describe(SUBJECT)
    since = final_checkpoint(adapter, spec)
    victim = sandbox.ids(SUBJECT)[5]
    controls.delete(SUBJECT, victim)
    gone, after_delete = read_all(adapter, spec, since)
    assert victim in gone.tombstones
    sandbox.restore(SUBJECT, victim)
    back, _ = read_all(adapter, spec, after_delete[-1].checkpoint)
    assert victim in back.rows and victim not in back.tombstones


def test_a_recycle_bin_check_older_than_90_days_asks_for_a_sweep(sandbox, adapter):
    spec = adapter.describe(SUBJECT)
    since = final_checkpoint(adapter, spec)
    old = Checkpoint(
        since.cursor,
        since.ids_at_cursor,
        "incremental",
        {**since.state, "archived_listed": "2020-01-01T00:00:00+00:00"},
    )
    _, pages = read_all(adapter, spec, old)
    assert pages[0].needs_sweep and not any(p.needs_sweep for p in pages[1:])


def test_a_corrupted_value_becomes_a_reject_and_the_read_goes_on(sandbox, adapter):
    spec = adapter.describe("deals")
    victim = sandbox.ids("deals")[2]
    sandbox.corrupt("deals", victim, "amount", "lots")
    rejects = [r for page in adapter.read(spec, None) for r in page.rejects]
    assert [(r.record_id, r.reason) for r in rejects] == [
        (victim, "field amount: 'lots' is not a number")
    ]


def test_more_changes_than_the_search_cap_are_all_read(sandbox, adapter):
    spec = adapter.describe("contacts")
    since = final_checkpoint(adapter, spec)
    sandbox.set_search_cap(120)
    try:
        made = sandbox.create_many("contacts", [{"firstname": f"N{n}"} for n in range(170)])
        made += [sandbox.create("contacts", {"firstname": f"S{n}"}) for n in range(130)]
        replica, pages = read_all(adapter, spec, since)
    finally:
        sandbox.set_search_cap(10_000)
    assert set(made) <= set(replica.rows)
    assert len(pages) >= 6
    searches = [p for m, p in sandbox.calls if p.endswith("/search")]
    assert searches


def test_a_tie_bigger_than_a_page_is_read_by_id_and_survives_resumes(sandbox, adapter):
    spec = adapter.describe("contacts")
    since = final_checkpoint(adapter, spec)
    tied = sandbox.ids("contacts")[: 2 * PAGE + 7]
    sandbox.set_modstamp("contacts", tied)
    sandbox.advance_clock(10)  # older than the search's fence: checkpoints carry the tie's ids
    replica, pages = read_all(adapter, spec, since)
    assert set(tied) <= set(replica.rows)
    assert any(0 < len(set(p.checkpoint.ids_at_cursor) & set(tied)) < len(tied) for p in pages)
    for position, page in enumerate(pages[:-1]):
        resumed = Replica(spec.key)
        for earlier in pages[: position + 1]:
            resumed.apply(earlier)
        read_all(adapter, spec, page.checkpoint, resumed)
        assert set(tied) <= set(resumed.rows), f"lost tied records resuming after {position}"


# --- failures -----------------------------------------------------------------------------


def test_a_wrong_token_is_an_auth_error_without_the_token(sandbox):
    adapter = hubspot_adapter(sandbox, access_token="pat-na1-wrong-token-value")
    with pytest.raises(AuthError) as caught:
        adapter.check()
    assert "access_token" in str(caught.value) and "wrong-token-value" not in str(caught.value)


def test_bursts_of_429_are_waited_out_without_hammering(sandbox):
    # Pages of 10 make this read alone need more requests than one burst allows (15 pages of
    # companies against 8 a window), so the governor must wait whatever ran before it.
    assert sandbox.count(SUBJECT) >= 15 * BURST_PAGE
    sandbox.set_rate_limits(burst=8, interval_ms=400, search_per_second=3)
    adapter = hubspot_adapter(sandbox, page_size=BURST_PAGE, burst_reserve=0, search_per_second=50)
    try:
        spec = adapter.describe(SUBJECT)
        replica, _ = read_all(adapter, spec, None)
    finally:
        refused = sandbox.rate_limited
        sandbox.set_rate_limits(burst=1_000_000, interval_ms=10_000, search_per_second=1_000_000)
    assert set(replica.rows) == set(sandbox.ids(SUBJECT))
    assert adapter.connection.governor.waited > 0
    assert refused <= adapter.connection.governor.throttled
    assert adapter.connection.governor.throttled <= 3


def test_the_daily_limit_is_quota_exceeded_at_once(sandbox):
    adapter = hubspot_adapter(sandbox)
    spec = adapter.describe(SUBJECT)
    used = sandbox.portal.limits.daily_used
    sandbox.set_rate_limits(daily=used)
    try:
        before = adapter.api_calls()
        with pytest.raises(QuotaExceeded, match="daily"):
            list(adapter.read(spec, None))
    finally:
        sandbox.set_rate_limits(daily=100_000_000)
    assert adapter.api_calls() == before + 1


def test_every_request_is_counted(sandbox, adapter):
    spec = adapter.describe("deals")
    before = sandbox.call_count()
    calls = adapter.api_calls()
    read_all(adapter, spec, None)
    assert adapter.api_calls() - calls == sandbox.call_count() - before


# --- writes ---------------------------------------------------------------------------------


def test_a_deal_created_for_a_partner_gets_its_partner_association(sandbox, adapter):
    spec = adapter.describe("deals")
    partner, customer = sandbox.ids("companies")[:2]
    [result] = adapter.write(spec, [Write(
        WriteOp.CREATE, "deals",
        {"dealname": "Portal deal", "dealstage": "appointmentscheduled", "amount": 1200.0,
         "partner_company_id": partner, "primary_company_id": customer},
        idempotency_key="deal-1",
    )])  # fmt: skip
    assert result.ok and result.created
    links = {
        (a["id"], a["label"]) for a in sandbox.associations("deals", result.record_id, "companies")
    }
    assert {(partner, "Partner"), (customer, "Primary")} <= links
    other = sandbox.ids("companies")[3]
    [moved] = adapter.write(spec, [Write(
        WriteOp.UPDATE, "deals", {"partner_company_id": other},
        record_id=result.record_id, expected_version=result.version,
    )])  # fmt: skip
    assert moved.ok
    labels = {
        (a["id"], a["label"]) for a in sandbox.associations("deals", result.record_id, "companies")
    }
    assert (other, "Partner") in labels and (partner, "Partner") not in labels


def test_a_batch_refused_as_a_whole_is_retried_record_by_record(sandbox, adapter):
    spec = adapter.describe("contacts")
    taken = sandbox.get("contacts", sandbox.ids("contacts")[0])["email"]
    writes = [
        Write(WriteOp.CREATE, "contacts", {"email": f"new{n}@example.org"}, idempotency_key=f"c{n}")
        for n in range(3)
    ]
    writes[1] = Write(WriteOp.CREATE, "contacts", {"email": taken}, idempotency_key="dup")
    results = adapter.write(spec, writes)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error_code == "CONFLICT" and "already exists" in str(results[1].message)


def test_a_lost_answer_is_never_written_again_by_an_upsert_or_a_plain_create(sandbox, adapter):
    spec = adapter.describe(SUBJECT)
    before = sandbox.count(SUBJECT)
    sandbox.drop_next_response(1, path_contains="/batch/upsert")
    write = Write(WriteOp.CREATE, SUBJECT, {"name": "Dropped"}, idempotency_key="drop-1")
    [lost] = adapter.write(spec, [write])
    assert not lost.ok and lost.retryable and lost.error_code == "OUTCOME_UNKNOWN"
    assert sandbox.count(SUBJECT) == before + 1
    [made] = [i for i in sandbox.ids(SUBJECT) if sandbox.get(SUBJECT, i)["name"] == "Dropped"]
    sandbox.update(SUBJECT, made, {"name": "Renamed in HubSpot"})
    [keyed] = adapter.write(spec, [replace(write, in_doubt=True)])
    assert keyed.ok and keyed.record_id == made and not keyed.created
    assert sandbox.get(SUBJECT, made)["name"] == "Renamed in HubSpot"
    assert sandbox.count(SUBJECT) == before + 1
    plain = hubspot_adapter(sandbox, mirror_key_property="none")
    plain_spec = plain.describe(SUBJECT)
    assert plain_spec.external_id_field is None
    sandbox.drop_next_response(1, path_contains="/batch/create")
    [result] = plain.write(plain_spec, [Write(WriteOp.CREATE, SUBJECT, {"name": "Once"})])
    assert not result.ok and result.error_code == "OUTCOME_UNKNOWN" and not result.retryable
    assert sandbox.count(SUBJECT) == before + 2


def test_writes_go_out_in_batches_of_100(sandbox, adapter):
    spec = adapter.describe("products")
    before = sandbox.call_count("/batch/upsert")
    writes = [
        Write(WriteOp.CREATE, "products", {"name": f"P{n}", "price": 10.0}, idempotency_key=f"p{n}")
        for n in range(250)
    ]
    results = adapter.write(spec, writes)
    assert all(r.ok and r.version for r in results)
    assert sandbox.call_count("/batch/upsert") - before == 3


def parse(value: Any) -> Any:
    return parse_instant(str(value))
