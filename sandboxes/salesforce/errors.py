"""Salesforce API errors as the sandbox raises and serialises them.

REST answers carry a JSON array of ``{"message", "errorCode"[, "fields"]}``; sObject collections
report the same error inside each result as ``{"statusCode", "message", "fields"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class SfError(Exception):
    """One Salesforce API error: HTTP status, errorCode, message and the fields involved."""

    def __init__(
        self, status: int, code: str, message: str, fields: Sequence[str] | None = None
    ) -> None:
        """An error answered with ``status`` and body ``[{"message", "errorCode", ...}]``."""
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields) if fields is not None else None

    def body(self) -> list[dict[str, Any]]:
        """The REST error body: a one-element JSON array."""
        error: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            error["fields"] = self.fields
        return [error]

    def collection_error(self) -> dict[str, Any]:
        """The error as an sObject-collection result entry (``statusCode``, not ``errorCode``)."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields or []}


def bad_request(code: str, message: str, fields: Sequence[str] | None = None) -> SfError:
    """A 400 error."""
    return SfError(400, code, message, fields)


def not_found(message: str = "The requested resource does not exist") -> SfError:
    """The 404 NOT_FOUND error."""
    return SfError(404, "NOT_FOUND", message)


def entity_deleted() -> SfError:
    """The 404 ENTITY_IS_DELETED error for a soft-deleted record."""
    return SfError(404, "ENTITY_IS_DELETED", "entity is deleted")


def invalid_session() -> SfError:
    """The 401 answer to a missing, unknown or expired token."""
    return SfError(401, "INVALID_SESSION_ID", "Session expired or invalid")


def precondition_failed() -> SfError:
    """The 412 answer to a failed If-Match / If-Unmodified-Since precondition."""
    return SfError(
        412,
        "PRECONDITION_FAILED",
        "The requested entity has been modified since the precondition was set.",
    )
