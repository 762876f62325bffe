"""What the portal holds: its object types, their properties, and association fields.

Standard objects are addressed by name, custom objects (from the schemas API) by their
``objectTypeId`` under their plain name. Associations are exposed to the engine as reference
fields, because partner slices follow fields:

- ``deals.primary_company_id``: the company associated under HubSpot's ``Primary`` label;
- ``deals.partner_company_id``: the company associated under the partner label (settings:
  ``partner_label``), or the value of ``partner_property`` when the portal keeps the partner
  in a deal property instead;
- ``line_items.deal_id``: the deal the line item belongs to.

Contacts need none: HubSpot keeps their primary company in ``associatedcompanyid``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.hubspot.client import HubSpotConnection
from adapters.hubspot.settings import HubSpotSettings
from adapters.hubspot.types import object_spec
from mirror.errors import ConfigError
from mirror.types import FieldSpec, FieldType, ObjectSpec, Relation

EDGE_OBJECTS: Mapping[str, tuple[str, str, str, str]] = {
    "deal_company_associations": ("deals", "companies", "deal_id", "company_id"),
}
"""Edge object -> (from object, to object, from field, to field); see ``hubspot_edges``."""
EDGE_CURSOR = "hs_lastmodifieddate"
STANDARD_OBJECTS = ("companies", "contacts", "deals", "line_items", "products")
LABELS = {
    "companies": "Companies",
    "contacts": "Contacts",
    "deals": "Deals",
    "line_items": "Line Items",
    "products": "Products",
}
PRIMARY = "Primary"


@dataclass(frozen=True)
class AssociationField:
    """A reference field of ``object`` that holds an associated ``target`` record's id.

    ``label`` picks the association label (``None``: any association); ``property`` names a
    record property to copy instead (the partner kept in a deal property).
    """

    object: str
    name: str
    target: str
    label: str | None = None
    property: str | None = None

    def spec(self) -> FieldSpec:
        """The field as the engine sees it: a writable reference."""
        return FieldSpec(
            name=self.name,
            type=FieldType.REFERENCE,
            crm_type="association" if self.property is None else "property",
            label=f"{self.label or 'Associated'} {self.target} (association)",
            createable=True,
            updateable=True,
            references=(self.target,),
        )


@dataclass(frozen=True)
class AssociationType:
    """One association type from one object type to another."""

    category: str
    type_id: int
    label: str | None


class Catalog:
    """The portal's object types, properties and association types, read once and cached."""

    def __init__(self, conn: HubSpotConnection, settings: HubSpotSettings, source: str) -> None:
        """A catalog of the portal behind ``conn``."""
        self.conn = conn
        self.settings = settings
        self.source = source
        self._custom: dict[str, Mapping[str, Any]] | None = None
        self._properties: dict[str, list[Mapping[str, Any]]] = {}
        self._types: dict[tuple[str, str], list[AssociationType]] = {}

    def refresh(self) -> None:
        """Forget what was read, so the next question asks the portal again."""
        self._custom = None
        self._properties.clear()
        self._types.clear()

    def custom_objects(self) -> dict[str, Mapping[str, Any]]:
        """The custom object schemas by name."""
        if self._custom is None:
            reply = self.conn.schemas()
            self._custom = {str(s["name"]): s for s in reply.get("results") or ()}
        return self._custom

    def object_names(self) -> list[str]:
        """Every object the portal can mirror: the standard ones, custom ones, then the
        association edge objects."""
        return [*STANDARD_OBJECTS, *sorted(self.custom_objects()), *EDGE_OBJECTS]

    def api_type(self, name: str) -> str:
        """The ``objectType`` to put in URLs for the object called ``name`` (an edge object
        is read through its ``from`` object)."""
        if name in EDGE_OBJECTS:
            return EDGE_OBJECTS[name][0]
        if name in STANDARD_OBJECTS:
            return name
        custom = self.custom_objects().get(name)
        if custom is None:
            known = ", ".join(self.object_names())
            raise ConfigError(f"HubSpot has no object {name!r} (this portal has: {known})")
        return str(custom["objectTypeId"])

    def properties(self, name: str, refresh: bool = False) -> list[Mapping[str, Any]]:
        """The object's properties, as the properties API lists them."""
        if refresh or name not in self._properties:
            reply = self.conn.properties(self.api_type(name))
            self._properties[name] = list(reply.get("results") or ())
        return self._properties[name]

    def association_fields(self, name: str) -> list[AssociationField]:
        """The association fields of the object called ``name``."""
        if name == "deals":
            partner = AssociationField(
                "deals",
                "partner_company_id",
                "companies",
                label=self.settings.partner_label,
                property=self.settings.partner_property,
            )
            return [AssociationField("deals", "primary_company_id", "companies", PRIMARY), partner]
        if name == "line_items":
            return [AssociationField("line_items", "deal_id", "deals")]
        return []

    def describe(self, name: str) -> ObjectSpec:
        """The object's spec: its properties plus association fields."""
        if name in EDGE_OBJECTS:
            from_type, to_type = EDGE_OBJECTS[name][:2]
            self.association_types(from_type, to_type)
            return edge_spec(self.source, name)
        props = self.properties(name, refresh=True)
        custom = self.custom_objects().get(name)
        label = str((custom or {}).get("labels", {}).get("plural") or LABELS.get(name, name))
        fields = self.association_fields(name)
        for field in fields:
            if field.property is None:
                self.type_ids(field)
        try:
            return object_spec(
                self.source,
                name,
                label,
                props,
                [f.spec() for f in fields],
                self.settings.mirror_key_property,
            )
        except ValueError as error:
            raise ConfigError(f"HubSpot object {name} cannot be mirrored: {error}") from None

    def association_types(self, from_name: str, to_name: str) -> list[AssociationType]:
        """The association types (labels) from one object to another."""
        key = (from_name, to_name)
        if key not in self._types:
            reply = self.conn.association_labels(self.api_type(from_name), self.api_type(to_name))
            self._types[key] = [
                AssociationType(str(t.get("category")), int(t["typeId"]), t.get("label"))
                for t in reply.get("results") or ()
            ]
        return self._types[key]

    def type_ids(self, field: AssociationField) -> frozenset[int]:
        """The association type ids a field follows (every type when it has no label)."""
        types = self.association_types(field.object, field.target)
        if field.label is None:
            return frozenset(t.type_id for t in types)
        chosen = frozenset(
            t.type_id for t in types if (t.label or "").lower() == field.label.lower()
        )
        if not chosen:
            labels = ", ".join(sorted({t.label for t in types if t.label})) or "none"
            raise ConfigError(
                f"HubSpot has no {field.object}-{field.target} association label "
                f"{field.label!r} (labels: {labels}); set hubspot.partner_label to one of them "
                "or hubspot.partner_property to the deal property that holds the partner"
            )
        return chosen

    def write_type(self, field: AssociationField) -> AssociationType:
        """The association type a write of ``field`` creates."""
        types = self.association_types(field.object, field.target)
        wanted = self.type_ids(field)
        if field.label is None:
            unlabeled = [t for t in types if t.label is None]
            return unlabeled[0] if unlabeled else types[0]
        return next(t for t in types if t.type_id in wanted)


