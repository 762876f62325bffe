"""The CRM-neutral generated dataset: sizes, determinism, consistent references, streaming."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from sandboxes.dataset.generate import SIZES, Counts, Dataset, key_index
from sandboxes.salesforce.ids import make_id, normalize_id, sequence_of, to_18

ANCHOR = datetime(2026, 11, 1, tzinfo=UTC)


def test_named_sizes_set_the_opportunity_count_and_scale_the_rest() -> None:
    assert {name: Counts.for_size(name).opportunities for name in SIZES} == SIZES
    small, medium = Counts.for_size("small"), Counts.for_size("medium")
    assert medium.customers > small.customers and medium.leads > small.leads
    assert Counts.for_size(1234).opportunities == 1234
    with pytest.raises(ValueError):
        Counts.for_size("huge")


def test_same_seed_same_records_and_other_seed_other_records() -> None:
    first, again, other = (Dataset(seed, "tiny", ANCHOR) for seed in (5, 5, 6))
    assert list(first.opportunities()) == list(again.opportunities())
    assert list(first.contacts()) == list(again.contacts())
    assert list(first.opportunities()) != list(other.opportunities())


def test_timestamps_are_ordered_within_the_year_before_the_anchor() -> None:
    data = Dataset(9, "small", ANCHOR)
    records = [*data.customers(), *data.opportunities(), *data.leads()]
    assert all(r["created"] <= r["modified"] <= r["system_modified"] <= ANCHOR for r in records)
    assert any(r["system_modified"] > r["modified"] for r in records)
    stamps = [r["system_modified"] for r in records]
    assert len(set(stamps)) < len(stamps) * 0.9


def test_references_point_at_records_that_exist() -> None:
    data = Dataset(4, "small", ANCHOR)
    counts = data.counts
    for opportunity, lines in data.opportunities_with_line_items():
        assert key_index(opportunity["customer_key"]) < counts.customers
        if opportunity["partner_key"] is not None:
            assert key_index(opportunity["partner_key"]) < counts.partners
        assert len(lines) == opportunity["line_count"]
        if lines:
            total = sum(line["quantity"] * line["unit_price"] for line in lines)
            assert opportunity["amount"] == round(total, 2)
    for registration in data.deal_registrations():
        linked = registration["opportunity_key"]
        if linked is not None:
            assert data.opportunity_partner_key(key_index(linked)) == registration["partner_key"]
    attributed = [o for o in data.opportunities() if o["partner_key"]]
    assert 0.6 < len(attributed) / counts.opportunities < 0.95


def test_generators_stream_without_materialising_records() -> None:
    data = Dataset(1, 3_000, ANCHOR)
    opportunities = data.opportunities()
    assert isinstance(opportunities, Iterator) and not isinstance(opportunities, list)
    tracemalloc.start()
    consumed = sum(1 for _ in opportunities) + sum(1 for _ in data.line_items())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert consumed > 3_000
    assert peak < 500_000


def test_ids_carry_prefix_and_case_safe_suffix() -> None:
    assert to_18("001D000000IRFma") == "001D000000IRFmaIAH"
    record_id = make_id("006", 12_345)
    assert len(record_id) == 18 and record_id.startswith("006")
    assert normalize_id(record_id[:15]) == record_id
    assert normalize_id(record_id.lower()) == record_id
    assert normalize_id("006Kj000000003DIAZ") is None
    assert normalize_id("short") is None
    assert sequence_of(record_id) == 12_345
