"""What the portal does to records: create, update, archive, restore, purge, merge, associate.

Writes validate property values against their types and options (every problem reported at
once), refuse read-only and unknown properties, keep unique values unique (409 with the
existing id, as HubSpot does for a duplicate contact email), recompute calculated properties
(deal closed flags and probability, line item amount) and stamp the last-modified property.
Changing a record's associations does not touch its last-modified value, except a contact's
primary company, which HubSpot mirrors into the ``associatedcompanyid`` property.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sandboxes.hubspot.changes import association_name
from sandboxes.hubspot.derived import derive
from sandboxes.hubspot.errors import HsError, not_found, validation
from sandboxes.hubspot.history import CRM_USER, INTEGRATION, Source
from sandboxes.hubspot.record_base import RecordBase, as_id
from sandboxes.hubspot.schema import AssociationType, ObjectType

RECYCLE_BIN_DAYS = 90


class Records(RecordBase):
    """The record operations of one portal over its store, schema and clock."""

    # -- writes -------------------------------------------------------------------------

    def create(
        self,
        object_type: ObjectType,
        values: Mapping[str, Any],
        *,
        system: bool = False,
        stamp: int | None = None,
    ) -> dict[str, Any]:
        """A new live record with ``values`` (400 on invalid values, 409 on a clash)."""
        return self.create_many(object_type, [values], system=system, stamp=stamp)[0]

    def create_many(
        self,
        object_type: ObjectType,
        batch: Sequence[Mapping[str, Any]],
        *,
        system: bool = False,
        stamp: int | None = None,
    ) -> list[dict[str, Any]]:
        """New live records, all with one stamp; nothing is created if one is invalid."""
        checked = [self.checked(object_type, values, system=system) for values in batch]
        seen: dict[tuple[str, str], int] = {}
        for index, values in enumerate(checked):
            self._check_unique(object_type, values, None)
            for prop in object_type.unique_properties:
                value = values.get(prop)
                if value and seen.setdefault((prop, value.lower()), index) != index:
                    raise HsError(409, "CONFLICT", f"Duplicate {prop} {value!r} in one request")
        moment = stamp if stamp is not None else self.clock.stamp()
        ids = self.store.next_ids(object_type.name, object_type.id_base, len(checked))
        rows = []
        with self.store.transaction():
            for record_id, values in zip(ids, checked, strict=True):
                props = {k: v for k, v in values.items() if v is not None}
                row = _new_row(record_id, props, moment)
                derive(object_type, row)
                self.store.write(object_type.name, row)
                self._store_unique(object_type, row)
                self.history.record(object_type.name, record_id, props, moment, _source(system))
                self._log("create", object_type, row["id"], values, moment)
                self._emit("creation", object_type, row["id"], moment, changeFlag="CREATED")
                rows.append(row)
        return rows

    def update(
        self,
        object_type: ObjectType,
        record_id: Any,
        values: Mapping[str, Any],
        *,
        system: bool = False,
        stamp: int | None = None,
    ) -> dict[str, Any]:
        """Change a live record's properties (404 when it is not live)."""
        row = self.require(object_type, record_id)
        checked = self.checked(object_type, values, system=system)
        self._check_unique(object_type, checked, row["id"])
        with self.store.transaction():
            row = self._apply(object_type, row, checked, stamp, _source(system))
            self._log("update", object_type, row["id"], checked, row["modified_ms"])
            for name, value in checked.items():
                self._emit(
                    "propertyChange", object_type, row["id"], row["modified_ms"], name,
                    propertyName=name, propertyValue=value or "",
                )  # fmt: skip
        return row

    def touch(self, object_type: ObjectType, ids: Iterable[Any], stamp: int) -> None:
        """Put live records on the last-modified value ``stamp``, changing nothing else."""
        with self.store.transaction():
            for record_id in ids:
                row = self.require(object_type, record_id)
                row["modified_ms"] = stamp
                derive(object_type, row)
                self.store.write(object_type.name, row)
                self._log("touch", object_type, row["id"], {}, stamp)

    def archive(self, object_type: ObjectType, record_id: Any) -> bool:
        """Move a live record to the recycle bin; ``False`` when it was not live."""
        row = self.live(object_type, record_id)
        if row is None:
            return False
        row["archived"] = True
        row["archived_ms"] = self.clock.stamp()
        with self.store.transaction():
            self.store.write(object_type.name, row)
            self.store.release_unique(object_type.name, row["id"])
            self._log("delete", object_type, row["id"], {}, row["archived_ms"])
            self._emit("deletion", object_type, row["id"], row["archived_ms"], changeFlag="DELETED")
        return True

    def restore(self, object_type: ObjectType, record_id: Any) -> dict[str, Any]:
        """Bring an archived record back (its last-modified value moves on)."""
        row = self.store.fetch(object_type.name, as_id(record_id))
        if row is None or not row["archived"]:
            raise not_found()
        self._check_unique(object_type, row["props"], row["id"])
        row["archived"], row["archived_ms"] = False, None
        with self.store.transaction():
            row = self._apply(object_type, row, {})
            self._log("undelete", object_type, row["id"], {}, row["modified_ms"])
            self._emit("restore", object_type, row["id"], row["modified_ms"], changeFlag="RESTORED")
        return row

    def purge(self, object_type: ObjectType, record_id: Any) -> None:
        """Delete a record for good (a GDPR delete, or the recycle bin emptied)."""
        with self.store.transaction():
            self.store.purge(object_type.name, as_id(record_id))
            self.history.forget(object_type.name, as_id(record_id))
            moment = self.clock.now_ms()
            self._log("hard_delete", object_type, record_id, {}, moment)
            self._emit("deletion", object_type, record_id, moment, changeFlag="DELETED")

    def merge(
        self, object_type: ObjectType, primary_id: Any, loser_ids: Iterable[Any]
    ) -> dict[str, Any]:
        """Merge records into ``primary_id``: the losers' ids then lead to the survivor, their
        associations move to it and its ``hs_merged_object_ids`` lists them."""
        primary = self.require(object_type, primary_id)
        merged = [m for m in (primary["props"].get("hs_merged_object_ids") or "").split(";") if m]
        losers: list[int] = []
        with self.store.transaction():
            for loser_id in loser_ids:
                loser = self.require(object_type, loser_id)
                if loser["id"] == primary["id"]:
                    raise validation("A record cannot be merged into itself")
                loser["merged_into"] = primary["id"]
                losers.append(loser["id"])
                self.store.write(object_type.name, loser)
                merged_into = {"merged_into": primary["id"]}
                self._log("merge", object_type, loser["id"], merged_into, self.clock.now_ms())
                self.store.release_unique(object_type.name, loser["id"])
                self._move_associations(object_type.name, loser["id"], primary["id"])
                merged += [str(loser["id"])] + [
                    m for m in (loser["props"].get("hs_merged_object_ids") or "").split(";") if m
                ]
            row = self._apply(object_type, primary, {"hs_merged_object_ids": ";".join(merged)})
            self._emit(
                "merge", object_type, row["id"], row["modified_ms"], primaryObjectId=row["id"],
                mergedObjectIds=losers, newObjectId=row["id"], numberOfPropertiesMoved=0,
            )  # fmt: skip
            return row

    def _move_associations(self, type_name: str, old: int, new: int) -> None:
        rows = self.store.associations_touching(type_name, old)
        self.store.remove_associations(rows)
        moved = [
            (
                f,
                new if (f, i) == (type_name, old) else i,
                t,
                new if (t, j) == (type_name, old) else j,
                k,
            )
            for f, i, t, j, k in rows
        ]
        self.store.add_associations(r for r in moved if (r[0], r[1]) != (r[2], r[3]))

    # -- associations -------------------------------------------------------------------

    def associate(
        self,
        from_type: ObjectType,
        from_id: Any,
        to_type: ObjectType,
        to_id: Any,
        types: Sequence[AssociationType],
    ) -> list[AssociationType]:
        """Associate two live records with ``types`` (plus the unlabeled type, which every
        labeled association implies); a new primary replaces the old one."""
        source = self.require(from_type, from_id)
        target = self.require(to_type, to_id)
        wanted = list(types)
        default = self.schema.default_association(from_type.name, to_type.name)
        if default is not None and default not in wanted:
            wanted.append(default)
        for assoc in wanted:
            if assoc.primary:
                self._drop_primary(from_type.name, source["id"], to_type.name, assoc)
        rows = []
        for assoc in wanted:
            rows.append((from_type.name, source["id"], to_type.name, target["id"], assoc.type_id))
            rows.append(
                (to_type.name, target["id"], from_type.name, source["id"], assoc.inverse_id)
            )
        self.store.add_associations(rows)
        self._associations_changed(from_type, source["id"], to_type, target["id"], wanted, False)
        if any(a.primary for a in wanted) and from_type.name == "contacts":
            self._apply(from_type, source, {"associatedcompanyid": str(target["id"])})
        return wanted

    def _drop_primary(
        self, from_type: str, from_id: int, to_type: str, assoc: AssociationType
    ) -> None:
        current = [
            to_id
            for to_id, type_id in self.store.associations_of(from_type, from_id, to_type)
            if type_id == assoc.type_id
        ]
        self.store.remove_associations(
            row
            for to_id in current
            for row in (
                (from_type, from_id, to_type, to_id, assoc.type_id),
                (to_type, to_id, from_type, from_id, assoc.inverse_id),
            )
        )

    def dissociate(
        self,
        from_type: ObjectType,
        from_id: Any,
        to_type: ObjectType,
        to_id: Any,
        types: Sequence[AssociationType] | None = None,
    ) -> None:
        """Remove associations between two records: only ``types``, or all of them."""
        source, target = as_id(from_id), as_id(to_id)
        current = {
            type_id
            for other, type_id in self.store.associations_of(from_type.name, source, to_type.name)
            if other == target
        }
        chosen = [
            self.schema.association_type(from_type.name, to_type.name, type_id)
            for type_id in current
            if types is None or type_id in {t.type_id for t in types}
        ]
        self.store.remove_associations(
            row
            for assoc in chosen
            for row in (
                (from_type.name, source, to_type.name, target, assoc.type_id),
                (to_type.name, target, from_type.name, source, assoc.inverse_id),
            )
        )
        self._associations_changed(from_type, source, to_type, target, chosen, True)
        if from_type.name == "contacts" and any(a.primary for a in chosen):
            contact = self.live(from_type, source)
            if contact is not None:
                self._apply(from_type, contact, {"associatedcompanyid": None})

    def _associations_changed(
        self,
        from_type: ObjectType,
        from_id: int,
        to_type: ObjectType,
        to_id: int,
        types: Sequence[AssociationType],
        removed: bool,
    ) -> None:
        """One ``associationChange`` per association type and direction."""
        moment = self.clock.now_ms()
        for assoc in types:
            for (one, one_id), (other, other_id), type_id in (
                ((from_type, from_id), (to_type, to_id), assoc.type_id),
                ((to_type, to_id), (from_type, from_id), assoc.inverse_id),
            ):
                self._emit(
                    "associationChange", one, one_id, moment,
                    associationType=association_name(one, other), fromObjectId=one_id,
                    toObjectId=other_id, associationRemoved=removed,
                    isPrimaryAssociation=assoc.primary, associationTypeId=type_id,
                    associationCategory=assoc.category,
                    fromObjectTypeId=one.object_type_id, toObjectTypeId=other.object_type_id,
                )  # fmt: skip


def _new_row(record_id: int, props: dict[str, str], moment: int) -> dict[str, Any]:
    return {
        "id": record_id,
        "props": props,
        "created_ms": moment,
        "modified_ms": moment,
        "archived": False,
        "archived_ms": None,
        "merged_into": None,
    }


def _source(system: bool) -> Source:
    """Test controls write as a person in the CRM, API calls as the portal's private app."""
    return CRM_USER if system else INTEGRATION
