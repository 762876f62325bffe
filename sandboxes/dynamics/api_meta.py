"""Metadata and service endpoints of the Dataverse sandbox.

``EntityDefinitions`` and its navigations (see ``dynamics_metadata``), the service document,
a small ``$metadata`` CSDL document and ``WhoAmI``.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr

from werkzeug.wrappers import Request, Response

from sandboxes.dynamics.api_rows import odata_json
from sandboxes.dynamics.metadata import (
    ENTITY_PROPERTIES,
    EXPANDABLE,
    allowed_attribute_properties,
    attribute_json,
    cast_name,
    entity_json,
    filtered,
    find_entity,
    nested_select,
    option_set,
    project,
    relationships,
    split_expand,
)
from sandboxes.dynamics.odata import parse_select, query_error
from sandboxes.dynamics.org import DataverseOrg
from sandboxes.dynamics.schema import INTEGRATION_USER_ID, Entity

ORGANIZATION_ID = "5f2b6c1a-9d3e-4b7f-8a21-0c4d5e6f7a8b"
BUSINESS_UNIT_ID = "7c1d2e3f-4a5b-4c6d-9e8f-1a2b3c4d5e6f"
_RELATIONSHIP_PROPERTIES = (
    "MetadataId", "SchemaName", "RelationshipType", "IsCustomRelationship", "ReferencedEntity",
    "ReferencedAttribute", "ReferencingEntity", "ReferencingAttribute",
    "ReferencingEntityNavigationPropertyName", "ReferencedEntityNavigationPropertyName",
)  # fmt: skip


def _context(org: DataverseOrg, fragment: str) -> str:
    return f"{org.base_url}/api/data/v9.2/$metadata#{fragment}"


def _select(request: Request) -> list[str] | None:
    text = request.args.get("$select")
    return parse_select(text) if text else None


def service_document(org: DataverseOrg, request: Request) -> Response:
    """``GET /api/data/v9.2/``: the entity sets."""
    sets = [
        {"name": e.set_name, "kind": "EntitySet", "url": e.set_name}
        for e in org.schema.entities.values()
    ]
    sets.append({"name": "EntityDefinitions", "kind": "EntitySet", "url": "EntityDefinitions"})
    return odata_json({"@odata.context": f"{org.base_url}/api/data/v9.2/$metadata", "value": sets})


def csdl(org: DataverseOrg, request: Request) -> Response:
    """``GET /$metadata``: a small CSDL document of the tables and their properties."""
    types = []
    for entity in org.schema.entities.values():
        properties = "".join(
            f"<Property Name={quoteattr(a.wire_name)} Type={quoteattr(a.edm_type)}/>"
            for a in entity.attributes
            if a.type != "EntityName"
        )
        navigations = "".join(
            f'<NavigationProperty Name={quoteattr(nav)} Type="mscrm.{targets[0]}"/>'
            for nav, (_attribute, targets) in entity.nav_properties.items()
        )
        types.append(
            f'<EntityType Name="{entity.name}" BaseType="mscrm.crmbaseentity"><Key>'
            f'<PropertyRef Name="{entity.primary_id}"/></Key>{properties}{navigations}'
            "</EntityType>"
        )
    sets = "".join(
        f'<EntitySet Name="{e.set_name}" EntityType="Microsoft.Dynamics.CRM.{e.name}"/>'
        for e in org.schema.entities.values()
    )
    body = (
        '<?xml version="1.0" encoding="utf-8"?><edmx:Edmx Version="4.0" '
        'xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>'
        '<Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" '
        'xmlns="http://docs.oasis-open.org/odata/ns/edm">'
        '<EntityType Name="crmbaseentity" Abstract="true"/>'
        f'{"".join(types)}<EntityContainer Name="System">{sets}</EntityContainer>'
        "</Schema></edmx:DataServices></edmx:Edmx>"
    )
    return Response(body, content_type="application/xml", headers={"OData-Version": "4.0"})


def who_am_i(org: DataverseOrg, request: Request) -> Response:
    """``GET /WhoAmI``: the application user the token stands for."""
    return odata_json(
        {
            "@odata.context": _context(org, "Microsoft.Dynamics.CRM.WhoAmIResponse"),
            "BusinessUnitId": BUSINESS_UNIT_ID,
            "UserId": INTEGRATION_USER_ID,
            "OrganizationId": ORGANIZATION_ID,
        }
    )


def entity_definitions(
    org: DataverseOrg, request: Request, key: str | None, rest: list[str]
) -> Response:
    """``EntityDefinitions`` and everything below it."""
    if key is None:
        if rest:
            raise query_error(f"Resource not found for the segment '{rest[0]}'.")
        return _collection(org, request)
    entity = find_entity(org.schema, key)
    if not rest:
        return _one_entity(org, request, entity)
    segment, sub_key = _split_key(rest[0])
    if segment == "Attributes":
        return _attributes(org, request, entity, sub_key, rest[1:])
    if segment in ("ManyToOneRelationships", "OneToManyRelationships") and sub_key is None:
        return _relationships(org, request, entity, segment)
    raise query_error(f"Resource not found for the segment '{rest[0]}'.")


def _split_key(segment: str) -> tuple[str, str | None]:
    name, _, key = segment.partition("(")
    return name, (key[:-1] if key.endswith(")") else None) if key else None


def _entity_item(org: DataverseOrg, request: Request, entity: Entity) -> dict[str, Any]:
    item: dict[str, Any] = entity_json(entity)
    expands = split_expand(request.args.get("$expand", ""))
    for name, options in expands.items():
        if name not in EXPANDABLE:
            raise query_error(f"Could not find a property named '{name}' on type "
                              "'Microsoft.Dynamics.CRM.EntityMetadata'.")  # fmt: skip
        select = nested_select(options)
        if name == "Attributes":
            values = [attribute_json(entity, a, n) for n, a in enumerate(entity.attributes)]
            allowed = allowed_attribute_properties(None)
        else:
            values = relationships(org.schema, entity, name.startswith("ManyToOne"))
            allowed = _RELATIONSHIP_PROPERTIES
        type_name = "AttributeMetadata" if name == "Attributes" else "RelationshipMetadataBase"
        item[name] = [project(v, select, allowed, type_name) for v in values]
    select = _select(request)
    if select is not None:
        select = [*select, *(name for name in expands if name not in select)]
    return project(item, select, ENTITY_PROPERTIES, "EntityMetadata")


def _collection(org: DataverseOrg, request: Request) -> Response:
    items = [_entity_item(org, request, e) for e in org.schema.entities.values()]
    everything = [entity_json(e) for e in org.schema.entities.values()]
    keep = {i["MetadataId"] for i in filtered(everything, request.args.get("$filter"),
                                               "EntityMetadata")}  # fmt: skip
    value = [item for item in items if item["MetadataId"] in keep]
    select = request.args.get("$select")
    context = _context(org, f"EntityDefinitions({select})" if select else "EntityDefinitions")
    return odata_json({"@odata.context": context, "value": value})


def _one_entity(org: DataverseOrg, request: Request, entity: Entity) -> Response:
    select = request.args.get("$select")
    fragment = f"EntityDefinitions({select})/$entity" if select else "EntityDefinitions/$entity"
    return odata_json({"@odata.context": _context(org, fragment),
                       **_entity_item(org, request, entity)})  # fmt: skip


def _attributes(
    org: DataverseOrg, request: Request, entity: Entity, key: str | None, rest: list[str]
) -> Response:
    cast = cast_name(rest[0]) if rest else None
    if len(rest) > 1:
        raise query_error(f"Resource not found for the segment '{rest[1]}'.")
    items = []
    for number, attribute in enumerate(entity.attributes):
        if cast is not None and attribute.metadata_type != cast:
            continue
        if key is not None and key not in (f"LogicalName='{attribute.name}'",
                                           entity.attribute_id(attribute)):  # fmt: skip
            continue
        item = attribute_json(entity, attribute, number)
        if cast is not None and "OptionSet" in split_expand(request.args.get("$expand", "")):
            item["OptionSet"] = option_set(entity, attribute)
        items.append(item)
    type_name = cast or "AttributeMetadata"
    items = filtered(items, request.args.get("$filter"), type_name)
    select = _select(request)
    if select is not None and "OptionSet" in split_expand(request.args.get("$expand", "")):
        select.append("OptionSet")
    allowed = allowed_attribute_properties(cast)
    items = [project(i, select, allowed, type_name) for i in items]
    fragment = f"EntityDefinitions('{entity.name}')/Attributes"
    if key is not None:
        if not items:
            raise query_error(f"Could not find attribute {key} on {entity.name}.", 404)
        return odata_json({"@odata.context": _context(org, fragment + "/$entity"), **items[0]})
    return odata_json({"@odata.context": _context(org, fragment), "value": items})


def _relationships(org: DataverseOrg, request: Request, entity: Entity, segment: str) -> Response:
    values = relationships(org.schema, entity, segment.startswith("ManyToOne"))
    values = filtered(values, request.args.get("$filter"), "OneToManyRelationshipMetadata")
    select = _select(request)
    values = [
        project(v, select, _RELATIONSHIP_PROPERTIES, "OneToManyRelationshipMetadata")
        for v in values
    ]
    fragment = f"EntityDefinitions('{entity.name}')/{segment}"
    return odata_json({"@odata.context": _context(org, fragment), "value": values})
