"""The properties of the HubSpot sandbox's object types: how one is described, and the ones
each standard object and the deal registrations carry (HubSpot-defined ones a partner portal
needs, and the portal's own ``prm_*`` ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


def contact_properties() -> tuple[PropertyDef, ...]:
    """The properties of contacts."""
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


def company_properties() -> tuple[PropertyDef, ...]:
    """The properties of companies."""
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


def deal_properties() -> tuple[PropertyDef, ...]:
    """The properties of deals."""
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


def line_item_properties() -> tuple[PropertyDef, ...]:
    """The properties of line items."""
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


def product_properties() -> tuple[PropertyDef, ...]:
    """The properties of products."""
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


def registration_properties() -> tuple[PropertyDef, ...]:
    """The properties of the custom object ``deal_registrations``."""
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
