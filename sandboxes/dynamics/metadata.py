"""The Dataverse sandbox's metadata endpoints: ``EntityDefinitions`` and what hangs off it.

Served as Dataverse serves them: ``EntityDefinitions`` (collection, ``$select``/``$filter``/
``$expand``), one table by ``(LogicalName='x')`` or ``MetadataId``, its ``Attributes``
(optionally cast to a derived type such as ``Microsoft.Dynamics.CRM.LookupAttributeMetadata``,
whose ``Targets``/``Format``/``OptionSet`` only exist there), and its ``ManyToOneRelationships``
/ ``OneToManyRelationships``. ``$select`` of a property the (cast) type does not have is a 400;
metadata is never paged; ``MetadataId`` always comes back.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sandboxes.dynamics.errors import DataverseError
from sandboxes.dynamics.odata import evaluate, parse_filter, parse_select, query_error
from sandboxes.dynamics.schema import METADATA_NAMESPACE, Attribute, DataverseSchema, Entity

CAST_PREFIX = "Microsoft.Dynamics.CRM."
_BASE_ATTRIBUTE = (
    "MetadataId", "LogicalName", "SchemaName", "AttributeType", "AttributeTypeName",
    "EntityLogicalName", "IsCustomAttribute", "IsPrimaryId", "IsPrimaryName",
    "IsValidForCreate", "IsValidForUpdate", "IsValidForRead", "RequiredLevel", "AttributeOf",
    "DisplayName", "Description", "ColumnNumber", "IsLogical", "IsValidODataAttribute",
)  # fmt: skip
_DERIVED = {
    "StringAttributeMetadata": ("MaxLength", "Format", "DatabaseLength"),
    "MemoAttributeMetadata": ("MaxLength", "Format"),
    "IntegerAttributeMetadata": ("MinValue", "MaxValue", "Format"),
    "BigIntAttributeMetadata": ("MinValue", "MaxValue"),
    "DecimalAttributeMetadata": ("MinValue", "MaxValue", "Precision"),
    "DoubleAttributeMetadata": ("MinValue", "MaxValue", "Precision"),
    "MoneyAttributeMetadata": ("MinValue", "MaxValue", "Precision", "PrecisionSource"),
    "BooleanAttributeMetadata": ("DefaultValue", "OptionSet"),
    "DateTimeAttributeMetadata": ("Format", "DateTimeBehavior"),
    "LookupAttributeMetadata": ("Targets", "Format"),
    "PicklistAttributeMetadata": ("DefaultFormValue", "OptionSet"),
    "StateAttributeMetadata": ("DefaultFormValue", "OptionSet"),
    "StatusAttributeMetadata": ("DefaultFormValue", "OptionSet"),
    "UniqueIdentifierAttributeMetadata": (),
    "EntityNameAttributeMetadata": (),
}
ENTITY_PROPERTIES = (
    "MetadataId", "LogicalName", "SchemaName", "EntitySetName", "LogicalCollectionName",
    "PrimaryIdAttribute", "PrimaryNameAttribute", "ObjectTypeCode", "IsCustomEntity",
    "IsActivity", "IsIntersect", "IsPrivate", "IsValidForAdvancedFind", "ChangeTrackingEnabled",
    "IsOptimisticConcurrencyEnabled", "OwnershipType", "DisplayName", "DisplayCollectionName",
    "Attributes", "ManyToOneRelationships", "OneToManyRelationships",
)  # fmt: skip
EXPANDABLE = ("Attributes", "ManyToOneRelationships", "OneToManyRelationships")
_KEY = re.compile(r"^LogicalName='(?P<name>[^']*)'$")


def label(text: str) -> dict[str, Any]:
    """A Dataverse ``Label`` of one English text."""
    localized = {"Label": text, "LanguageCode": 1033, "IsManaged": True,
                 "MetadataId": str(uuid.uuid5(METADATA_NAMESPACE, f"label:{text}"))}  # fmt: skip
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


def schema_name(name: str) -> str:
    """The SchemaName Dataverse derives for a logical name (publisher prefix kept)."""
    prefix, _, rest = name.partition("_")
    if rest and prefix == "prm":
        return "prm_" + rest[:1].upper() + rest[1:]
    return name[:1].upper() + name[1:]


def entity_json(entity: Entity) -> dict[str, Any]:
    """Every scalar property of a table's definition."""
    return {
        "MetadataId": entity.metadata_id,
        "LogicalName": entity.name,
        "SchemaName": schema_name(entity.name),
        "EntitySetName": entity.set_name,
        "LogicalCollectionName": entity.set_name,
        "PrimaryIdAttribute": entity.primary_id,
        "PrimaryNameAttribute": entity.primary_name,
        "ObjectTypeCode": entity.object_type_code,
        "IsCustomEntity": entity.custom,
        "IsActivity": False,
        "IsIntersect": False,
        "IsPrivate": False,
        "IsValidForAdvancedFind": True,
        "ChangeTrackingEnabled": entity.change_tracking,
        "IsOptimisticConcurrencyEnabled": True,
        "OwnershipType": "UserOwned" if "ownerid" in entity.by_name else "BusinessOwned",
        "DisplayName": label(entity.label),
        "DisplayCollectionName": label(entity.plural),
    }


