"""Metadata endpoints: properties v3 (list, one, create) and custom-object schemas v3.

``GET /crm/v3/properties/{type}`` answers every property at once (no paging), as HubSpot does.
A property created through the API is kept in the store, so it survives a restart.
"""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from sandboxes.hubspot.api_objects import bool_param
from sandboxes.hubspot.errors import HsError, not_found, validation
from sandboxes.hubspot.portal import Portal
from sandboxes.hubspot.properties import property_from_json
from sandboxes.kit.server import json_response, read_json

PROPERTY_TYPES = frozenset({"string", "number", "date", "datetime", "enumeration", "bool"})


def list_properties(portal: Portal, request: Request, object_type: str) -> Response:
    """``GET /crm/v3/properties/{type}``: every (non-archived) property of the type."""
    kind = portal.records.object_type(object_type)
    if bool_param(request, "archived"):
        return json_response({"results": []})
    props = list(kind.properties.values())
    return json_response({"results": [p.to_json(i) for i, p in enumerate(props)]})


def get_property(
    portal: Portal, request: Request, object_type: str, property_name: str
) -> Response:
    """``GET /crm/v3/properties/{type}/{name}``."""
    kind = portal.records.object_type(object_type)
    names = list(kind.properties)
    if property_name not in kind.properties:
        raise not_found(f"Unable to find property {property_name} on {kind.name}")
    return json_response(kind.properties[property_name].to_json(names.index(property_name)))


def create_property(portal: Portal, request: Request, object_type: str) -> Response:
    """``POST /crm/v3/properties/{type}``: 201 with the new property; 409 if it exists."""
    kind = portal.records.object_type(object_type)
    body = read_json(request)
    if not isinstance(body, dict) or not body.get("name") or body.get("type") not in PROPERTY_TYPES:
        raise validation(
            "A property needs a name and a type (" + ", ".join(sorted(PROPERTY_TYPES)) + ")"
        )
    if body["name"] in kind.properties:
        raise HsError(409, "OBJECT_ALREADY_EXISTS", f"Property {body['name']} already exists")
    prop = property_from_json(body)
    portal.schema.add_property(kind.name, prop)
    portal.store.save_property(kind.name, prop.name, body)
    return json_response(prop.to_json(len(kind.properties) - 1), 201)


def list_schemas(portal: Portal, request: Request) -> Response:
    """``GET /crm/v3/schemas``: the portal's custom object types."""
    return json_response({"results": [t.schema_json() for t in portal.schema.custom_types()]})


def get_schema(portal: Portal, request: Request, object_type: str) -> Response:
    """``GET /crm/v3/schemas/{objectType}``: one custom object type."""
    kind = portal.schema.object_type(object_type)
    if kind is None or not kind.custom:
        raise not_found(f"Unable to find object schema {object_type}")
    return json_response(kind.schema_json())
