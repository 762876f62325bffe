"""Field describes for the sandbox org: the fields added to recorded objects and the objects
synthesized in the recorded shape (User, Product2, OpportunityLineItem, Deal_Registration__c).

Every field dict carries the same keys, with the same defaults per type, as the fields in the
recorded describes under ``specs/salesforce/``.
"""

from __future__ import annotations

from typing import Any

_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "time": "xsd:time",
    "address": "urn:address",
    "location": "urn:location",
    "base64": "xsd:base64Binary",
    "anyType": "xsd:anyType",
}
_DEFAULT_LENGTHS = {
    "string": 255,
    "picklist": 255,
    "multipicklist": 4099,
    "textarea": 32000,
    "email": 80,
    "phone": 40,
    "url": 255,
    "combobox": 255,
    "encryptedstring": 175,
}
_NUMERIC_SHAPES = {
    "double": (18, 2),
    "currency": (18, 2),
    "percent": (3, 0),
}
_UNSORTABLE = {"textarea", "address", "location", "multipicklist"}
_UNGROUPABLE = {"textarea", "double", "currency", "percent", "datetime", "address", "location"}


def make_field(
    name: str, field_type: str, label: str | None = None, **attrs: Any
) -> dict[str, Any]:
    """A complete describe entry for a field, in the recorded shape.

    ``attrs`` override any key (``length``, ``nillable``, ``createable``, ``referenceTo``, ...);
    ``values=[...]`` builds ``picklistValues`` for a picklist.
    """
    values = attrs.pop("values", None)
    length = attrs.pop("length", _DEFAULT_LENGTHS.get(field_type, 0))
    if field_type in ("id", "reference"):
        length = 18
    precision, scale = _NUMERIC_SHAPES.get(field_type, (0, 0))
    is_boolean = field_type == "boolean"
    field: dict[str, Any] = {
        "aggregatable": field_type not in ("textarea", "boolean", "address", "location"),
        "aiPredictionField": False,
        "autoNumber": False,
        "byteLength": length * 3 if field_type not in ("id", "reference") else 18,
        "calculated": False,
        "calculatedFormula": None,
        "cascadeDelete": False,
        "caseSensitive": False,
        "compoundFieldName": None,
        "controllerName": None,
        "createable": field_type != "id",
        "custom": name.endswith("__c"),
        "defaultValue": False if is_boolean else None,
        "defaultValueFormula": None,
        "defaultedOnCreate": is_boolean or field_type == "id",
        "dependentPicklist": False,
        "deprecatedAndHidden": False,
        "digits": 9 if field_type == "int" else 0,
        "displayLocationInDecimal": False,
        "encrypted": False,
        "externalId": False,
        "extraTypeInfo": "plaintextarea" if field_type == "textarea" else None,
        "filterable": field_type != "textarea",
        "filteredLookupInfo": None,
        "formulaTreatNullNumberAsZero": False,
        "groupable": field_type not in _UNGROUPABLE,
        "highScaleNumber": False,
        "htmlFormatted": False,
        "idLookup": field_type == "id",
        "inlineHelpText": None,
        "label": label or _label_from_name(name),
        "length": length,
        "mask": None,
        "maskType": None,
        "name": name,
        "nameField": False,
        "namePointing": False,
        "nillable": not is_boolean and field_type != "id",
        "permissionable": field_type != "id" and not is_boolean,
        "picklistValues": [_picklist_value(value) for value in values or ()],
        "polymorphicForeignKey": False,
        "precision": precision,
        "queryByDistance": field_type in ("address", "location"),
        "referenceTargetField": None,
        "referenceTo": [],
        "relationshipName": None,
        "relationshipOrder": None,
        "restrictedDelete": False,
        "restrictedPicklist": False,
        "scale": scale,
        "searchPrefilterable": field_type == "reference",
        "soapType": _SOAP_TYPES.get(field_type, "xsd:string"),
        "sortable": field_type not in _UNSORTABLE,
        "type": field_type,
        "unique": False,
        "updateable": field_type not in ("id",),
        "writeRequiresMasterRead": False,
    }
    unknown = set(attrs) - set(field)
    if unknown:
        raise ValueError(f"unknown describe attributes for {name}: {sorted(unknown)}")
    field.update(attrs)
    return field


