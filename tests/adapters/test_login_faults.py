"""Logins and tokens under faults, against the sandboxes: an outage, throttling or a lost
connection at the login (Salesforce SOAP and OAuth, Entra ID's discovery and token endpoint) is
waited on and retried, and ends, retries spent, in a ``TransientError``; only a refusal of the
credentials is an ``AuthError``, raised at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mirror.errors import AuthError, TransientError
from sandboxes.dynamics.sandbox import DynamicsSandbox
from sandboxes.hubspot.sandbox import HubSpotSandbox
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.adapters.conftest import sandbox_adapter as salesforce_adapter
from tests.adapters.dynamics.fixtures import dynamics_sandbox  # noqa: F401
from tests.adapters.dynamics.fixtures import sandbox_adapter as dynamics_adapter
from tests.adapters.hubspot.fixtures import hubspot_adapter, hubspot_sandbox  # noqa: F401

SOAP = "/services/Soap"
OAUTH = "/services/oauth2/token"
TOKEN = "/oauth2/v2.0/token"


@pytest.fixture
def sf(salesforce_sandbox: SalesforceSandbox) -> Iterator[SalesforceSandbox]:
    salesforce_sandbox.clear_faults()
    salesforce_sandbox.reset_calls()
    yield salesforce_sandbox
    salesforce_sandbox.clear_faults()


@pytest.fixture
def dv(dynamics_sandbox: DynamicsSandbox) -> Iterator[DynamicsSandbox]:  # noqa: F811
    dynamics_sandbox.clear_faults()
    dynamics_sandbox.reset_calls()
    yield dynamics_sandbox
    dynamics_sandbox.clear_faults()


def client_credentials(box: SalesforceSandbox) -> dict[str, Any]:
    return {
        "auth": "client_credentials",
        "consumer_key": box.consumer_key,
        "consumer_secret": box.consumer_secret,
    }


def waiting(adapter: Any) -> list[float]:
    """The waits the adapter's connection makes, recorded instead of slept."""
    waits: list[float] = []
    adapter.connection.sleep = waits.append
    return waits


# -- Salesforce ------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["password", "client_credentials"])
@pytest.mark.parametrize("status", [503, 429, 500])
def test_sf_a_login_answered_with_an_outage_is_waited_on_and_retried(sf, auth, status) -> None:
    path = SOAP if auth == "password" else OAUTH
    sf.fail_next(2, status=status, error_code="SERVER_UNAVAILABLE", path_contains=path)
    adapter = salesforce_adapter(sf, **(client_credentials(sf) if auth != "password" else {}))
    waits = waiting(adapter)
    adapter.check()
    assert sf.call_count(path) == 3
    assert len(waits) == 2


@pytest.mark.parametrize("auth", ["password", "client_credentials"])
def test_sf_a_login_dropped_on_the_way_is_retried(sf, auth) -> None:
    path = SOAP if auth == "password" else OAUTH
    sf.drop_next_response(2, path_contains=path)
    adapter = salesforce_adapter(sf, **(client_credentials(sf) if auth != "password" else {}))
    waits = waiting(adapter)
    adapter.check()
    assert len(waits) == 2


@pytest.mark.parametrize("auth", ["password", "client_credentials"])
@pytest.mark.parametrize("status", [503, 429])
def test_sf_a_login_outage_past_the_retries_is_transient_not_a_wrong_password(
    sf, auth, status
) -> None:
    path = SOAP if auth == "password" else OAUTH
    sf.fail_next(50, status=status, error_code="SERVER_UNAVAILABLE", path_contains=path)
    adapter = salesforce_adapter(sf, **(client_credentials(sf) if auth != "password" else {}))
    waits = waiting(adapter)
    with pytest.raises(TransientError) as caught:
        adapter.check()
    assert not isinstance(caught.value, AuthError)
    assert "login" in str(caught.value) and "password" not in str(caught.value)
    assert len(waits) == adapter.connection.policy.max_retries


@pytest.mark.parametrize("auth", ["password", "client_credentials"])
def test_sf_a_wrong_password_is_refused_at_once(sf, auth) -> None:
    path = SOAP if auth == "password" else OAUTH
    wrong = {"password": "not-the-password"}
    if auth != "password":
        wrong = client_credentials(sf) | {"consumer_secret": "not-the-secret"}
    adapter = salesforce_adapter(sf, **wrong)
    waits = waiting(adapter)
    with pytest.raises(AuthError) as caught:
        adapter.check()
    assert ("INVALID_LOGIN" if auth == "password" else "invalid_client") in str(caught.value)
    assert "not-the-" not in str(caught.value)
    assert (sf.call_count(path), waits) == (1, [])


# -- Dynamics 365 (Entra ID) -----------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 500, 429])
def test_dv_a_token_answered_with_an_outage_is_waited_on_and_retried(dv, status) -> None:
    dv.fail_identity_next(2, status=status)
    adapter = dynamics_adapter(dv)
    waits = waiting(adapter)
    adapter.check()
    assert dv.call_count(TOKEN) == 3
    assert len(waits) == 2


def test_dv_a_throttled_token_request_waits_for_its_retry_after(dv) -> None:
    dv.fail_identity_next(1, status=429, retry_after=7)
    adapter = dynamics_adapter(dv, backoff_max=30.0)
    waits = waiting(adapter)
    adapter.check()
    assert dv.call_count(TOKEN) == 2
    assert len(waits) == 1 and waits[0] >= 7


def test_dv_the_tenants_discovery_answered_with_an_outage_is_retried(dv) -> None:
    dv.fail_identity_next(2, status=503, path_contains="openid-configuration")
    adapter = dynamics_adapter(dv)
    waits = waiting(adapter)
    adapter.check()
    assert len(waits) == 2


@pytest.mark.parametrize("fault", ["503", "dropped"])
def test_dv_a_token_outage_past_the_retries_is_transient_not_a_wrong_secret(dv, fault) -> None:
    if fault == "dropped":
        dv.drop_next_response(50, path_contains=TOKEN)
    else:
        dv.fail_identity_next(50, status=503)
    adapter = dynamics_adapter(dv)
    waits = waiting(adapter)
    with pytest.raises(TransientError) as caught:
        adapter.check()
    assert not isinstance(caught.value, AuthError)
    assert "Entra ID" in str(caught.value)
    assert len(waits) == adapter.connection.policy.max_retries


def test_dv_a_wrong_secret_is_refused_at_once(dv) -> None:
    adapter = dynamics_adapter(dv, client_secret="not-the-secret")
    waits = waiting(adapter)
    with pytest.raises(AuthError) as caught:
        adapter.check()
    assert "invalid_client" in str(caught.value) and "not-the-secret" not in str(caught.value)
    assert (dv.call_count(TOKEN), waits) == (1, [])


# -- HubSpot (a private app's token: no login) -----------------------------------------------


def test_hs_an_outage_past_the_retries_is_transient_not_a_wrong_token(
    hubspot_sandbox: HubSpotSandbox,  # noqa: F811
) -> None:
    hubspot_sandbox.fail_next(50, status=503)
    try:
        with pytest.raises(TransientError) as caught:
            hubspot_adapter(hubspot_sandbox).check()
    finally:
        hubspot_sandbox.clear_faults()
    assert not isinstance(caught.value, AuthError)
