"""The one table mapping HubSpot answers (status, category, rate policy) to what happens next.

HubSpot error bodies are ``{"status": "error", "message", "correlationId", "category", ...}``;
429s carry ``policyName`` instead of a category. Every SDK package raises its own exception
classes, so answers are read by duck typing (``status``, ``body``, ``headers``). ``outcome``
says what the adapter does; ``mirror_error`` builds the error the engine sees. Messages quote
HubSpot's own message and never the token.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from adapters._kit.errors import Consequence, ErrorTable, describe
from adapters._kit.errors import OutcomeUnknown as OutcomeUnknown
from mirror.errors import AuthError, CrmError, MirrorError, QuotaExceeded, TransientError


class Outcome(enum.Enum):
    """What the adapter does about one error answer."""

    RETRY = "wait with backoff and repeat the request"
    QUOTA = "stop: the daily API budget is used up"
    AUTH = "stop: the token or its scopes must be fixed"
    FAIL = "stop: the request itself is wrong"


TOKEN_HINT = (
    "check hubspot.access_token: a private app's token with the crm.objects.*.read/write and "
    "crm.schemas.*.read scopes"
)

CATEGORY_OUTCOMES: Mapping[str, Outcome] = {
    "INVALID_AUTHENTICATION": Outcome.AUTH,
    "EXPIRED_AUTHENTICATION": Outcome.AUTH,
    "MISSING_SCOPES": Outcome.AUTH,
    "REVOKED_AUTHENTICATION": Outcome.AUTH,
    "RATE_LIMITS": Outcome.RETRY,
    "VALIDATION_ERROR": Outcome.FAIL,
    "OBJECT_NOT_FOUND": Outcome.FAIL,
    "CONFLICT": Outcome.FAIL,
}
"""category -> outcome; it wins over the status. Anything absent falls back on the status."""

STATUS_OUTCOMES: Mapping[int, Outcome] = {
    401: Outcome.AUTH,
    403: Outcome.AUTH,
    429: Outcome.RETRY,
    500: Outcome.RETRY,
    502: Outcome.RETRY,
    503: Outcome.RETRY,
    504: Outcome.RETRY,
}
RECORD_RETRYABLE_CATEGORIES = frozenset({"RATE_LIMITS", "SERVICE_UNAVAILABLE", "INTERNAL_ERROR"})


@dataclass(frozen=True)
class ErrorAnswer:
    """The parts of a HubSpot error answer that decide the outcome."""

    status: int | None
    category: str | None
    message: str
    policy: str | None = None
    body: Mapping[str, Any] | None = None

    @property
    def code(self) -> str | None:
        """The error category (what the error table calls its code)."""
        return self.category

    @classmethod
    def from_exception(cls, error: Any) -> ErrorAnswer:
        """The status, category, message and rate policy carried by an SDK exception."""
        body = parse_body(getattr(error, "body", None))
        message = str(body.get("message") or getattr(error, "reason", "") or "")
        return cls(
            status=getattr(error, "status", None),
            category=body.get("category") or None,
            message=message[:500],
            policy=body.get("policyName") or None,
            body=body,
        )


def parse_body(raw: Any) -> dict[str, Any]:
    """A HubSpot error body as a dict (empty when it is not JSON)."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if not raw:
        return {}
    try:
        parsed = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def outcome(answer: ErrorAnswer) -> Outcome:
    """What to do about ``answer``, from the table."""
    if answer.status == 429 and answer.policy == "DAILY":
        return Outcome.QUOTA
    if answer.category and answer.category in CATEGORY_OUTCOMES:
        return CATEGORY_OUTCOMES[answer.category]
    if answer.status is not None and answer.status in STATUS_OUTCOMES:
        return STATUS_OUTCOMES[answer.status]
    if answer.status is not None and answer.status >= 500:
        return Outcome.RETRY
    return Outcome.FAIL


def describe_answer(answer: ErrorAnswer) -> str:
    """``"409 CONFLICT: Contact already exists. Existing ID: 51"``, for messages."""
    return describe((answer.status, answer.category or answer.policy), answer.message)


ERRORS = ErrorTable(
    outcome,
    Consequence(CrmError, "HubSpot rejected {action} ({said})"),
    {
        Outcome.QUOTA: Consequence(
            QuotaExceeded,
            "HubSpot's daily API limit was reached while {action} ({said}); sync resumes "
            "when the portal's daily allowance resets (midnight in the portal's time zone)",
        ),
        Outcome.RETRY: Consequence(
            TransientError, "HubSpot kept failing while {action} ({said}); try again later"
        ),
        Outcome.AUTH: Consequence(AuthError, "HubSpot refused {action} ({said}); " + TOKEN_HINT),
    },
    describe_answer,
)
"""What each outcome ends in; anything not listed is a ``CrmError``."""


def mirror_error(answer: ErrorAnswer, action: str, retry_after: float | None = None) -> MirrorError:
    """The ``MirrorError`` the engine sees when ``action`` ended with ``answer``."""
    return ERRORS.mirror_error(answer, action, retry_after)
