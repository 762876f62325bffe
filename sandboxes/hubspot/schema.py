"""The HubSpot sandbox's portal schema: object types, their properties, association types.

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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PORTAL_ID = 48151623
CUSTOM_OBJECT_TYPE_ID = "2-4815162"
SCHEMA_CREATED = "2023-06-01T09:00:00.000Z"

DEAL_STAGES = (
    ("appointmentscheduled", "Appointment Scheduled", "0.2"),
    ("qualifiedtobuy", "Qualified To Buy", "0.4"),
    ("presentationscheduled", "Presentation Scheduled", "0.6"),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8"),
    ("contractsent", "Contract Sent", "0.9"),
    ("closedwon", "Closed Won", "1.0"),
    ("closedlost", "Closed Lost", "0.0"),
)
CLOSED_STAGES = frozenset({"closedwon", "closedlost"})


@dataclass(frozen=True)
class PropertyDef:
    """One property of an object type, as ``GET /crm/v3/properties/{type}`` describes it."""

    name: str
    label: str
    type: str
    field_type: str
    group: str
    options: tuple[tuple[str, str], ...] = ()
    calculated: bool = False
    read_only: bool = False
    unique: bool = False
    hubspot_defined: bool = True
    description: str = ""

    @property
    def writable(self) -> bool:
        """Whether API writes may set this property."""
        return not (self.read_only or self.calculated)

    def to_json(self, display_order: int) -> dict[str, Any]:
        """The property as the properties API returns it."""
        body: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "description": self.description,
            "groupName": self.group,
            "options": [
                {"label": label, "value": value, "displayOrder": order, "hidden": False}
                for order, (value, label) in enumerate(self.options)
            ],
            "displayOrder": display_order,
            "calculated": self.calculated,
            "externalOptions": False,
            "hasUniqueValue": self.unique,
            "hidden": False,
            "modificationMetadata": {
                "archivable": not self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": not self.writable,
            },
            "formField": self.writable and self.type != "datetime",
            "createdAt": SCHEMA_CREATED,
            "updatedAt": SCHEMA_CREATED,
            "archived": False,
        }
        if self.hubspot_defined:
            body["hubspotDefined"] = True
        return body


def _p(name: str, label: str, kind: str = "string", **extra: Any) -> PropertyDef:
    field_type = (
        extra.pop("field_type", None)
        or {
            "string": "text",
            "number": "number",
            "date": "date",
            "datetime": "date",
            "enumeration": "select",
            "bool": "booleancheckbox",
        }[kind]
    )
    group = extra.pop("group", "")
    return PropertyDef(name, label, kind, field_type, group, **extra)


def _options(*values: str) -> tuple[tuple[str, str], ...]:
    return tuple((value, value) for value in values)


def _custom(name: str, label: str, kind: str = "string", **extra: Any) -> PropertyDef:
    return _p(name, label, kind, hubspot_defined=False, **extra)


BOOL_OPTIONS = (("true", "Yes"), ("false", "No"))


def _system(created: str, modified: str, group: str) -> tuple[PropertyDef, ...]:
    return (
        _p("hs_object_id", "Record ID", "number", read_only=True, group=group),
        _p(created, "Create Date", "datetime", read_only=True, group=group),
        _p(modified, "Last Modified Date", "datetime", read_only=True, group=group),
        _p(
            "hs_merged_object_ids",
            "Merged record IDs",
            "enumeration",
            field_type="checkbox",
            read_only=True,
            group=group,
        ),
        _p("hubspot_owner_id", "Owner", "enumeration", group=group),
        _custom("prm_mirror_key", "Mirror key", unique=True, group=group),
    )


def _contact_properties() -> tuple[PropertyDef, ...]:
    g = "contactinformation"
    return (
        *_system("createdate", "lastmodifieddate", g),
        _p("email", "Email", group=g),
        _p("firstname", "First Name", group=g),
        _p("lastname", "Last Name", group=g),
        _p("phone", "Phone Number", field_type="phonenumber", group=g),
        _p("jobtitle", "Job Title", group=g),
        _p("company", "Company Name", group=g),
        _p("country", "Country/Region", group=g),
        _p("associatedcompanyid", "Primary Associated Company ID", "number", read_only=True,
           group=g),
        _p("lifecyclestage", "Lifecycle Stage", "enumeration", group=g,
           options=_options("subscriber", "lead", "marketingqualifiedlead",
                            "salesqualifiedlead", "opportunity", "customer", "evangelist",
                            "other")),
        _p("hs_lead_status", "Lead Status", "enumeration", field_type="radio", group=g,
           options=_options("NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED",
                            "CONNECTED")),
        _p("hs_analytics_source", "Original Source", "enumeration", read_only=True, group=g,
           options=_options("ORGANIC_SEARCH", "DIRECT_TRAFFIC", "REFERRALS", "OFFLINE",
                            "OTHER_CAMPAIGNS")),
        _custom("prm_portal_role", "Partner portal role", "enumeration", group=g,
                options=_options("admin", "rep")),
        _custom("prm_partner_company_id", "Sourcing partner company", group=g),
    )  # fmt: skip


def _company_properties() -> tuple[PropertyDef, ...]:
    g = "companyinformation"
    industries = ("Technology", "Manufacturing", "Healthcare", "Retail", "Finance", "Energy",
                  "Education", "Transportation", "Media", "Hospitality")  # fmt: skip
    return (
        *_system("createdate", "hs_lastmodifieddate", g),
        _p("name", "Company name", group=g),
        _p("domain", "Company Domain Name", group=g),
        _p("website", "Website URL", group=g),
        _p("phone", "Phone Number", field_type="phonenumber", group=g),
        _p("industry", "Industry", "enumeration", group=g, options=_options(*industries)),
        _p("address", "Street Address", group=g),
        _p("city", "City", group=g),
        _p("zip", "Postal Code", group=g),
        _p("country", "Country/Region", group=g),
        _p("numberofemployees", "Number of Employees", "number", group=g),
        _p("annualrevenue", "Annual Revenue", "number", group=g),
        _p("description", "Description", field_type="textarea", group=g),
        _custom("prm_is_partner", "Is a partner", "bool", options=BOOL_OPTIONS, group=g),
        _custom("prm_partner_tier", "Partner tier", "enumeration", group=g,
                options=_options("Platinum", "Gold", "Silver", "Registered")),
    )  # fmt: skip


def _deal_properties() -> tuple[PropertyDef, ...]:
    g = "dealinformation"
    stages = tuple((value, label) for value, label, _ in DEAL_STAGES)
    return (
        *_system("createdate", "hs_lastmodifieddate", g),
        _p("dealname", "Deal Name", group=g),
        _p("amount", "Amount", "number", group=g),
        _p("dealstage", "Deal Stage", "enumeration", field_type="radio", group=g,
           options=stages),
        _p("pipeline", "Pipeline", "enumeration", group=g,
           options=(("default", "Sales Pipeline"),)),
        _p("closedate", "Close Date", "datetime", group=g),
        _p("dealtype", "Deal Type", "enumeration", field_type="radio", group=g,
           options=(("newbusiness", "New Business"), ("existingbusiness", "Existing Business"))),
        _p("description", "Deal Description", field_type="textarea", group=g),
        _p("hs_next_step", "Next step", field_type="textarea", group=g),
        _p("hs_is_closed", "Is Deal Closed?", "bool", calculated=True, options=BOOL_OPTIONS,
           field_type="calculation_equation", group=g),
        _p("hs_is_closed_won", "Is Closed Won", "bool", calculated=True, options=BOOL_OPTIONS,
           field_type="calculation_equation", group=g),
        _p("hs_deal_stage_probability", "Deal probability", "number", calculated=True,
           field_type="calculation_equation", group=g),
        _p("hs_forecast_amount", "Forecast amount", "number", calculated=True,
           field_type="calculation_equation", group=g),
        _custom("prm_lead_source", "Lead source", "enumeration", group=g,
                options=_options("Partner", "Web", "Phone Inquiry", "Partner Referral",
                                 "Purchased List", "Other")),
    )  # fmt: skip


def _line_item_properties() -> tuple[PropertyDef, ...]:
    g = "lineiteminformation"
    return (
        *_system("createdate", "hs_lastmodifieddate", g),
        _p("name", "Name", group=g),
        _p("hs_product_id", "Product ID", "number", group=g),
        _p("hs_sku", "SKU", group=g),
        _p("quantity", "Quantity", "number", group=g),
        _p("price", "Unit price", "number", group=g),
        _p("amount", "Net price", "number", calculated=True, field_type="calculation_equation",
           group=g),
        _p("hs_recurring_billing_start_date", "Billing start date", "date", group=g),
        _p("description", "Description", field_type="textarea", group=g),
    )  # fmt: skip


def _product_properties() -> tuple[PropertyDef, ...]:
    g = "productinformation"
    return (
        *_system("createdate", "hs_lastmodifieddate", g),
        _p("name", "Name", group=g),
        _p("hs_sku", "SKU", group=g),
        _p("price", "Unit price", "number", group=g),
        _p("description", "Description", field_type="textarea", group=g),
        _p("hs_product_type", "Product type", "enumeration", group=g,
           options=(("inventory", "Inventory"), ("non_inventory", "Non-inventory"),
                    ("service", "Service"))),
        _custom("prm_product_family", "Product family", "enumeration", group=g,
                options=_options("Software", "Hardware", "Services", "Support")),
        _custom("prm_active", "Active", "bool", options=BOOL_OPTIONS, group=g),
    )  # fmt: skip


def _registration_properties() -> tuple[PropertyDef, ...]:
    g = "deal_registration_information"
    statuses = _options("Submitted", "Approved", "Rejected", "Expired")
    verdicts = _options("Clear", "Possible Duplicate", "Conflict")
    return (
        *_system("hs_createdate", "hs_lastmodifieddate", g),
        _custom("name", "Registration", group=g),
        _custom("partner_company_id", "Partner company ID", group=g),
        _custom("company_name", "Company name", group=g),
        _custom("domain", "Domain", group=g),
        _custom("country", "Country", group=g),
        _custom("amount", "Amount", "number", group=g),
        _custom("currency", "Currency", group=g),
        _custom("close_date", "Expected close date", "date", group=g),
        _custom("status", "Status", "enumeration", options=statuses, group=g),
        _custom("deal_id", "Deal ID", group=g),
        _custom("contact_name", "Contact name", group=g),
        _custom("contact_email", "Contact email", group=g),
        _custom("products", "Products", field_type="textarea", group=g),
        _custom("notes", "Notes", field_type="textarea", group=g),
        _custom("conflict_status", "Conflict status", "enumeration", options=verdicts, group=g),
        _custom("conflict_score", "Conflict score", "number", group=g),
        _custom("rejection_reason", "Rejection reason", field_type="textarea", group=g),
    )  # fmt: skip


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
                       "lastname"), 100_000, _contact_properties()),
            ("companies", "0-2", "Company", "Companies", "createdate", "hs_lastmodifieddate",
             "name", ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
             2_000_000, _company_properties()),
            ("deals", "0-3", "Deal", "Deals", "createdate", "hs_lastmodifieddate", "dealname",
             ("amount", "closedate", "createdate", "dealname", "dealstage",
              "hs_lastmodifieddate", "hs_object_id", "pipeline"), 3_000_000, _deal_properties()),
            ("products", "0-7", "Product", "Products", "createdate", "hs_lastmodifieddate",
             "name", ("createdate", "description", "hs_lastmodifieddate", "hs_object_id", "name",
                      "price"), 5_000_000, _product_properties()),
            ("line_items", "0-8", "Line Item", "Line Items", "createdate", "hs_lastmodifieddate",
             "name", ("createdate", "hs_lastmodifieddate", "hs_object_id", "name", "price",
                      "quantity"), 4_000_000, _line_item_properties()),
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
            {p.name: p for p in _registration_properties()}, custom=True,
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


def property_from_json(body: Mapping[str, Any]) -> PropertyDef:
    """A ``PropertyDef`` from a property-create request body."""
    options = tuple(
        (str(option["value"]), str(option.get("label", option["value"])))
        for option in body.get("options") or ()
    )
    return PropertyDef(
        name=str(body["name"]),
        label=str(body.get("label") or body["name"]),
        type=str(body["type"]),
        field_type=str(body.get("fieldType") or "text"),
        group=str(body.get("groupName") or ""),
        options=options,
        unique=bool(body.get("hasUniqueValue", False)),
        hubspot_defined=False,
        description=str(body.get("description") or ""),
    )
