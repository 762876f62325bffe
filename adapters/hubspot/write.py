"""Writes to HubSpot through the v3 batch APIs, 100 records a call.

- Creates with an idempotency key go through ``batch/upsert`` on the object's unique
  ``prm_mirror_key`` property, so a create retried after a lost answer lands once; an upsert
  sent again would overwrite a change made since the first one landed, so it is not repeated
  after a lost answer, and one that may have landed (``Write.in_doubt``) is looked up by its
  key first and, found, answered as made; others go through ``batch/create`` and are never
  repeated blindly. Results are matched to writes by ``objectWriteTraceId`` (HubSpot does not
  promise input order).
- Updates and deletes with an ``expected_version`` are checked first against one batch read of
  the records' last-modified values (HubSpot has no conditional writes); changed records come
  back ``precondition_failed``. A change made in the millisecond of the edited version leaves
  that value as it was, so the same read takes the properties an update sets, and one whose
  properties no longer hold the values the portal edited (``Write.expected_values``) is
  ``precondition_failed`` as well (linked association fields are not compared). After a
  versioned update, the written properties' history is read back: a change made between the
  check and the update, which the update overwrote, is given back its value and the update
  reported ``precondition_failed`` too (``hubspot_overwrites``).
- An update whose answer was lost is not sent again (it could revert a change made since it
  landed): when the written properties' history shows it landed, it is a success at that
  moment (``hubspot_overwrites.landed_at``); otherwise it is ``OUTCOME_UNKNOWN``, retryable,
  and the engine reads the record back before retrying it (``mirror.push.landed``).
- A 207 answer fails only the records it names; a batch refused as a whole (400, 409) is
  retried record by record so one bad record never blocks the rest.
- Association fields (``partner_company_id``, ``primary_company_id``, ``deal_id``) are written
  as associations after the record itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.hubspot.assoc import Associations
from adapters.hubspot.catalog import Catalog
from adapters.hubspot.client import HubSpotConnection, Reply
from adapters.hubspot.errors import RECORD_RETRYABLE_CATEGORIES, OutcomeUnknown
from adapters.hubspot.overwrites import (
    Overwritten,
    changed_since,
    checked_fields,
    current_values,
    landed_at,
    overwritten,
)
from adapters.hubspot.types import (
    KEY,
    RecordConverter,
    format_cursor,
    parse_instant,
    to_ms,
    to_wire,
)
from mirror.adapter import changed_fields
from mirror.errors import CrmError, MirrorError
from mirror.types import ObjectSpec, Write, WriteOp, WriteResult

BATCH_SIZE = 100


@dataclass(frozen=True)
class Item:
    """One write of a batch with its position in the caller's list."""

    index: int
    write: Write


def runs(writes: Sequence[Write]) -> Iterator[list[Item]]:
    """Consecutive writes of the same op, cut into batches of at most ``BATCH_SIZE``."""
    batch: list[Item] = []
    for index, write in enumerate(writes):
        if batch and (batch[0].write.op is not write.op or len(batch) == BATCH_SIZE):
            yield batch
            batch = []
        batch.append(Item(index, write))
    if batch:
        yield batch


def failed(code: str, message: str, **extra: Any) -> WriteResult:
    """A failed ``WriteResult``."""
    return WriteResult(ok=False, error_code=code, message=message, **extra)


