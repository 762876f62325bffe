"""Dataverse and Entra ID error answers, in the shapes the real services send.

Dataverse errors are ``{"error": {"code": "0x8004...", "message": "..."}}`` (the code is often
a hex HRESULT, sometimes empty); Entra ID token errors are the AAD shape with ``error``,
``error_description`` (``AADSTS...: ...``), ``error_codes``, ``timestamp``, ``trace_id`` and
``correlation_id``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NOT_FOUND = "0x80040217"
DUPLICATE = "0x80040237"
VALIDATION = "0x80044331"
CONCURRENCY = "0x80060882"
EXPIRED_VERSION_STAMP = "0x80044352"
REFERENCE_WRITE = "0x80048d19"
REQUESTS_LIMIT = "0x80072322"
EXECUTION_TIME_LIMIT = "0x80072321"
CONCURRENCY_LIMIT = "0x80072326"

THROTTLE_MESSAGES = {
    REQUESTS_LIMIT: "Number of requests exceeded the limit of 6000 over time window of 300 "
    "seconds.",
    EXECUTION_TIME_LIMIT: "Combined execution time of incoming requests exceeded limit of "
    "1,200,000 milliseconds over time window of 300 seconds. Decrease number of concurrent "
    "requests or reduce the duration of requests and try again later.",
    CONCURRENCY_LIMIT: "Number of concurrent requests exceeded the limit of 52.",
}


@dataclass
class DataverseError(Exception):
    """A Web API error answer: HTTP status, hex code, message and extra headers."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"error": {"code": self.code, "message": self.message}}


def not_found(entity: str, record_id: str) -> DataverseError:
    """404 for a row that does not exist."""
    return DataverseError(404, NOT_FOUND, f"{entity} With Id = {record_id} Does Not Exist")


def version_mismatch() -> DataverseError:
    """412 for an ``If-Match`` etag that no longer matches."""
    return DataverseError(
        412,
        CONCURRENCY,
        "The version of the existing record doesn't match the RowVersion property provided.",
    )


def already_exists() -> DataverseError:
    """412 for a create-only upsert (``If-None-Match: *``) of an existing row."""
    return DataverseError(412, DUPLICATE, "A record with matching key values already exists.")


def throttled(code: str, retry_after: int) -> DataverseError:
    """429 service-protection answer with ``Retry-After``."""
    return DataverseError(
        429, code, THROTTLE_MESSAGES.get(code, "Too many requests."),
        {"Retry-After": str(retry_after)},
    )  # fmt: skip


@dataclass
class AadError(Exception):
    """An Entra ID token-endpoint error."""

    status: int
    error: str
    code: int
    description: str
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.description)

    def body(self) -> dict[str, Any]:
        """The AAD error body."""
        trace = str(uuid.uuid4())
        now = datetime.now(UTC)
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description} Trace ID: {trace} "
            f"Correlation ID: {trace} Timestamp: {now:%Y-%m-%d %H:%M:%SZ}",
            "error_codes": [self.code],
            "timestamp": f"{now:%Y-%m-%d %H:%M:%SZ}",
            "trace_id": trace,
            "correlation_id": trace,
        }
