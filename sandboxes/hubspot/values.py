"""Property values as HubSpot keeps them: strings, checked against the property's type.

Every value the API or a test control writes is turned into the canonical string HubSpot would
return: numbers without a trailing ``.0``, booleans as ``true``/``false``, datetimes as ISO-8601
with milliseconds and ``Z``, dates as ``YYYY-MM-DD``. Writes accept what HubSpot accepts (epoch
milliseconds for datetimes, midnight epoch milliseconds or ISO dates for dates, Python values
from the controls); anything else is an ``InvalidValue`` naming HubSpot's error code.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time
from time import gmtime, strftime
from typing import Any

from sandboxes.hubspot.properties import PropertyDef

MS_PER_DAY = 86_400_000
ID_PROPERTIES = frozenset({"hs_object_id", "associatedcompanyid", "hs_product_id"})


class InvalidValue(ValueError):
    """A value that does not fit its property: ``code`` is HubSpot's error name."""

    def __init__(self, name: str, code: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.code = code
        self.message = message


def iso_ms(moment: datetime) -> str:
    """``2024-01-31T10:00:00.123Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def ms_to_iso(ms: int) -> str:
    """An epoch-millisecond instant as ISO-8601 with milliseconds."""
    seconds, millis = divmod(int(ms), 1000)
    return strftime("%Y-%m-%dT%H:%M:%S.", gmtime(seconds)) + f"{millis:03d}Z"


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return round(moment.timestamp() * 1000)


def parse_instant(value: Any) -> int:
    """Epoch milliseconds from an ISO string, an epoch-ms string or int, or a datetime."""
    if isinstance(value, datetime):
        return to_ms(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return to_ms(datetime.combine(value, time(), UTC))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_ms(moment)


def canonical(prop: PropertyDef, value: Any) -> str | None:
    """The stored string for ``value`` (``None``: the value is cleared)."""
    if value is None or value == "":
        return None
    try:
        return _CONVERTERS.get(prop.type, _string)(prop, value)
    except InvalidValue:
        raise
    except (TypeError, ValueError, OverflowError):
        raise InvalidValue(
            prop.name, "INVALID_" + prop.type.upper(), f"{value!r} is not a valid {prop.type}"
        ) from None


def _string(prop: PropertyDef, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(prop: PropertyDef, value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)


def _bool(prop: PropertyDef, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(value)
    return text


def _datetime(prop: PropertyDef, value: Any) -> str:
    return ms_to_iso(parse_instant(value))


def _date(prop: PropertyDef, value: Any) -> str:
    if isinstance(value, datetime):
        value = value.astimezone(UTC).date()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    if text.isdigit():
        ms = int(text)
        if ms % MS_PER_DAY:
            raise InvalidValue(prop.name, "INVALID_DATE", f"{text} is not a midnight UTC timestamp")
        return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()
    return date.fromisoformat(text[:10]).isoformat()


def _enumeration(prop: PropertyDef, value: Any) -> str:
    text = _string(prop, value)
    if not prop.options:
        return text
    allowed = {option for option, _label in prop.options}
    chosen = text.split(";") if prop.field_type == "checkbox" else [text]
    for option in chosen:
        if option not in allowed:
            raise InvalidValue(
                prop.name,
                "INVALID_OPTION",
                f"{option!r} was not one of the allowed options: "
                + ", ".join(f"[{o}]" for o in sorted(allowed)),
            )
    return text


_CONVERTERS = {
    "string": _string,
    "number": _number,
    "bool": _bool,
    "datetime": _datetime,
    "date": _date,
    "enumeration": _enumeration,
}


def to_python(prop: PropertyDef | None, text: str | None) -> Any:
    """A stored string as a Python value of the property's type (for the test controls)."""
    if text is None:
        return None
    kind = prop.type if prop else "string"
    if prop is not None and prop.name in ID_PROPERTIES:
        return text
    try:
        if kind == "number":
            return float(text)
        if kind == "bool":
            return text == "true"
        if kind == "datetime":
            return datetime.fromtimestamp(parse_instant(text) / 1000, UTC)
        if kind == "date":
            return date.fromisoformat(text)
    except ValueError:
        return text
    return text
