"""The portal over a seeded Salesforce sandbox and its mirror, one per test module, and a
signed-in test client for either side (a partner user, or the channel manager)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mirror import Mirror
from prm_portal import PortalSettings, create_app
from prm_portal.runner import Demo, demo

# partner A (its admin user) and partner B, whose deal 006Kj0000000001IAA is
PARTNER_A = "001Kj0000000002IAA"
USER_A = "005Kj0000000007IAA"
EMAIL_A = "dev.okafor.6@partner1.example.com"
PARTNER_B = "001Kj0000000003IAA"
EMAIL_B = "xavier.tanaka.7@partner2.example.com"
DEAL_B = "006Kj0000000001IAA"
PASSWORD = "partner-secret"
MANAGER_PASSWORD = "manager-secret"
TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


@dataclass
class Portal:
    """A running demo (sandbox, mirror) and the app over it."""

    demo: Demo
    app: Flask

    @property
    def mirror(self) -> Mirror:
        return self.demo.mirror

    @property
    def box(self) -> Any:
        return self.demo.box

    def round(self) -> None:
        """What the portal's schedule does each round: push, then sync."""
        self.mirror.push()
        self.mirror.sync()


def settings(**overrides: Any) -> PortalSettings:
    values: dict[str, Any] = {
        "secret_key": "test-secret",
        "manager_password": MANAGER_PASSWORD,
        "partner_password": PASSWORD,
        "feed_poll_seconds": 0.05,
        "feed_stream_seconds": 0.6,
        "view_cache_seconds": 0.0,
    }
    values.update(overrides)
    return PortalSettings(**values)


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    with demo(tmp_path_factory.mktemp("portal")) as started:
        yield Portal(started, create_app(started.mirror, settings(), testing=True))


def token(client: FlaskClient, path: str) -> str:
    """The CSRF token of the form on ``path``."""
    found = TOKEN.search(client.get(path).get_data(as_text=True))
    assert found, f"no form with a CSRF token on {path}"
    return found.group(1)


def post(client: FlaskClient, path: str, data: dict[str, Any], form_page: str | None = None) -> Any:
    """POST ``data`` with the CSRF token of the form on ``form_page`` (default: ``path``)."""
    return client.post(path, data={"csrf_token": token(client, form_page or path), **data})


def partner_client(portal: Portal, email: str = EMAIL_A) -> FlaskClient:
    """A test client signed in as the partner user with this e-mail."""
    client = portal.app.test_client()
    answer = post(client, "/login", {"login": email, "password": PASSWORD})
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/deals")
    return client


def manager_client(portal: Portal) -> FlaskClient:
    """A test client signed in as the channel manager."""
    client = portal.app.test_client()
    answer = post(client, "/manager/login", {"login": "Morgan", "password": MANAGER_PASSWORD})
    assert answer.status_code == 302
    return client


def text(answer: Any) -> str:
    """A response's body as text."""
    body: str = answer.get_data(as_text=True)
    return body


def first_deal(portal: Portal, partner: str = PARTNER_A, **where: Any) -> dict[str, Any]:
    """One of the partner's open deals (seen through its own view)."""
    view = portal.mirror.as_partner(partner)
    deals = view.select("Opportunity", where={"IsClosed": False, **where}, limit=1)
    assert deals
    return deals[0]


def open_deals(portal: Portal, partner: str = PARTNER_A, limit: int = 20) -> list[dict[str, Any]]:
    """The partner's open deals."""
    view = portal.mirror.as_partner(partner)
    return view.select("Opportunity", where={"IsClosed": False}, order_by="Id", limit=limit)
