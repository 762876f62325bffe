"""Finding the deals a registration may collide with, and the customer account it is for.

Candidates come from the mirror with a cheap SQL prefilter (the longest word of the company
name, the domain's first label), then ``mirror.portal.dealmatch`` scores them: other partners' open
registrations within the match window, and the open opportunities that are not the registering
partner's own (the vendor's, and other partners') with their customers' names, websites,
countries and products.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, or_, select, true

from mirror.errors import ConfigError, MirrorError
from mirror.portal.dealmatch import Assessment, DealFacts, Verdict, assess, normalize_company
from mirror.portal.dealmatch import normalize_domain as registered_domain
from mirror.store.database import MirrorTable, Store


@dataclass(frozen=True)
class RegistrationSettings:
    """``[registrations]`` of the CRM's schema file."""

    object: str
    partner_field: str
    status_field: str
    opportunity_field: str
    statuses: Mapping[str, str]
    fields: Mapping[str, str]
    opportunity: Mapping[str, str]
    customers: Mapping[str, str]
    expire_after_days: int = 90
    match_window_days: int = 365
    name_field: str = "Name"
    created_field: str = "CreatedDate"
    # registrations of one customer by one partner within the window; more are refused
    probe_limit: int = 3
    probe_window_days: int = 30

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> RegistrationSettings:
        """Settings from the TOML table."""
        problems = [
            f"registrations.{key}: must be a whole number of at least 1, not {raw[key]!r}"
            for key in ("probe_limit", "probe_window_days", "expire_after_days")
            if key in raw and (type(raw[key]) is not int or raw[key] < 1)
        ]
        if problems:
            raise ConfigError(problems)
        return cls(
            object=raw["object"],
            partner_field=raw["partner_field"],
            status_field=raw["status_field"],
            opportunity_field=raw["opportunity_field"],
            statuses={k: raw[k] for k in ("submitted", "approved", "rejected", "expired")},
            fields=dict(raw.get("fields", {})),
            opportunity=dict(raw.get("opportunity", {})),
            customers=dict(raw.get("customers", {})),
            expire_after_days=int(raw.get("expire_after_days", 90)),
            match_window_days=int(raw.get("match_window_days", 365)),
            name_field=raw.get("name_field") or raw.get("fields", {}).get("name") or "Name",
            created_field=raw.get("created_field", "CreatedDate"),
            probe_limit=int(raw.get("probe_limit", 3)),
            probe_window_days=int(raw.get("probe_window_days", 30)),
        )

    def opportunity_column(self, role: str, default: str) -> str:
        """The opportunity's field for ``role`` (name, stage, close_date, amount, lead_source),
        Salesforce's name unless ``[registrations.opportunity] <role>_field`` says otherwise."""
        return self.opportunity.get(f"{role}_field", default)


