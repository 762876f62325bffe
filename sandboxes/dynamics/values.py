"""Values of the Dataverse sandbox: stored form (SQLite) <-> Web API JSON, with validation.

Stored forms: guids as lower-case text, date-and-time columns as integer epoch seconds (UTC,
whole seconds, as Dataverse keeps them), date-only columns as ``YYYY-MM-DD`` text, booleans as
0/1, numbers as numbers. On the wire datetimes are ``2024-11-05T10:00:00Z``. A written value
that does not fit its column is a 400 worded the way Dataverse words it.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from sandboxes.dynamics.errors import VALIDATION, DataverseError
from sandboxes.dynamics.schema import Attribute, Entity

PAYLOAD_ERROR = "0x80060891"


def format_datetime(moment: datetime) -> str:
    """A datetime as the Web API writes it: ``2024-11-05T10:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(moment: datetime) -> int:
    """Whole UTC epoch seconds of an aware datetime."""
    return int(moment.astimezone(UTC).timestamp())


def from_epoch(seconds: int) -> datetime:
    """An aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(seconds, UTC)


def normalize_guid(value: str) -> str | None:
    """The canonical lower-case form of a guid, or ``None`` when it is not one."""
    try:
        return str(uuid.UUID(value.strip("{}")))
    except (ValueError, AttributeError):
        return None


def wire_value(attribute: Attribute, stored: Any) -> Any:
    """The JSON value of a stored one (values that do not fit their column pass as they are)."""
    return None if stored is None else wire_writer(attribute)(stored)


def wire_writer(attribute: Attribute) -> Callable[[Any], Any]:
    """``wire_value`` of one column's stored (not null) values, chosen once per column."""
    kind = attribute.type
    if kind == "DateTime" and not attribute.date_only:
        return _wire_datetime
    if kind == "Boolean":
        return _wire_boolean
    if kind in ("Money", "Decimal", "Double"):
        return _wire_number
    return _as_stored


def _wire_datetime(stored: Any) -> Any:
    if isinstance(stored, int):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stored))
    return stored


def _wire_boolean(stored: Any) -> Any:
    return bool(stored) if isinstance(stored, int) else stored


def _wire_number(stored: Any) -> Any:
    return float(stored) if isinstance(stored, int | float) else stored


def _as_stored(stored: Any) -> Any:
    return stored


def python_value(attribute: Attribute, stored: Any) -> Any:
    """A stored value as Python (aware datetimes, dates, bools), for the sandbox's controls."""
    if stored is None:
        return None
    if attribute.type == "DateTime" and isinstance(stored, int):
        return from_epoch(stored)
    if attribute.type == "DateTime" and attribute.date_only and isinstance(stored, str):
        try:
            return date.fromisoformat(stored)
        except ValueError:
            return stored
    return wire_value(attribute, stored)


def _invalid(entity: Entity, attribute: Attribute, value: Any) -> DataverseError:
    return DataverseError(
        400,
        PAYLOAD_ERROR,
        f"Cannot convert the literal '{value}' to the expected type '{attribute.edm_type}'"
        f" of property '{attribute.wire_name}' on type 'Microsoft.Dynamics.CRM.{entity.name}'.",
    )


def _out_of_range(entity: Entity, attribute: Attribute, value: Any) -> DataverseError:
    low, high = attribute.min_value, attribute.max_value
    accepted = f" Accepted range: {low} to {high}." if low is not None else ""
    return DataverseError(
        400,
        VALIDATION,
        f"A validation error occurred. The value {value} of '{attribute.name}' on record of "
        f"type '{entity.name}' is outside the valid range.{accepted}",
    )


def stored_value(entity: Entity, attribute: Attribute, value: Any) -> Any:
    """The stored form of a written JSON value; a 400 when it does not fit the column."""
    if value is None:
        return None
    kind = attribute.type
    if kind in ("String", "Memo", "EntityName"):
        return _text(entity, attribute, value)
    if kind in ("Uniqueidentifier", "Lookup", "Customer", "Owner"):
        guid = normalize_guid(value) if isinstance(value, str) else None
        if guid is None:
            raise _invalid(entity, attribute, value)
        return guid
    if kind == "Boolean":
        if not isinstance(value, bool):
            raise _invalid(entity, attribute, value)
        return int(value)
    if kind == "DateTime":
        return _datetime(entity, attribute, value)
    if kind in ("Picklist", "State", "Status"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid(entity, attribute, value)
        if attribute.label_of(value) is None:
            raise _out_of_range(entity, attribute, value)
        return value
    return _number(entity, attribute, value)


def _text(entity: Entity, attribute: Attribute, value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid(entity, attribute, value)
    if attribute.max_length is not None and len(value) > attribute.max_length:
        raise DataverseError(
            400,
            VALIDATION,
            f"A validation error occurred. The length of the '{attribute.name}' attribute of "
            f"the '{entity.name}' entity exceeded the maximum allowed length of "
            f"'{attribute.max_length}'.",
        )
    return value


def _datetime(entity: Entity, attribute: Attribute, value: Any) -> Any:
    if not isinstance(value, str):
        raise _invalid(entity, attribute, value)
    try:
        if attribute.date_only:
            return date.fromisoformat(value[:10]).isoformat()
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(entity, attribute, value) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return epoch(moment)


def _number(entity: Entity, attribute: Attribute, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(entity, attribute, value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(entity, attribute, value)
    if attribute.type in ("Integer", "BigInt"):
        if isinstance(value, float) and not value.is_integer():
            raise _invalid(entity, attribute, value)
        value = int(value)
    low, high = attribute.min_value, attribute.max_value
    if (low is not None and value < low) or (high is not None and value > high):
        raise _out_of_range(entity, attribute, value)
    return value