def _label_from_name(name: str) -> str:
    base = name.removesuffix("__c").replace("_", " ")
    return base[:-2] + " ID" if base.endswith("Id") and len(base) > 2 else base


def _picklist_value(value: str) -> dict[str, Any]:
    return {"active": True, "defaultValue": False, "label": value, "validFor": None, "value": value}


def reference(name: str, target: str, relationship: str | None, **attrs: Any) -> dict[str, Any]:
    """A lookup field to ``target`` with the given relationship name."""
    return make_field(
        name, "reference", referenceTo=[target], relationshipName=relationship, **attrs
    )


def mirror_key() -> dict[str, Any]:
    """The ``Mirror_Key__c`` external id the portal upserts by (unique, case-insensitive)."""
    return make_field(
        "Mirror_Key__c", "string", "Mirror Key", length=80, externalId=True, unique=True,
        idLookup=True,
    )  # fmt: skip


def audit_fields(object_label: str) -> list[dict[str, Any]]:
    """Id, IsDeleted and the audit fields every object has, in the recorded order."""
    readonly = {"createable": False, "updateable": False, "nillable": False}
    stamp = {**readonly, "defaultedOnCreate": True}
    return [
        make_field("Id", "id", f"{object_label} ID", nillable=False),
        make_field("IsDeleted", "boolean", "Deleted", createable=False, updateable=False),
        make_field("CreatedDate", "datetime", "Created Date", **stamp),
        reference("CreatedById", "User", "CreatedBy", label="Created By ID", **stamp),
        make_field("LastModifiedDate", "datetime", "Last Modified Date", **stamp),
        reference("LastModifiedById", "User", "LastModifiedBy", label="Last Modified By ID",
                  **stamp),
        make_field("SystemModstamp", "datetime", "System Modstamp", **stamp),
    ]  # fmt: skip


def opportunity_additions() -> list[dict[str, Any]]:
    """Fields the sandbox org adds to the recorded Opportunity."""
    return [
        reference("PartnerAccountId", "Account", "PartnerAccount", label="Partner Account ID"),
        mirror_key(),
    ]


def user_fields() -> list[dict[str, Any]]:
    """The User object's fields."""
    required = {"nillable": False}
    return [
        *audit_fields("User"),
        make_field("Username", "string", "Username", length=80, unique=True, idLookup=True,
                   **required),
        make_field("LastName", "string", "Last Name", length=80, **required),
        make_field("FirstName", "string", "First Name", length=40),
        make_field("Name", "string", "Full Name", length=121, createable=False, updateable=False,
                   nameField=True),
        make_field("CompanyName", "string", "Company Name", length=80),
        make_field("Email", "email", "Email", length=128, **required),
        make_field("Alias", "string", "Alias", length=8, **required),
        make_field("IsActive", "boolean", "Active", defaultValue=True),
        make_field("UserType", "picklist", "User Type", values=["Standard", "PowerPartner"],
                   createable=False, updateable=False, restrictedPicklist=True),
        reference("ContactId", "Contact", "Contact", label="Contact ID"),
        reference("AccountId", "Account", "Account", label="Account ID", createable=False,
                  updateable=False),
    ]  # fmt: skip


def product_fields() -> list[dict[str, Any]]:
    """The Product2 object's fields."""
    return [
        *audit_fields("Product"),
        make_field("Name", "string", "Product Name", nillable=False, nameField=True),
        make_field("ProductCode", "string", "Product Code"),
        make_field("Description", "textarea", "Product Description", length=4000),
        make_field("IsActive", "boolean", "Active"),
        make_field("Family", "picklist", "Product Family",
                   values=["Software", "Hardware", "Services", "Support"]),
        make_field("ExternalId", "string", "External ID"),
    ]  # fmt: skip


