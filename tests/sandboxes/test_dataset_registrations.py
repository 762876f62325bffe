"""The seeded deal registrations name customers the way real ones do: each its own web domain
under its country's suffix, so matching them against each other finds a few duplicates and
leaves most registrations clear, rather than every one matching every other."""

from __future__ import annotations

import statistics

import pytest

from mirror.portal.dealmatch import DealFacts, assess, normalize_domain
from sandboxes.dataset.generate import Dataset, Record


def registrations(seed: int, size: str | int) -> list[Record]:
    """The seeded registrations of one dataset."""
    return list(Dataset(seed, size).deal_registrations())


def facts(record: Record) -> DealFacts:
    """What matching compares of a seeded registration."""
    return DealFacts(
        record["key"], "registration", record["partner_key"], record["company_name"],
        normalize_domain(record["domain"]), record["country"],
    )  # fmt: skip


@pytest.mark.parametrize("seed", [3, 7])
def test_seeded_registrations_have_their_own_registered_domains(seed: int) -> None:
    records = registrations(seed, "small")
    domains = {normalize_domain(record["domain"]) for record in records}
    assert None not in domains
    assert len(domains) >= 0.9 * len(records)


@pytest.mark.parametrize("seed", [3, 7])
def test_matching_the_seeded_registrations_shows_a_spread_of_scores(seed: int) -> None:
    deals = [facts(record) for record in registrations(seed, 2_000)]
    scores = [assess(deal, deals).score for deal in deals]
    assert statistics.median(scores) < 1.0
    assert sum(score == 0.0 for score in scores) >= len(scores) // 2
    assert any(score >= 0.75 for score in scores)


def test_the_seeded_registrations_are_the_same_for_a_seed() -> None:
    assert registrations(7, "tiny") == registrations(7, "tiny")
    assert registrations(7, "tiny") != registrations(8, "tiny")
