"""The HubSpot sandbox's portal schema: object types, their properties, association types.

The properties themselves are described in ``properties.py``.

Standard objects (contacts, companies, deals, line items, products) carry the HubSpot-defined
properties a partner portal needs plus a few portal-specific ``prm_*`` ones (the partner flag,
tier, portal role and a unique ``prm_mirror_key``); the custom object ``deal_registrations``
(objectTypeId ``2-…``) holds deal registrations. Property types follow HubSpot's: ``string``,
``number``, ``date``, ``datetime``, ``enumeration``, ``bool``. The last-modified property is
``lastmodifieddate`` on contacts and ``hs_lastmodifieddate`` everywhere else.

Association types are HubSpot's v4 ones (category, typeId, label), each with its inverse; the
``Partner`` label from deals to companies is portal-defined (``USER_DEFINED``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sandboxes.hubspot.properties import (
    SCHEMA_CREATED,
    PropertyDef,
    company_properties,
    contact_properties,
    deal_properties,
    line_item_properties,
    product_properties,
    registration_properties,
)

PORTAL_ID = 48151623
CUSTOM_OBJECT_TYPE_ID = "2-4815162"


@dataclass
class ObjectType:
    """One CRM object type of the portal and its properties."""

    name: str
    object_type_id: str
    singular: str
    plural: str
    created_property: str
    modified_property: str
    primary_display: str
    default_properties: tuple[str, ...]
    id_base: int
    properties: dict[str, PropertyDef] = field(default_factory=dict)
    custom: bool = False

    @property
    def fully_qualified_name(self) -> str:
        """``p<portal>_<name>`` for custom objects, the plain name otherwise."""
        return f"p{PORTAL_ID}_{self.name}" if self.custom else self.name

    @property
    def unique_properties(self) -> tuple[str, ...]:
        """Properties whose values must be unique across live records (email on contacts)."""
        names = [p.name for p in self.properties.values() if p.unique]
        return ("email", *names) if self.name == "contacts" else tuple(names)

    def property(self, name: str) -> PropertyDef | None:
        """The property called ``name``, if the type has it."""
        return self.properties.get(name)

    def schema_json(self) -> dict[str, Any]:
        """The custom-object schema as ``GET /crm/v3/schemas`` returns it."""
        return {
            "id": self.object_type_id.split("-")[1],
            "objectTypeId": self.object_type_id,
            "name": self.name,
            "fullyQualifiedName": self.fully_qualified_name,
            "labels": {"singular": self.singular, "plural": self.plural},
            "primaryDisplayProperty": self.primary_display,
            "requiredProperties": [self.primary_display],
            "searchableProperties": [self.primary_display],
            "secondaryDisplayProperties": [],
            "properties": [p.to_json(i) for i, p in enumerate(self.properties.values())],
            "associations": [],
            "metaType": "PORTAL_SPECIFIC",
            "archived": False,
            "createdAt": SCHEMA_CREATED,
            "updatedAt": SCHEMA_CREATED,
        }


@dataclass(frozen=True)
class AssociationType:
    """One directed association type (v4): from, to, category, typeId, label."""

    from_type: str
    to_type: str
    type_id: int
    category: str
    label: str | None
    inverse_id: int
    primary: bool = False

    def to_json(self) -> dict[str, Any]:
        """``{category, typeId, label}`` as the v4 API shows it."""
        return {"category": self.category, "typeId": self.type_id, "label": self.label}


def _pair(
    one: str, other: str, ids: tuple[int, int], label: str | None = None, **extra: Any
) -> tuple[AssociationType, AssociationType]:
    category = extra.pop("category", "HUBSPOT_DEFINED")
    primary = extra.pop("primary", False)
    return (
        AssociationType(one, other, ids[0], category, label, ids[1], primary),
        AssociationType(other, one, ids[1], category, label, ids[0], primary),
    )


PARTNER_LABEL = "Partner"
ASSOCIATION_TYPES: tuple[AssociationType, ...] = (
    *_pair("contacts", "companies", (279, 280)),
    *_pair("contacts", "companies", (1, 2), "Primary", primary=True),
    *_pair("deals", "companies", (341, 342)),
    *_pair("deals", "companies", (5, 6), "Primary", primary=True),
    *_pair("deals", "companies", (37, 38), PARTNER_LABEL, category="USER_DEFINED"),
    *_pair("deals", "contacts", (3, 4)),
    *_pair("deals", "line_items", (19, 20)),
    *_pair("deal_registrations", "companies", (41, 42), category="USER_DEFINED"),
)


class PortalSchema:
    """Every object type and association type of the sandbox portal."""

    def __init__(self) -> None:
        """The standard objects, the custom object and their properties."""
        standard = [
            ("contacts", "0-1", "Contact", "Contacts", "createdate", "lastmodifieddate",
             "email", ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate",
                       "lastname"), 100_000, contact_properties()),
            ("companies", "0-2", "Company", "Companies", "createdate", "hs_lastmodifieddate",
             "name", ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
             2_000_000, company_properties()),
            ("deals", "0-3", "Deal", "Deals", "createdate", "hs_lastmodifieddate", "dealname",
             ("amount", "closedate", "createdate", "dealname", "dealstage",
              "hs_lastmodifieddate", "hs_object_id", "pipeline"), 3_000_000, deal_properties()),
            ("products", "0-7", "Product", "Products", "createdate", "hs_lastmodifieddate",
             "name", ("createdate", "description", "hs_lastmodifieddate", "hs_object_id", "name",
                      "price"), 5_000_000, product_properties()),
            ("line_items", "0-8", "Line Item", "Line Items", "createdate", "hs_lastmodifieddate",
             "name", ("createdate", "hs_lastmodifieddate", "hs_object_id", "name", "price",
                      "quantity"), 4_000_000, line_item_properties()),
        ]  # fmt: skip
        self.types: dict[str, ObjectType] = {}
        for name, type_id, one, many, created, modified, display, defaults, base, props in standard:
            self.types[name] = ObjectType(
                name, type_id, one, many, created, modified, display, defaults, base,
                {p.name: p for p in props},
            )  # fmt: skip
        self.types["deal_registrations"] = ObjectType(
            "deal_registrations", CUSTOM_OBJECT_TYPE_ID, "Deal Registration",
            "Deal Registrations", "hs_createdate", "hs_lastmodifieddate", "name",
            ("hs_createdate", "hs_lastmodifieddate", "hs_object_id", "name"), 6_000_000,
            {p.name: p for p in registration_properties()}, custom=True,
        )  # fmt: skip
        self._aliases = {alias: t for t in self.types.values() for alias in _aliases(t)}
        self.associations = ASSOCIATION_TYPES

    def object_type(self, name: str) -> ObjectType | None:
        """The type called ``name``: its name, objectTypeId, fully qualified or singular name."""
        return self._aliases.get(name.lower())

    def custom_types(self) -> list[ObjectType]:
        """The portal's custom object types."""
        return [t for t in self.types.values() if t.custom]

    def association_types(self, from_type: str, to_type: str) -> list[AssociationType]:
        """The association types from one object type to another."""
        return [a for a in self.associations if (a.from_type, a.to_type) == (from_type, to_type)]

    def association_type(self, from_type: str, to_type: str, type_id: int) -> AssociationType:
        """The association type ``type_id`` between the two types; ``KeyError`` if unknown."""
        for assoc in self.association_types(from_type, to_type):
            if assoc.type_id == type_id:
                return assoc
        raise KeyError(type_id)

    def default_association(self, from_type: str, to_type: str) -> AssociationType | None:
        """The unlabeled association type between two object types."""
        return next(
            (
                a
                for a in self.association_types(from_type, to_type)
                if a.label is None and not a.primary
            ),
            None,
        )

    def add_property(self, type_name: str, prop: PropertyDef) -> None:
        """Schema drift: a new property on an object type."""
        object_type = self.types[type_name]
        object_type.properties[prop.name] = prop


def _aliases(object_type: ObjectType) -> Iterable[str]:
    yield object_type.name
    yield object_type.object_type_id
    yield object_type.fully_qualified_name.lower()
    yield object_type.singular.lower().replace(" ", "_")
