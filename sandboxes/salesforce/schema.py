"""The sandbox org's schema: describes built from the recorded JSON, and the SOQL catalog.

Account, Contact, Lead and Opportunity come from the real recorded describes in
``specs/salesforce/`` (minus the recording org's own custom fields and record types), with the
sandbox org's additions (``Opportunity.PartnerAccountId``, ``Mirror_Key__c``). User, Product2,
OpportunityLineItem and Deal_Registration__c are synthesized in the same shape. Storage tables
come from these describes: one column per field, where a compound address column holds the
address as JSON (served by the REST query, refused by Bulk queries, like Salesforce).
"""

from __future__ import annotations

import copy
import json
import re
import threading
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from sandboxes.salesforce.fields import SYNTHESIZED, mirror_key, opportunity_additions
from sandboxes.salesforce.soql_nodes import ColumnInfo, RelationInfo, TableInfo

SPEC_DIR = Path(__file__).parent / "specs"
RECORDED = ("Account", "Contact", "Lead", "Opportunity")
WITH_MIRROR_KEY = ("Account", "Contact", "Lead")
COMPOUND_TYPES = ("address", "location")
VERSION_TOKEN = "__SANDBOX_API_VERSION__"
INSTANCE_TOKEN = "__SANDBOX_INSTANCE_URL__"
_RECORDED_API_PATH = re.compile(r"/services/data/v(?:\d+\.\d+|xx\.0)/")
_RECORDED_INSTANCE = re.compile(r"https://[A-Za-z0-9.-]+\.salesforce\.com")
_GLOBAL_KEYS = (
    "activateable", "associateEntityType", "associateParentEntity", "createable", "custom",
    "customSetting", "deepCloneable", "deletable", "deprecatedAndHidden", "feedEnabled",
    "hasSubtypes", "isInterface", "isSubtype", "keyPrefix", "label", "labelPlural", "layoutable",
    "mergeable", "mruEnabled", "name", "queryable", "replicateable", "retrieveable", "searchable",
    "triggerable", "undeletable", "updateable", "urls",
)  # fmt: skip


@cache
def _recorded(name: str) -> dict[str, Any]:
    return json.loads((SPEC_DIR / f"describe-{name}.json").read_text())


def sql_type(field_type: str) -> str:
    """The SQLite column type that stores a describe ``type``."""
    if field_type in ("boolean", "int"):
        return "INTEGER"
    if field_type in ("double", "currency", "percent"):
        return "REAL"
    return "TEXT"


