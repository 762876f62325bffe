"""Dataverse metadata and values: ``EntityDefinitions`` -> ``ObjectSpec``, wire values <-> Python.

An object is a table by logical name (``account``); its key is ``PrimaryIdAttribute`` and its
change cursor ``modifiedon``. Fields are the Web API property names: lookups (``Lookup``,
``Customer``, ``Owner``) appear as ``_<name>_value``, typed ``REFERENCE`` with the lookup's
``Targets`` and, for single-target lookups, the navigation property writes bind through as
``relationship_name``. Choices are their integer values; ``Money``/``Decimal``/``Double``
floats; date-only columns dates. Virtual, EntityName and other non-data attributes, and
attributes that are only a facet of another (``AttributeOf``), are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from adapters._kit import values
from adapters._kit.specs import engine_types, reference_relations
from adapters._kit.values import (
    Converter,
    FieldConverter,
    from_text,
    to_bool,
    to_int,
)
from adapters._kit.values import format_cursor as format_cursor
from mirror.types import FieldSpec, FieldType, ObjectSpec, Record

CURSOR_FIELD = "modifiedon"
LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
TYPE_MAP: Mapping[str, FieldType] = engine_types(
    {
        FieldType.STRING: ("Uniqueidentifier", "String"),
        FieldType.REFERENCE: ("Lookup", "Customer", "Owner"),
        FieldType.TEXT: ("Memo",),
        FieldType.INTEGER: ("Integer", "BigInt", "Picklist", "State", "Status"),
        FieldType.BOOLEAN: ("Boolean",),
        FieldType.FLOAT: ("Money", "Decimal", "Double"),
        FieldType.DATETIME: ("DateTime",),
    }
)


@dataclass(frozen=True)
class TableInfo:
    """What reads and writes need to know about a table beyond its ``ObjectSpec``."""

    name: str
    set_name: str
    primary_id: str
    change_tracking: bool
    label: str = ""

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any]) -> TableInfo:
        """From an ``EntityDefinitions`` entry."""
        return cls(
            name=definition["LogicalName"],
            set_name=definition["EntitySetName"],
            primary_id=definition["PrimaryIdAttribute"],
            change_tracking=bool(definition.get("ChangeTrackingEnabled")),
            label=user_label(definition.get("DisplayName")),
        )


def user_label(value: Any) -> str:
    """The user-localised text of a Dataverse ``Label`` (empty when there is none)."""
    if isinstance(value, Mapping):
        localized = value.get("UserLocalizedLabel") or {}
        return str(localized.get("Label") or "")
    return ""


def wire_name(attribute: Mapping[str, Any]) -> str:
    """The Web API property of an attribute: ``_x_value`` for lookups."""
    name = str(attribute["LogicalName"])
    return f"_{name}_value" if attribute.get("AttributeType") in LOOKUP_TYPES else name


def field_spec(
    attribute: Mapping[str, Any], primary_id: str, navigation: Mapping[str, str]
) -> FieldSpec | None:
    """One attribute as a ``FieldSpec``; ``None`` for attributes the mirror does not read."""
    crm_type = str(attribute.get("AttributeType") or "")
    if crm_type not in TYPE_MAP or attribute.get("AttributeOf"):
        return None
    if attribute.get("IsValidForRead") is False:
        return None
    name = str(attribute["LogicalName"])
    kind = TYPE_MAP[crm_type]
    if name == primary_id:
        kind = FieldType.ID
    elif crm_type == "DateTime" and attribute.get("Format") == "DateOnly":
        kind = FieldType.DATE
    targets = tuple(attribute.get("Targets") or ()) if crm_type in LOOKUP_TYPES else ()
    required = (attribute.get("RequiredLevel") or {}).get("Value")
    return FieldSpec(
        name=wire_name(attribute),
        type=kind,
        crm_type=crm_type,
        label=user_label(attribute.get("DisplayName")),
        nullable=name != primary_id and required != "SystemRequired",
        createable=bool(attribute.get("IsValidForCreate")) and name != primary_id,
        updateable=bool(attribute.get("IsValidForUpdate")) and name != primary_id,
        length=attribute.get("MaxLength") or None,
        precision=attribute.get("Precision") if crm_type in ("Money", "Decimal") else None,
        references=targets,
        relationship_name=navigation.get(name) if len(targets) == 1 else None,
        unique=name == primary_id,
    )


def navigation_of(relationships: list[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """``{lookup logical name: {target table: navigation property}}`` from N:1 relationships."""
    found: dict[str, dict[str, str]] = {}
    for relationship in relationships:
        attribute = relationship["ReferencingAttribute"]
        nav = relationship["ReferencingEntityNavigationPropertyName"]
        found.setdefault(attribute, {})[relationship["ReferencedEntity"]] = nav
    return found


def object_spec(
    definition: Mapping[str, Any],
    lookups: Mapping[str, Mapping[str, str]],
    source: str = "dynamics",
) -> ObjectSpec:
    """An ``ObjectSpec`` from an ``EntityDefinitions`` entry with expanded ``Attributes`` and
    ``{lookup: {target: navigation property}}`` (see ``navigation_of``)."""
    info = TableInfo.from_definition(definition)
    navigation = {name: next(iter(navs.values())) for name, navs in lookups.items()
                  if len(navs) == 1}  # fmt: skip
    fields = tuple(
        spec
        for spec in (field_spec(a, info.primary_id, navigation)
                     for a in definition.get("Attributes") or ())
        if spec is not None
    )  # fmt: skip
    names = {spec.name for spec in fields}
    if info.primary_id not in names or CURSOR_FIELD not in names:
        raise ValueError(f"{info.name} has no {info.primary_id} or {CURSOR_FIELD} column")
    relations = reference_relations(fields)
    return ObjectSpec(
        source=source,
        name=info.name,
        key=info.primary_id,
        cursor_field=CURSOR_FIELD,
        fields=fields,
        relations=relations,
        label=info.label,
    )


# --- values --------------------------------------------------------------------------------


def parse_datetime(value: str) -> datetime:
    """An aware UTC datetime from the Web API's ``2024-11-05T10:00:00Z``."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_datetime(value: datetime) -> str:
    """A datetime as the Web API expects it: UTC, whole seconds, ``Z``."""
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _to_guid(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 36:
        raise ValueError("is not a guid")
    return value.lower()


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("is not a number")
    return float(value)


def _to_str(value: Any) -> str:
    if isinstance(value, dict | list):
        raise ValueError("is not text")
    return values.to_text(value)


_CONVERTERS: Mapping[FieldType, Converter] = {
    FieldType.ID: _to_guid,
    FieldType.REFERENCE: _to_guid,
    FieldType.BOOLEAN: to_bool,
    FieldType.INTEGER: to_int,
    FieldType.FLOAT: _to_float,
    FieldType.DECIMAL: _to_float,
    FieldType.DATE: from_text("date", lambda text: date.fromisoformat(text[:10])),
    FieldType.DATETIME: from_text("datetime", parse_datetime),
}


class RecordConverter:
    """Turns Web API rows into records of one object's fields."""

    def __init__(self, spec: ObjectSpec) -> None:
        """A converter for the fields of ``spec``."""
        self.spec = spec
        self.fields = FieldConverter(spec, _CONVERTERS, _to_str)
        self._items = list(self.fields.by_name.items())

    def from_json(self, row: Mapping[str, Any]) -> Record:
        """A record from a Web API row; raises ``ValueError`` naming the bad field."""
        record: Record = {}
        name, value = "", None
        try:
            for name, convert in self._items:
                value = row.get(name)
                record[name] = None if value is None else convert(value)
        except (ValueError, TypeError) as error:
            raise ValueError(f"field {name}: {value!r} {error}") from None
        return record


def to_wire(value: Any) -> Any:
    """A Python value as the Web API expects it in a write."""
    return values.to_wire(value, format_datetime)
