"""The one table mapping Dataverse answers (HTTP status, error code) to what happens next.

Dataverse error bodies are ``{"error": {"code": "0x8004...", "message": "..."}}``; the code is
a hex HRESULT and often empty, so the status decides when the code is not in the table.
``outcome`` says what the adapter does with an answer (renew the token, wait and retry, resync
change tracking, give up with a typed ``MirrorError``); ``mirror_error`` builds the error the
engine sees; ``record_outcome`` classifies one ``$batch`` operation's answer. Messages quote
Dataverse's own message and never a token or secret.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import requests

from adapters._kit.errors import Consequence, ErrorTable
from adapters._kit.errors import describe_answer as describe_answer
from mirror.errors import AuthError, CrmError, MirrorError, TransientError


class Outcome(enum.Enum):
    """What the adapter does about one error answer."""

    RENEW_TOKEN = "renew the access token once and repeat the request"
    RETRY = "wait with backoff (or Retry-After) and repeat the request"
    AUTH = "stop: the app registration needs a security role or access"
    DELTA_EXPIRED = "resync the table: the change-tracking token expired"
    NOT_FOUND = "the row does not exist"
    PRECONDITION = "the row changed since the version that was edited"
    FAIL = "stop: the request itself is wrong"


EXPIRED_VERSION_STAMP = "0x80044352"
CODE_OUTCOMES: Mapping[str, Outcome] = {
    EXPIRED_VERSION_STAMP: Outcome.DELTA_EXPIRED,
    "0x80072322": Outcome.RETRY,  # service protection: number of requests
    "0x80072321": Outcome.RETRY,  # service protection: execution time
    "0x80072326": Outcome.RETRY,  # service protection: concurrent requests
    "0x80040220": Outcome.AUTH,  # SecLib::AccessCheckEx failed (privilege)
    "0x80042f09": Outcome.AUTH,  # the user is disabled
    "0x80072560": Outcome.AUTH,  # the user is not a member of the organisation
    "0x80040217": Outcome.NOT_FOUND,  # object does not exist
    "0x80060882": Outcome.PRECONDITION,  # ConcurrencyVersionMismatch
    "0x80044150": Outcome.RETRY,  # generic SQL error / deadlock
    "0x80040265": Outcome.FAIL,  # plug-in or business-rule failure
}
"""Error code -> outcome; it wins over the status. Anything absent falls back on the status."""

STATUS_OUTCOMES: Mapping[int, Outcome] = {
    401: Outcome.RENEW_TOKEN,
    403: Outcome.AUTH,
    404: Outcome.NOT_FOUND,
    408: Outcome.RETRY,
    412: Outcome.PRECONDITION,
    429: Outcome.RETRY,
    500: Outcome.RETRY,
    502: Outcome.RETRY,
    503: Outcome.RETRY,
    504: Outcome.RETRY,
}


class DeltaTokenExpired(CrmError):
    """The change-tracking delta token is too old: the table must be read in full again."""


class RowNotFound(CrmError):
    """The addressed row does not exist."""


@dataclass(frozen=True)
class ErrorAnswer:
    """The parts of a Dataverse error answer that decide the outcome."""

    status: int
    code: str | None
    message: str

    @classmethod
    def from_response(cls, response: requests.Response) -> ErrorAnswer:
        """The status, code and message of an HTTP error response."""
        return cls.from_parts(response.status_code, response.content)

    @classmethod
    def from_parts(cls, status: int, body: bytes | str | Mapping[str, Any] | None) -> ErrorAnswer:
        """The status, code and message of an error status and body."""
        code, message = first_error(body)
        return cls(status=status, code=code, message=message)


def first_error(body: bytes | str | Mapping[str, Any] | None) -> tuple[str | None, str]:
    """``(code, message)`` of a Dataverse error body (anything else: its first 300 chars)."""
    parsed: Any = body
    if isinstance(body, bytes | str):
        try:
            parsed = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            return None, text.strip()[:300]
    error = parsed.get("error") if isinstance(parsed, Mapping) else None
    if isinstance(error, Mapping):
        code = error.get("code")
        return (str(code) if code else None), str(error.get("message") or "")
    return None, ""


def outcome(answer: ErrorAnswer) -> Outcome:
    """What to do about ``answer``, from the tables."""
    if answer.code and answer.code.lower() in CODE_OUTCOMES:
        return CODE_OUTCOMES[answer.code.lower()]
    return STATUS_OUTCOMES.get(answer.status, Outcome.FAIL)


ERRORS = ErrorTable(
    outcome,
    Consequence(CrmError, "Dataverse rejected {action} ({said})"),
    {
        Outcome.RETRY: Consequence(
            TransientError, "Dataverse kept refusing while {action} ({said}); try again later"
        ),
        Outcome.RENEW_TOKEN: Consequence(
            AuthError,
            "Dataverse rejected the access token while {action} ({said}); check that the app "
            "registration is an application user of the organisation",
        ),
        Outcome.AUTH: Consequence(
            AuthError,
            "Dataverse refused {action} ({said}); give the application user a security role "
            "with read and write access to this table",
        ),
        Outcome.DELTA_EXPIRED: Consequence(
            DeltaTokenExpired, "Dataverse change tracking token expired while {action} ({said})"
        ),
        Outcome.NOT_FOUND: Consequence(
            RowNotFound, "Dataverse found nothing while {action} ({said})"
        ),
    },
)
"""What each outcome ends in; anything not listed is a ``CrmError``."""


def mirror_error(answer: ErrorAnswer, action: str, retry_after: float | None = None) -> MirrorError:
    """The ``MirrorError`` the engine sees when ``action`` ended with ``answer``."""
    return ERRORS.mirror_error(answer, action, retry_after)


@dataclass(frozen=True)
class RecordVerdict:
    """How one ``$batch`` operation's failure is reported in its ``WriteResult``."""

    error_code: str
    message: str
    retryable: bool
    precondition_failed: bool
    not_found: bool


def record_outcome(answer: ErrorAnswer) -> RecordVerdict:
    """The ``WriteResult`` fields of one failed operation inside a ``$batch``."""
    kind = outcome(answer)
    code = answer.code or f"HTTP_{answer.status}"
    return RecordVerdict(
        error_code=code,
        message=answer.message or describe_answer(answer),
        retryable=kind in (Outcome.RETRY, Outcome.RENEW_TOKEN),
        precondition_failed=kind is Outcome.PRECONDITION,
        not_found=kind is Outcome.NOT_FOUND,
    )
