"""The tables of the Dataverse sandbox: entities, their attributes, lookups and option sets.

Each :class:`Entity` is what ``EntityDefinitions`` describes (logical name, entity set, primary
id and name, change tracking) with its :class:`Attribute` list. Lookups (``Lookup``,
``Customer``, ``Owner``) are stored under their logical name and served read-side as
``_<name>_value``; writes bind them through the single-valued navigation property that
``ManyToOneRelationships`` names (custom lookups use their schema-cased name, e.g.
``prm_PartnerAccountId``; polymorphic ones one property per target, e.g.
``customerid_account``). Polymorphic lookups keep the target's logical name in their
``<name>type`` EntityName attribute, as Dataverse does.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
NUMBER_TYPES = frozenset({"Integer", "BigInt", "Decimal", "Double", "Money"})
CHOICE_TYPES = frozenset({"Picklist", "State", "Status"})
METADATA_NAMESPACE = uuid.UUID("6f1d2c9e-3b7a-4c55-9e2d-7d1f0c3a9b10")
INTEGRATION_USER_ID = "a1b2c3d4-0000-4000-8000-00000000a11c"

_ATTRIBUTE_TYPE_NAMES = {
    "String": "StringAttributeMetadata",
    "Memo": "MemoAttributeMetadata",
    "Integer": "IntegerAttributeMetadata",
    "BigInt": "BigIntAttributeMetadata",
    "Decimal": "DecimalAttributeMetadata",
    "Double": "DoubleAttributeMetadata",
    "Money": "MoneyAttributeMetadata",
    "Boolean": "BooleanAttributeMetadata",
    "DateTime": "DateTimeAttributeMetadata",
    "Lookup": "LookupAttributeMetadata",
    "Customer": "LookupAttributeMetadata",
    "Owner": "LookupAttributeMetadata",
    "Picklist": "PicklistAttributeMetadata",
    "State": "StateAttributeMetadata",
    "Status": "StatusAttributeMetadata",
    "Uniqueidentifier": "UniqueIdentifierAttributeMetadata",
    "EntityName": "EntityNameAttributeMetadata",
}


@dataclass(frozen=True)
class Attribute:
    """One column of a table, as ``EntityDefinitions(...)/Attributes`` describes it."""

    name: str
    type: str
    label: str
    max_length: int | None = None
    targets: tuple[str, ...] = ()
    options: tuple[tuple[int, str], ...] = ()
    date_only: bool = False
    create: bool = True
    update: bool = True
    required: str = "None"
    custom: bool = False
    min_value: float | None = None
    max_value: float | None = None
    nav: str | None = None
    primary_id: bool = False
    primary_name: bool = False

    @property
    def is_lookup(self) -> bool:
        """Whether this is a lookup column (served as ``_<name>_value``)."""
        return self.type in LOOKUP_TYPES

    @property
    def polymorphic(self) -> bool:
        """Whether the lookup can point at more than one table."""
        return self.is_lookup and len(self.targets) > 1

    @property
    def wire_name(self) -> str:
        """The property name in Web API payloads: ``_x_value`` for lookups."""
        return f"_{self.name}_value" if self.is_lookup else self.name

    @property
    def edm_type(self) -> str:
        """The OData primitive type of the column's values."""
        return {
            "String": "Edm.String", "Memo": "Edm.String", "EntityName": "Edm.String",
            "Integer": "Edm.Int32", "BigInt": "Edm.Int64", "Picklist": "Edm.Int32",
            "State": "Edm.Int32", "Status": "Edm.Int32", "Decimal": "Edm.Decimal",
            "Money": "Edm.Decimal", "Double": "Edm.Double", "Boolean": "Edm.Boolean",
            "DateTime": "Edm.Date" if self.date_only else "Edm.DateTimeOffset",
        }.get(self.type, "Edm.Guid")  # fmt: skip

    @property
    def metadata_type(self) -> str:
        """The derived metadata type, e.g. ``LookupAttributeMetadata``."""
        return _ATTRIBUTE_TYPE_NAMES[self.type]

    def nav_property(self, target: str) -> str:
        """The navigation property that binds this lookup to a ``target`` row.

        Owner lookups have one (``ownerid``, typed by the bound entity set); other
        polymorphic lookups one per target (``customerid_account``).
        """
        if self.polymorphic and self.type != "Owner":
            return f"{self.name}_{target}"
        return self.nav or self.name

    def label_of(self, value: int) -> str | None:
        """The option label of a choice value."""
        return dict(self.options).get(value)


@dataclass(frozen=True)
class Entity:
    """One table, as ``EntityDefinitions`` describes it."""

    name: str
    set_name: str
    primary_id: str
    primary_name: str
    label: str
    plural: str
    attributes: tuple[Attribute, ...]
    custom: bool = False
    change_tracking: bool = True
    object_type_code: int = 10000

    @cached_property
    def by_name(self) -> Mapping[str, Attribute]:
        """Attributes by logical name."""
        return {a.name: a for a in self.attributes}

    @cached_property
    def by_wire_name(self) -> Mapping[str, Attribute]:
        """Attributes by their Web API property name (``_x_value`` for lookups)."""
        return {a.wire_name: a for a in self.attributes}

    @cached_property
    def nav_properties(self) -> Mapping[str, tuple[Attribute, tuple[str, ...]]]:
        """Single-valued navigation properties: name -> (lookup, the tables it may bind)."""
        found: dict[str, tuple[Attribute, tuple[str, ...]]] = {}
        for attribute in self.attributes:
            for target in attribute.targets if attribute.is_lookup else ():
                nav = attribute.nav_property(target)
                previous = found.get(nav, (attribute, ()))[1]
                found[nav] = (attribute, (*previous, target))
        return found

    @property
    def metadata_id(self) -> str:
        """The table's stable ``MetadataId``."""
        return str(uuid.uuid5(METADATA_NAMESPACE, self.name))

    def attribute_id(self, attribute: Attribute) -> str:
        """An attribute's stable ``MetadataId``."""
        return str(uuid.uuid5(METADATA_NAMESPACE, f"{self.name}.{attribute.name}"))


# --- attribute builders -----------------------------------------------------------------


@dataclass
class DataverseSchema:
    """Every table of the sandbox by logical name, with per-table change tracking."""

    entities: dict[str, Entity] = field(default_factory=dict)

    @classmethod
    def default(cls) -> DataverseSchema:
        """The sandbox's tables."""
        # the tables are written with this module's types, so they are imported when asked for
        from sandboxes.dynamics.tables import default_tables

        return cls({table.name: table for table in default_tables()})

    @cached_property
    def by_set(self) -> dict[str, Entity]:
        """Tables by entity set name (``accounts``)."""
        return {e.set_name: e for e in self.entities.values()}

    def entity(self, name: str) -> Entity:
        """A table by logical or entity set name; ``KeyError`` when there is none."""
        if name in self.entities:
            return self.entities[name]
        return self.by_set[name]

    def add_attribute(self, name: str, attribute: Attribute) -> Entity:
        """Schema drift: a new column on a table (``ValueError`` if it has one so named)."""
        entity = self.entity(name)
        if attribute.name in entity.by_name:
            raise ValueError(f"{entity.name} already has a column {attribute.name!r}")
        self.entities[entity.name] = replace(entity, attributes=(*entity.attributes, attribute))
        self.__dict__.pop("by_set", None)
        return self.entities[entity.name]

    def set_change_tracking(self, name: str, enabled: bool) -> None:
        """Turn change tracking of a table on or off."""
        entity = self.entity(name)
        self.entities[entity.name] = replace(entity, change_tracking=enabled)
        self.__dict__.pop("by_set", None)