@dataclass
class SObject:
    """One sObject: its describe (with version and instance tokens in urls) and field index."""

    describe: dict[str, Any]
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Index the fields by lower-case name."""
        self.fields = {f["name"].lower(): f for f in self.describe["fields"]}

    @property
    def name(self) -> str:
        """The API name (``Account``)."""
        return str(self.describe["name"])

    @property
    def key_prefix(self) -> str:
        """The 3-char id prefix."""
        return str(self.describe["keyPrefix"])

    @property
    def custom(self) -> bool:
        """Whether this is a custom object (``__c``)."""
        return bool(self.describe["custom"])

    @property
    def sql_table(self) -> str:
        """The SQLite table holding the records."""
        return "sf_" + self.name.lower()

    def field(self, name: str) -> dict[str, Any] | None:
        """The describe of field ``name`` (any case), or ``None``."""
        return self.fields.get(name.lower())

    def stored_fields(self) -> list[dict[str, Any]]:
        """Every field, in describe order (each has a column)."""
        return list(self.describe["fields"])

    def compound_parts(self, compound: str) -> list[dict[str, Any]]:
        """The component fields of a compound field (``BillingCity`` of ``BillingAddress``)."""
        return [f for f in self.describe["fields"] if f.get("compoundFieldName") == compound]

    def external_id_fields(self) -> list[dict[str, Any]]:
        """Fields usable as an upsert key: external ids and the Id itself."""
        return [f for f in self.describe["fields"] if f["externalId"] or f["type"] == "id"]

    def has_field(self, name: str) -> bool:
        """Whether the object has field ``name`` (any case)."""
        return name.lower() in self.fields


class SalesforceSchema:
    """Every sObject of the sandbox org; also the SOQL ``Catalog``."""

    def __init__(self) -> None:
        """Build the org's objects from the recorded and synthesized describes."""
        self._lock = threading.Lock()
        self.revision = 0
        self.objects: dict[str, SObject] = {}
        for name in RECORDED:
            self._add_object(_from_recording(name))
        for name, spec in SYNTHESIZED.items():
            self._add_object(_synthesized(name, *spec))
        self._link_children()
        self._tables: dict[str, TableInfo] = {}

    def _add_object(self, describe: dict[str, Any]) -> None:
        self.objects[describe["name"].lower()] = SObject(describe)

    def _link_children(self) -> None:
        """Add childRelationships for references the recordings do not already list."""
        for child in self.objects.values():
            for ref in child.describe["fields"]:
                for target in ref["referenceTo"]:
                    parent = self.objects.get(target.lower())
                    if parent is not None and ref["relationshipName"]:
                        _ensure_child(parent.describe, child.name, ref)

    def sobject(self, name: str) -> SObject | None:
        """The sObject called ``name`` (any case), or ``None``."""
        return self.objects.get(name.lower())

    def by_prefix(self, key_prefix: str) -> SObject | None:
        """The sObject whose ids start with ``key_prefix``, or ``None``."""
        return next((o for o in self.objects.values() if o.key_prefix == key_prefix), None)

    def table(self, sobject: str) -> TableInfo:
        """The SOQL catalog entry of ``sobject``; raises ``KeyError`` when there is none."""
        key = sobject.lower()
        with self._lock:
            cached = self._tables.get(key)
            if cached is None:
                cached = self._tables[key] = self._table_info(self.objects[key])
            return cached

    def _table_info(self, obj: SObject) -> TableInfo:
        fields = {
            f["name"].lower(): ColumnInfo(f["name"], f["name"], f["type"])
            for f in obj.describe["fields"]
        }
        relations = {}
        for f in obj.describe["fields"]:
            targets = [t for t in f["referenceTo"] if t.lower() in self.objects]
            if f["relationshipName"] and targets:
                relation = RelationInfo(f["relationshipName"], f["name"], targets[-1])
                relations[f["relationshipName"].lower()] = relation
        return TableInfo(obj.name, obj.sql_table, fields, relations)

    def add_field(self, sobject: str, describe_field: dict[str, Any]) -> None:
        """Schema drift: add a field to an object (describe, catalog and describe caches)."""
        obj = self.objects[sobject.lower()]
        if obj.has_field(describe_field["name"]):
            raise ValueError(f"{obj.name} already has a field {describe_field['name']}")
        obj.describe["fields"].append(describe_field)
        obj.fields[describe_field["name"].lower()] = describe_field
        with self._lock:
            self._tables.clear()
            self.revision += 1

    def describe_json(self, sobject: str, version: str, instance_url: str) -> bytes:
        """The ``/describe`` body of ``sobject`` for API ``version`` (``"59.0"``)."""
        obj = self.objects[sobject.lower()]
        return _render(obj.describe, version, instance_url)

    def global_json(self, version: str, instance_url: str) -> bytes:
        """The describe-global (``/sobjects``) body."""
        body = {
            "encoding": "UTF-8",
            "maxBatchSize": 200,
            "sobjects": [self.global_entry(obj) for obj in self.objects.values()],
        }
        return _render(body, version, instance_url)

    def metadata_json(self, sobject: str, version: str, instance_url: str) -> bytes:
        """The ``GET /sobjects/{Type}`` body: the global entry plus recent items."""
        entry = self.global_entry(self.objects[sobject.lower()])
        return _render({"objectDescribe": entry, "recentItems": []}, version, instance_url)

    @staticmethod
    def global_entry(obj: SObject) -> dict[str, Any]:
        """The object's entry in describe global."""
        entry = {key: obj.describe.get(key) for key in _GLOBAL_KEYS}
        entry["urls"] = {k: v for k, v in obj.describe["urls"].items() if "ui" not in k}
        return entry