def attribute_json(entity: Entity, attribute: Attribute, number: int) -> dict[str, Any]:
    """Every property of one attribute's (derived) metadata type."""
    base = {
        "@odata.type": f"#{CAST_PREFIX}{attribute.metadata_type}",
        "MetadataId": entity.attribute_id(attribute),
        "LogicalName": attribute.name,
        "SchemaName": schema_name(attribute.name),
        "AttributeType": attribute.type,
        "AttributeTypeName": {"Value": f"{attribute.type}Type"},
        "EntityLogicalName": entity.name,
        "IsCustomAttribute": attribute.custom,
        "IsPrimaryId": attribute.primary_id,
        "IsPrimaryName": attribute.primary_name,
        "IsValidForCreate": attribute.create,
        "IsValidForUpdate": attribute.update,
        "IsValidForRead": True,
        "RequiredLevel": {"Value": attribute.required, "CanBeChanged": True,
                          "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
        "AttributeOf": None,
        "DisplayName": label(attribute.label),
        "Description": label(attribute.label),
        "ColumnNumber": number,
        "IsLogical": False,
        "IsValidODataAttribute": True,
    }  # fmt: skip
    return {**base, **_derived(attribute)}


def _derived(attribute: Attribute) -> dict[str, Any]:
    kind = attribute.type
    if kind in ("String", "Memo"):
        return {"MaxLength": attribute.max_length, "Format": "Text",
                "DatabaseLength": 2 * (attribute.max_length or 0)}  # fmt: skip
    if kind in ("Integer", "BigInt", "Decimal", "Double", "Money"):
        extra: dict[str, Any] = {"MinValue": attribute.min_value, "MaxValue": attribute.max_value}
        if kind in ("Decimal", "Double", "Money"):
            extra["Precision"] = 2
        if kind == "Money":
            extra["PrecisionSource"] = 2
        if kind == "Integer":
            extra["Format"] = "None"
        return extra
    if kind == "DateTime":
        behavior = "DateOnly" if attribute.date_only else "UserLocal"
        return {"Format": "DateOnly" if attribute.date_only else "DateAndTime",
                "DateTimeBehavior": {"Value": behavior}}  # fmt: skip
    if attribute.is_lookup:
        return {"Targets": list(attribute.targets), "Format": "None"}
    if kind in ("Picklist", "State", "Status"):
        return {"DefaultFormValue": -1 if kind == "Picklist" else attribute.options[0][0]}
    if kind == "Boolean":
        return {"DefaultValue": False}
    return {}


def option_set(entity: Entity, attribute: Attribute) -> dict[str, Any]:
    """The ``OptionSet`` of a choice or boolean attribute."""
    name = f"{entity.name}_{attribute.name}"
    if attribute.type == "Boolean":
        return {"Name": name, "OptionSetType": "Boolean", "IsGlobal": False,
                "TrueOption": {"Value": 1, "Label": label("Yes")},
                "FalseOption": {"Value": 0, "Label": label("No")}}  # fmt: skip
    options = [{"Value": value, "Label": label(text)} for value, text in attribute.options]
    return {"Name": name, "OptionSetType": attribute.type, "IsGlobal": False, "Options": options}


def relationships(schema: DataverseSchema, entity: Entity, many_to_one: bool) -> list[dict]:
    """The N:1 (lookups of ``entity``) or 1:N (lookups pointing at it) relationships."""
    found = []
    for referencing in schema.entities.values():
        for attribute in referencing.attributes:
            for target in attribute.targets if attribute.is_lookup else ():
                if (referencing is entity) if many_to_one else (target == entity.name):
                    found.append(_relationship(schema, referencing, attribute, target))
    return found


def _relationship(
    schema: DataverseSchema, referencing: Entity, attribute: Attribute, target: str
) -> dict[str, Any]:
    name = f"{referencing.name}_{attribute.name}_{target}"
    referenced = schema.entities.get(target)
    return {
        "MetadataId": str(uuid.uuid5(METADATA_NAMESPACE, f"rel:{name}")),
        "SchemaName": name,
        "RelationshipType": "OneToManyRelationship",
        "IsCustomRelationship": attribute.custom,
        "ReferencedEntity": target,
        "ReferencedAttribute": referenced.primary_id if referenced else f"{target}id",
        "ReferencingEntity": referencing.name,
        "ReferencingAttribute": attribute.name,
        "ReferencingEntityNavigationPropertyName": attribute.nav_property(target),
        "ReferencedEntityNavigationPropertyName": name,
    }


# --- query options over metadata -----------------------------------------------------------


def split_expand(text: str) -> dict[str, str]:
    """``$expand`` items and their nested options: ``{"Attributes": "$select=a"}``."""
    items: dict[str, str] = {}
    depth, start = 0, 0
    for position, char in enumerate(text + ","):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            part = text[start:position].strip()
            start = position + 1
            if not part:
                continue
            name, _, nested = part.partition("(")
            items[name.strip()] = nested[:-1] if nested.endswith(")") else nested
    return items


def nested_select(options: str) -> list[str] | None:
    """The ``$select`` of nested expand options, or ``None``."""
    for option in options.split(";"):
        key, _, value = option.partition("=")
        if key.strip() == "$select":
            return parse_select(value)
        if key.strip():
            raise query_error(f"The query option '{key.strip()}' is not supported in $expand.")
    return None


def project(item: Mapping[str, Any], select: list[str] | None, allowed: Iterable[str],
            type_name: str) -> dict[str, Any]:  # fmt: skip
    """``item`` cut down to ``select`` (plus ``MetadataId``); unknown names are 400s."""
    if select is None:
        return dict(item)
    allowed_names = set(allowed)
    for name in select:
        if name not in allowed_names:
            raise query_error(
                f"Could not find a property named '{name}' on type "
                f"'Microsoft.Dynamics.CRM.{type_name}'."
            )
    kept = {name: item.get(name) for name in select if name in item}
    return {"MetadataId": item["MetadataId"], **kept}


def filtered(items: list[dict[str, Any]], text: str | None, type_name: str) -> list[dict]:
    """``items`` matching a ``$filter`` (evaluated in Python over the metadata dicts)."""
    if not text:
        return items
    condition = parse_filter(text)
    return [item for item in items if evaluate(condition, item, type_name)]


def find_entity(schema: DataverseSchema, key: str) -> Entity:
    """The table named by an ``EntityDefinitions(...)`` key; 404 when there is none."""
    match = _KEY.match(key)
    for entity in schema.entities.values():
        if (match and entity.name == match["name"]) or entity.metadata_id == key.strip("'"):
            return entity
    name = match["name"] if match else key
    raise DataverseError(
        404,
        "0x80040217",
        f"Could not find an entity with a name = '{name}' with namemapping = 'Logical' in "
        "the MetadataCache.",
    )


def allowed_attribute_properties(cast: str | None) -> tuple[str, ...]:
    """The properties ``$select`` may name on (a cast of) ``Attributes``."""
    if cast is None:
        return _BASE_ATTRIBUTE
    return (*_BASE_ATTRIBUTE, *_DERIVED[cast])


def cast_name(segment: str | None) -> str | None:
    """``LookupAttributeMetadata`` from a ``Microsoft.Dynamics.CRM.`` cast segment."""
    if segment is None:
        return None
    name = segment.removeprefix(CAST_PREFIX)
    if not segment.startswith(CAST_PREFIX) or name not in _DERIVED:
        raise DataverseError(404, "0x80060888", f"Resource not found for the segment '{segment}'.")
    return name
