"""Deal registration: a partner registers a deal; the vendor approves it into exactly one
opportunity attributed to that partner.

Registrations are CRM records (Salesforce: ``Deal_Registration__c``; the object and its fields
come from ``[registrations]`` in ``schemas/<crm>.toml``) written through the outbox like any
portal edit, so they are idempotent and survive crashes. Each is assessed against the other
partners' open registrations and the open opportunities that are not its own
(``mirror.portal.dealmatch``); the partner learns only whether its registration goes to review
(``PartnerVerdict``: it depends on the customer alone, never on another deal's country,
products or score), the channel manager sees the verdict, score and matches. Repeated
registrations of one customer by one partner are limited and recorded
(``mirror.portal.registration_probes``). Approval (here, or in the CRM and picked up by the sync)
creates the opportunity with an idempotency key derived from the registration, so approving
twice, or retrying after a lost response, still makes one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, select

from mirror.errors import AccessDenied, MirrorError
from mirror.portal.dealmatch import DealFacts, PartnerVerdict, Verdict
from mirror.portal.dealmatch import normalize_domain as registered_domain
from mirror.portal.registration_match import RegistrationMatcher, RegistrationSettings
from mirror.portal.registration_probes import Probes
from mirror.portal.registration_request import (
    VERDICT_LABELS,
    DealRequest,
    Receipt,
    parse_request,
    partner_verdict,
)
from mirror.portal.writes import apply_update, insert_local, typed_values
from mirror.pull.pages import PageOutcome
from mirror.push.outbox import entry_by_key, is_local
from mirror.store.database import MirrorTable, Store, utcnow
from mirror.visibility.rules import VisibilityRules
from mirror.visibility.upkeep import GrantUpkeep


class Registrant(Protocol):
    """What registering needs of a partner view: who registers, and its slice to read."""

    partner_id: str
    user_id: str | None
    rules: VisibilityRules

    def select(
        self, object_name: str, *, fields: Sequence[str] | None = None, limit: int = 50
    ) -> list[dict]:
        """Records of the slice (``PartnerView.select``)."""


class Registrations:
    """Registering, assessing, approving, rejecting and expiring deal registrations."""

    def __init__(
        self, store: Store, source: str, settings: RegistrationSettings, upkeep: GrantUpkeep
    ) -> None:
        self.store = store
        self.source = source
        self.settings = settings
        self.upkeep = upkeep
        self.matcher = RegistrationMatcher(store, source, settings)
        self.attempts = Probes(store, source, settings.probe_limit, settings.probe_window_days)

    # --- the partner's side ------------------------------------------------------------

    def register(self, view: Registrant, request: Mapping[str, Any]) -> Receipt:
        """Validate, assess and submit a registration for ``view``'s partner;
        ``ProbeLimitReached`` (recorded for the channel manager) when the partner registered
        the same customer ``probe_limit`` times within ``probe_window_days`` already."""
        deal = parse_request(request)
        regs = self.matcher.table(self.settings.object)
        facts = DealFacts(
            "new",
            "registration",
            view.partner_id,
            deal.company,
            registered_domain(deal.domain),
            deal.country,
            frozenset(deal.products),
            dt.date.today(),
        )
        with self.store.transaction() as conn:
            attempt = self.attempts.begin(conn, facts, view.user_id)
            if not attempt.refused:
                verdict = self.matcher.assess(facts).verdict
                values = self._record_values(regs, deal, view.partner_id, verdict)
                local_id = insert_local(conn, regs, values, view.partner_id, view.user_id)
                self.upkeep.refresh(conn, regs.spec.name, [local_id])
                self.attempts.accepted(conn, attempt, local_id, verdict)
        if attempt.refused:
            raise self.attempts.refusal(attempt)
        return Receipt(local_id, self.settings.statuses["submitted"], PartnerVerdict.of(verdict))

    def of_partner(self, view: Registrant) -> list[dict[str, Any]]:
        """The partner's registrations: the fields it sees of each, ``verdict``: whether it
        went to review (never the vendor's verdict or score), and ``rejection_reason``: the
        reason the vendor gave for a rejection (``None`` when there is none to see)."""
        regs = self.matcher.table(self.settings.object)
        key, f = regs.spec.key, self.settings.fields
        reason = f.get("rejection_reason")
        wanted = (
            key,
            self.settings.name_field,
            f.get("company"),
            self.settings.status_field,
            self.settings.opportunity_field,
            reason,
        )
        rule = view.rules.rule(self.settings.object)
        present = [n for n in wanted if n and regs.spec.has_field(n) and rule and rule.shows(n)]
        rows = view.select(self.settings.object, fields=present, limit=1000)
        labels = self._verdict_labels(regs, [r[key] for r in rows])
        return [
            {
                **row,
                "verdict": partner_verdict(labels.get(row[key])),
                "rejection_reason": row.get(reason) if reason else None,
            }
            for row in rows
        ]

    def _verdict_labels(self, regs: MirrorTable, ids: list[str]) -> dict[str, Any]:
        field = self.settings.fields.get("verdict")
        if not ids or not field or not regs.spec.has_field(field):
            return {}
        key = regs.table.c[regs.spec.key]
        query = select(key, regs.table.c[field]).where(key.in_(ids))
        with self.store.engine.connect() as conn:
            return dict(conn.execute(query).all())

    # --- the vendor's side --------------------------------------------------------------

    def show(self, registration_id: str) -> dict[str, Any]:
        """Everything about one registration, with the full assessment (for the vendor)."""
        regs = self.matcher.table(self.settings.object)
        row = self._row(regs, registration_id)
        facts = self.matcher.facts(row)
        assessment = self.matcher.assess(facts)
        return {
            "registration": row,
            "verdict": assessment.verdict.value,
            "score": assessment.score,
            "probing": self.attempts.of_customer(facts),
            "matches": [
                {
                    "kind": m.other.kind,
                    "id": m.other.record_id,
                    "partner": m.other.partner_id,
                    "company": m.other.company,
                    "score": m.score,
                    "reasons": list(m.reasons),
                }
                for m in assessment.matches
            ],
        }

    def probes(self, at_least: int = 2) -> list[dict[str, Any]]:
        """Customers one partner registered ``at_least`` times within ``probe_window_days``
        (with how many attempts were refused), most attempts first."""
        return self.attempts.repeated(at_least)

    def recent(self, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Registrations (all partners), newest first, for the vendor."""
        regs = self.matcher.table(self.settings.object)
        t, s, f = regs.table, self.settings, self.settings.fields
        query = select(t).where(t.c._deleted.is_(False))
        if status:
            query = query.where(t.c[s.status_field] == status)
        created = s.created_field
        order = t.c[created].desc() if created in t.c else t.c._synced_at.desc()
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.order_by(order).limit(limit)).all()
        return [
            {
                "id": r._mapping[regs.spec.key],
                "partner": r._mapping[s.partner_field],
                "company": r._mapping.get(f.get("company", "")),
                "status": r._mapping[s.status_field],
                "verdict": r._mapping.get(f.get("verdict", "")),
                "opportunity": r._mapping[s.opportunity_field],
            }
            for r in rows
        ]

    def approve(self, registration_id: str, by: str | None = None) -> str:
        """Approve: the registration's opportunity (created once, however often this runs);
        returns its id (local until pushed)."""
        regs = self.matcher.table(self.settings.object)
        if is_local(registration_id):
            raise MirrorError("the registration is not in the CRM yet: run `prm-mirror push` first")
        with self.store.transaction() as conn:
            row = self._row(regs, registration_id, conn)
            status = row[self.settings.status_field]
            if status in (self.settings.statuses["rejected"], self.settings.statuses["expired"]):
                raise MirrorError(
                    f"registration {registration_id} is {status}; it cannot be approved"
                )
            opportunity = self._opportunity_for(conn, row, by)
            changes = {
                self.settings.status_field: self.settings.statuses["approved"],
                self.settings.opportunity_field: opportunity,
            }
            self._update(conn, regs, row, changes, by)
        return opportunity

    def reject(self, registration_id: str, reason: str, by: str | None = None) -> None:
        """Reject with a reason the partner sees."""
        regs = self.matcher.table(self.settings.object)
        with self.store.transaction() as conn:
            row = self._row(regs, registration_id, conn)
            if row[self.settings.status_field] == self.settings.statuses["approved"]:
                raise MirrorError(f"registration {registration_id} is already approved")
            changes = {self.settings.status_field: self.settings.statuses["rejected"]}
            reason_field = self.settings.fields.get("rejection_reason")
            if reason_field and regs.spec.has_field(reason_field):
                changes[reason_field] = reason[:255]
            self._update(conn, regs, row, changes, by)

    def expire(self, now: dt.datetime | None = None) -> list[str]:
        """Expire submitted registrations with no change for ``expire_after_days``."""
        now = now or utcnow()
        regs = self.matcher.table(self.settings.object)
        table = regs.table
        cutoff = now - dt.timedelta(days=self.settings.expire_after_days)
        stamp = table.c._modstamp
        query = select(table).where(
            table.c._deleted.is_(False),
            table.c[self.settings.status_field] == self.settings.statuses["submitted"],
            stamp.is_not(None),
            stamp < cutoff,
        )
        expired = []
        with self.store.transaction() as conn:
            for row in conn.execute(query).all():
                changes = {self.settings.status_field: self.settings.statuses["expired"]}
                self._update(conn, regs, dict(row._mapping), changes, "expiry")
                expired.append(row._mapping[regs.spec.key])
        return expired

    def on_page(self, conn: Connection, mirrored: MirrorTable, outcome: PageOutcome) -> None:
        """Page hook: a registration approved in the CRM gets its opportunity (not during the
        first backfill: what was approved before the mirror existed is the CRM's business)."""
        if mirrored.spec.name != self.settings.object or not outcome.written_ids:
            return
        if outcome.initial:
            return
        table, s = mirrored.table, self.settings
        query = select(table).where(
            table.c[mirrored.spec.key].in_(outcome.written_ids[:1000]),
            table.c[s.status_field] == s.statuses["approved"],
            table.c[s.opportunity_field].is_(None),
        )
        for row in conn.execute(query).all():
            values = dict(row._mapping)
            opportunity = self._opportunity_for(conn, values, "crm approval")
            self._update(conn, mirrored, values, {s.opportunity_field: opportunity}, "crm approval")

    # --- writing ------------------------------------------------------------------------

    def _record_values(
        self, regs: MirrorTable, deal: DealRequest, partner_id: str, verdict: Verdict
    ) -> dict[str, Any]:
        f, s = self.settings.fields, self.settings
        wanted = {
            s.name_field: f"{deal.company} ({deal.close_date:%Y-%m})"[:80],
            s.partner_field: partner_id,
            s.status_field: s.statuses["submitted"],
            f.get("company"): deal.company,
            f.get("domain"): registered_domain(deal.domain) if deal.domain else None,
            f.get("country"): deal.country,
            f.get("amount"): deal.amount,
            f.get("close_date"): deal.close_date,
            f.get("contact_name"): deal.contact_name,
            f.get("contact_email"): deal.contact_email,
            f.get("currency"): deal.currency,
            f.get("products"): ",".join(deal.products) or None,
            f.get("notes"): deal.notes,
            f.get("verdict"): VERDICT_LABELS[verdict],
        }
        values = {k: v for k, v in wanted.items() if k and regs.spec.has_field(k)}
        return typed_values(regs.spec, values)

    def _opportunity_for(self, conn: Connection, row: Mapping[str, Any], by: str | None) -> str:
        """The registration's opportunity: the one already made for it, else a new one."""
        regs = self.matcher.table(self.settings.object)
        key = f"reg-{row[regs.spec.key]}"
        entry = entry_by_key(conn, self.source, key)
        if entry is not None:
            return str(entry.crm_id or entry.record_id)
        opps = self.matcher.table(self.settings.opportunity["object"])
        mirror_key = opps.spec.external_id_field
        if mirror_key and mirror_key in opps.table.c:
            existing = conn.execute(
                select(opps.table.c[opps.spec.key]).where(opps.table.c[mirror_key] == key)
            ).first()
            if existing is not None:
                return str(existing[0])
        values = self._opportunity_values(conn, row)
        partner = row.get(self.settings.partner_field)
        local = insert_local(conn, opps, values, partner, by, idempotency_key=key)
        self.upkeep.refresh(conn, opps.spec.name, [local])
        return local

    def _opportunity_values(self, conn: Connection, row: Mapping[str, Any]) -> dict[str, Any]:
        o, f = self.settings.opportunity, self.settings.fields
        opps = self.matcher.table(o["object"])
        company = row.get(f["company"]) or "Registered deal"
        close = row.get(f.get("close_date", "")) or (utcnow() + dt.timedelta(days=90)).date()
        field = self.settings.opportunity_column
        wanted = {
            field("name", "Name"): f"{company} - registered deal"[:120],
            o["partner_field"]: row.get(self.settings.partner_field),
            o["account_field"]: self.matcher.customer_account(conn, self.matcher.facts(row)),
            field("stage", "StageName"): o.get("stage", "Prospecting"),
            field("close_date", "CloseDate"): close,
            field("amount", "Amount"): row.get(f.get("amount", "")),
            field("lead_source", "LeadSource"): o.get("lead_source"),
        }
        values = {k: v for k, v in wanted.items() if v is not None and opps.spec.has_field(k)}
        return typed_values(opps.spec, values)

    def _update(
        self,
        conn: Connection,
        regs: MirrorTable,
        row: Mapping[str, Any],
        changes: Mapping[str, Any],
        by: str | None,
    ) -> None:
        typed = typed_values(regs.spec, changes)
        record_id = row[regs.spec.key]
        partner = row.get(self.settings.partner_field)
        with self.upkeep.changing(conn, regs.spec.name, [record_id]):
            apply_update(conn, regs, record_id, typed, partner, by)

    def _row(
        self, regs: MirrorTable, registration_id: str, conn: Connection | None = None
    ) -> dict[str, Any]:
        key = regs.table.c[regs.spec.key]
        query = select(regs.table).where(key == registration_id, regs.table.c._deleted.is_(False))
        if conn is None:
            with self.store.engine.connect() as own:
                row = own.execute(query).first()
        else:
            row = conn.execute(query).first()
        if row is None:
            raise AccessDenied(f"no registration {registration_id}")
        return dict(row._mapping)