def pick_targets(
    fields: Sequence[AssociationField],
    type_ids: Mapping[str, frozenset[int]],
    associated: Iterable[Mapping[str, Any]],
) -> dict[str, str | None]:
    """Field values from one record's v4 associations: per field, the lowest associated id
    under one of its type ids (``None`` when there is none)."""
    chosen: dict[str, int | None] = {f.name: None for f in fields}
    for entry in associated:
        target = int(entry["toObjectId"])
        kinds = {int(t["typeId"]) for t in entry.get("associationTypes") or ()}
        for field in fields:
            current = chosen[field.name]
            if kinds & type_ids[field.name] and (current is None or target < current):
                chosen[field.name] = target
    return {name: (str(value) if value is not None else None) for name, value in chosen.items()}


def edge_spec(source: str, name: str) -> ObjectSpec:
    """The spec of an edge object."""
    from_type, to_type, from_field, to_field = EDGE_OBJECTS[name]
    fields = (
        FieldSpec("id", FieldType.ID, "edge", "Edge", nullable=False),
        FieldSpec(from_field, FieldType.REFERENCE, "association", references=(from_type,)),
        FieldSpec(to_field, FieldType.REFERENCE, "association", references=(to_type,)),
        FieldSpec("type_id", FieldType.INTEGER, "association"),
        FieldSpec("category", FieldType.STRING, "association"),
        FieldSpec("label", FieldType.STRING, "association"),
        FieldSpec(EDGE_CURSOR, FieldType.DATETIME, "datetime", f"{from_type} last modified"),
    )
    relations = (Relation(from_field, from_type), Relation(to_field, to_type))
    return ObjectSpec(source, name, "id", EDGE_CURSOR, fields, relations, label=name)
