"""Field values between the wire, the sandbox's SQLite storage and Python.

Storage formats (what the SOQL compiler expects): datetime TEXT ``YYYY-MM-DDTHH:MM:SS.000Z``
(UTC, whole seconds), date TEXT ``YYYY-MM-DD``, boolean INTEGER 0/1, numbers as numbers, compound
addresses as JSON text, everything else TEXT. On the wire datetimes read
``2024-11-05T10:00:00.000+0000``. A value stored by ``corrupt()`` that does not fit its type is
served as it is.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

import orjson

from sandboxes.salesforce.errors import SfError, bad_request
from sandboxes.salesforce.ids import normalize_id

STRING_TYPES = frozenset(
    ("string", "textarea", "picklist", "multipicklist", "email", "phone", "url", "combobox",
     "encryptedstring", "time")
)  # fmt: skip
NUMBER_TYPES = frozenset(("double", "currency", "percent"))
_STORED_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def datetime_to_storage(moment: datetime) -> str:
    """A UTC datetime in the storage form ``YYYY-MM-DDTHH:MM:SS.000Z``."""
    if moment.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def storage_to_datetime(stored: str) -> datetime:
    """The aware UTC datetime of a stored datetime string."""
    return datetime.strptime(stored, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def wire_datetime(stored: str) -> str:
    """A stored datetime as Salesforce writes it in JSON: ``...T10:00:00.000+0000``."""
    if _STORED_DATETIME.match(stored):
        return stored[:-1] + "+0000"
    return stored


def parse_wire_datetime(text: str) -> datetime:
    """An ISO-8601 datetime with a zone (``Z``, ``+0000`` or ``+00:00``); ``ValueError`` if not."""
    if not isinstance(text, str) or "T" not in text:
        raise ValueError(f"not a datetime: {text!r}")
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    elif re.search(r"[+-]\d{4}$", candidate):
        candidate = candidate[:-2] + ":" + candidate[-2:]
    moment = datetime.fromisoformat(candidate)
    if moment.tzinfo is None:
        raise ValueError(f"datetime without a zone: {text!r}")
    return moment.astimezone(UTC).replace(microsecond=0)


def _parser_error(value: Any, type_name: str) -> SfError:
    kind = "VALUE_STRING" if isinstance(value, str) else "VALUE_OTHER"
    return bad_request(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {type_name} from {kind} value {value} or request may be"
        " missing a required field",
    )


def to_storage(field: dict[str, Any], value: Any) -> Any:
    """Convert a JSON or Python value for ``field`` to its storage form; raises ``SfError``."""
    if value is None:
        return None
    field_type = field["type"]
    if field_type in ("id", "reference"):
        return _to_id(field, value)
    if field_type in STRING_TYPES:
        return _to_text(field, value)
    if field_type == "boolean":
        return _to_boolean(value)
    if field_type == "int":
        return _to_int(value)
    if field_type in NUMBER_TYPES:
        return _to_number(field, value)
    if field_type == "date":
        return _to_date(value)
    if field_type == "datetime":
        return _to_datetime(value)
    raise _parser_error(value, field_type)


def _to_id(field: dict[str, Any], value: Any) -> str:
    canonical = normalize_id(value) if isinstance(value, str) else None
    if canonical is None:
        raise bad_request(
            "MALFORMED_ID",
            f"{field['label']}: id value of incorrect type: {value}",
            [field["name"]],
        )
    return canonical


def _to_text(field: dict[str, Any], value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float | str):
        text = str(value)
    else:
        raise _parser_error(value, "String")
    length = field.get("length") or 0
    if length and len(text) > length:
        raise bad_request(
            "STRING_TOO_LONG",
            f"{field['label']}: data value too large: {text[:40]} (max length={length})",
            [field["name"]],
        )
    if field["type"] == "email" and text and not _EMAIL.match(text):
        raise bad_request(
            "INVALID_EMAIL_ADDRESS", f"{field['label']}: invalid email address: {text}",
            [field["name"]],
        )  # fmt: skip
    if field.get("restrictedPicklist") and field["type"] == "picklist":
        allowed = {entry["value"] for entry in field["picklistValues"] if entry["active"]}
        if text not in allowed:
            raise bad_request(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{field['label']}: bad value for restricted picklist field: {text}",
                [field["name"]],
            )
    return text


def _to_boolean(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return int(value.lower() == "true")
    raise _parser_error(value, "boolean")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _parser_error(value, "int")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    raise _parser_error(value, "int")


def _to_number(field: dict[str, Any], value: Any) -> float:
    if isinstance(value, bool):
        raise _parser_error(value, "double")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _parser_error(value, "double") from None
    precision, scale = field.get("precision") or 18, field.get("scale") or 0
    if abs(number) >= 10 ** (precision - scale):
        raise bad_request(
            "NUMBER_OUTSIDE_VALID_RANGE",
            f"{field['label']}: value outside of valid range on numeric field: {value}",
            [field["name"]],
        )
    return round(number, scale)


def _to_date(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise _parser_error(value, "date")


def _to_datetime(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise _parser_error(value, "datetime")
        return datetime_to_storage(value)
    try:
        return datetime_to_storage(parse_wire_datetime(value))
    except (ValueError, TypeError):
        raise _parser_error(value, "datetime") from None


def to_wire(field_type: str, stored: Any) -> Any:
    """A stored value as Salesforce serialises it in JSON."""
    if stored is None:
        return None
    if field_type == "boolean":
        return bool(stored) if stored in (0, 1) else stored
    if field_type == "datetime" and isinstance(stored, str):
        return wire_datetime(stored)
    if field_type in ("address", "location") and isinstance(stored, str):
        try:
            return orjson.loads(stored)
        except orjson.JSONDecodeError:
            return stored
    return stored


def to_python(field_type: str, stored: Any) -> Any:
    """A stored value as Python (bool, date, aware datetime, dict for addresses)."""
    if stored is None:
        return None
    try:
        if field_type == "boolean" and stored in (0, 1):
            return bool(stored)
        if field_type == "datetime":
            return storage_to_datetime(stored)
        if field_type == "date":
            return date.fromisoformat(stored)
    except (TypeError, ValueError):
        return stored
    return to_wire(field_type, stored)


def csv_value(field_type: str, stored: Any) -> str:
    """A stored value as Bulk API 2.0 writes it in CSV (empty for null)."""
    if stored is None:
        return ""
    if field_type == "boolean" and stored in (0, 1):
        return "true" if stored else "false"
    if field_type == "datetime" and isinstance(stored, str):
        return stored
    if isinstance(stored, float) and stored.is_integer():
        return str(int(stored)) if abs(stored) < 1e15 else repr(stored)
    return str(stored)
