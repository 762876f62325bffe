"""The Dynamics adapter's own cases: Entra ID auth, metadata, change tracking, the cursor mode,
delta-token expiry, rejects, throttling and settings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from adapters.dynamics.adapter import DynamicsAdapter, DynamicsSettings
from adapters.factories import dynamics as dynamics_factory
from mirror.errors import AuthError, ConfigError, TransientError
from mirror.types import FieldType, ObjectSpec
from sandboxes.dynamics.sandbox import DynamicsSandbox
from tests.adapters.contract import Replica, read_all
from tests.adapters.dynamics.fixtures import dynamics_sandbox, sandbox_adapter, sandbox_settings  # noqa: F401


@pytest.fixture(scope="module")
def box(dynamics_sandbox: DynamicsSandbox) -> DynamicsSandbox:  # noqa: F811
    return dynamics_sandbox


@pytest.fixture(scope="module")
def opportunity(box: DynamicsSandbox) -> ObjectSpec:
    return sandbox_adapter(box).describe("opportunity")


def token_requests(box: DynamicsSandbox) -> int:
    return box.call_count("/oauth2/v2.0/token")


# --- Entra ID -------------------------------------------------------------------------------


def test_a_client_secret_gets_one_token_for_many_requests(box) -> None:
    adapter = sandbox_adapter(box)
    before = token_requests(box)
    adapter.check()
    adapter.list_objects()
    adapter.describe("contact")
    assert token_requests(box) == before + 1
    assert adapter.api_calls() >= 4


@pytest.mark.parametrize("with_thumbprint", [True, False])
def test_a_certificate_signs_the_client_assertion(box, tmp_path: Path, with_thumbprint) -> None:
    pem = box.write_certificate(tmp_path / "app.pem")
    adapter = sandbox_adapter(
        box,
        client_secret=None,
        certificate_path=str(pem),
        certificate_thumbprint=box.certificate_thumbprint if with_thumbprint else None,
    )
    adapter.check()
    assert "account" in adapter.list_objects()


def test_a_wrong_secret_is_an_auth_error_naming_the_settings(box) -> None:
    adapter = sandbox_adapter(box, client_secret="not-the-secret")
    with pytest.raises(AuthError, match="AADSTS7000215") as caught:
        adapter.check()
    assert "dynamics.client_secret" in str(caught.value)
    assert "not-the-secret" not in str(caught.value)


def test_an_unknown_tenant_is_an_auth_error(box) -> None:
    with pytest.raises(AuthError, match="tenant"):
        sandbox_adapter(box, tenant_id="00000000-0000-0000-0000-00000000dead").check()


def test_a_token_the_organisation_rejects_is_renewed_once(box) -> None:
    adapter = sandbox_adapter(box)
    adapter.check()
    box.expire_tokens()
    before = token_requests(box)
    adapter.check()
    assert adapter.connection.token_renewals == 1
    assert token_requests(box) == before + 1


def test_tokens_close_to_expiry_are_renewed_before_use(tmp_path: Path) -> None:
    with DynamicsSandbox(tmp_path / "short.db", size="tiny", token_lifetime=240) as box:
        adapter = sandbox_adapter(box)
        adapter.check()
        adapter.check()
        assert token_requests(box) == 2
        assert adapter.connection.token_renewals == 0


# --- metadata -------------------------------------------------------------------------------


def test_metadata_becomes_an_object_spec(opportunity: ObjectSpec) -> None:
    assert (opportunity.key, opportunity.cursor_field) == ("opportunityid", "modifiedon")
    partner = opportunity.field("_prm_partneraccountid_value")
    assert partner.type is FieldType.REFERENCE and partner.references == ("account",)
    assert partner.relationship_name == "prm_PartnerAccountId"
    customer = opportunity.field("_customerid_value")
    assert customer.references == ("account", "contact") and customer.relationship_name is None
    assert opportunity.field("estimatedclosedate").type is FieldType.DATE
    assert opportunity.field("salesstage").type is FieldType.INTEGER
    assert not opportunity.has_field("customeridtype")
    assert not opportunity.field("modifiedon").updateable
    assert {(r.field, r.target) for r in opportunity.relations} >= {
        ("_parentaccountid_value", "account"), ("_customerid_value", "contact")}  # fmt: skip


def test_an_unknown_table_is_a_config_error(box) -> None:
    with pytest.raises(ConfigError, match="no table named 'opportunities'"):
        sandbox_adapter(box).describe("opportunities")


# --- change tracking ------------------------------------------------------------------------


def test_an_expired_delta_token_resyncs_with_a_sweep(box, opportunity) -> None:
    adapter = sandbox_adapter(box)
    _, pages = read_all(adapter, opportunity, None)
    target = box.ids("opportunity")[0]
    box.advance_clock(1)
    box.update("opportunity", target, {"stepname": "after expiry"})
    box.expire_delta_tokens()
    replica, later = read_all(sandbox_adapter(box), opportunity, pages[-1].checkpoint)
    assert later[0].needs_sweep and not any(p.needs_sweep for p in later[1:])
    assert set(replica.rows) == set(box.ids("opportunity"))
    assert replica.rows[target]["stepname"] == "after expiry"
    assert all(p.checkpoint.phase == "incremental" for p in later)
    idle, quiet = read_all(sandbox_adapter(box), opportunity, later[-1].checkpoint)
    assert idle.deliveries == [] and not quiet[0].needs_sweep


def test_delta_tokens_also_expire_with_time(box, opportunity) -> None:
    _, pages = read_all(sandbox_adapter(box), opportunity, None)
    box.advance_clock(8 * 86_400)
    _, later = read_all(sandbox_adapter(box), opportunity, pages[-1].checkpoint)
    assert later[0].needs_sweep


def test_a_resync_interrupted_midway_resumes_from_its_next_link(box, opportunity) -> None:
    _, pages = read_all(sandbox_adapter(box), opportunity, None)
    box.expire_delta_tokens()
    first = next(iter(sandbox_adapter(box, page_size=10).read(opportunity, pages[-1].checkpoint)))
    assert first.needs_sweep and first.checkpoint.state["pass"] == "initial"
    replica = Replica(opportunity.key)
    replica.apply(first)
    _, rest = read_all(sandbox_adapter(box, page_size=10), opportunity, first.checkpoint, replica)
    assert set(replica.rows) == set(box.ids("opportunity"))
    assert not any(p.needs_sweep for p in rest)


def test_polymorphic_lookup_targets_are_remembered_from_annotations(box, opportunity) -> None:
    adapter = sandbox_adapter(box)
    read_all(adapter, opportunity, None)
    some = box.get("opportunity", box.ids("opportunity")[0])
    assert some is not None
    assert adapter.lookup_targets[some["_customerid_value"]] == "account"


# --- the cursor mode ------------------------------------------------------------------------


def test_a_table_without_change_tracking_is_read_by_cursor(box) -> None:
    adapter = sandbox_adapter(box, page_size=7)
    users = adapter.describe("systemuser")
    full, pages = read_all(adapter, users, None)
    assert set(full.rows) == set(box.ids("systemuser")) and len(pages) >= 2
    assert pages[-1].checkpoint.state == {"mode": "cursor"}
    ids = box.ids("systemuser")[:10]
    box.advance_clock(1)
    box.set_modstamp("systemuser", ids, box.now())
    box.advance_clock(2)  # the tie is older than the read's fence: checkpoints carry its ids
    replica, later = read_all(sandbox_adapter(box, page_size=7), users, pages[-1].checkpoint)
    assert set(replica.rows) == set(ids) and len(later) >= 2
    assert 0 < len(later[0].checkpoint.ids_at_cursor) < len(ids)
    for position, page in enumerate(later[:-1]):
        resumed = Replica(users.key)
        for earlier in later[: position + 1]:
            resumed.apply(earlier)
        read_all(sandbox_adapter(box, page_size=7), users, page.checkpoint, resumed)
        assert set(ids) <= set(resumed.rows)


def test_turning_change_tracking_on_starts_a_tracked_resync(box) -> None:
    adapter = sandbox_adapter(box)
    users = adapter.describe("systemuser")
    _, pages = read_all(adapter, users, None)
    box.set_change_tracking("systemuser", True)
    try:
        replica, later = read_all(sandbox_adapter(box), users, pages[-1].checkpoint)
        assert later[0].needs_sweep and "delta_link" in later[-1].checkpoint.state
        assert set(replica.rows) == set(box.ids("systemuser"))
    finally:
        box.set_change_tracking("systemuser", False)


# --- rejects, throttling, failures ----------------------------------------------------------


def test_a_malformed_value_is_rejected_and_the_rest_read(box, opportunity) -> None:
    bad = box.ids("opportunity")[3]
    box.corrupt("opportunity", bad, "estimatedclosedate", "next spring")
    try:
        replica, pages = read_all(sandbox_adapter(box), opportunity, None)
        rejects = [r for p in pages for r in p.rejects]
        assert [r.record_id for r in rejects] == [bad]
        assert "estimatedclosedate" in rejects[0].reason and "next spring" in rejects[0].reason
        assert bad not in replica.rows
    finally:
        box.corrupt("opportunity", bad, "estimatedclosedate", "2027-01-31")


def test_429_bursts_wait_as_long_as_retry_after_says(box, opportunity) -> None:
    adapter = sandbox_adapter(box, backoff_max=10.0)
    waits: list[float] = []
    adapter.connection.sleep = waits.append
    box.throttle(3, retry_after=3, path_contains="opportunities")
    replica, _ = read_all(adapter, opportunity, None)
    assert set(replica.rows) == set(box.ids("opportunity"))
    assert len(waits) == 3 and min(waits) >= 3
    assert "x-ms-ratelimit-burst-remaining-xrm-requests" in adapter.service_protection()


def test_throttling_longer_than_the_backoff_limit_is_a_transient_error(box, opportunity) -> None:
    adapter = sandbox_adapter(box, backoff_max=1.0)
    adapter.connection.sleep = lambda _seconds: None
    box.throttle(1, retry_after=30, path_contains="opportunities")
    with pytest.raises(TransientError) as caught:
        read_all(adapter, opportunity, None)
    assert caught.value.retry_after == 30


def test_service_protection_limits_are_honoured(box, opportunity) -> None:
    adapter = sandbox_adapter(box, page_size=10)
    waits: list[float] = []

    def wait_out_the_window(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(0.3)

    adapter.connection.sleep = wait_out_the_window
    box.set_rate_limit(3, window_seconds=0.3)
    try:
        replica, _ = read_all(adapter, opportunity, None)
    finally:
        box.set_rate_limit(6000)
    assert set(replica.rows) == set(box.ids("opportunity"))
    assert waits and all(w >= 1 for w in waits)


def test_persistent_server_errors_become_transient_errors(box, opportunity) -> None:
    adapter = sandbox_adapter(box, max_retries=2)
    adapter.connection.sleep = lambda _seconds: None
    box.fail_next(3, status=503, path_contains="opportunities")
    with pytest.raises(TransientError, match="503"):
        read_all(adapter, opportunity, None)


def test_fetch_returns_current_records_and_leaves_out_missing_ones(box, opportunity) -> None:
    ids = box.ids("opportunity")[:3]
    records = sandbox_adapter(box).fetch(
        opportunity, [*ids, "00000000-0000-0000-0000-000000000001"]
    )
    assert sorted(r["opportunityid"] for r in records) == sorted(ids)


# --- settings and factory -------------------------------------------------------------------


def test_settings_clamp_the_page_size_and_list_every_problem() -> None:
    assert DynamicsSettings(page_size=20_000).effective_page_size == 5000
    assert DynamicsSettings(page_size=0).effective_page_size == 1
    problems = DynamicsSettings(org_url="http://org.example.com").problems()
    assert any("tenant_id" in p for p in problems)
    assert any("client_secret or dynamics.certificate_path" in p for p in problems)
    assert any("must be https" in p for p in problems)
    with pytest.raises(ConfigError):
        DynamicsAdapter(DynamicsSettings())
    assert "s3cret" not in repr(DynamicsSettings(client_secret="s3cret"))


def test_the_factory_builds_an_adapter_from_source_settings(box) -> None:
    settings: dict[str, Any] = {
        "org_url": box.org_url, "authority_url": box.authority_url,
        "tenant_id": box.tenant_id, "client_id": box.client_id,
        "client_secret": box.client_secret, "page_size": 2000, "max_retries": 3,
        "api_version": "59.0", "access_token": None,
    }  # fmt: skip
    adapter = dynamics_factory("crm", settings)
    assert isinstance(adapter, DynamicsAdapter) and adapter.source == "crm"
    adapter.check()
    assert sandbox_settings(box).scope == f"https://127.0.0.1:{box.port}/.default"


def test_remembered_lookup_targets_stay_under_their_cap_within_one_read(
    box, opportunity, monkeypatch
) -> None:
    from adapters.dynamics import read

    monkeypatch.setattr(read, "MAX_REMEMBERED_TARGETS", 5)
    adapter = sandbox_adapter(box, page_size=5000)
    replica, pages = read_all(adapter, opportunity, None)
    assert len(pages) == 1 and len(replica.rows) > 5
    assert 0 < len(adapter.lookup_targets) <= 5
