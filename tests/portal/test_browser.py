"""The portal in a real browser: Debian's Chromium driven by Playwright (launched with the
system browser's executable; nothing is downloaded). Sign-in, each partner page, an edit that
reaches the sandbox CRM, a registration and its verdict, a live change and a deal leaving the
slice without a reload, another partner's deal out of reach, the manager's approve and resolve.

``PRM_PORTAL_SCREENSHOTS=docs/images`` saves the documentation's screenshots from this run.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prm_portal import create_app
from prm_portal.runner import Server, demo
from tests.portal.conftest import (
    DEAL_B,
    EMAIL_A,
    MANAGER_PASSWORD,
    PARTNER_A,
    PARTNER_B,
    PASSWORD,
    Portal,
    open_deals,
    settings,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no system Chromium (apt-get install chromium chromium-driver)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect
WAIT = 15_000  # ms: a live change needs a sync and a poll of the stream


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Portal, str]]:
    with demo(tmp_path_factory.mktemp("browser")) as started:
        app = create_app(started.mirror, settings(feed_poll_seconds=0.2, feed_stream_seconds=30))
        server = Server(app).start()
        try:
            yield Portal(started, app), server.url
        finally:
            server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    opened.set_default_timeout(WAIT)
    yield opened
    context.close()


def screenshot(page: Any, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("PRM_PORTAL_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"portal-{name}.png"), full_page=False)


def sign_in(page: Any, url: str, email: str = EMAIL_A) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("h1")).to_contain_text("Deals")


def test_sign_in_and_each_partner_page(
    served: tuple[Portal, str], page: Any, tmp_path: Path
) -> None:
    portal, url = served
    sign_in(page, url)
    expect(page.locator("header .who")).to_contain_text("Dev Okafor (admin)")
    screenshot(page, "deals", tmp_path)
    for link, heading in (
        ("Accounts", "Accounts"),
        ("Contacts", "Contacts"),
        ("Registrations", "Deal registrations"),
        ("Writes", "Your writes"),
    ):
        page.get_by_role("link", name=link, exact=True).click()
        expect(page.locator("h1")).to_contain_text(heading)
    page.get_by_role("link", name="Deals", exact=True).click()
    page.get_by_placeholder("Search by Name").fill("a")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"/deals\?q=a&"))
    deal = open_deals(portal)[0]
    page.goto(f"{url}/deals/{deal['Id']}")
    expect(page.locator("#deal h1")).to_have_text(deal["Name"])
    expect(page.locator("#items")).to_be_visible()


def test_an_edit_reaches_the_crm_and_its_status_updates_live(
    served: tuple[Portal, str], page: Any, tmp_path: Path
) -> None:
    portal, url = served
    deal = open_deals(portal)[1]
    sign_in(page, url)
    page.goto(f"{url}/deals/{deal['Id']}")
    page.get_by_label("Stage").select_option("Proposal/Price Quote")
    page.get_by_label("Next step").fill("Send the quote")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash.ok")).to_contain_text("queued")
    status = page.locator("#writes tbody tr").first.locator(".status")
    expect(status).to_contain_text("queued")
    portal.round()
    expect(status).to_contain_text("in the CRM")  # pushed to the page, no reload
    crm = portal.box.get("Opportunity", deal["Id"])
    assert (crm["StageName"], crm["NextStep"]) == ("Proposal/Price Quote", "Send the quote")
    screenshot(page, "deal", tmp_path)


def test_a_registration_shows_its_errors_then_its_verdict(
    served: tuple[Portal, str], page: Any, tmp_path: Path
) -> None:
    _, url = served
    sign_in(page, url)
    page.get_by_role("link", name="Registrations", exact=True).click()
    page.get_by_label("Web domain").fill("not a domain")
    page.get_by_role("button", name="Register").click()
    expect(page.locator('[data-error-for="company"]')).to_be_visible()
    expect(page.locator('[data-error-for="domain"]')).to_contain_text("not a web domain")
    page.get_by_label("Company").fill("Stark Browsers")
    page.get_by_label("Web domain").fill("stark-browsers.com")
    page.get_by_label("Amount").fill("75000")
    page.get_by_label("Expected close date").fill(
        (dt.date.today() + dt.timedelta(days=30)).isoformat()
    )
    page.get_by_role("button", name="Register").click()
    expect(page.locator("#receipt [data-verdict]")).to_have_text("clear")
    expect(page.locator("#my-registrations")).to_contain_text("Stark Browsers")
    screenshot(page, "registration", tmp_path)


def test_a_crm_change_arrives_in_an_open_page(served: tuple[Portal, str], page: Any) -> None:
    portal, url = served
    deal = open_deals(portal)[2]
    sign_in(page, url)
    page.goto(f"{url}/deals/{deal['Id']}")
    cell = page.locator('#deal > .columns [data-field="NextStep"]')
    portal.box.update("Opportunity", deal["Id"], {"NextStep": "Changed in the CRM"})
    portal.mirror.sync()
    expect(cell).to_have_text("Changed in the CRM")


def test_a_deal_moved_to_another_partner_leaves_the_open_pages(
    served: tuple[Portal, str], browser: Any
) -> None:
    portal, url = served
    deal = open_deals(portal)[3]
    context = browser.new_context()
    listing, detail = context.new_page(), context.new_page()
    for opened in (listing, detail):
        opened.set_default_timeout(WAIT)
    sign_in(listing, url)
    listing.goto(f"{url}/deals?q={deal['Name']}")
    row = listing.locator(f'tr[data-record="{deal["Id"]}"]')
    expect(row).to_be_visible()
    detail.goto(f"{url}/deals/{deal['Id']}")
    portal.box.update("Opportunity", deal["Id"], {"PartnerAccountId": PARTNER_B})
    portal.mirror.sync()
    expect(row).to_have_count(0)
    expect(detail.locator("#gone")).to_be_visible()
    expect(detail.locator("#edit-deal")).to_have_count(0)
    assert PARTNER_B not in detail.content()
    context.close()


def test_another_partners_deal_is_out_of_reach_by_url(
    served: tuple[Portal, str], page: Any
) -> None:
    _, url = served
    sign_in(page, url)
    answer = page.goto(f"{url}/deals/{DEAL_B}")
    assert answer.status == 404
    expect(page.locator("h1")).to_have_text("404")
    assert PARTNER_A and DEAL_B not in page.locator("main").inner_text()


def manager_sign_in(page: Any, url: str) -> None:
    page.goto(f"{url}/manager/login")
    page.get_by_label("E-mail").fill("Morgan")
    page.get_by_label("Password").fill(MANAGER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("h1")).to_have_text("Deal registrations")


def test_the_manager_approves_a_registration(
    served: tuple[Portal, str], page: Any, tmp_path: Path
) -> None:
    portal, url = served
    receipt = portal.mirror.as_partner(PARTNER_A).register_deal(
        {"company": "Wayne Approvals", "domain": "wayne-approvals.com", "amount": 9000,
         "close_date": dt.date.today() + dt.timedelta(days=20)}
    )  # fmt: skip
    portal.round()
    registration = next(
        r["id"] for r in portal.mirror.registrations().recent() if r["company"] == "Wayne Approvals"
    )
    manager_sign_in(page, url)
    page.get_by_role("link", name=registration).click()
    expect(page.locator("#verdict")).to_be_visible()
    screenshot(page, "manager-registration", tmp_path)
    page.get_by_role("button", name="Approve").click()
    expect(page.locator(".flash.ok")).to_contain_text("Approved: opportunity")
    portal.round()
    portal.round()
    approved = portal.mirror.registrations().show(registration)["registration"]
    assert receipt.verdict == "clear" and approved["Status__c"] == "Approved"
    deal = portal.box.get("Opportunity", approved["Opportunity__c"])
    assert deal["PartnerAccountId"] == PARTNER_A


def test_the_manager_resolves_a_conflict(served: tuple[Portal, str], page: Any) -> None:
    portal, url = served
    deal = open_deals(portal)[4]
    portal.mirror.as_partner(PARTNER_A).update("Opportunity", deal["Id"], {"NextStep": "ours"})
    portal.box.update("Opportunity", deal["Id"], {"NextStep": "theirs"})
    portal.round()
    conflict = next(c for c in portal.mirror.conflicts() if c["record_id"] == deal["Id"])
    manager_sign_in(page, url)
    page.get_by_role("link", name="Conflicts").click()
    row = page.locator(f'tr[data-conflict="{conflict["id"]}"]')
    expect(row.locator(".portal")).to_have_text("ours")
    row.locator('button[data-take="portal"]').click()
    expect(page.locator(".flash.ok")).to_contain_text("resolved (portal)")
    expect(page.locator(f'tr[data-conflict="{conflict["id"]}"]')).to_have_count(0)
    portal.round()
    assert portal.box.get("Opportunity", deal["Id"])["NextStep"] == "ours"
