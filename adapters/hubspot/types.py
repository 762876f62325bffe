"""HubSpot properties as engine fields, and property strings as Python values.

HubSpot's property types map onto the engine's: ``number`` -> float, ``bool`` -> boolean,
``date`` -> date, ``datetime`` -> datetime, ``string``/``enumeration``/``phone_number`` ->
string (``textarea``/``html`` fields -> text). ``hs_object_id`` is the key; HubSpot-defined id
properties (``associatedcompanyid``, ``hs_product_id``) are references. Every value arrives as
a string: numbers as decimal text, booleans as ``true``/``false``, datetimes as ISO-8601 or
epoch milliseconds, dates as ``YYYY-MM-DD`` or midnight epoch milliseconds; an empty string
means unset. A value that does not parse makes the record a ``Reject`` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from mirror.types import FieldSpec, FieldType, ObjectSpec, Record, Relation

KEY = "hs_object_id"
MERGED_IDS = "hs_merged_object_ids"
CURSOR_PROPERTIES = ("lastmodifieddate", "hs_lastmodifieddate")
KNOWN_REFERENCES: Mapping[str, str] = {
    "associatedcompanyid": "companies",
    "hs_product_id": "products",
}
TEXT_FIELD_TYPES = frozenset({"textarea", "html", "rich_text"})


def field_type(prop: Mapping[str, Any]) -> FieldType:
    """The engine type of one HubSpot property."""
    name, kind = str(prop.get("name")), str(prop.get("type") or "string")
    if name == KEY:
        return FieldType.ID
    if name in KNOWN_REFERENCES:
        return FieldType.REFERENCE
    if kind == "number":
        return FieldType.FLOAT
    if kind == "bool":
        return FieldType.BOOLEAN
    if kind == "date":
        return FieldType.DATE
    if kind == "datetime":
        return FieldType.DATETIME
    if prop.get("fieldType") in TEXT_FIELD_TYPES:
        return FieldType.TEXT
    return FieldType.STRING


def field_spec(prop: Mapping[str, Any]) -> FieldSpec:
    """One property as a ``FieldSpec``."""
    name = str(prop["name"])
    meta = prop.get("modificationMetadata") or {}
    writable = not (meta.get("readOnlyValue") or prop.get("calculated")) and name != KEY
    return FieldSpec(
        name=name,
        type=field_type(prop),
        crm_type=f"{prop.get('type')}/{prop.get('fieldType')}",
        label=str(prop.get("label") or name),
        nullable=name != KEY,
        createable=writable,
        updateable=writable,
        references=(KNOWN_REFERENCES[name],) if name in KNOWN_REFERENCES else (),
        unique=bool(prop.get("hasUniqueValue")),
        external_id=bool(prop.get("hasUniqueValue")),
    )


def cursor_property(properties: Sequence[Mapping[str, Any]]) -> str:
    """The last-modified property: ``lastmodifieddate`` on contacts, else
    ``hs_lastmodifieddate``."""
    names = {str(p.get("name")) for p in properties}
    for candidate in CURSOR_PROPERTIES:
        if candidate in names:
            return candidate
    raise ValueError("it has no lastmodifieddate or hs_lastmodifieddate property")


def object_spec(
    source: str,
    name: str,
    label: str,
    properties: Sequence[Mapping[str, Any]],
    extra: Sequence[FieldSpec] = (),
    mirror_key: str | None = None,
) -> ObjectSpec:
    """An ``ObjectSpec`` from a properties listing plus association fields (``extra``)."""
    live = [p for p in properties if not p.get("archived")]
    fields = [field_spec(p) for p in live]
    if not any(f.name == KEY for f in fields):
        fields.insert(0, FieldSpec(KEY, FieldType.ID, "number/number", "Record ID", nullable=False))
    fields += [f for f in extra if f.name not in {g.name for g in fields}]
    relations = tuple(
        Relation(f.name, f.references[0], f.relationship_name) for f in fields if f.references
    )
    unique = {f.name for f in fields if f.unique}
    return ObjectSpec(
        source=source,
        name=name,
        key=KEY,
        cursor_field=cursor_property(live),
        fields=tuple(fields),
        relations=relations,
        external_id_field=mirror_key if mirror_key in unique else None,
        label=label,
    )


def parse_instant(text: str) -> datetime:
    """An aware UTC datetime from ISO-8601 or epoch milliseconds."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return round(moment.timestamp() * 1000)


def format_cursor(moment: datetime) -> str:
    """The checkpoint form of an instant: ``2024-01-31T10:00:00.123Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _date(text: str) -> date:
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC).date()
    return date.fromisoformat(text[:10])


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise ValueError(text)
    return lowered == "true"


_PARSERS: dict[FieldType, Any] = {
    FieldType.FLOAT: float,
    FieldType.BOOLEAN: _bool,
    FieldType.DATE: _date,
    FieldType.DATETIME: parse_instant,
}
_NAMES = {
    FieldType.FLOAT: "number",
    FieldType.BOOLEAN: "boolean",
    FieldType.DATE: "date",
    FieldType.DATETIME: "datetime",
}


class RecordConverter:
    """Turns HubSpot objects into engine records for one ``ObjectSpec``."""

    def __init__(self, spec: ObjectSpec, synthetic: frozenset[str] = frozenset()) -> None:
        """A converter for ``spec``; ``synthetic`` fields are filled in later, not read."""
        self.spec = spec
        self._fields = [
            (f.name, _PARSERS.get(f.type), f.type)
            for f in spec.fields
            if f.name not in synthetic and f.name != KEY
        ]

    def property_names(self) -> list[str]:
        """The HubSpot properties to ask for."""
        return [KEY, *(name for name, _, _ in self._fields)]

    def from_json(self, obj: Mapping[str, Any]) -> Record:
        """The record of one ``SimplePublicObject``; ``ValueError`` names a bad field."""
        props = obj.get("properties") or {}
        record: Record = {KEY: str(obj.get("id") or props.get(KEY))}
        for name, parse, kind in self._fields:
            raw = props.get(name)
            if raw is None or raw == "":
                record[name] = None
                continue
            if parse is None:
                record[name] = str(raw)
                continue
            try:
                record[name] = parse(str(raw))
            except (TypeError, ValueError, OverflowError):
                raise ValueError(
                    f"field {name}: {raw!r} is not a {_NAMES.get(kind, kind.value)}"
                ) from None
        return record


def to_wire(spec: FieldSpec | None, value: Any) -> str:
    """A Python value as the string HubSpot expects for a property write ("" clears)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_cursor(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)
