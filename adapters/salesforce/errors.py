"""The one table mapping Salesforce answers (HTTP status, ``errorCode``) to what happens next.

Salesforce error bodies are JSON arrays of ``{"message", "errorCode", "fields"}``; collection
results use ``statusCode`` per record instead. ``outcome`` says what the adapter does with an
answer (renew the session, retry with backoff, give up with a typed ``MirrorError``);
``mirror_error`` builds the error the engine sees. Messages quote Salesforce's own message and
never a token, password or URL with credentials.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simple_salesforce.exceptions import SalesforceError

from adapters._kit.errors import Consequence, ErrorTable, describe
from adapters._kit.errors import OutcomeUnknown as OutcomeUnknown
from mirror.errors import AuthError, CrmError, MirrorError, QuotaExceeded, TransientError


class Outcome(enum.Enum):
    """What the adapter does about one error answer."""

    RENEW_SESSION = "renew the session and repeat the request"
    RETRY = "wait with backoff and repeat the request"
    QUOTA = "stop: the API budget is used up"
    AUTH = "stop: credentials or permissions must be fixed"
    LOCATOR_EXPIRED = "re-query from the last checkpoint"
    FAIL = "stop: the request itself is wrong"


RETRY_STATUSES = frozenset({500, 502, 503, 504})

CODE_OUTCOMES: Mapping[str, Outcome] = {
    "INVALID_SESSION_ID": Outcome.RENEW_SESSION,
    "REQUEST_LIMIT_EXCEEDED": Outcome.QUOTA,
    "TXN_SECURITY_NO_ACCESS": Outcome.AUTH,
    "INSUFFICIENT_ACCESS": Outcome.AUTH,
    "API_DISABLED_FOR_ORG": Outcome.AUTH,
    "API_CURRENTLY_DISABLED": Outcome.AUTH,
    "INVALID_AUTH_HEADER": Outcome.AUTH,
    "UNABLE_TO_LOCK_ROW": Outcome.RETRY,
    "SERVER_UNAVAILABLE": Outcome.RETRY,
    "REQUEST_RUNNING_TOO_LONG": Outcome.RETRY,
    "QUERY_TIMEOUT": Outcome.RETRY,
    "INVALID_QUERY_LOCATOR": Outcome.LOCATOR_EXPIRED,
    "MALFORMED_QUERY": Outcome.FAIL,
    "INVALID_FIELD": Outcome.FAIL,
    "INVALID_TYPE": Outcome.FAIL,
}
"""errorCode -> outcome; it wins over the status. Anything absent falls back on the status."""

LOGIN_CODE_OUTCOMES: Mapping[str, Outcome] = {
    # SOAP ``login`` faults (``sf:exceptionCode``), each answered with HTTP 500
    "INVALID_LOGIN": Outcome.AUTH,
    "LOGIN_MUST_USE_SECURITY_TOKEN": Outcome.AUTH,
    "INVALID_OPERATION_WITH_EXPIRED_PASSWORD": Outcome.AUTH,
    "PASSWORD_LOCKOUT": Outcome.AUTH,
    "INSUFFICIENT_ACCESS": Outcome.AUTH,
    "API_DISABLED_FOR_ORG": Outcome.AUTH,
    "API_CURRENTLY_DISABLED": Outcome.AUTH,
    "ORG_LOCKED": Outcome.AUTH,
    "SERVER_UNAVAILABLE": Outcome.RETRY,
    "REQUEST_LIMIT_EXCEEDED": Outcome.QUOTA,
    # OAuth token endpoint (``error``), answered with HTTP 400
    "invalid_grant": Outcome.AUTH,
    "invalid_client": Outcome.AUTH,
    "invalid_client_id": Outcome.AUTH,
    "invalid_client_credentials": Outcome.AUTH,
    "unauthorized_client": Outcome.AUTH,
    "unsupported_grant_type": Outcome.AUTH,
    "invalid_request": Outcome.AUTH,
    "inactive_user": Outcome.AUTH,
    "inactive_org": Outcome.AUTH,
    "unknown_error": Outcome.RETRY,
}
"""Login error code -> outcome; it wins over the status. Anything absent falls back on the
status (``login_outcome``)."""

RECORD_RETRYABLE_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE"})
"""Per-record ``statusCode`` values in collection results that a later retry may cure."""


class QueryLocatorExpired(CrmError):
    """A ``nextRecordsUrl`` or Bulk locator is no longer valid; re-query from the checkpoint."""


@dataclass(frozen=True)
class ErrorAnswer:
    """The parts of a Salesforce error answer that decide the outcome."""

    status: int | None
    code: str | None
    message: str

    @classmethod
    def from_exception(cls, error: SalesforceError) -> ErrorAnswer:
        """The status, first errorCode and message carried by a simple-salesforce exception."""
        code, message = first_error(error.content)
        return cls(status=error.status, code=code, message=message)


def first_error(content: Any) -> tuple[str | None, str]:
    """``(errorCode, message)`` of the first entry of a Salesforce error body."""
    entry: Any = content[0] if isinstance(content, list) and content else content
    if isinstance(entry, Mapping):
        code = entry.get("errorCode") or entry.get("statusCode") or entry.get("error")
        message = entry.get("message") or entry.get("error_description") or ""
        return (str(code) if code else None), str(message)
    if isinstance(entry, bytes):
        entry = entry.decode("utf-8", "replace")
    return None, str(entry or "")[:500]


def outcome(answer: ErrorAnswer) -> Outcome:
    """What to do about ``answer``, from the table."""
    if answer.code is not None and answer.code in CODE_OUTCOMES:
        return CODE_OUTCOMES[answer.code]
    if answer.status == 401:
        return Outcome.RENEW_SESSION
    if answer.status in RETRY_STATUSES:
        return Outcome.RETRY
    if answer.status == 403:
        return Outcome.AUTH
    return Outcome.FAIL


def login_outcome(answer: ErrorAnswer) -> Outcome:
    """What to do about a failed login: only a refusal of the credentials (or of the user's
    access) is ``AUTH``; throttling, outages and lost connections (no status) are retried.

    Every SOAP fault comes with HTTP 500, so a 500 that carries an error code the table does
    not know is a refusal; one without a code is an outage.
    """
    if answer.code is not None and answer.code in LOGIN_CODE_OUTCOMES:
        return LOGIN_CODE_OUTCOMES[answer.code]
    if answer.status is None or answer.status == 429 or answer.status in RETRY_STATUSES:
        return Outcome.AUTH if answer.status == 500 and answer.code else Outcome.RETRY
    return Outcome.AUTH


def describe_answer(answer: ErrorAnswer) -> str:
    """``"403 REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."``, for messages."""
    if not (answer.status or answer.code):
        return answer.message
    return describe((answer.status, answer.code), answer.message)


LOGIN_ERRORS = ErrorTable(
    login_outcome,
    Consequence(AuthError, "Salesforce refused the login ({said}); check {hint}"),
    {
        Outcome.QUOTA: Consequence(
            QuotaExceeded,
            "Salesforce refused the login: API limit reached ({said}); it resumes when the "
            "org's 24-hour request allowance frees up",
        ),
        Outcome.RETRY: Consequence(
            TransientError, "the Salesforce login kept failing ({said}); try again later"
        ),
    },
    describe_answer,
)
"""What a failed login ends in: a refusal of the credentials unless throttled or out."""


def login_error(answer: ErrorAnswer, hint: str, retry_after: float | None = None) -> MirrorError:
    """The ``MirrorError`` of a login that ended with ``answer``; ``hint`` names the settings
    that hold the credentials."""
    return LOGIN_ERRORS.mirror_error(answer, retry_after=retry_after, hint=hint)


ERRORS = ErrorTable(
    outcome,
    Consequence(CrmError, "Salesforce rejected {action} ({said})"),
    {
        Outcome.QUOTA: Consequence(
            QuotaExceeded,
            "Salesforce API limit reached while {action} ({said}); sync resumes when the "
            "org's 24-hour request allowance frees up",
        ),
        Outcome.RETRY: Consequence(
            TransientError, "Salesforce kept failing while {action} ({said}); try again later"
        ),
        Outcome.RENEW_SESSION: Consequence(
            AuthError,
            "Salesforce rejected the session while {action} ({said}); renew the credentials",
        ),
        Outcome.AUTH: Consequence(
            AuthError,
            "Salesforce refused {action} ({said}); give the integration user the API "
            "permission and access to this object",
        ),
        Outcome.LOCATOR_EXPIRED: Consequence(
            QueryLocatorExpired, "Salesforce query cursor expired while {action} ({said})"
        ),
    },
    describe_answer,
)
"""What each outcome ends in; anything not listed is a ``CrmError``."""


def mirror_error(answer: ErrorAnswer, action: str, retry_after: float | None = None) -> MirrorError:
    """The ``MirrorError`` the engine sees when ``action`` ended with ``answer``."""
    return ERRORS.mirror_error(answer, action, retry_after)
