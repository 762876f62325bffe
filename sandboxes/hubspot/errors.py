"""HubSpot's error answers: ``{status, message, correlationId, category, ...}`` bodies.

Every failure the sandbox reports is an ``HsError`` raised by whatever layer found it and turned
into HubSpot's JSON error body at the edge, with a fresh ``correlationId`` each time.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sandboxes.hubspot.values import InvalidValue


class HsError(Exception):
    """An error answer: HTTP status, HubSpot category, message and extra body fields."""

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body HubSpot sends."""
        body: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": str(uuid.uuid4()),
        }
        if self.category:
            body["category"] = self.category
        body.update(self.extra)
        return body


def validation(message: str, **extra: Any) -> HsError:
    """A 400 ``VALIDATION_ERROR``."""
    return HsError(400, "VALIDATION_ERROR", message, **extra)


def not_found(message: str = "resource not found", **extra: Any) -> HsError:
    """A 404 ``OBJECT_NOT_FOUND``."""
    return HsError(404, "OBJECT_NOT_FOUND", message, **extra)


def invalid_values(problems: list[InvalidValue]) -> HsError:
    """A 400 listing every property value that did not fit, as HubSpot words it."""
    details = [
        {"isValid": False, "message": p.message, "error": p.code, "name": p.name} for p in problems
    ]
    listing = ", ".join(
        f'{{"isValid":false,"message":"{p.message}","error":"{p.code}","name":"{p.name}"}}'
        for p in problems
    )
    return HsError(
        400,
        "VALIDATION_ERROR",
        f"Property values were not valid: [{listing}]",
        errors=[
            {"message": d["message"], "code": d["error"], "context": {"propertyName": [d["name"]]}}
            for d in details
        ],
    )


def unauthorized() -> HsError:
    """A 401 for a missing or unknown token."""
    return HsError(
        401,
        "INVALID_AUTHENTICATION",
        "Authentication credentials not found. This API supports OAuth 2.0 and private app "
        "access tokens.",
    )