class RegistrationMatcher:
    """Assesses registrations against the mirror's registrations and open pipeline."""

    def __init__(self, store: Store, source: str, settings: RegistrationSettings) -> None:
        self.store = store
        self.source = source
        self.settings = settings

    def assess(self, deal: DealFacts) -> Assessment:
        """``deal`` against other partners' open registrations and the open opportunities."""
        with self.store.engine.connect() as conn:
            others = [*self._registration_facts(conn, deal), *self._opportunity_facts(conn, deal)]
        return assess(deal, others)

    def _registration_facts(self, conn: Connection, deal: DealFacts) -> list[DealFacts]:
        regs = self.table(self.settings.object)
        t, s, f = regs.table, self.settings, self.settings.fields
        open_statuses = (s.statuses["submitted"], s.statuses["approved"])
        query = select(t).where(
            t.c._deleted.is_(False),
            t.c[s.status_field].in_(open_statuses),
            t.c[s.partner_field] != (deal.partner_id or ""),
            self._like_any(t.c[f["company"]], t.c.get(f.get("domain", "")), deal),
        )
        return [self.facts(dict(r._mapping)) for r in conn.execute(query.limit(500))]

    def _opportunity_facts(self, conn: Connection, deal: DealFacts) -> list[DealFacts]:
        c, o = self.settings.customers, self.settings.opportunity
        opps, accounts = self.table(o["object"]), self.table(c["object"])
        ot, at = opps.table, accounts.table
        # a partner's own open deals are its own pipeline, not a conflict against it
        others = (
            ot.c[o["partner_field"]].is_distinct_from(deal.partner_id)
            if deal.partner_id
            else true()
        )
        query = (
            select(
                ot.c[opps.spec.key],
                ot.c[o["partner_field"]],
                at.c[c["name_field"]],
                at.c[c["website_field"]],
                at.c[c["country_field"]],
            )
            .join(at, at.c[accounts.spec.key] == ot.c[o["account_field"]])
            .where(
                ot.c._deleted.is_(False),
                others,
                ot.c[c["open_field"]] == c.get("open_value", False),
                self._like_any(at.c[c["name_field"]], at.c[c["website_field"]], deal),
            )
            .limit(500)
        )
        rows = conn.execute(query).all()
        products = self._opportunity_products(conn, [r[0] for r in rows])
        return [
            DealFacts(
                r[0],
                "opportunity",
                r[1],
                r[2] or "",
                registered_domain(r[3]),
                r[4],
                frozenset(products.get(r[0], ())),
            )
            for r in rows
        ]

    def _opportunity_products(self, conn: Connection, ids: list[str]) -> dict[str, set[str]]:
        c = self.settings.customers
        try:
            lines, products = self.table(c["line_object"]), self.table(c["product_object"])
        except MirrorError:
            return {}
        lt, pt = lines.table, products.table
        query = (
            select(lt.c[c["line_opportunity_field"]], pt.c[c["product_code_field"]])
            .join(pt, pt.c[products.spec.key] == lt.c[c["line_product_field"]])
            .where(lt.c[c["line_opportunity_field"]].in_(ids[:1000]), lt.c._deleted.is_(False))
        )
        found: dict[str, set[str]] = {}
        for opportunity, code in conn.execute(query):
            if code:
                found.setdefault(opportunity, set()).add(code)
        return found

    @staticmethod
    def _like_any(name_column: Any, domain_column: Any, deal: DealFacts) -> Any:
        """A cheap SQL prefilter: the longest word of the name, or the domain's first label."""
        words = sorted(normalize_company(deal.company).split(), key=len, reverse=True)
        conditions = []
        if words and len(words[0]) >= 3:
            conditions.append(func.lower(name_column).like(f"%{words[0]}%"))
        if deal.domain is not None and domain_column is not None:
            conditions.append(func.lower(domain_column).like(f"%{deal.domain.split('.')[0]}%"))
        return or_(*conditions) if conditions else name_column.is_(None)

    def facts(self, row: Mapping[str, Any]) -> DealFacts:
        f, s = self.settings.fields, self.settings
        products = row.get(f.get("products", ""), None) or ""
        created = row.get(s.created_field)
        return DealFacts(
            record_id=row[self.table(s.object).spec.key],
            kind="registration",
            partner_id=row.get(s.partner_field),
            company=row.get(f["company"]) or "",
            domain=registered_domain(row.get(f.get("domain", ""))),
            country=row.get(f.get("country", "")),
            products=frozenset(p.strip() for p in products.split(",") if p.strip()),
            on=created.date() if isinstance(created, dt.datetime) else None,
        )

    def customer_account(self, conn: Connection, deal: DealFacts) -> str | None:
        c = self.settings.customers
        accounts = self.table(c["object"])
        t = accounts.table
        name, website = t.c[c["name_field"]], t.c[c["website_field"]]
        query = select(t.c[accounts.spec.key], name, website).where(
            t.c._deleted.is_(False), self._like_any(name, website, deal)
        )
        best: tuple[float, str] | None = None
        for record_id, name, website in conn.execute(query.limit(200)):
            candidate = DealFacts(
                record_id, "account", None, name or "", registered_domain(website)
            )
            match = assess(deal, [candidate])
            if match.verdict is Verdict.CONFLICT and (best is None or match.score > best[0]):
                best = (match.score, record_id)
        return best[1] if best else None

    def table(self, name: str) -> MirrorTable:
        try:
            return self.store.mirrored(self.source, name)
        except KeyError:
            raise MirrorError(f"{name} is not mirrored: add it to the source's objects") from None
