"""Field rules fail closed: every entry point (``Mirror.as_partner``, a ``PartnerView`` made
directly, ``prm-mirror query`` and ``access grant``, the PostgreSQL install) checks the rules
against the mirrored schema before it serves a partner and refuses on any problem, all listed
at once; allow-lists keep a field the CRM adds hidden until it is named; and the engine and the
PostgreSQL column grants agree on every field in either mode, also after the CRM adds one. On
the Salesforce sandbox and both stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import ProgrammingError

from cli import main
from mirror import Mirror
from mirror.config import parse_config
from mirror.errors import AccessDenied, ConfigError
from mirror.portal.view import PartnerView
from mirror.schema import load_crm_schema
from mirror.visibility.postgres_rls import install_partner_security, partner_session
from mirror.visibility.rules import parse_rules
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.adapters.conftest import sandbox_adapter
from tests.conftest import BACKENDS, PG_URL, fresh_database
from tests.mirror.visibility.test_rls import engine_as, portal_role

OBJECTS = ["User", "Account", "Contact", "Product2", "Opportunity", "OpportunityLineItem"]
SCHEMA = load_crm_schema("salesforce").raw


def make_mirror(url: str, box: SalesforceSandbox, visibility: dict[str, Any] | None = None):
    config = parse_config({
        "store": {"database": url},
        "sources": {"salesforce": {"crm": "salesforce", "username": "u", "password": "p",
                                   "objects": OBJECTS, "visibility": visibility or {}}},
    })  # fmt: skip
    return Mirror(config, adapters={"salesforce": sandbox_adapter(box)})


def busiest_partner(mirror: Mirror) -> str:
    return max(mirror.partners(), key=lambda p: p["slice"].get("Opportunity", 0))["id"]


@pytest.fixture(scope="module", params=BACKENDS)
def synced(request, tmp_path_factory) -> Iterator[tuple[SalesforceSandbox, str, str]]:
    """A small sandbox mirrored once (read-only tests share it): sandbox, store URL, partner."""
    if request.param == "postgresql" and not PG_URL:
        pytest.skip("PostgreSQL suite: set PRM_MIRROR_TEST_PG_URL (see README)")
    folder = tmp_path_factory.mktemp("field-rules")
    with (
        SalesforceSandbox(folder / "sf.db", size="small") as box,
        fresh_database(request.param) as url,
    ):
        mirror = make_mirror(url, box)
        mirror.sync()
        partner = busiest_partner(mirror)
        mirror.close()
        yield box, url, partner


@pytest.fixture
def tiny(db_url: str, tmp_path: Path) -> Iterator[tuple[SalesforceSandbox, str]]:
    """A tiny sandbox and an empty store of its own (for tests that change the CRM)."""
    with SalesforceSandbox(tmp_path / "sf.db", size="tiny") as box:
        yield box, db_url


# --- the rules themselves ----------------------------------------------------------------


def test_rules_of_the_wrong_shape_are_refused_all_at_once() -> None:
    raw = {
        "partners": {"object": "Account", "field_rules": "maybe"},
        "slices": {
            "Opportunity": {"paths": "PartnerAccountId", "public": "yes"},
            "Contact": {"paths": ["AccountId <- Account"], "owner": "OwnerId"},
        },
        "fields": {
            "Opportunity": {"hidden": "Description", "visible": ["Id"]},
            "Account": {"hiden": ["AnnualRevenue"]},
        },
        "field": {},
    }
    with pytest.raises(ConfigError) as caught:
        parse_rules("salesforce", raw)
    problems = "\n".join(caught.value.problems)
    for expected in (
        "field: unknown table",
        "partners.field_rules: 'maybe' is neither",
        "slices.Opportunity.paths: must be a list of strings, not 'PartnerAccountId'",
        "slices.Opportunity.public: must be true or false",
        "slices.Contact.owner: unknown option",
        "slices.Contact: path 'AccountId <- Account' is none of",
        "fields.Opportunity.hidden: must be a list of strings",
        "fields.Opportunity: name either the visible or the hidden fields",
        "fields.Account.hiden: unknown option",
    ):
        assert expected in problems
    assert len(caught.value.problems) == 9


def test_an_allow_list_source_must_name_what_each_shared_object_shows() -> None:
    raw = {
        "partners": {"object": "Account", "field_rules": "allow"},
        "slices": {"Opportunity": {"paths": ["PartnerAccountId"]}, "Lead": {"paths": []}},
        "fields": {"Opportunity": {"writable": ["Amount"]}},
    }
    with pytest.raises(ConfigError) as caught:
        parse_rules("salesforce", raw)
    assert caught.value.problems == [
        "fields.Opportunity: field_rules is 'allow', so name the fields partners see "
        "(visible = [...])"
    ]


# --- every entry point refuses a config with a problem ---------------------------------------

BAD_RULES = {
    "a misspelled hidden field": (
        {"fields": {"Opportunity": {"hidden": ["Descripton"], "writable": []}}},
        "fields.Opportunity.hidden: Opportunity has no field 'Descripton'",
    ),
    "a misspelled visible field": (
        {"fields": {"Opportunity": {"visible": ["Id", "Amonut"]}}},
        "fields.Opportunity.visible: Opportunity has no field 'Amonut'",
    ),
    "an unknown object": (
        {"fields": {"Opportunty": {"hidden": ["Description"]}}},
        "fields.Opportunty: no object 'Opportunty' in source salesforce",
    ),
    "a path through a field that does not exist": (
        {"slices": {"Contact": {"paths": ["AcountId -> Account"]}}},
        "slices.Contact path 'AcountId -> Account': Contact has no field 'AcountId'",
    ),
    "a child path through a field that does not exist": (
        {"slices": {"Account": {"paths": ["self", "Opportunity.AcountId <-"]}}},
        "slices.Account path 'Opportunity.AcountId <-': Opportunity has no field 'AcountId'",
    ),
    "a path to an unknown object": (
        {"slices": {"Contact": {"paths": ["AccountId -> Acount"]}}},
        "slices.Contact path 'AccountId -> Acount': no object 'Acount'",
    ),
    "a path in the wrong form": (
        {"slices": {"Opportunity": {"paths": "PartnerAccountId"}}},
        "slices.Opportunity.paths: must be a list of strings",
    ),
    "a hidden list in the wrong form": (
        {"fields": {"Opportunity": {"hidden": "Description"}}},
        "fields.Opportunity.hidden: must be a list of strings",
    ),
    "a misspelled option": (
        {"fields": {"Opportunity": {"hiden": ["Description"]}}},
        "fields.Opportunity.hiden: unknown option",
    ),
    "self on another object": (
        {"slices": {"Opportunity": {"paths": ["self"]}}},
        "slices.Opportunity path 'self': 'self' only applies to Account",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RULES))
def test_a_read_only_process_refuses_to_serve_with(case: str, synced) -> None:
    box, url, partner = synced
    override, problem = BAD_RULES[case]
    mirror = make_mirror(url, box, override)
    try:
        with pytest.raises(ConfigError) as caught:
            mirror.as_partner(partner).select("Opportunity", limit=5)
        assert any(problem in p for p in caught.value.problems), caught.value.problems
        with pytest.raises(ConfigError):
            PartnerView(mirror.store, mirror.slice_rules(), partner)
        with pytest.raises(ConfigError):
            mirror.install_partner_security("portal")
    finally:
        mirror.close()


def test_every_problem_is_listed_at_once(synced) -> None:
    box, url, partner = synced
    override = {
        "slices": {"Contact": {"paths": ["AcountId -> Account"]}},
        "fields": {
            "Opportunity": {"hidden": ["Descripton", "ExpectedRevenu"]},
            "Opportunty": {"hidden": ["Description"]},
        },
    }
    mirror = make_mirror(url, box, override)
    try:
        with pytest.raises(ConfigError) as caught:
            mirror.as_partner(partner)
    finally:
        mirror.close()
    assert len(caught.value.problems) == 4


def write_config(folder: Path, url: str, box: SalesforceSandbox, extra: str) -> Path:
    path = folder / "prm-mirror.toml"
    path.write_text(f"""
