"""Salesforce metadata and values: describe JSON -> ``ObjectSpec``, wire values -> Python.

Describe types map onto the engine's ``FieldType``; compound fields (``address``, ``location``)
are left out because their components are fields of their own, and ``base64`` is left out
because it cannot be read in bulk queries. Values arrive as REST JSON (typed) or Bulk API CSV
(all text, empty meaning null) and leave as Python values with 18-char ids and aware UTC
datetimes; a value that does not fit its field raises ``ValueError`` naming field and value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from adapters._kit import values
from adapters._kit.specs import engine_types, reference_relations
from adapters._kit.values import Converter, FieldConverter, format_cursor, from_text, millis
from mirror.types import FieldSpec, FieldType, ObjectSpec, Record, Reject

KEY_FIELD = "Id"
CURSOR_CANDIDATES = ("SystemModstamp", "LastModifiedDate", "CreatedDate")
EXTERNAL_ID_FIELD = "Mirror_Key__c"
SKIPPED_TYPES = frozenset({"address", "location", "base64"})

TYPE_MAP: Mapping[str, FieldType] = engine_types(
    {
        FieldType.ID: ("id",),
        FieldType.REFERENCE: ("reference",),
        FieldType.STRING: (
            "string",
            "picklist",
            "multipicklist",
            "email",
            "phone",
            "url",
            "combobox",
            "encryptedstring",
            "anyType",
        ),
        FieldType.TEXT: ("textarea",),
        FieldType.BOOLEAN: ("boolean",),
        FieldType.INTEGER: ("int", "long"),
        FieldType.FLOAT: ("double", "percent", "currency"),
        FieldType.DATE: ("date",),
        FieldType.DATETIME: ("datetime",),
        FieldType.TIME: ("time",),
    }
)

_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


# --- ids -----------------------------------------------------------------------------------


def to_18(record_id: str) -> str:
    """The 18-char case-safe form of a 15- or 18-char Salesforce id (others unchanged)."""
    if len(record_id) != 15:
        return record_id
    suffix = []
    for start in (0, 5, 10):
        bits = 0
        for position, char in enumerate(record_id[start : start + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix.append(_SUFFIX_ALPHABET[bits])
    return record_id + "".join(suffix)


# --- datetimes -----------------------------------------------------------------------------


def parse_datetime(value: str) -> datetime:
    """An aware UTC datetime from ``2024-11-05T10:00:00.000+0000`` or ``...Z`` forms."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def soql_datetime(value: datetime) -> str:
    """A SOQL datetime literal at or before ``value`` (whole seconds, so ranges stay closed)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wire_datetime(value: datetime) -> str:
    """A datetime as Salesforce JSON writes it: ``2024-11-05T10:00:00.000+0000``."""
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + millis(value) + "+0000"


def minus_one_second(value: str) -> str:
    """The cursor string one second before a Salesforce datetime string."""
    return format_cursor(parse_datetime(value) - timedelta(seconds=1))


# --- describe -> ObjectSpec ----------------------------------------------------------------


def field_spec(raw: Mapping[str, Any]) -> FieldSpec | None:
    """One describe field as a ``FieldSpec``; ``None`` for fields the mirror does not read."""
    crm_type = raw.get("type", "")
    if crm_type in SKIPPED_TYPES or crm_type not in TYPE_MAP:
        return None
    references = tuple(raw.get("referenceTo") or ()) if crm_type == "reference" else ()
    return FieldSpec(
        name=raw["name"],
        type=TYPE_MAP[crm_type],
        crm_type=crm_type,
        label=raw.get("label") or "",
        nullable=bool(raw.get("nillable", True)),
        createable=bool(raw.get("createable", False)),
        updateable=bool(raw.get("updateable", False)),
        length=raw.get("length") or None,
        precision=raw.get("precision") or None,
        scale=raw.get("scale") if crm_type in ("double", "percent", "currency") else None,
        references=references,
        relationship_name=raw.get("relationshipName") or None,
        external_id=bool(raw.get("externalId", False)),
        unique=bool(raw.get("unique", False)),
    )


def object_spec(describe: Mapping[str, Any], source: str = "salesforce") -> ObjectSpec:
    """An ``ObjectSpec`` from a Salesforce sObject describe response."""
    fields = tuple(spec for spec in (field_spec(raw) for raw in describe.get("fields", ())) if spec)
    names = {spec.name for spec in fields}
    cursor = next((name for name in CURSOR_CANDIDATES if name in names), None)
    if cursor is None:
        raise ValueError(f"{describe.get('name')} has none of the fields {CURSOR_CANDIDATES}")
    relations = reference_relations(fields)
    return ObjectSpec(
        source=source,
        name=describe["name"],
        key=KEY_FIELD,
        cursor_field=cursor,
        fields=fields,
        relations=relations,
        partner_field=None,
        external_id_field=EXTERNAL_ID_FIELD if EXTERNAL_ID_FIELD in names else None,
        label=describe.get("label") or "",
    )


def mirrorable_objects(describe_global: Mapping[str, Any]) -> list[str]:
    """Names of the objects in a describe-global response that can be queried and retrieved."""
    return [
        entry["name"]
        for entry in describe_global.get("sobjects", ())
        if entry.get("queryable")
        and entry.get("retrieveable", True)
        and not entry.get("deprecatedAndHidden", False)
    ]


# --- values --------------------------------------------------------------------------------

TRUE_TEXTS = ("true", "TRUE", "True", "1")
FALSE_TEXTS = ("false", "FALSE", "False", "0")


def _to_id(value: Any) -> str:
    if not isinstance(value, str) or len(value) not in (15, 18):
        raise ValueError("is not an id")
    return to_18(value)


def _to_bool(value: Any) -> bool:
    if value in TRUE_TEXTS:
        return True
    if value in FALSE_TEXTS:
        return False
    return values.to_bool(value)


def _to_int(value: Any) -> int:
    if isinstance(value, str):
        number = float(value)
        if number.is_integer():
            return int(number)
        raise ValueError("is not an integer")
    return values.to_int(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError("is not a number") from None


_CONVERTERS: Mapping[FieldType, Converter] = {
    FieldType.ID: _to_id,
    FieldType.REFERENCE: _to_id,
    FieldType.BOOLEAN: _to_bool,
    FieldType.INTEGER: _to_int,
    FieldType.FLOAT: _to_float,
    FieldType.DECIMAL: _to_float,
    FieldType.DATE: from_text("date", date.fromisoformat),
    FieldType.DATETIME: from_text("datetime", parse_datetime),
    FieldType.TIME: from_text("time", lambda text: time.fromisoformat(text).replace(tzinfo=None)),
}


class RecordConverter:
    """Turns Salesforce rows (REST JSON or Bulk CSV) into records of one object's fields."""

    def __init__(self, spec: ObjectSpec) -> None:
        """A converter for the fields of ``spec``."""
        self.spec = spec
        self.fields = FieldConverter(spec, _CONVERTERS, values.to_text)
        self._string_fields = frozenset(
            field.name for field in spec.fields if not self.fields.converts(field.name)
        )

    def from_json(self, row: Mapping[str, Any]) -> Record:
        """A record from a REST query row; raises ``ValueError`` naming the bad field."""
        record: Record = {}
        for name, value in row.items():
            if name == "attributes":
                continue
            record[name] = self.fields.convert(name, value)
        return record

    def from_csv(self, header: list[str], values: list[str]) -> Record:
        """A record from a Bulk API CSV row (empty text is null)."""
        record: Record = {}
        for name, value in zip(header, values, strict=True):
            if value == "":
                record[name] = None
            elif name in self._string_fields:
                record[name] = value
            else:
                record[name] = self.fields.convert(name, value)
        return record

    def page(
        self, header: list[str], rows: Iterable[list[str]]
    ) -> tuple[list[Record], list[Reject]]:
        """Records and rejects (each with its reason) of Bulk CSV ``rows`` under ``header``."""
        records: list[Record] = []
        rejects: list[Reject] = []
        for row in rows:
            try:
                records.append(self.from_csv(header, row))
            except ValueError as error:
                payload = dict(zip(header, row, strict=False))
                record_id = payload.get(KEY_FIELD)
                rejects.append(Reject(to_18(record_id) if record_id else None, str(error), payload))
        return records, rejects


def to_wire(value: Any) -> Any:
    """A Python value as Salesforce JSON expects it in a write."""
    if isinstance(value, time):
        return value.strftime("%H:%M:%S.") + millis(value) + "Z"
    return values.to_wire(value, wire_datetime)
