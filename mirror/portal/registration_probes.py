"""Repeated registrations of one customer by one partner: limited, and recorded for the vendor.

What a partner learns from registering (``PartnerVerdict``) depends on the customer alone, so
varying its own registration's country or products tells it nothing about another partner's
deal. Registering the same customer again and again still asks the same question many times:
every attempt is recorded (``mirror_registration_attempts``), and once a partner has made
``probe_limit`` attempts for one customer (the same registered domain, or names at least 85%
alike) within ``probe_window_days``, further attempts are refused, recorded as refused, and
shown to the channel manager (``Registrations.probes``, ``prm-mirror registrations probes``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, text, update

from mirror.errors import AccessDenied
from mirror.portal.dealmatch import DealFacts, Verdict, same_customer
from mirror.store.database import Store, utcnow
from mirror.store.tables import mirror_registration_attempts as attempts

ACCEPTED, REFUSED = "accepted", "refused"


class ProbeLimitReached(AccessDenied):
    """The partner registered this customer ``probe_limit`` times within the window already;
    the attempt is recorded for the channel manager and nothing else changed."""


@dataclass(frozen=True)
class Attempt:
    """One attempt being made, inside the caller's transaction."""

    id: int
    refused: bool
    earlier: int


class Probes:
    """The registration attempts of one source."""

    def __init__(self, store: Store, source: str, limit: int, window_days: int) -> None:
        self.store = store
        self.source = source
        self.limit = limit
        self.window = dt.timedelta(days=window_days)

    def begin(
        self, conn: Connection, deal: DealFacts, user_id: str | None, now: dt.datetime | None = None
    ) -> Attempt:
        """Record an attempt of ``deal.partner_id`` inside ``conn``'s transaction, refused when
        the partner reached the limit for this customer. Attempts of one partner are
        serialised, so two at once cannot both slip under the limit."""
        now = now or utcnow()
        partner = str(deal.partner_id)
        if conn.dialect.name == "postgresql":
            conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"prm-registration:{self.source}:{partner}"},
            )
        # on SQLite the insert takes the write lock before the count reads
        attempt_id = conn.execute(
            insert(attempts)
            .values(
                source=self.source,
                partner_id=partner,
                user_id=user_id,
                company=deal.company[:255],
                domain=deal.domain,
                at=now,
                outcome=REFUSED,
            )
            .returning(attempts.c.id)
        ).scalar_one()
        earlier = [
            row
            for row in self._rows(conn, partner, now - self.window)
            if row["id"] != attempt_id and same_customer(deal, _facts(row))
        ]
        refused = len(earlier) >= self.limit
        return Attempt(int(attempt_id), refused, len(earlier))

    def accepted(
        self, conn: Connection, attempt: Attempt, registration_id: str, verdict: Verdict
    ) -> None:
        """Mark ``attempt`` accepted: it made ``registration_id`` with ``verdict``."""
        conn.execute(
            update(attempts)
            .where(attempts.c.id == attempt.id)
            .values(outcome=ACCEPTED, registration_id=registration_id, verdict=verdict.value)
        )

    def refusal(self, attempt: Attempt) -> ProbeLimitReached:
        """The error a refused attempt raises (it says nothing about any other deal)."""
        days = self.window.days
        return ProbeLimitReached(
            f"this customer was registered {attempt.earlier} times in the last {days} days: "
            "your channel manager handles further registrations of it"
        )

    def of_customer(self, deal: DealFacts, now: dt.datetime | None = None) -> dict[str, int]:
        """How often ``deal.partner_id`` tried to register ``deal``'s customer in the window."""
        now = now or utcnow()
        with self.store.engine.connect() as conn:
            rows = self._rows(conn, str(deal.partner_id), now - self.window)
        same = [r for r in rows if same_customer(deal, _facts(r))]
        return {
            "attempts": len(same),
            "refused": sum(r["outcome"] == REFUSED for r in same),
        }

    def repeated(self, at_least: int = 2, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Customers registered at least ``at_least`` times by one partner within the window,
        most attempts first: for the channel manager."""
        now = now or utcnow()
        a = attempts.c
        query = (
            select(attempts)
            .where(a.source == self.source, a.at >= now - self.window)
            .order_by(a.partner_id, a.at, a.id)
        )
        with self.store.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        groups: list[list[dict[str, Any]]] = []
        for row in rows:
            group = next((g for g in groups if _same(g[0], row)), None)
            if group is None:
                groups.append([row])
            else:
                group.append(row)
        found = [_summary(g) for g in groups if len(g) >= at_least]
        return sorted(found, key=lambda s: (-s["attempts"], s["partner"], s["company"]))

    def _rows(self, conn: Connection, partner: str, since: dt.datetime) -> list[dict[str, Any]]:
        a = attempts.c
        query = select(attempts).where(
            a.source == self.source, a.partner_id == partner, a.at >= since
        )
        return [dict(r._mapping) for r in conn.execute(query)]


def _same(first: dict[str, Any], row: dict[str, Any]) -> bool:
    """Whether ``row`` is an attempt of the same partner for the customer of ``first``."""
    return first["partner_id"] == row["partner_id"] and same_customer(_facts(first), _facts(row))


def _facts(row: dict[str, Any]) -> DealFacts:
    return DealFacts(str(row["id"]), "attempt", row["partner_id"], row["company"], row["domain"])


def _summary(group: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "partner": group[0]["partner_id"],
        "company": group[0]["company"],
        "domain": group[0]["domain"],
        "attempts": len(group),
        "refused": sum(r["outcome"] == REFUSED for r in group),
        "first": group[0]["at"],
        "last": group[-1]["at"],
        "registrations": [r["registration_id"] for r in group if r["registration_id"]],
    }
