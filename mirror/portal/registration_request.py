"""What a partner submits to register a deal, and what it is told back.

The request is checked field by field before anything is assessed or written
(``parse_request``); the receipt carries the registration's id, status and ``PartnerVerdict``
(whether it goes to review), never another partner's details, a score or the vendor's verdict.
The verdict is stored on the registration record as a label (``VERDICT_LABELS``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticError

from mirror.errors import ValidationError
from mirror.portal.dealmatch import PartnerVerdict, Verdict
from mirror.portal.dealmatch import normalize_domain as registered_domain

VERDICT_LABELS = {
    Verdict.CLEAR: "Clear",
    Verdict.POSSIBLE_DUPLICATE: "Possible Duplicate",
    Verdict.CONFLICT: "Conflict",
}
VERDICTS_BY_LABEL = {label: verdict for verdict, label in VERDICT_LABELS.items()}


class DealRequest(BaseModel):
    """What a partner submits to register a deal."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    company: str = Field(min_length=2, max_length=255)
    domain: str | None = Field(default=None, max_length=255)
    country: str | None = Field(default=None, max_length=80)
    contact_name: str | None = Field(default=None, max_length=120)
    contact_email: str | None = Field(default=None, max_length=128)
    amount: float = Field(ge=0)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    close_date: dt.date
    products: list[str] = Field(default_factory=list, max_length=50)
    notes: str | None = Field(default=None, max_length=4000)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value and registered_domain(value) is None:
            raise ValueError("is not a web domain (e.g. acme.com)")
        return value

    @field_validator("contact_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value and (value.count("@") != 1 or registered_domain(value) is None):
            raise ValueError("is not an e-mail address")
        return value

    @field_validator("close_date")
    @classmethod
    def _future(cls, value: dt.date) -> dt.date:
        if value < dt.datetime.now(dt.UTC).date():
            raise ValueError("is in the past")
        return value


@dataclass(frozen=True)
class Receipt:
    """What the partner is told about its registration: its id, status, and whether it goes
    to review; never another partner's details, a score, or the vendor's verdict."""

    registration_id: str
    status: str
    verdict: PartnerVerdict


def partner_verdict(label: Any) -> PartnerVerdict | None:
    """What the partner learns of a registration whose verdict field holds ``label``."""
    verdict = VERDICTS_BY_LABEL.get(label) if isinstance(label, str) else None
    return None if verdict is None else PartnerVerdict.of(verdict)


def parse_request(request: Mapping[str, Any]) -> DealRequest:
    """``request`` checked as a ``DealRequest``; ``ValidationError`` naming every problem."""
    try:
        return DealRequest.model_validate(dict(request))
    except PydanticError as exc:
        found = [
            (".".join(str(p) for p in e["loc"]), e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        ]
        text = "; ".join(f"{field}: {problem}" for field, problem in found)
        problems = [(field or "request", problem) for field, problem in found]
        raise ValidationError(
            f"deal registration: {text}", field=problems[0][0], problems=problems
        ) from None