[store]
database = "{url}"

[sources.salesforce]
crm = "salesforce"
objects = {OBJECTS!r}
login_url = "{box.base_url}"
username = "{box.username}"
password = "{box.password}"
security_token = "{box.security_token}"
{extra}
""".replace("'", '"'))  # fmt: skip
    return path


@pytest.mark.parametrize(
    "extra, problem",
    [
        ('[sources.salesforce.visibility.fields.Opportunity]\nhidden = ["Descripton"]',
         "Opportunity has no field 'Descripton'"),
        ('[sources.salesforce.visibility.slices.Contact]\npaths = ["AcountId -> Account"]',
         "Contact has no field 'AcountId'"),
    ],
)  # fmt: skip
def test_the_cli_refuses_with_the_problems_and_no_traceback(
    extra: str, problem: str, synced, tmp_path: Path
) -> None:
    box, url, partner = synced
    config = write_config(tmp_path, url, box, extra)
    for args in (
        ["query", "--partner", partner, "Contact", "--limit", "3"],
        ["query", "--partner", partner, "Opportunity", "--fields", "Id,Description"],
        ["access", "grant", "--role", "portal"],
    ):
        result = CliRunner().invoke(main, ["-c", str(config), *args])
        assert result.exit_code == 2, (args, result.output, result.exception)
        assert isinstance(result.exception, SystemExit)
        assert problem in result.output and "Traceback" not in result.output


def test_a_view_made_before_an_object_was_mirrored_serves_none_of_its_fields(tiny) -> None:
    box, url = tiny
    good = make_mirror(url, box)
    good.sync(["User", "Account"])
    misspelled = {"fields": {"Opportunity": {"hidden": ["Descripton"]}}}
    bad = make_mirror(url, box, misspelled)
    try:
        partner = good.partners()[0]["id"]
        early = bad.as_partner(partner)  # Opportunity cannot be checked yet: not mirrored
        early.select("Account", fields=["Id"], limit=5)
        good.sync()
        with pytest.raises(ConfigError, match="were not checked against its mirrored schema"):
            early.select("Opportunity", limit=5)
        with pytest.raises(ConfigError, match="has no field 'Descripton'"):
            bad.as_partner(partner)
        assert good.as_partner(partner).select("Opportunity", fields=["Id"], limit=5) is not None
    finally:
        bad.close()
        good.close()


# --- allow-lists, and the two layers agreeing ---------------------------------------------------


def add_margin(box: SalesforceSandbox, mirror: Mirror, partner: str) -> str:
    """The CRM adds an internal field and fills it on one of ``partner``'s deals."""
    deal = mirror.as_partner(partner).select("Opportunity", fields=["Id"], limit=1)[0]["Id"]
    box.add_field("Opportunity", "Margin__c", "string", length=40)
    box.advance_clock(2)
    box.update("Opportunity", deal, {"Margin__c": "margin 41%"})
    mirror.sync(["Opportunity"])
    return deal


