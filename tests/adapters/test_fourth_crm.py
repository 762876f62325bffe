"""A fourth CRM needs no edit to the engine or the CLI: TinyCRM, an in-memory CRM defined only in
the tests, is registered by hand, passes the CRM-neutral contract, syncs through the public API
with a schema file of its own (a partner's query, and a portal edit pushed back), has its
settings checked with the engine's in one pass, and is checked by `prm-mirror check`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from mirror import AccessDenied, ConfigError, Mirror
from mirror.config import parse_config, secret_values
from mirror.registry import register_adapter, unregister_adapter
from tests.adapters.contract import ContractSubject, CrmAdapterContract
from tests.adapters.fourth.adapter import CRM, plugin
from tests.adapters.fourth.crm import TinyControls, TinyCrm, seeded

ROOT = Path(__file__).resolve().parents[2]
PAGE = 20
KEY = "tiny-key"


@pytest.fixture(scope="module", autouse=True)
def registered() -> Iterator[None]:
    register_adapter(CRM, plugin)
    yield
    unregister_adapter(CRM)


@pytest.fixture(scope="module")
def server() -> Iterator[TinyCrm]:
    crm = seeded(partners=4, deals_each=30)
    yield crm
    crm.stop()


def settings(crm: TinyCrm, **more: object) -> dict[str, object]:
    return {"url": crm.address, "api_key": KEY, **more}


@pytest.fixture(scope="module")
def contract_subject(server: TinyCrm) -> ContractSubject:
    return ContractSubject(
        make_adapter=lambda: plugin.build("tiny", settings(server, page_size=PAGE)),
        controls=TinyControls(server),
        object_name="deals",
        new_values=lambda tag: {"name": f"Contract {tag}"},
        changed_values=lambda tag: {"name": f"Renamed {tag}"},
        page_size=PAGE,
    )


class TestTinyCrmContract(CrmAdapterContract):
    """The shared adapter contract on TinyCRM."""


def test_a_sync_and_a_partner_query_through_the_public_api(db_url: str) -> None:
    crm = seeded(partners=3, deals_each=4, fillers=2)
    source = {"crm": CRM, **settings(crm, page_size=5)}
    config = parse_config({"store": {"database": db_url}, "sources": {"tiny": source}})
    try:
        with Mirror(config) as mirror:
            results = mirror.sync()
            assert [(r.object, r.kind, r.totals.inserted) for r in results] == [
                ("partners", "backfill", 5),
                ("deals", "backfill", 12),
            ]
            partners = mirror.partners()
            assert [p["name"] for p in partners] == ["Partner 0", "Partner 1", "Partner 2"]
            mine, theirs = partners[0]["id"], partners[1]["id"]
            view = mirror.as_partner(mine)
            deals = view.select("deals", limit=100)
            assert len(deals) == 4 and {d["partner_id"] for d in deals} == {mine}
            assert set(deals[0]) == {"id", "name", "amount", "partner_id", "updated_at"}
            other = mirror.as_partner(theirs).select("deals", limit=1)[0]["id"]
            with pytest.raises(AccessDenied):
                view.get("deals", other)
            view.update("deals", deals[0]["id"], {"amount": 999.0})
            assert mirror.push()["tiny"].failed == 0
            assert crm.records["deals"][deals[0]["id"]]["amount"] == 999.0
    finally:
        crm.stop()


def test_its_settings_problems_come_with_the_engines_in_one_error() -> None:
    source = {"crm": CRM, "url": "http://tiny.example.com", "api_kee": "x"}
    with pytest.raises(ConfigError) as caught:
        parse_config({"sync": {"prefetch_pages": 99}, "sources": {"tiny": source}})
    problems = "\n".join(caught.value.problems)
    for expected in (
        "sync.prefetch_pages",
        "sources.tiny: tinycrm.api_kee: unknown option",
        "sources.tiny: tinycrm.api_key: required",
        "sources.tiny: tinycrm.url must be a memory:// address",
    ):
        assert expected in problems


def test_an_unknown_crm_lists_the_installed_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": {"tiny": {"crm": "nocrm"}}})
    [problem] = caught.value.problems
    assert "sources.tiny.crm: no adapter for CRM 'nocrm'" in problem
    assert CRM in problem.split("available: ")[1]


def test_its_secrets_are_known_to_the_engine(server: TinyCrm) -> None:
    config = parse_config({"sources": {"tiny": {"crm": CRM, **settings(server)}}})
    assert KEY in secret_values(config)


def test_prm_mirror_check_checks_it(tmp_path: Path, server: TinyCrm) -> None:
    config = tmp_path / "prm-mirror.toml"
    config.write_text(
        f'[store]\ndatabase = "sqlite:///{tmp_path}/mirror.db"\n'
        f"[daemon]\nmetrics_port = 0\n"
        f'[sources.tiny]\ncrm = "{CRM}"\nurl = "{server.address}"\napi_key = "${{TINY_KEY}}"\n'
    )
    result = CliRunner().invoke(main, ["-c", str(config), "check"], env={"TINY_KEY": KEY})
    assert result.exit_code == 0, result.output
    assert "config ok" in result.output
    assert KEY not in result.output


def test_neither_the_engine_nor_the_cli_names_it() -> None:
    sources = [*sorted((ROOT / "mirror").rglob("*.py")), *sorted((ROOT / "cli").rglob("*.py"))]
    assert [str(path) for path in sources if CRM in path.read_text().lower()] == []