class BatchWriter:
    """Applies ``Write`` lists to one object through the batch APIs."""

    def __init__(self, conn: HubSpotConnection, catalog: Catalog, spec: ObjectSpec) -> None:
        """A writer for ``spec``."""
        self.conn = conn
        self.spec = spec
        self.api_type = catalog.api_type(spec.name)
        self.associations = Associations(conn, catalog, spec.name)
        self.fields = {f.name: f for f in spec.fields}
        self.converter = RecordConverter(spec, self.associations.names)

    def write(self, writes: Sequence[Write]) -> list[WriteResult]:
        """One result per write, in order. A failure before anything was applied is
        raised; after that, the remaining writes fail as retryable instead."""
        results: list[WriteResult | None] = [None] * len(writes)
        stopped: MirrorError | None = None
        for batch in runs(writes):
            if stopped is None:
                try:
                    outcome = self._batch(batch)
                except MirrorError as error:
                    if all(result is None for result in results):
                        raise
                    stopped = error
            if stopped is not None:
                outcome = [
                    failed("NOT_ATTEMPTED", f"not attempted: {stopped}", retryable=True)
                    for _ in batch
                ]
            for item, result in zip(batch, outcome, strict=True):
                results[item.index] = result
        return [result for result in results if result is not None]

    def _batch(self, batch: list[Item]) -> list[WriteResult]:
        op = batch[0].write.op
        try:
            if op is WriteOp.CREATE:
                done = self._create(batch)
            else:
                verdicts = self._check_versions(batch)
                pending = [item for item in batch if item.index not in verdicts]
                send = self._update if op is WriteOp.UPDATE else self._delete
                done = {**verdicts, **(send(pending) if pending else {})}
        except OutcomeUnknown as error:
            # the engine reads an update back before retrying it (``mirror.push.landed``)
            return [
                failed(
                    "OUTCOME_UNKNOWN",
                    f"{error}; check the record before retrying",
                    retryable=op is WriteOp.UPDATE,
                )
                for _ in batch
            ]
        except CrmError as error:
            return [failed(error.code or "CRM_ERROR", str(error)) for _ in batch]
        return [done[item.index] for item in batch]

    # -- values ---------------------------------------------------------------------------

    def _properties(self, write: Write) -> dict[str, str]:
        linked = {f.name for f in self.associations.linked}
        values = {
            name: to_wire(self.fields.get(name), value)
            for name, value in write.values.items()
            if name != KEY and name not in self.associations.names
        }
        copied = self.associations.property_values(write.values)
        values.update({name: to_wire(None, value) for name, value in copied.items()})
        return {k: v for k, v in values.items() if k not in linked}

    def _linked_values(self, write: Write) -> dict[str, Any]:
        return {
            f.name: write.values[f.name] for f in self.associations.linked if f.name in write.values
        }

    def _version(self, obj: Mapping[str, Any]) -> str | None:
        value = (obj.get("properties") or {}).get(self.spec.cursor_field) or obj.get("updatedAt")
        try:
            return format_cursor(parse_instant(str(value))) if value else None
        except ValueError:
            return None

    # -- create ---------------------------------------------------------------------------

    def _create(self, batch: list[Item]) -> dict[int, WriteResult]:
        key_field = self.spec.external_id_field
        keyed = [i for i in batch if key_field and i.write.idempotency_key]
        plain = [i for i in batch if not (key_field and i.write.idempotency_key)]
        results: dict[int, WriteResult] = {}
        if keyed:
            results |= self._keyed(keyed, str(key_field))
        if plain:
            results |= self._isolated(plain, self._send_create)
        made = [
            (str(results[i.index].record_id), self._linked_values(i.write))
            for i in batch
            if results[i.index].ok and self._linked_values(i.write)
        ]
        if made:
            self.associations.write(made)
        return results

    def _keyed(self, items: list[Item], key_field: str) -> dict[int, WriteResult]:
        """Creates by key: those HubSpot made already (``Write.in_doubt``: an earlier attempt
        whose answer was lost) are answered as they are, the others upserted; an upsert whose
        answer is lost is not sent again (it would overwrite a change made since it landed)."""
        doubtful = [i for i in items if i.write.in_doubt]
        results = self._made_already(doubtful, key_field) if doubtful else {}
        fresh = [i for i in items if i.index not in results]
        if not fresh:
            return results
        try:
            return results | self._isolated(fresh, lambda rest: self._send_upsert(rest, key_field))
        except OutcomeUnknown as error:
            # looked up by its key when it is sent again (``Write.in_doubt``)
            unknown = failed("OUTCOME_UNKNOWN", f"{error}; looked up next time", retryable=True)
        return results | {i.index: unknown for i in fresh if i.index not in results}

    def _made_already(self, items: list[Item], key_field: str) -> dict[int, WriteResult]:
        """Successes for the creates whose record HubSpot holds under their key."""
        by_key = {str(i.write.idempotency_key): i for i in items}
        body = {
            "idProperty": key_field,
            "properties": [self.spec.cursor_field, key_field],
            "inputs": [{"id": key} for key in by_key],
        }
        reply = self.conn.batch(self.api_type, "read", body)
        results: dict[int, WriteResult] = {}
        for obj in reply.get("results") or ():
            item = by_key.get(str((obj.get("properties") or {}).get(key_field)))
            if item is not None:
                results[item.index] = WriteResult(
                    ok=True, record_id=str(obj["id"]), version=self._version(obj), created=False
                )
        return results

    def _send_upsert(self, items: list[Item], key_field: str) -> dict[int, WriteResult]:
        inputs = [
            {
                "idProperty": key_field,
                "id": str(i.write.idempotency_key),
                "properties": self._properties(i.write),
                "objectWriteTraceId": str(i.index),
            }
            for i in items
        ]
        reply = self.conn.batch(self.api_type, "upsert", {"inputs": inputs})
        return self._matched(items, reply, created_default=True)

    def _send_create(self, items: list[Item]) -> dict[int, WriteResult]:
        inputs = [
            {
                "properties": self._properties(i.write),
                "associations": [],
                "objectWriteTraceId": str(i.index),
            }
            for i in items
        ]
        reply = self.conn.batch(self.api_type, "create", {"inputs": inputs})
        return self._matched(items, reply, created_default=True)

    def _matched(
        self, items: list[Item], reply: Reply, created_default: bool = False
    ) -> dict[int, WriteResult]:
        by_trace = {str(r.get("objectWriteTraceId")): r for r in reply.get("results") or ()}
        ordered = list(reply.get("results") or ())
        results: dict[int, WriteResult] = {}
        for position, item in enumerate(items):
            obj = by_trace.get(str(item.index))
            if obj is None and len(ordered) == len(items):
                obj = ordered[position]
            if obj is None:
                results[item.index] = failed("NO_RESULT", "HubSpot returned no result for it")
                continue
            results[item.index] = WriteResult(
                ok=True,
                record_id=str(obj["id"]),
                version=self._version(obj),
                created=bool(obj.get("new", created_default)),
            )
        return results

    def _isolated(self, items: list[Item], send: Any) -> dict[int, WriteResult]:
        """``send(items)``; when HubSpot refuses the whole batch, each record on its own."""
        try:
            return dict(send(items))
        except CrmError as error:
            if len(items) == 1 or error.status not in (400, 409):
                if len(items) == 1:
                    return {items[0].index: _record_failure(error)}
                raise
        results: dict[int, WriteResult] = {}
        for item in items:
            try:
                results |= send([item])
            except CrmError as error:
                results[item.index] = _record_failure(error)
        return results

    # -- update and delete ------------------------------------------------------------------

    def _current(
        self, ids: Sequence[str], properties: Sequence[str] = ()
    ) -> dict[str, Mapping[str, Any]]:
        found: dict[str, Mapping[str, Any]] = {}
        names = list(dict.fromkeys([self.spec.cursor_field, *properties]))
        for start in range(0, len(ids), BATCH_SIZE):
            chunk = ids[start : start + BATCH_SIZE]
            body = {"properties": names, "inputs": [{"id": i} for i in chunk]}
            reply = self.conn.batch(self.api_type, "read", body)
            found |= {str(r["id"]): r for r in reply.get("results") or () if str(r["id"]) in chunk}
        return found

    def _check_versions(self, batch: list[Item]) -> dict[int, WriteResult]:
        """A verdict for each write whose record changed or vanished since its version, or
        whose properties no longer hold the values edited."""
        checked = [i for i in batch if i.write.expected_version and i.write.record_id]
        fields = checked_fields(self.associations, self.fields, checked)
        current = (
            self._current([str(i.write.record_id) for i in checked], sorted(set(fields.values())))
            if checked
            else {}
        )
        verdicts: dict[int, WriteResult] = {}
        for item in checked:
            record_id = str(item.write.record_id)
            obj = current.get(record_id)
            if obj is None:
                verdicts[item.index] = (
                    WriteResult(ok=True, record_id=record_id)
                    if item.write.op is WriteOp.DELETE
                    else failed(
                        "OBJECT_NOT_FOUND",
                        "the record no longer exists in HubSpot",
                        record_id=record_id,
                    )
                )
                continue
            version = self._version(obj)
            if not _same_version(item.write.expected_version, version):
                verdicts[item.index] = changed_since(record_id, version)
                continue
            values = current_values(self.converter, obj, fields)
            if changed := changed_fields(self.spec, item.write.expected_values, values):
                verdicts[item.index] = changed_since(record_id, version, changed)
        return verdicts

    def _update(self, items: list[Item]) -> dict[int, WriteResult]:
        with_props = [i for i in items if self._properties(i.write)]
        try:
            results = self._isolated(with_props, self._send_update) if with_props else {}
        except OutcomeUnknown as error:
            results = self._landed(with_props, error)
        results |= self._give_back(with_props, results)
        only_links = [i for i in items if i.index not in results]
        if only_links:
            current = self._current([str(i.write.record_id) for i in only_links])
            for item in only_links:
                obj = current.get(str(item.write.record_id))
                results[item.index] = (
                    WriteResult(
                        ok=True, record_id=str(item.write.record_id), version=self._version(obj)
                    )
                    if obj is not None
                    else failed(
                        "OBJECT_NOT_FOUND",
                        "the record no longer exists in HubSpot",
                        record_id=str(item.write.record_id),
                    )
                )
        linked = [
            (str(i.write.record_id), self._linked_values(i.write))
            for i in items
            if results[i.index].ok and self._linked_values(i.write)
        ]
        if linked:
            self.associations.write(linked)
        return results

    def _send_update(self, items: list[Item]) -> dict[int, WriteResult]:
        inputs = [
            {
                "id": str(i.write.record_id),
                "properties": self._properties(i.write),
                "objectWriteTraceId": str(i.index),
            }
            for i in items
        ]
        reply = self.conn.batch(self.api_type, "update", {"inputs": inputs})
        by_id = {str(r["id"]): r for r in reply.get("results") or ()}
        errors = _errors_by_id(reply)
        results: dict[int, WriteResult] = {}
        for item in items:
            record_id = str(item.write.record_id)
            if record_id in by_id:
                obj = by_id[record_id]
                results[item.index] = WriteResult(
                    ok=True, record_id=record_id, version=self._version(obj)
                )
            else:
                category, message = errors.get(record_id, ("NO_RESULT", "no result for it"))
                results[item.index] = failed(
                    category,
                    message,
                    record_id=record_id,
                    retryable=category in RECORD_RETRYABLE_CATEGORIES,
                )
        return results

    def _landed(self, items: list[Item], error: OutcomeUnknown) -> dict[int, WriteResult]:
        """After a lost answer: a success for each versioned update the history shows landed
        (``hubspot_overwrites.landed_at``), else ``OUTCOME_UNKNOWN``, retryable."""
        unknown = failed(
            "OUTCOME_UNKNOWN", f"{error}; check the record before retrying", retryable=True
        )
        versioned = [i for i in items if i.write.expected_version]
        names = sorted({name for i in versioned for name in self._properties(i.write)})
        history: dict[str, Any] = {}
        if versioned:
            body = {
                "properties": [self.spec.cursor_field],
                "propertiesWithHistory": names,
                "inputs": [{"id": str(i.write.record_id)} for i in versioned],
            }
            try:
                reply = self.conn.batch(self.api_type, "read", body)
            except MirrorError:
                return {i.index: unknown for i in items}
            history = {
                str(r["id"]): r.get("propertiesWithHistory") or {}
                for r in reply.get("results") or ()
            }
        results: dict[int, WriteResult] = {}
        for item in items:
            record_id = str(item.write.record_id)
            stamp = (
                landed_at(
                    history.get(record_id, {}),
                    self._properties(item.write),
                    str(item.write.expected_version),
                )
                if item.write.expected_version
                else None
            )
            results[item.index] = (
                WriteResult(ok=True, record_id=record_id, version=stamp) if stamp else unknown
            )
        return results

    def _give_back(
        self, items: list[Item], results: Mapping[int, WriteResult]
    ) -> dict[int, WriteResult]:
        """Failures for the versioned updates that overwrote a change made in HubSpot after
        their check, whose properties got their values back (see ``hubspot_overwrites``)."""
        checked = [
            i
            for i in items
            if i.write.expected_version and results[i.index].ok and results[i.index].version
        ]
        if not checked:
            return {}
        names = sorted({name for i in checked for name in self._properties(i.write)})
        body = {
            "properties": [self.spec.cursor_field, *names],
            "propertiesWithHistory": names,
            "inputs": [{"id": str(i.write.record_id)} for i in checked],
        }
        try:
            reply = self.conn.batch(self.api_type, "read", body)
        except CrmError:
            return {}  # unverified: the updates stand as written
        read = {str(r["id"]): r for r in reply.get("results") or ()}
        found: dict[int, Overwritten] = {}
        for item in checked:
            record = read.get(str(item.write.record_id)) or {}
            lost = overwritten(
                record.get("propertiesWithHistory") or {},
                self._properties(item.write),
                str(item.write.expected_version),
                str(results[item.index].version),
                record.get("properties"),
            )
            if lost is not None:
                found[item.index] = lost
        return self._restore(checked, found) if found else {}

    def _restore(
        self, items: list[Item], found: Mapping[int, Overwritten]
    ) -> dict[int, WriteResult]:
        inputs = [
            {"id": str(i.write.record_id), "properties": found[i.index].values}
            for i in items
            if i.index in found
        ]
        try:
            reply = self.conn.batch(self.api_type, "update", {"inputs": inputs})
        except (CrmError, OutcomeUnknown):
            return {}  # the overwritten values could not be given back: the updates stand
        restored = {str(r["id"]): self._version(r) for r in reply.get("results") or ()}
        return {
            i.index: failed(
                "PRECONDITION_FAILED",
                f"the record changed in HubSpot at {found[i.index].changed_at}, while this edit "
                "was being written; that change was given back its value",
                record_id=str(i.write.record_id),
                precondition_failed=True,
                version=restored[str(i.write.record_id)],
            )
            for i in items
            if i.index in found and str(i.write.record_id) in restored
        }

    def _delete(self, items: list[Item]) -> dict[int, WriteResult]:
        inputs = [{"id": str(i.write.record_id)} for i in items]
        self.conn.batch(self.api_type, "archive", {"inputs": inputs})
        return {i.index: WriteResult(ok=True, record_id=str(i.write.record_id)) for i in items}


def _errors_by_id(reply: Reply) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for error in reply.get("errors") or ():
        category = str(error.get("category") or "ERROR")
        message = str(error.get("message") or "")
        for record_id in (error.get("context") or {}).get("ids") or ():
            found[str(record_id)] = (category, message)
    return found


def _record_failure(error: CrmError) -> WriteResult:
    return failed(error.code or f"HTTP_{error.status}", str(error))


def _same_version(expected: str | None, current: str | None) -> bool:
    if expected is None or current is None:
        return expected == current
    try:
        return to_ms(parse_instant(expected)) == to_ms(parse_instant(current))
    except ValueError:
        return expected == current