def test_a_field_the_crm_adds_stays_hidden_until_it_is_named(tiny) -> None:
    box, url = tiny
    mirror = make_mirror(url, box)
    mirror.sync()
    partner = busiest_partner(mirror)
    cursor = mirror.as_partner(partner).changes().cursor
    deal = add_margin(box, mirror, partner)
    view = mirror.as_partner(partner)
    assert "Margin__c" not in view.get("Opportunity", deal)
    assert all("Margin__c" not in row for row in view.select("Opportunity", limit=100))
    with pytest.raises(AccessDenied):
        view.select("Opportunity", fields=["Id", "Margin__c"])
    with pytest.raises(AccessDenied):
        view.select("Opportunity", where={"Margin__c": "margin 41%"})
    feed = view.changes(since=cursor).changes
    assert any(c["record_id"] == deal for c in feed) and "margin 41%" not in str(feed)
    shipped = SCHEMA["fields"]["Opportunity"]["visible"]
    named = {"fields": {"Opportunity": {"visible": [*shipped, "Margin__c"]}}}
    mirror.close()
    mirror = make_mirror(url, box, named)
    try:
        assert mirror.as_partner(partner).get("Opportunity", deal)["Margin__c"] == "margin 41%"
    finally:
        mirror.close()


def test_deny_list_configs_keep_working(tiny) -> None:
    box, url = tiny
    deny = {"fields": {"Opportunity": {"hidden": ["Description", "ExpectedRevenue"]}}}
    mirror = make_mirror(url, box, deny)
    try:
        mirror.sync()
        row = mirror.as_partner(busiest_partner(mirror)).select("Opportunity", limit=1)[0]
        assert "Description" not in row and "ExpectedRevenue" not in row
        assert {"IsPrivate", "ForecastCategoryName", "Amount"} <= set(row)
    finally:
        mirror.close()


