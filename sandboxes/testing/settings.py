"""What an adapter needs to reach a sandbox quickly, as plain settings values (the adapters'
own settings models take them), and the state tests and benchmarks put a sandbox in.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sandboxes.dynamics.sandbox import DynamicsSandbox
from sandboxes.hubspot.sandbox import HubSpotSandbox
from sandboxes.salesforce.sandbox import SalesforceSandbox

# retries quick enough for tests: a fault costs milliseconds, a hung request 30 s at most
FAST_RETRIES: dict[str, Any] = {
    "max_retries": 4,
    "backoff_base": 0.01,
    "backoff_max": 0.5,
    "timeout": 30.0,
}


def salesforce_settings(sandbox: SalesforceSandbox, **overrides: Any) -> dict[str, Any]:
    """Password-login settings for ``sandbox`` with fast retries and 200-record pages (and
    its Pub/Sub API endpoint for the change stream, once it serves)."""
    values: dict[str, Any] = {
        "instance_url": sandbox.base_url,
        "login_url": sandbox.base_url,
        "auth": "password",
        "username": sandbox.username,
        "password": sandbox.password,
        "security_token": sandbox.security_token,
        "page_size": 200,
        "bulk_page_size": 200,
        **FAST_RETRIES,
    }
    with contextlib.suppress(RuntimeError):  # not started: no stream to point at
        values["pubsub_endpoint"] = sandbox.pubsub_endpoint()
    return values | overrides


def hubspot_settings(sandbox: HubSpotSandbox, **overrides: Any) -> dict[str, Any]:
    """Settings for ``sandbox`` with fast retries and no search pacing to speak of, and its
    app's client secret, id and developer key (webhook deliveries and their registration)."""
    values: dict[str, Any] = {
        "access_token": sandbox.access_token,
        "host": sandbox.base_url,
        "client_secret": sandbox.client_secret,
        "app_id": sandbox.app_id,
        "developer_api_key": sandbox.developer_api_key,
        "page_size": 100,
        **FAST_RETRIES,
        "search_per_second": 10_000.0,
    }
    return values | overrides


def dynamics_settings(sandbox: DynamicsSandbox, **overrides: Any) -> dict[str, Any]:
    """Client-secret settings for ``sandbox`` with fast retries and 50-row pages."""
    values: dict[str, Any] = {
        "org_url": sandbox.org_url,
        "authority_url": sandbox.authority_url,
        "tenant_id": sandbox.tenant_id,
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "page_size": 50,
        "max_retries": 4,
        "backoff_base": 0.01,
        "backoff_max": 2.0,
        "timeout": 30.0,
    }
    return values | overrides


def unthrottled(sandbox: HubSpotSandbox) -> HubSpotSandbox:
    """``sandbox`` with rate limits far above what a test sends."""
    sandbox.set_rate_limits(burst=1_000_000, daily=100_000_000, search_per_second=1_000_000)
    return sandbox


def top_up(
    sandbox: SalesforceSandbox | DynamicsSandbox, table: str, wanted: int, name_field: str = "name"
) -> None:
    """Create named records (``Filler <n>`` in ``name_field``) until ``table`` has ``wanted``
    live ones."""
    for number in range(sandbox.count(table), wanted):
        sandbox.create(table, {name_field: f"Filler {number}"})