def _render(body: dict[str, Any], version: str, instance_url: str) -> bytes:
    text = json.dumps(body, separators=(",", ":"))
    return text.replace(VERSION_TOKEN, version).replace(INSTANCE_TOKEN, instance_url).encode()


def _tokenize_url(url: str) -> str:
    url = _RECORDED_API_PATH.sub(f"/services/data/v{VERSION_TOKEN}/", url)
    return _RECORDED_INSTANCE.sub(INSTANCE_TOKEN, url)


def _from_recording(name: str) -> dict[str, Any]:
    describe = copy.deepcopy(_recorded(name))
    describe["fields"] = [f for f in describe["fields"] if not f["name"].endswith("__c")]
    describe["childRelationships"] = [
        child for child in describe["childRelationships"] if not child["field"].endswith("__c")
    ]
    describe["recordTypeInfos"] = [info for info in describe["recordTypeInfos"] if info["master"]]
    for info in describe["recordTypeInfos"]:
        info["urls"] = {key: _tokenize_url(url) for key, url in info["urls"].items()}
    describe["urls"] = {key: _tokenize_url(url) for key, url in describe["urls"].items()}
    if name == "Opportunity":
        describe["fields"].extend(opportunity_additions())
    if name in WITH_MIRROR_KEY:
        describe["fields"].append(mirror_key())
    return describe


def _synthesized(
    name: str, key_prefix: str, label: str, plural: str, custom: bool, fields: Any
) -> dict[str, Any]:
    template = copy.deepcopy(_recorded("Custom__c" if custom else "Opportunity"))
    describe = {key: value for key, value in template.items() if key != "fields"}
    describe.update(
        name=name,
        label=label,
        labelPlural=plural,
        keyPrefix=key_prefix,
        custom=custom,
        customSetting=False,
        childRelationships=[],
        recordTypeInfos=[_master_record_type(name)],
        urls=_object_urls(name, key_prefix),
        fields=fields(),
    )
    if name == "User":
        describe.update(deletable=False, undeletable=False, mergeable=False)
    return describe


def _master_record_type(name: str) -> dict[str, Any]:
    return {
        "active": True,
        "available": True,
        "defaultRecordTypeMapping": True,
        "developerName": "Master",
        "master": True,
        "name": "Master",
        "recordTypeId": "012000000000000AAA",
        "urls": {
            "layout": f"/services/data/v{VERSION_TOKEN}/sobjects/{name}/describe/layouts/"
            "012000000000000AAA"
        },
    }


def _object_urls(name: str, key_prefix: str) -> dict[str, str]:
    base = f"/services/data/v{VERSION_TOKEN}/sobjects/{name}"
    return {
        "compactLayouts": f"{base}/describe/compactLayouts",
        "rowTemplate": f"{base}/{{ID}}",
        "approvalLayouts": f"{base}/describe/approvalLayouts",
        "uiDetailTemplate": f"{INSTANCE_TOKEN}/{{ID}}",
        "uiEditTemplate": f"{INSTANCE_TOKEN}/{{ID}}/e",
        "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
        "describe": f"{base}/describe",
        "uiNewRecord": f"{INSTANCE_TOKEN}/{key_prefix}/e",
        "quickActions": f"{base}/quickActions",
        "layouts": f"{base}/describe/layouts",
        "sobject": base,
    }


def _ensure_child(parent: dict[str, Any], child_name: str, ref: dict[str, Any]) -> None:
    children = parent["childRelationships"]
    if any(c["childSObject"] == child_name and c["field"] == ref["name"] for c in children):
        return
    if ref["name"].endswith("__c"):
        relationship = child_name.removesuffix("__c") + "s__r"
    elif ref["name"] in ("CreatedById", "LastModifiedById", "OwnerId"):
        return
    else:
        relationship = None
    children.append(
        {
            "cascadeDelete": bool(ref.get("cascadeDelete")),
            "childSObject": child_name,
            "deprecatedAndHidden": False,
            "field": ref["name"],
            "junctionIdListNames": [],
            "junctionReferenceTo": [],
            "relationshipName": relationship,
            "restrictedDelete": False,
        }
    )
