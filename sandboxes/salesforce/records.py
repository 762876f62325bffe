"""Writes to sandbox records, checked the way Salesforce checks them.

API writes (``system=False``) go through the field checks (unknown field, read-only field,
type, length, restricted picklist, required fields), the org's validation rules, lookups,
unique external ids and row locks. Test controls write with ``system=True``: the same type
conversion, none of the permission or validation checks, as if another user or process had
changed the record inside the CRM. Every write stamps SystemModstamp (and LastModifiedDate
unless ``system_only``) from the sandbox clock; deletes are soft and logged for getDeleted,
cascade to master-detail children, and line items roll up into their opportunity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sandboxes.kit.clock import SandboxClock
from sandboxes.kit.writelog import create_table, log_write
from sandboxes.salesforce.derive import derive, line_item_lookups
from sandboxes.salesforce.errors import SfError, bad_request, entity_deleted, not_found
from sandboxes.salesforce.ids import make_id, normalize_id
from sandboxes.salesforce.rules import check_rules
from sandboxes.salesforce.schema import SalesforceSchema, SObject
from sandboxes.salesforce.store import Store, quote
from sandboxes.salesforce.values import datetime_to_storage, to_storage

MERGEABLE = ("Account", "Contact", "Lead")
_CHANGE_TYPES = {"create": "CREATE", "update": "UPDATE", "delete": "DELETE", "merge": "DELETE",
                 "undelete": "UNDELETE", "hard_delete": "DELETE"}  # fmt: skip
_STAMPS = ("CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp")


class Records:
    """Creates, updates, deletes, undeletes and merges records in the store."""

    def __init__(self, store: Store, schema: SalesforceSchema, clock: SandboxClock) -> None:
        """Write through ``store`` with timestamps from ``clock``."""
        self.store = store
        self.schema = schema
        self.clock = clock
        self.locked_ids: set[str] = set()
        self.user_id = make_id("005", 1)
        with store.lock:
            create_table(store.conn)

    def sobject(self, name: str) -> SObject:
        """The sObject called ``name``; 404 NOT_FOUND when the org has none."""
        obj = self.schema.sobject(name)
        if obj is None:
            raise not_found()
        return obj

    def stamp(self) -> str:
        """The sandbox clock now, in storage form, saving the clock with the write."""
        now = datetime_to_storage(self.clock.now())
        self.store.set_meta("clock", self.clock.state())
        return now

    def row(self, obj: SObject, record_id: str, *, include_deleted: bool = False) -> dict[str, Any]:
        """The stored row of a record; 404 NOT_FOUND or ENTITY_IS_DELETED like Salesforce."""
        canonical = normalize_id(record_id)
        if canonical is None:
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {record_id}"
            )
        if canonical[:3] != obj.key_prefix:
            raise not_found()
        row = self.store.fetch_row(obj, canonical)
        if row is None:
            raise not_found()
        if row.get("IsDeleted") and not include_deleted:
            raise entity_deleted()
        return row

    def _check_lock(self, record_id: str, system: bool) -> None:
        if not system and record_id in self.locked_ids:
            raise bad_request(
                "UNABLE_TO_LOCK_ROW",
                "unable to obtain exclusive access to this record or 1 records: " + record_id,
            )

    def convert(
        self, obj: SObject, values: Mapping[str, Any], *, creating: bool, system: bool
    ) -> dict[str, Any]:
        """Check and convert written values to storage form, keyed by canonical field name."""
        converted: dict[str, Any] = {}
        readonly: list[str] = []
        for key, value in values.items():
            if key == "attributes":
                continue
            field = obj.field(key)
            if field is None:
                raise bad_request(
                    "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}"
                )
            if field["type"] == "id":
                continue
            if not system and not field["createable" if creating else "updateable"]:
                readonly.append(field["name"])
                continue
            converted[field["name"]] = to_storage(field, value)
        if readonly:
            raise bad_request(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(readonly)}. Please check the"
                " security settings of this field and verify that it is read/write for your"
                " profile or permission set.",
                readonly,
            )
        return converted

    def create(self, obj: SObject, values: Mapping[str, Any], *, system: bool = False) -> str:
        """Insert a record; returns its 18-char id."""
        with self.store.transaction():
            converted = self.convert(obj, values, creating=True, system=system)
            record_id = make_id(obj.key_prefix, self.store.reserve_sequences(obj.key_prefix, 1))
            now = self.stamp()
            row = self._defaults(obj)
            row.update(converted)
            audit = dict.fromkeys(("CreatedDate", "LastModifiedDate", "SystemModstamp"), now)
            row.update(Id=record_id, IsDeleted=0, CreatedById=self.user_id, **audit)
            row["LastModifiedById"] = self.user_id
            if obj.has_field("OwnerId") and row.get("OwnerId") is None:
                row["OwnerId"] = self.user_id
            if obj.custom and row.get("Name") is None:
                row["Name"] = record_id
            if obj.name == "OpportunityLineItem":
                row.update(line_item_lookups(self.store, self.schema, row))
            row.update(derive(obj, row, list(row)))
            self._check(obj, row, converted, record_id, creating=True, system=system)
            row = {name: row.get(name) for name in (f["name"] for f in obj.stored_fields())}
            self.store.insert_many(obj, list(row), [tuple(row.values())])
            self._log("create", obj, record_id, converted, now, row)
            self._after_write(obj, row)
            return record_id

    def update(
        self,
        obj: SObject,
        record_id: str,
        values: Mapping[str, Any],
        *,
        system: bool = False,
        system_only: bool = False,
    ) -> None:
        """Update a live record."""
        with self.store.transaction():
            before = self.row(obj, record_id)
            record_id = before["Id"]
            self._check_lock(record_id, system)
            given = dict(values)
            given_id = given.pop("Id", None) or given.pop("id", None)
            if given_id is not None and normalize_id(str(given_id)) != record_id:
                raise bad_request("INVALID_ID_FIELD", "Id in the body does not match the URL")
            converted = self.convert(obj, given, creating=False, system=system)
            after = {**before, **converted}
            after.update(derive(obj, after, list(converted)))
            self._check(obj, after, converted, record_id, creating=False, system=system)
            now = self.stamp()
            after["SystemModstamp"] = now
            if not system_only:
                after.update(LastModifiedDate=now, LastModifiedById=self.user_id)
            changes = {k: v for k, v in after.items() if k in _STAMPS or before.get(k) != v}
            self.store.update_row(obj, record_id, changes)
            changed = {k: v for k, v in changes.items() if before.get(k) != v}
            self._log("update", obj, record_id, converted, now, changed)
            self._after_write(obj, after)

    def upsert(
        self, obj: SObject, field_name: str, value: str, values: Mapping[str, Any]
    ) -> tuple[str, bool]:
        """Create or update by external id; returns ``(id, created)``. 300 on several matches."""
        field = obj.field(field_name)
        if field is None or not (field["externalId"] or field["type"] == "id"):
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {field_name}"
            )
        if field["type"] == "id":
            self.update(obj, value, values)
            return self.row(obj, value)["Id"], False
        with self.store.transaction():
            matches = self.store.find_by(obj, field["name"], value)
            if len(matches) > 1:
                raise SfError(300, "MULTIPLE_RECORDS", f"{field['name']}: more than one record")
            body = {k: v for k, v in values.items() if k.lower() != field["name"].lower()}
            if matches:
                self.update(obj, matches[0], body)
                return matches[0], False
            return self.create(obj, {**body, field["name"]: value}), True

    def delete(self, obj: SObject, record_id: str, *, system: bool = False) -> None:
        """Soft-delete a live record (and its cascade-delete children)."""
        if not system and not obj.describe.get("deletable", True):
            raise bad_request(
                "INVALID_TYPE_FOR_OPERATION", f"entity type {obj.name} cannot be deleted"
            )
        with self.store.transaction():
            row = self.row(obj, record_id)
            self._check_lock(row["Id"], system)
            now = self.stamp()
            self._mark_deleted(obj, row["Id"], now, {})
            self._after_write(obj, row)

    def _mark_deleted(self, obj: SObject, record_id: str, now: str, extra: dict[str, Any]) -> None:
        self.store.update_row(obj, record_id, {"IsDeleted": 1, "SystemModstamp": now, **extra})
        self.store.log_deletion(obj, record_id, now)
        self._log("merge" if extra else "delete", obj, record_id, extra, now)
        for child, field in self._children(obj, cascade_only=True):
            ids = self.store.query(
                f'SELECT "Id" FROM {quote(child.sql_table)}'
                f' WHERE {quote(field)} = ? AND "IsDeleted" = 0',
                (record_id,),
            )
            for (child_id,) in ids:
                self._mark_deleted(child, child_id, now, {})

    def _children(self, obj: SObject, *, cascade_only: bool) -> Iterable[tuple[SObject, str]]:
        cascading = {
            (c["childSObject"], c["field"]) for c in obj.describe["childRelationships"]
            if c["cascadeDelete"]
        }  # fmt: skip
        for child in self.schema.objects.values():
            for field in child.stored_fields():
                if obj.name not in field["referenceTo"] or field["name"] in _STAMPS:
                    continue
                if not cascade_only or (child.name, field["name"]) in cascading:
                    yield child, field["name"]

    def undelete(self, obj: SObject, record_id: str) -> None:
        """Restore a soft-deleted record from the recycle bin."""
        with self.store.transaction():
            row = self.row(obj, record_id, include_deleted=True)
            if not row["IsDeleted"]:
                raise bad_request("UNDELETE_FAILED", "Entity is not in the recycle bin")
            unique = {f["name"]: row[f["name"]] for f in obj.stored_fields() if f["unique"]}
            self._check_unique(obj, row, unique, row["Id"])
            now = self.stamp()
            restored = {"IsDeleted": 0, "SystemModstamp": now, "LastModifiedDate": now}
            self.store.update_row(obj, row["Id"], restored)
            self.store.forget_deletion(obj, row["Id"])
            self._log("undelete", obj, row["Id"], {}, now)
            self._after_write(obj, row)

    def hard_delete(self, obj: SObject, record_id: str) -> None:
        """Remove a record for good: gone from queryAll and from getDeleted."""
        with self.store.transaction():
            record_id = self.row(obj, record_id, include_deleted=True)["Id"]
            self.store.delete_row(obj, record_id)
            self._log("hard_delete", obj, record_id, {}, datetime_to_storage(self.clock.now()))

    def merge(self, obj: SObject, master_id: str, loser_ids: Iterable[str]) -> None:
        """Merge losers into master: children move to master, losers are deleted with
        MasterRecordId set."""
        if obj.name not in MERGEABLE:
            raise ValueError(f"{obj.name} records cannot be merged")
        with self.store.transaction():
            master = self.row(obj, master_id)["Id"]
            now = self.stamp()
            for loser_id in loser_ids:
                loser = self.row(obj, loser_id)["Id"]
                for child, field in self._children(obj, cascade_only=False):
                    moved = self.store.referring_ids(child, field, loser)
                    self.store.query(
                        f"UPDATE {quote(child.sql_table)} SET {quote(field)} = ?,"
                        ' "SystemModstamp" = ?, "LastModifiedDate" = ?'
                        f" WHERE {quote(field)} = ?",
                        (master, now, now, loser),
                    )
                    for child_id in moved:
                        self._stage("UPDATE", child.name, child_id, {field: master})
                self._mark_deleted(obj, loser, now, {"MasterRecordId": master})
            stamps = {"SystemModstamp": now, "LastModifiedDate": now}
            self.store.update_row(obj, master, stamps)
            self._stage("UPDATE", obj.name, master, stamps)

    def set_modstamp(self, obj: SObject, record_ids: Iterable[str], when: datetime) -> None:
        """Put records on one SystemModstamp (LastModifiedDate is kept at or below it)."""
        stored = datetime_to_storage(when)
        with self.store.transaction():
            for record_id in record_ids:
                row = self.row(obj, record_id, include_deleted=True)
                last_modified = min(row["LastModifiedDate"] or stored, stored)
                changes = {"SystemModstamp": stored, "LastModifiedDate": last_modified}
                self.store.update_row(obj, row["Id"], changes)
                self._log("touch", obj, row["Id"], changes, stored)

    def _log(self, op: str, obj: SObject, record_id: str, fields: Mapping[str, Any], at: str,
             values: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        """Log the write and stage its change event (``values``: the event's field values
        when they are not the ``fields`` written)."""
        log_write(self.store.conn, op, obj.name, record_id, fields, at)
        if op in _CHANGE_TYPES:
            event_values = fields if values is None else values
            self._stage(_CHANGE_TYPES[op], obj.name, record_id, event_values)

    def _stage(self, kind: str, entity: str, record_id: str, values: Mapping[str, Any]) -> None:
        if self.store.cdc is not None:
            self.store.cdc.stage(entity, kind, record_id, values, list(values))

    def _defaults(self, obj: SObject) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for field in obj.stored_fields():
            default = field.get("defaultValue")
            if field["type"] == "picklist":
                flagged = [p["value"] for p in field["picklistValues"] if p["defaultValue"]]
                default = flagged[0] if flagged else default
            if default is not None and field["type"] != "id":
                row[field["name"]] = int(default) if field["type"] == "boolean" else default
        return row

    def _check(
        self,
        obj: SObject,
        row: dict[str, Any],
        written: dict[str, Any],
        record_id: str,
        *,
        creating: bool,
        system: bool,
    ) -> None:
        if not system:
            self._check_required(obj, row, written, creating)
            check_rules(obj, row)
        self._check_references(obj, written)
        self._check_unique(obj, row, written, record_id)

    @staticmethod
    def _check_required(
        obj: SObject, row: dict[str, Any], written: dict[str, Any], creating: bool
    ) -> None:
        missing = [
            f["name"] for f in obj.stored_fields()
            if not f["nillable"] and f["createable"] and f["type"] != "boolean"
            and (creating or f["name"] in written) and row.get(f["name"]) is None
        ]  # fmt: skip
        if missing:
            raise bad_request(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )  # fmt: skip

    def _check_references(self, obj: SObject, written: dict[str, Any]) -> None:
        for name, value in written.items():
            field = obj.field(name)
            if field is None or field["type"] != "reference" or value is None:
                continue
            targets = [self.schema.sobject(t) for t in field["referenceTo"]]
            known = [t for t in targets if t is not None]
            if len(known) < len(targets):
                continue
            target = next((t for t in known if t.key_prefix == value[:3]), None)
            if target is None:
                raise bad_request(
                    "FIELD_INTEGRITY_EXCEPTION",
                    f"{field['label']}: id value of incorrect type: {value}", [name],
                )  # fmt: skip
            if not self.store.exists(target, value):
                raise bad_request(
                    "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [name]
                )

    def _check_unique(
        self, obj: SObject, row: dict[str, Any], written: dict[str, Any], record_id: str
    ) -> None:
        for name, value in written.items():
            field = obj.field(name)
            if field is None or not field["unique"] or value is None:
                continue
            clashes = [
                other for other in self.store.find_by(obj, name, value) if other != record_id
            ]
            if clashes:
                raise bad_request(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {name} duplicates value on record with id:"
                    f" {clashes[0]}",
                    [],
                )

    def _after_write(self, obj: SObject, row: dict[str, Any]) -> None:
        if obj.name == "OpportunityLineItem" and row.get("OpportunityId"):
            self._roll_up_line_items(row["OpportunityId"])

    def _roll_up_line_items(self, opportunity_id: str) -> None:
        opportunities = self.sobject("Opportunity")
        count, quantity, total = self.store.query(
            'SELECT COUNT(*), SUM("Quantity"), SUM("TotalPrice") FROM "sf_opportunitylineitem"'
            ' WHERE "OpportunityId" = ? AND "IsDeleted" = 0',
            (opportunity_id,),
        )[0]
        if not self.store.exists(opportunities, opportunity_id):
            return
        values: dict[str, Any] = {"HasOpportunityLineItem": count > 0}
        if count:
            values.update(Amount=round(total or 0.0, 2), TotalOpportunityQuantity=quantity)
        self.update(opportunities, opportunity_id, values, system=True)
