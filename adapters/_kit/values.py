"""Field values between a CRM's wire form and Python, in the pieces every adapter's converter
is built from: checkpoint stamps, strict scalar converters, converters of text through a
parser, and the per-field conversion that names the field and value a row fails on.

A converter takes one wire value (never ``None``) and returns its Python value, or raises
``ValueError`` saying what the value is not ("is not a date"); ``FieldConverter`` turns that
into ``field <name>: <value> is not a date``, the reason a row becomes a ``Reject``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar

from mirror.types import FieldType, ObjectSpec

T = TypeVar("T")
Converter = Callable[[Any], Any]


def millis(moment: datetime | time) -> str:
    """The milliseconds of ``moment``, three digits."""
    return f"{moment.microsecond // 1000:03d}"


def format_cursor(moment: datetime) -> str:
    """The checkpoint form of a change stamp: ISO-8601 UTC with milliseconds and ``Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + millis(moment) + "Z"


def to_bool(value: Any) -> bool:
    """A JSON boolean."""
    if isinstance(value, bool):
        return value
    raise ValueError("is not a boolean")


def to_int(value: Any) -> int:
    """A JSON integer, or a float with no fraction."""
    if isinstance(value, bool):
        raise ValueError("is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError("is not an integer")


def to_text(value: Any) -> str:
    """A string, or the text of a scalar."""
    return value if isinstance(value, str) else str(value)


def from_text(kind: str, parse: Callable[[str], T]) -> Callable[[Any], T]:
    """A converter of text through ``parse``; anything else, or text ``parse`` refuses, "is
    not a ``kind``"."""

    def convert(value: Any) -> T:
        if not isinstance(value, str):
            raise ValueError(f"is not a {kind}")
        try:
            return parse(value)
        except ValueError:
            raise ValueError(f"is not a {kind}") from None

    return convert


class FieldConverter:
    """The converter of each field of one object, by the field's type."""

    def __init__(
        self, spec: ObjectSpec, by_type: Mapping[FieldType, Converter], other: Converter
    ) -> None:
        """Fields of a type in ``by_type`` use its converter, every other field ``other``."""
        self.other = other
        self.by_name: dict[str, Converter] = {
            f.name: by_type.get(f.type, other) for f in spec.fields
        }

    def converts(self, name: str) -> bool:
        """Whether field ``name`` has a converter of its type (else it is taken as ``other``)."""
        return self.by_name.get(name, self.other) is not self.other

    def convert(self, name: str, value: Any) -> Any:
        """``value`` of field ``name`` in Python (``None`` stays ``None``); ``ValueError``
        naming the field and the value when it does not fit."""
        if value is None:
            return None
        convert = self.by_name.get(name, self.other)
        try:
            return convert(value)
        except (ValueError, TypeError) as error:
            raise ValueError(f"field {name}: {value!r} {error}") from None


def to_wire(value: Any, datetime_text: Callable[[datetime], str]) -> Any:
    """A Python value as JSON writes take it: datetimes as ``datetime_text`` writes them, dates
    ISO-8601, decimals as floats, the rest as they are."""
    if isinstance(value, datetime):
        return datetime_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value
