"""Pure matching of a deal registration against other deals for the same end customer.

A registration is compared with other partners' open registrations and the vendor's open
opportunities: the customer's web domain (normalised to its registered domain, so
``https://www.acme.co.uk/contact`` and ``sales.acme.co.uk`` agree), its company name (lower
case, punctuation and legal suffixes dropped, then a token-order-insensitive fuzzy ratio, so
"ACME Corp." ~ "Acme Corporation"), the country, and the products. The verdict is ``clear``,
``possible_duplicate`` or ``conflict``, with a score and the reasons.

Only the customer's identity (the same registered domain, or names at least 85% alike) makes
two deals match at all; the country and the products then move the score within the match, but
never below ``possible_duplicate``. So whether a verdict is ``clear`` depends on the customer
alone, never on another deal's country or products: that bit is what a partner may learn
(``PartnerVerdict``), the score and the rest are the channel manager's.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import cache

import tldextract
from rapidfuzz import fuzz

LEGAL_SUFFIXES = frozenset({
    "inc", "incorporated", "corp", "corporation", "co", "company", "ltd", "limited", "llc",
    "llp", "plc", "gmbh", "ag", "sa", "sas", "sarl", "bv", "nv", "spa", "srl", "oy", "ab",
    "as", "aps", "kk", "pty", "pte", "group", "holdings", "holding", "the",
})  # fmt: skip
CONFLICT_AT = 0.9
POSSIBLE_AT = 0.75
SAME_NAME_AT = 0.85


class Verdict(enum.StrEnum):
    """What a registration's assessment concludes (the channel manager's view)."""

    CLEAR = "clear"
    POSSIBLE_DUPLICATE = "possible_duplicate"
    CONFLICT = "conflict"


class PartnerVerdict(enum.StrEnum):
    """What the registering partner learns: whether its registration goes to review."""

    CLEAR = "clear"
    REVIEW = "review"

    @classmethod
    def of(cls, verdict: Verdict) -> PartnerVerdict:
        """The partner's view of ``verdict``: only whether another deal names the customer."""
        return cls.CLEAR if verdict is Verdict.CLEAR else cls.REVIEW


@dataclass(frozen=True)
class DealFacts:
    """What is compared of a deal: its customer, country, products and dates."""

    record_id: str
    kind: str
    partner_id: str | None
    company: str
    domain: str | None = None
    country: str | None = None
    products: frozenset[str] = frozenset()
    on: date | None = None


@dataclass(frozen=True)
class Match:
    """One other deal that looks like the same customer, with why."""

    other: DealFacts
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Assessment:
    """The verdict on a registration and the matches behind it."""

    verdict: Verdict
    score: float
    matches: tuple[Match, ...] = field(default_factory=tuple)

    @property
    def reasons(self) -> tuple[str, ...]:
        """The reasons of the strongest match."""
        return self.matches[0].reasons if self.matches else ()


@cache
def _extractor() -> tldextract.TLDExtract:
    # the bundled public-suffix snapshot: no network at run time
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def normalize_domain(text: str | None) -> str | None:
    """The registered domain of a URL, host or e-mail address (``None`` when there is none)."""
    if not text or not text.strip():
        return None
    host = text.strip().lower().split("@")[-1]
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", host).split("/")[0].split(":")[0]
    parts = _extractor()(host)
    if not parts.suffix or not parts.domain:
        return None
    return f"{parts.domain}.{parts.suffix}"


def normalize_company(name: str) -> str:
    """Lower case, accents and punctuation removed, legal suffixes dropped."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    text = text.replace("&", " and ").replace(".", "")
    words = re.findall(r"[a-z0-9]+", text)
    kept = [w for w in words if w not in LEGAL_SUFFIXES]
    return " ".join(kept or words)


def name_similarity(left: str, right: str) -> float:
    """0..1: how alike two company names are once normalised (word order ignored)."""
    a, b = normalize_company(left), normalize_company(right)
    if not a or not b:
        return 0.0
    return float(fuzz.token_sort_ratio(a, b)) / 100.0


def same_customer(deal: DealFacts, other: DealFacts) -> bool:
    """Whether two deals name the same customer: the same registered domain, or company names
    at least 85% alike."""
    if deal.domain and deal.domain == other.domain:
        return True
    return name_similarity(deal.company, other.company) >= SAME_NAME_AT


def compare(deal: DealFacts, other: DealFacts) -> Match | None:
    """How strongly ``other`` looks like the same customer as ``deal`` (``None``: not at all)."""
    reasons: list[str] = []
    same_domain = bool(deal.domain and deal.domain == other.domain)
    similarity = name_similarity(deal.company, other.company)
    if same_domain:
        reasons.append(f"same web domain ({deal.domain})")
        score = 1.0
    elif similarity >= SAME_NAME_AT:
        reasons.append(f"company names {similarity:.0%} alike")
        score = similarity
    else:
        return None
    if deal.country and other.country and deal.country.lower() != other.country.lower():
        score -= 0.2
        reasons.append("but a different country")
    overlap = deal.products & other.products
    if overlap:
        score = min(1.0, score + 0.05)
        reasons.append(f"{len(overlap)} product(s) in common")
    elif deal.products and other.products:
        score -= 0.1
        reasons.append("no product in common")
    # the customer matched: country and products grade the match, they never clear it
    return Match(other, round(max(score, POSSIBLE_AT), 3), tuple(reasons))


def assess(deal: DealFacts, others: Iterable[DealFacts]) -> Assessment:
    """The verdict on ``deal`` against ``others`` (the deal itself is skipped)."""
    matches = sorted(
        (m for o in others if o.record_id != deal.record_id and (m := compare(deal, o))),
        key=lambda m: (-m.score, m.other.record_id),
    )
    score = matches[0].score if matches else 0.0
    if score >= CONFLICT_AT:
        verdict = Verdict.CONFLICT
    elif score >= POSSIBLE_AT:
        verdict = Verdict.POSSIBLE_DUPLICATE
    else:
        verdict = Verdict.CLEAR
    return Assessment(verdict, score, tuple(m for m in matches if m.score >= POSSIBLE_AT))