def portal_columns(url: str, role: str, table: str) -> set[str]:
    """The columns ``role`` may read in ``table``, as PostgreSQL answers it."""
    admin = create_engine(url)
    try:
        with admin.connect() as conn:
            return set(
                conn.execute(
                    text(
                        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(:t) "
                        "AND attnum > 0 AND NOT attisdropped "
                        "AND has_column_privilege(:role, attrelid, attnum, 'SELECT')"
                    ),
                    {"t": table, "role": role},
                ).scalars()
            )
    finally:
        admin.dispose()


def served_fields(mirror: Mirror, partner: str, name: str) -> set[str]:
    """The fields the engine returns to ``partner`` for ``name``."""
    rows = mirror.as_partner(partner).select(name, limit=1)
    assert rows
    return set(rows[0])


def margin_as_portal(portal: Engine, partner: str, deal: str) -> Any:
    with partner_session(portal, partner) as conn:
        return conn.execute(
            text('SELECT "Margin__c" FROM salesforce__opportunity WHERE "Id" = :id'), {"id": deal}
        ).scalar_one()


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["allow", "deny"])
def test_column_grants_agree_with_the_engine_after_the_crm_adds_a_field(
    mode: str, tmp_path: Path
) -> None:
    if not PG_URL:
        pytest.skip("PostgreSQL suite: set PRM_MIRROR_TEST_PG_URL (see README)")
    deny = {"fields": {"Opportunity": {"hidden": ["Description", "ExpectedRevenue"]}}}
    with (
        SalesforceSandbox(tmp_path / "sf.db", size="tiny") as box,
        fresh_database("postgresql") as url,
        portal_role() as role,
    ):
        mirror = make_mirror(url, box, deny if mode == "deny" else None)
        portal = engine_as(url, role)
        try:
            mirror.sync()
            partner = busiest_partner(mirror)
            mirror.install_partner_security(role)
            deal = add_margin(box, mirror, partner)
            for name in ("Opportunity", "Account", "Contact"):
                table = f"salesforce__{name.lower()}"
                granted = portal_columns(url, role, table) - {"_modstamp"}
                assert served_fields(mirror, partner, name) == granted, name
            if mode == "deny":
                assert margin_as_portal(portal, partner, deal) == "margin 41%"
            else:
                with pytest.raises(ProgrammingError, match="permission denied"):
                    margin_as_portal(portal, partner, deal)
        finally:
            portal.dispose()
            mirror.close()


@pytest.mark.postgres
def test_the_install_refuses_rules_with_a_problem_before_changing_anything(synced) -> None:
    box, url, _partner = synced
    if not url.startswith("postgresql"):
        pytest.skip("row-level security is PostgreSQL only")
    rules = parse_rules(
        "salesforce",
        {**{k: SCHEMA[k] for k in ("partners", "partner_users", "slices")},
         "fields": {**SCHEMA["fields"], "Opportunity": {"hidden": ["Descripton"]}}},
    )  # fmt: skip
    mirror = make_mirror(url, box)
    try:
        with portal_role() as role:
            with pytest.raises(ConfigError, match="Descripton"):
                install_partner_security(mirror.store, rules, role)
            assert portal_columns(url, role, "salesforce__opportunity") == set()
    finally:
        mirror.close()
