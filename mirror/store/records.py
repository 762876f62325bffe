"""Records on their way into the store: checked against the column types, and content-hashed.

Adapters convert wire values already; this is the engine's own guard, so that one malformed
record (or a field whose CRM type changed) is set aside with its reason instead of failing a
whole page. The content hash lets the sync skip unchanged records before any field comparison.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import orjson
import xxhash

from mirror.types import FieldType, ObjectSpec, Record

Converter = Callable[[Any], Any]


class BadValue(ValueError):
    """A value that does not fit its column."""


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | dt.date | dt.time):
        return value.isoformat() if isinstance(value, dt.date | dt.time) else str(value)
    raise BadValue(f"{value!r} is not text")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadValue(f"{value!r} is not a boolean")


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise BadValue(f"{value!r} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise BadValue(f"{value!r} is not an integer")


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError as exc:
            raise BadValue(f"{value!r} is not a number") from exc
    else:
        raise BadValue(f"{value!r} is not a number")
    if number != number or number in (float("inf"), float("-inf")):
        raise BadValue(f"{value!r} is not a finite number")
    return number


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise BadValue(f"{value!r} is not a date")


def _datetime(value: Any) -> dt.datetime:
    if type(value) is dt.datetime and value.tzinfo is dt.UTC:
        return value
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise BadValue(f"{value!r} is not a datetime") from exc
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(0), dt.UTC)
    raise BadValue(f"{value!r} is not a datetime")


def _time(value: Any) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, str):
        try:
            return dt.time.fromisoformat(value.rstrip("Z"))
        except ValueError:
            pass
    raise BadValue(f"{value!r} is not a time")


def _any(value: Any) -> Any:
    return value


CONVERTERS: dict[FieldType, Converter] = {
    FieldType.ID: _text,
    FieldType.REFERENCE: _text,
    FieldType.STRING: _text,
    FieldType.TEXT: _text,
    FieldType.BOOLEAN: _boolean,
    FieldType.INTEGER: _integer,
    FieldType.FLOAT: _number,
    FieldType.DECIMAL: _number,
    FieldType.DATE: _date,
    FieldType.DATETIME: _datetime,
    FieldType.TIME: _time,
    FieldType.JSON: _any,
}
# values of exactly this Python type need no conversion (floats do: NaN and infinities)
ALREADY_CLEAN: dict[FieldType, type] = {
    FieldType.ID: str,
    FieldType.REFERENCE: str,
    FieldType.STRING: str,
    FieldType.TEXT: str,
    FieldType.BOOLEAN: bool,
    FieldType.INTEGER: int,
    FieldType.DATE: dt.date,
    FieldType.TIME: dt.time,
}


def field_value(spec: ObjectSpec, name: str, value: Any, *, lenient: bool = False) -> Any:
    """``value`` as the store holds field ``name`` of ``spec``: converted to the field's Python
    type, the one conversion for pulled records, JSON-stored outbox values and the values a
    precondition compares. ``None``, and a value of a field ``spec`` lacks, pass as they are.
    ``lenient`` (for comparisons) takes ``""`` for no value and keeps a value that does not
    convert; otherwise such a value raises ``BadValue``."""
    if lenient and value == "":
        return None
    if value is None or not spec.has_field(name):
        return value
    try:
        return CONVERTERS[spec.field(name).type](value)
    except BadValue:
        if lenient:
            return value
        raise


class RecordChecker:
    """Checks records of one object against its column types, in the spec's field order."""

    def __init__(self, spec: ObjectSpec) -> None:
        self.key = spec.key
        self.cursor = spec.cursor_field
        self.fields = [(f.name, CONVERTERS[f.type]) for f in spec.fields]
        self._checks = [
            (f.name, CONVERTERS[f.type], ALREADY_CLEAN.get(f.type)) for f in spec.fields
        ]
        self._values = itemgetter(*(name for name, _ in self.fields)) if self.fields else None

    def clean(self, record: Record) -> Record:
        """The record with every field present and typed; raises ``BadValue`` naming the field."""
        if not record.get(self.key):
            raise BadValue(f"the record has no {self.key}")
        cleaned: Record = {}
        for name, convert, clean_type in self._checks:
            value = record.get(name)
            if value is None or type(value) is clean_type:
                cleaned[name] = value
                continue
            try:
                cleaned[name] = convert(value)
            except BadValue as exc:
                raise BadValue(f"field {name}: {exc}") from None
        return cleaned

    def content_hash(self, record: Record) -> str:
        """A 128-bit hash of the record's values in field order (stable across processes)."""
        values = self._values(record) if self._values else ()
        if len(self.fields) == 1:
            values = (values,)
        payload = orjson.dumps(values, option=orjson.OPT_PASSTHROUGH_DATACLASS, default=str)
        return xxhash.xxh3_128_hexdigest(payload)


def json_safe(record: Record) -> dict[str, Any]:
    """``record`` with dates, times and other non-JSON values as strings, for JSON columns."""
    return orjson.loads(orjson.dumps(record, default=str))
