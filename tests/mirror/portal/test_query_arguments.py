"""Arguments a partner query cannot take raise ``QueryError`` naming them, on both stores: no
database error, with its SQL text, reaches the caller; several conditions on a field all apply."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from mirror.errors import MirrorError, QueryError
from mirror.portal.view import PartnerView
from tests.conftest import BACKENDS, PG_URL, fresh_database
from tests.mirror.org import Org, build_small_org


@pytest.fixture(scope="module", params=BACKENDS)
def org(request: pytest.FixtureRequest):
    if request.param == "postgresql" and not PG_URL:
        pytest.skip("PostgreSQL suite: set PRM_MIRROR_TEST_PG_URL (see README)")
    with fresh_database(request.param) as url:
        org = Org(url)
        build_small_org(org)
        yield org
        org.close()


def misuses(view: PartnerView) -> dict[str, Callable[[], Any]]:
    """Calls that reached the database with SQL in the error, each with the argument named."""
    deals = "Opportunity"
    return {
        "where['Amount']": lambda: view.select(deals, where={"Amount": {"gt": 1}}),
        "where['Name']": lambda: view.select(deals, where={"Name": object()}),
        "where['Amount'] ": lambda: view.select(deals, where={"Amount": ("=", "lots")}),
        "where['Id']": lambda: view.select(deals, where={"Id": ["o1", "o2"]}),
        "where['Name']  ": lambda: view.select(deals, where={"Name": ("like", "%a" * 30_000)}),
        "where['Amount']  ": lambda: view.count(deals, where={"Amount": (">", 1, 2)}),
        "where['Amount']   ": lambda: view.select(deals, where={"Amount": ("like", "1%")}),
        "where['Id'] ": lambda: view.select(deals, where={"Id": ("in", range(5000))}),
        "order_by": lambda: view.select(deals, order_by=["Amount"] * 5000),
        "limit": lambda: view.changes(limit=-1),
        "limit ": lambda: view.select(deals, limit=10**6),
        "offset": lambda: view.select(deals, offset=-1, where={"Amount": (">", 0)}),
        "offset ": lambda: view.select(deals, offset=2**70),
        "since": lambda: view.changes(since="0"),
        "record_id": lambda: view.get(deals, ["o1"]),  # type: ignore[arg-type]
        "record_id ": lambda: view.explain(deals, {"o1": 1}),  # type: ignore[arg-type]
        "object_name": lambda: view.select(["Opportunity"]),  # type: ignore[arg-type]
    }


def test_arguments_the_database_would_refuse_are_named(org: Org) -> None:
    view = org.view("P1")
    for argument, misuse in misuses(view).items():
        with pytest.raises(QueryError) as caught:
            misuse()
        assert caught.value.argument == argument.strip(), argument
        assert str(caught.value).startswith(argument.strip())
        assert "SELECT" not in str(caught.value) and "[SQL" not in str(caught.value)


@pytest.mark.parametrize("partner", [["P1"], ("P1",), 1, {"id": "P1"}, "P" * 1000])
def test_a_partner_id_that_is_not_an_id_is_refused(org: Org, partner: Any) -> None:
    with pytest.raises(MirrorError, match="partner_id"):
        PartnerView(org.store, org.rules, partner).select("Opportunity")


def test_several_conditions_on_one_field_all_apply(org: Org) -> None:
    view = org.view("P2")
    between = {"Amount": [(">", 15), ("<", 25)]}
    assert [r["Id"] for r in view.select("Opportunity", where=between)] == ["o2"]
    assert view.count("Opportunity", where=between) == 1
    typed = view.select("Opportunity", where={"Amount": ("in", ["20", 30])}, order_by="Id")
    assert [r["Id"] for r in typed] == ["o2", "o3"]
    since = {"Modstamp": (">=", dt.date(1970, 1, 1))}
    assert view.count("Opportunity", where=since) == 2
