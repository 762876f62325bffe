"""A deterministic, CRM-neutral generated dataset for the sandboxes, streamed record by record.

Every record is a plain dict derived only from ``(seed, kind, index)`` through a small
counter-based generator, so any record can be recomputed on its own (an opportunity's line items
and its partner are known without holding any other record) and generation needs constant
memory at any size. Each sandbox writes the same records in its own CRM's shape.

Sizes: ``"tiny"`` (50 opportunities), ``"small"`` (500), ``"medium"`` (10,000), ``"large"``
(1,000,000), or an int number of opportunities; the other objects scale with it. Timestamps lie
in the year before ``anchor``; a share of them fall on a few "mass update" instants, so many
records have equal system modstamps, and some have a system modstamp later than their last
modification.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sandboxes.dataset import words
from sandboxes.dataset.draw import KINDS, Draw, stream_base
from sandboxes.dataset.sizes import SIZES, Counts

YEAR_SECONDS = 365 * 86_400
MASS_UPDATE_EVERY_SECONDS = 3 * 86_400 + 7_200

Record = dict[str, Any]


class Dataset:
    """The generated dataset of one seed and size, as generator functions of plain dicts.

    Keys are ``"<kind>-<index>"`` (``"partner-3"``, ``"customer-0"``, ...); references between
    records use those keys. Each generator yields records in index order.
    """

    def __init__(self, seed: int = 7, size: str | int = "small", anchor: datetime | None = None):
        """A dataset of ``size`` generated from ``seed``, with timestamps up to ``anchor``."""
        self.seed = seed
        self.size = size
        self._bases = {kind: stream_base(seed, kind) for kind in KINDS}
        self._list_prices: dict[int, float] = {}
        self.counts = Counts.for_size(size)
        default_anchor = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.anchor = (anchor or default_anchor).astimezone(UTC).replace(microsecond=0)
        self._anchor_ts = int(self.anchor.timestamp())

    def _draw(self, kind: str, index: int) -> Draw:
        return Draw(self._bases[kind], index)

    def _stamps(self, draw: Draw) -> dict[str, datetime]:
        """Created, modified and system-modified instants: created <= modified <= system."""
        anchor = self._anchor_ts
        created = anchor - draw.below(YEAR_SECONDS)
        roll = draw.real()
        modified = created if roll < 0.25 else created + draw.below(anchor - created + 1)
        system = modified
        roll = draw.real()
        if roll < 0.3:
            steps_back = (anchor - modified) // MASS_UPDATE_EVERY_SECONDS
            if steps_back > 0:
                system = anchor - draw.below(min(steps_back, 40)) * MASS_UPDATE_EVERY_SECONDS
        elif roll < 0.4:
            system = min(anchor, modified + 1 + draw.below(86_400))
        return {
            "created": _utc(created),
            "modified": _utc(modified),
            "system_modified": _utc(system),
        }

    def _owner_key(self, draw: Draw) -> str:
        return f"user-{draw.below(self.counts.internal_users)}"

    def _company_name(self, draw: Draw, index: int) -> str:
        return f"{draw.pick(words.COMPANY_FIRST)} {draw.pick(words.COMPANY_SECOND)} {index}"

    def partner(self, index: int) -> Record:
        """Partner number ``index``: a reseller company attributed to opportunities."""
        draw = self._draw("partner", index)
        name = f"{draw.pick(words.COMPANY_FIRST)} {draw.pick(words.PARTNER_SUFFIX)} {index}"
        domain = _domain(name)
        country, city = draw.pick(words.PLACES)
        return {
            "key": f"partner-{index}",
            "name": name,
            "domain": domain,
            "website": f"https://www.{domain}",
            "phone": _phone(draw),
            "industry": draw.pick(words.INDUSTRIES),
            "country": country,
            "city": city,
            "tier": draw.pick(words.PARTNER_TIERS),
            "owner_key": self._owner_key(draw),
            **self._stamps(draw),
        }

    def customer(self, index: int) -> Record:
        """End customer number ``index``."""
        draw = self._draw("customer", index)
        name = self._company_name(draw, index)
        domain = _domain(name)
        country, city = draw.pick(words.PLACES)
        return {
            "key": f"customer-{index}",
            "name": name,
            "domain": domain,
            "website": f"https://{domain}",
            "phone": _phone(draw),
            "industry": draw.pick(words.INDUSTRIES),
            "country": country,
            "city": city,
            "street": f"{1 + draw.below(999)} {draw.pick(words.STREETS)}",
            "postal_code": f"{10000 + draw.below(89999)}",
            "employees": 5 + draw.below(20_000),
            "annual_revenue": float(100_000 * (1 + draw.below(5_000))),
            "owner_key": self._owner_key(draw),
            **self._stamps(draw),
        }

    def contact_account_key(self, index: int) -> str:
        """The company a contact works for: three per partner first, then two per customer."""
        partner_slots = 3 * self.counts.partners
        if index < partner_slots:
            return f"partner-{index // 3}"
        return f"customer-{(index - partner_slots) // 2}"

    def contact(self, index: int) -> Record:
        """Contact number ``index``."""
        draw = self._draw("contact", index)
        account_key = self.contact_account_key(index)
        first, last = draw.pick(words.FIRST_NAMES), draw.pick(words.LAST_NAMES)
        domain = _domain(account_key)
        return {
            "key": f"contact-{index}",
            "account_key": account_key,
            "first_name": first,
            "last_name": last,
            "email": f"{first}.{last}.{index}@{domain}".lower(),
            "title": draw.pick(words.TITLES),
            "phone": _phone(draw),
            "owner_key": self._owner_key(draw),
            **self._stamps(draw),
        }

    def user(self, index: int) -> Record:
        """User number ``index``: internal sales users first, then one user per partner."""
        draw = self._draw("user", index)
        first, last = draw.pick(words.FIRST_NAMES), draw.pick(words.LAST_NAMES)
        partner_index = index - self.counts.internal_users
        is_partner_user = partner_index >= 0
        domain = f"partner{partner_index}.example.com" if is_partner_user else "vendor.example.com"
        return {
            "key": f"user-{index}",
            "first_name": first,
            "last_name": last,
            "email": f"{first}.{last}.{index}@{domain}".lower(),
            "username": f"{first}.{last}.{index}@{domain}.sandbox".lower(),
            "alias": (first[:1] + last[:4]).lower(),
            "is_active": draw.real() > 0.05,
            "partner_key": f"partner-{partner_index}" if is_partner_user else None,
            "contact_key": f"contact-{3 * partner_index}" if is_partner_user else None,
            **self._stamps(draw),
        }

    def lead(self, index: int) -> Record:
        """Lead number ``index``; some are sourced by a partner."""
        draw = self._draw("lead", index)
        first, last = draw.pick(words.FIRST_NAMES), draw.pick(words.LAST_NAMES)
        company = self._company_name(draw, 100_000 + index)
        country, _city = draw.pick(words.PLACES)
        from_partner = draw.real() < 0.4
        return {
            "key": f"lead-{index}",
            "first_name": first,
            "last_name": last,
            "company": company,
            "email": f"{first}.{last}@{_domain(company)}".lower(),
            "phone": _phone(draw),
            "country": country,
            "status": draw.pick(words.LEAD_STATUSES),
            "source": "Partner" if from_partner else draw.pick(words.LEAD_SOURCES),
            "partner_key": f"partner-{draw.below(self.counts.partners)}" if from_partner else None,
            "owner_key": self._owner_key(draw),
            **self._stamps(draw),
        }

    def product(self, index: int) -> Record:
        """Product number ``index``."""
        draw = self._draw("product", index)
        list_price = float(50 * (1 + draw.below(400)))
        family = draw.pick(words.PRODUCT_FAMILIES)
        return {
            "key": f"product-{index}",
            "name": f"{draw.pick(words.PRODUCT_NAMES)} {family} {index}",
            "code": f"PRD-{index:05d}",
            "family": family,
            "list_price": list_price,
            "active": draw.real() > 0.1,
            **self._stamps(draw),
        }

    def _list_price(self, product_index: int) -> float:
        price = self._list_prices.get(product_index)
        if price is None:
            price = self._list_prices[product_index] = self.product(product_index)["list_price"]
        return price

    def line_items_of(self, opportunity_index: int) -> list[Record]:
        """The line items of one opportunity (zero to two), without their keys."""
        draw = self._draw("lines", opportunity_index)
        lines = []
        for _ in range(draw.pick((0, 1, 1, 1, 1, 1, 2))):
            product_index = draw.below(self.counts.products)
            list_price = self._list_price(product_index)
            discount = draw.pick((1.0, 1.0, 0.95, 0.9, 0.8))
            lines.append(
                {
                    "product_key": f"product-{product_index}",
                    "quantity": float(1 + draw.below(50)),
                    "unit_price": round(list_price * discount, 2),
                }
            )
        return lines

    def opportunity_partner_key(self, index: int) -> str | None:
        """The partner an opportunity is attributed to, or ``None`` for a direct deal."""
        draw = self._draw("opportunity", index)
        return None if draw.real() < 0.2 else f"partner-{draw.below(self.counts.partners)}"

    def opportunity(self, index: int) -> Record:
        """Opportunity number ``index``, attributed to a partner in four cases out of five."""
        record = self._opportunity(index)
        del record["_lines"]
        return record

    def _opportunity(self, index: int) -> Record:
        draw = self._draw("opportunity", index)
        direct = draw.real() < 0.2
        partner_index = draw.below(self.counts.partners)
        partner_key = None if direct else f"partner-{partner_index}"
        customer_index = draw.below(self.counts.customers)
        stage, probability = draw.pick(words.STAGES)
        stamps = self._stamps(draw)
        is_closed = stage in ("closed_won", "closed_lost")
        close_offset = -draw.below(180) if is_closed else 1 + draw.below(270)
        lines = self.line_items_of(index)
        if lines:
            amount = round(sum(line["quantity"] * line["unit_price"] for line in lines), 2)
        else:
            amount = float(1_000 * (1 + draw.below(500)))
        customer_name = self._company_name(self._draw("customer", customer_index), customer_index)
        return {
            "key": f"opportunity-{index}",
            "name": f"{customer_name} - {draw.pick(words.DEAL_KINDS)}",
            "customer_key": f"customer-{customer_index}",
            "partner_key": partner_key,
            "owner_key": self._owner_key(draw),
            "stage": stage,
            "probability": probability,
            "is_closed": is_closed,
            "is_won": stage == "closed_won",
            "amount": amount,
            "close_date": self.anchor.date() + timedelta(days=close_offset),
            "type": draw.pick(words.OPPORTUNITY_TYPES),
            "lead_source": "Partner" if partner_key else draw.pick(words.LEAD_SOURCES),
            "line_count": len(lines),
            "_lines": lines,
            **stamps,
        }

    def deal_registration(self, index: int) -> Record:
        """Deal registration number ``index``; approved ones point at the resulting deal."""
        draw = self._draw("deal", index)
        status = draw.pick(words.DEAL_STATUSES)
        opportunity_index = draw.below(max(self.counts.opportunities, 1))
        opportunity_partner = (
            self.opportunity_partner_key(opportunity_index) if self.counts.opportunities else None
        )
        linked = status == "approved" and opportunity_partner is not None
        partner_key = opportunity_partner if linked else None
        partner_key = partner_key or f"partner-{draw.below(self.counts.partners)}"
        first, second = draw.pick(words.COMPANY_FIRST), draw.pick(words.COMPANY_SECOND)
        country, _city = draw.pick(words.PLACES)
        company = f"{first} {self._draw('prospect', index).pick(words.PROSPECT_MIDDLE)} {second}"
        return {
            "key": f"deal_registration-{index}",
            "name": f"DR-{index:07d}",
            "partner_key": partner_key,
            "company_name": company,
            "domain": _prospect_domain(company, country),
            "country": country,
            "amount": float(500 * (1 + draw.below(1_000))),
            "close_date": self.anchor.date() + timedelta(days=draw.below(240) - 60),
            "status": status,
            "opportunity_key": f"opportunity-{opportunity_index}" if linked else None,
            **self._stamps(draw),
        }

    def partners(self) -> Iterator[Record]:
        """Every partner, in index order."""
        return map(self.partner, range(self.counts.partners))

    def customers(self) -> Iterator[Record]:
        """Every end customer, in index order."""
        return map(self.customer, range(self.counts.customers))

    def contacts(self) -> Iterator[Record]:
        """Every contact, in index order."""
        return map(self.contact, range(self.counts.contacts))

    def users(self) -> Iterator[Record]:
        """Every user, in index order."""
        return map(self.user, range(self.counts.users))

    def leads(self) -> Iterator[Record]:
        """Every lead, in index order."""
        return map(self.lead, range(self.counts.leads))

    def products(self) -> Iterator[Record]:
        """Every product, in index order."""
        return map(self.product, range(self.counts.products))

    def opportunities(self) -> Iterator[Record]:
        """Every opportunity, in index order."""
        return map(self.opportunity, range(self.counts.opportunities))

    def line_items(self) -> Iterator[Record]:
        """Every opportunity line item, in opportunity order."""
        for _opportunity, lines in self.opportunities_with_line_items():
            yield from lines

    def opportunities_with_line_items(
        self, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[Record, list[Record]]]:
        """Each opportunity (of ``range(start, stop)``) with its line items, in one pass.

        Line item keys are ``line_item-<4 * opportunity index + position>``: unique, stable and
        computable from the opportunity alone (an opportunity has at most four line items).
        """
        end = self.counts.opportunities if stop is None else min(stop, self.counts.opportunities)
        for index in range(start, end):
            parent = self._opportunity(index)
            lines = [
                {
                    "key": f"line_item-{4 * index + position}",
                    "opportunity_key": parent["key"],
                    "service_date": parent["close_date"],
                    "created": parent["created"],
                    "modified": parent["modified"],
                    "system_modified": parent["system_modified"],
                    **line,
                }
                for position, line in enumerate(parent.pop("_lines"))
            ]
            yield parent, lines

    def deal_registrations(self) -> Iterator[Record]:
        """Every deal registration, in index order."""
        return map(self.deal_registration, range(self.counts.deal_registrations))


def key_index(key: str) -> int:
    """The index part of a dataset key: ``key_index("customer-12") == 12``."""
    return int(key.rsplit("-", 1)[1])


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _domain(name: str) -> str:
    slug = "".join(char for char in name.lower() if char.isalnum())
    return f"{slug}.example.com"


def _prospect_domain(company: str, country: str) -> str:
    """A prospect's own web domain under its country's suffix (``acmepacificsystems.co.uk``):
    registrations name distinct customers unless they name the same company in one country."""
    slug = "".join(char for char in company.lower() if char.isalnum())
    return f"{slug}.{words.COUNTRY_TLDS[country]}"


def _phone(draw: Draw) -> str:
    return f"+1 {200 + draw.below(800)} {draw.below(1000):03d} {draw.below(10000):04d}"


__all__ = ["SIZES", "Counts", "Dataset", "Record", "key_index"]
