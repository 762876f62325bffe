"""The HubSpot sandbox's read paths at scale: association batch reads answered from one query
per batch (each input in its order, archived and unknown ids as 207 errors, a record's
associations paged past 500), keyset searches read from the last-modified index range."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from sandboxes.hubspot.sandbox import HubSpotSandbox
from sandboxes.hubspot.search import Compiler, parse_request
from tests.adapters.hubspot.fixtures import unthrottled
from tests.sandboxes.test_hubspot_sandbox import Http

PATH = "/crm/v4/associations/companies/contacts/batch/read"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSpotSandbox]:
    path = tmp_path_factory.mktemp("hubspot-reads") / "hs.db"
    with HubSpotSandbox(path, size="tiny") as sandbox:
        yield unthrottled(sandbox)


def test_batch_read_answers_each_input_in_order_with_errors_and_paging(box):
    http = Http(box)
    popular = box.create("companies", {"name": "Popular"})
    quiet = box.create("companies", {"name": "Quiet"})
    gone = box.create("companies", {"name": "Gone"})
    fans = box.create_many("contacts", [{"firstname": f"Fan {n}"} for n in range(503)])
    for contact in fans:
        box.associate("companies", popular, "contacts", contact)
    box.associate("companies", quiet, "contacts", fans[0])
    box.associate("companies", gone, "contacts", fans[1])
    box.delete("companies", gone)
    inputs = [{"id": quiet}, {"id": gone}, {"id": popular}, {"id": "x1"}, {"id": quiet}]
    reply = http("POST", PATH, json={"inputs": inputs})
    assert reply.status_code == 207
    body = reply.json()
    assert [r["from"]["id"] for r in body["results"]] == [quiet, popular, quiet]
    assert sorted(e["context"]["fromObjectId"][0] for e in body["errors"]) == sorted([gone, "x1"])
    first_quiet, first_popular, _ = body["results"]
    assert [e["toObjectId"] for e in first_quiet["to"]] == [int(fans[0])]
    assert {t["typeId"] for t in first_quiet["to"][0]["associationTypes"]} == {280}
    assert len(first_popular["to"]) == 500 and "paging" not in first_quiet
    after = first_popular["paging"]["next"]["after"]
    rest = http("POST", PATH, json={"inputs": [{"id": popular, "after": after}]}).json()
    listed = [e["toObjectId"] for e in first_popular["to"] + rest["results"][0]["to"]]
    assert listed == sorted(int(f) for f in fans)
    assert "paging" not in rest["results"][0]


def _keyset(stamp: int, after_id: str) -> dict[str, Any]:
    later = {"filters": [_flt("hs_lastmodifieddate", "GT", stamp)]}
    same = {
        "filters": [_flt("hs_lastmodifieddate", "EQ", stamp), _flt("hs_object_id", "GT", after_id)]
    }
    return {
        "filterGroups": [later, same],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ["dealname"],
        "limit": 200,
    }


def _flt(name: str, operator: str, value: Any) -> dict[str, str]:
    return {"propertyName": name, "operator": operator, "value": str(value)}


def test_a_keyset_search_reads_the_stamp_index_range_and_finds_every_group(box):
    kind = box.portal.records.object_type("deals")
    compiled = Compiler(kind).compile(parse_request(_keyset(1_000, "7")))
    plan = box.portal.store.query(
        f"EXPLAIN QUERY PLAN SELECT COUNT(*) FROM hs_objects WHERE {compiled.where}",
        compiled.params,
    )
    assert "modified_ms>?" in " ".join(str(row[-1]) for row in plan)
    deals = box.create_many("deals", [{"dealname": f"Keyset {n}"} for n in range(4)])
    tied = box.set_modstamp("deals", deals[:3])
    box.set_modstamp("deals", deals[3:], datetime.fromtimestamp((tied + 5_000) / 1000, UTC))
    found = Http(box)("POST", "/crm/v3/objects/deals/search", json=_keyset(tied, deals[0]))
    assert [r["id"] for r in found.json()["results"]] == [*deals[1:3], deals[3]]
    assert found.json()["total"] == 3
