"""Deal matching: domains, fuzzy company names, countries, products, verdicts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mirror.portal.dealmatch import (
    DealFacts,
    Verdict,
    assess,
    name_similarity,
    normalize_company,
    normalize_domain,
)


def deal(record_id: str, company: str, domain: str | None = None, **kw) -> DealFacts:
    return DealFacts(record_id, "registration", kw.pop("partner", "P1"), company,
                     normalize_domain(domain), **kw)  # fmt: skip


def test_domains_normalise_to_the_registered_domain() -> None:
    assert normalize_domain("https://www.acme.co.uk/contact?x=1") == "acme.co.uk"
    assert normalize_domain("sales.ACME.co.uk") == "acme.co.uk"
    assert normalize_domain("jane@eu.acme.com") == "acme.com"
    assert normalize_domain("localhost") is None
    assert normalize_domain("") is None


def test_company_names_lose_case_punctuation_and_legal_suffixes() -> None:
    assert normalize_company("ACME Corp.") == "acme"
    assert normalize_company("Acme Corporation") == "acme"
    assert normalize_company("Société Générale S.A.") == "societe generale"
    assert name_similarity("ACME Corp.", "Acme Corporation") == 1.0
    assert name_similarity("Globex Industries", "Industries Globex Inc") == 1.0
    assert name_similarity("Acme", "Initech") < 0.5


def test_verdicts() -> None:
    new = deal("r1", "ACME Corp.", "acme.com", country="US", products=frozenset({"A"}))
    same_domain = deal("r2", "Acme (EMEA)", "www.acme.com", partner="P2", country="US")
    fuzzy = deal("r3", "Acme Corporation", None, partner="P3", country="US")
    elsewhere = deal("r4", "Acme Corporation", None, partner="P4", country="DE")
    unrelated = deal("r5", "Initech", "initech.com", partner="P5")
    assert assess(new, [same_domain]).verdict is Verdict.CONFLICT
    assert assess(new, [fuzzy]).verdict is Verdict.CONFLICT
    assert assess(new, [elsewhere]).verdict is Verdict.POSSIBLE_DUPLICATE
    assert assess(new, [unrelated]).verdict is Verdict.CLEAR
    result = assess(new, [unrelated, fuzzy, same_domain])
    assert [m.other.record_id for m in result.matches][:1] == ["r2"]
    assert "same web domain (acme.com)" in result.reasons


@given(st.text(min_size=1, max_size=30), st.text(max_size=30))
def test_a_deal_never_conflicts_with_itself_and_scores_stay_in_range(company, domain) -> None:
    me = deal("x", company, domain)
    assert assess(me, [me]).verdict is Verdict.CLEAR
    other = deal("y", company, domain, partner="P2")
    result = assess(me, [other])
    assert 0.0 <= result.score <= 1.0