def line_item_fields() -> list[dict[str, Any]]:
    """The OpportunityLineItem object's fields."""
    fixed = {"updateable": False, "nillable": False}
    derived = {"createable": False, "updateable": False}
    return [
        *audit_fields("Line Item"),
        reference("OpportunityId", "Opportunity", "Opportunity", label="Opportunity ID",
                  cascadeDelete=True, **fixed),
        make_field("SortOrder", "int", "Sort Order"),
        reference("Product2Id", "Product2", "Product2", label="Product ID", **fixed),
        make_field("ProductCode", "string", "Product Code", **derived),
        make_field("Name", "string", "Opportunity Product Name", length=376, nameField=True,
                   **derived),
        make_field("Quantity", "double", "Quantity", precision=12, nillable=False),
        make_field("TotalPrice", "currency", "Total Price"),
        make_field("UnitPrice", "currency", "Sales Price"),
        make_field("ListPrice", "currency", "List Price", **derived),
        make_field("ServiceDate", "date", "Date"),
        make_field("Description", "string", "Line Description"),
        mirror_key(),
    ]  # fmt: skip


DEAL_STATUSES = ["Submitted", "Approved", "Rejected", "Expired"]
CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "SEK"]


def deal_registration_fields() -> list[dict[str, Any]]:
    """The custom object Deal_Registration__c's fields."""
    return [
        make_field("Id", "id", "Record ID", nillable=False),
        reference("OwnerId", "User", "Owner", label="Owner ID", nillable=False,
                  defaultedOnCreate=True),
        make_field("IsDeleted", "boolean", "Deleted", createable=False, updateable=False),
        make_field("Name", "string", "Deal Registration Name", length=80, nameField=True),
        *audit_fields("Deal Registration")[2:],
        reference("Partner_Account__c", "Account", "Partner_Account__r", label="Partner Account",
                  nillable=False),
        make_field("Company_Name__c", "string", "Company Name", nillable=False),
        make_field("Domain__c", "string", "Domain", length=255),
        make_field("Country__c", "string", "Country", length=80),
        make_field("Amount__c", "currency", "Amount", precision=16),
        make_field("Close_Date__c", "date", "Close Date"),
        make_field("Status__c", "picklist", "Status", values=DEAL_STATUSES,
                   restrictedPicklist=True, defaultedOnCreate=True, defaultValue="Submitted"),
        reference("Opportunity__c", "Opportunity", "Opportunity__r", label="Opportunity"),
        make_field("Contact_Name__c", "string", "Contact Name", length=120),
        make_field("Contact_Email__c", "email", "Contact Email", length=128),
        make_field("Currency__c", "picklist", "Currency", values=CURRENCIES,
                   restrictedPicklist=True),
        make_field("Products__c", "string", "Product Codes", length=255),
        make_field("Notes__c", "textarea", "Notes", length=4000),
        make_field("Conflict_Status__c", "picklist", "Conflict Status",
                   values=["Clear", "Possible Duplicate", "Conflict"], restrictedPicklist=True),
        make_field("Conflict_Score__c", "percent", "Conflict Score", precision=5, scale=1),
        make_field("Rejection_Reason__c", "string", "Rejection Reason", length=255),
        mirror_key(),
    ]  # fmt: skip


SYNTHESIZED = {
    # name: (key prefix, label, plural label, custom, field factory)
    "User": ("005", "User", "Users", False, user_fields),
    "Product2": ("01t", "Product", "Products", False, product_fields),
    "OpportunityLineItem": ("00k", "Opportunity Product", "Opportunity Product", False,
                            line_item_fields),
    "Deal_Registration__c": ("a05", "Deal Registration", "Deal Registrations", True,
                             deal_registration_fields),
}  # fmt: skip
