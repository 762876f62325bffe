"""Writes to Salesforce through sObject Collections (``composite/sobjects``), 200 per call.

Creates are upserts on the object's ``Mirror_Key__c`` external id when it has one and the write
carries an idempotency key, so a create retried after a lost answer lands once; otherwise they
are plain creates, never repeated blindly. An upsert sent again would also overwrite a change
made in Salesforce since the first attempt landed: it is not repeated after a lost answer, and
a create that may have landed (``Write.in_doubt``) is looked up by its key first, one found
being answered as made. Updates and deletes with an ``expected_version`` are checked against a
fresh read first (collections have no conditional headers): one query for the
whole call lists the object's records changed at or since the oldest edited version, and records
changed since their own come back ``precondition_failed``; when that list would be long, each
collection call checks its own ids instead. ``SystemModstamp`` has whole seconds, so a change
made in the second of the edited version looks like no change: the same query reads the fields
the updates set, and an update whose fields no longer hold the values the portal edited
(``Write.expected_values``) is ``precondition_failed`` too. A call handed more than 200 writes
therefore checks once for up to ``len(writes)`` records: fewer API calls, at the price of a
wider window between check and write. Calls use ``allOrNone: false`` so one bad record never
blocks the rest; records that failed on a row lock are retried with backoff, the others keep
Salesforce's own error code and message. An update whose answer was lost is not sent again
(it could revert a change made since it landed): it is ``OUTCOME_UNKNOWN``, retryable, and the
engine reads the record back before retrying it (``mirror.push.landed``). A written record's new
version is the ``Date`` of Salesforce's answer: an upper bound of the ``SystemModstamp`` the
write set (so using it as a precondition later means "not changed since this write"), known
without another call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from adapters._kit.writes import (
    UNKNOWN,
    Item,
    Staleness,
    create_by_key,
    creates,
    runs,
    send_batches,
    settle_batch,
    vanished,
)
from adapters.salesforce.client import SalesforceConnection
from adapters.salesforce.errors import RECORD_RETRYABLE_CODES, first_error
from adapters.salesforce.types import (
    KEY_FIELD,
    RecordConverter,
    format_cursor,
    parse_datetime,
    soql_datetime,
    to_18,
    to_wire,
)
from mirror.adapter import changed_fields
from mirror.types import ObjectSpec, Record, Write, WriteOp, WriteResult

BATCH_SIZE = 200
ALREADY_DELETED = "ENTITY_IS_DELETED"
STALE = Staleness("Salesforce", "version", "that version's second")


def entry_result(entry: Mapping[str, Any] | None, *, created_default: bool = False) -> WriteResult:
    """A ``WriteResult`` from one collection result entry."""
    if entry and entry.get("success"):
        record_id = entry.get("id")
        return WriteResult(
            ok=True,
            record_id=to_18(record_id) if record_id else None,
            created=bool(entry.get("created", created_default)),
        )
    code, message = first_error((entry or {}).get("errors") or [{"message": "no result"}])
    return WriteResult(
        ok=False,
        record_id=(entry or {}).get("id"),
        error_code=code,
        message=message,
        retryable=code in RECORD_RETRYABLE_CODES,
    )


class CollectionWriter:
    """Applies ``Write`` lists to one object through sObject Collections."""

    def __init__(self, conn: SalesforceConnection, spec: ObjectSpec) -> None:
        """A writer for ``spec`` over ``conn``."""
        self.conn = conn
        self.spec = spec
        self.converter = RecordConverter(spec)
        self._verdicts: dict[int, WriteResult] | None = None

    def write(self, writes: Sequence[Write]) -> list[WriteResult]:
        """One result per write, in order.

        An outage, quota or auth failure before anything was applied is raised; after some
        batches were applied, it fails the remaining writes as retryable instead, so the
        results of the applied ones are not lost.
        """
        results: list[WriteResult | None] = [None] * len(writes)
        self._verdicts = self._check_whole_call(writes)
        send_batches(runs(writes, BATCH_SIZE), self._batch, results)
        return [result for result in results if result is not None]

    def _batch(self, batch: list[Item]) -> list[WriteResult]:
        op = batch[0].write.op
        if op is WriteOp.CREATE:
            return settle_batch(
                op, len(batch), lambda: self._with_lock_retries(batch, self._create)
            )
        return settle_batch(op, len(batch), lambda: self._checked_batch(batch, op))

    def _checked_batch(self, batch: list[Item], op: WriteOp) -> list[WriteResult]:
        checked = (
            [self._verdicts.get(item.index) for item in batch]
            if self._verdicts is not None
            else self._check_versions(batch)
        )
        pending = [item for item, result in zip(batch, checked, strict=True) if result is None]
        send = self._update if op is WriteOp.UPDATE else self._delete
        done = dict(
            zip(
                (i.index for i in pending),
                self._with_lock_retries(pending, send) if pending else [],
                strict=True,
            )
        )
        return [
            done[item.index] if result is None else result
            for item, result in zip(batch, checked, strict=True)
        ]

    def _with_lock_retries(self, batch: list[Item], send: Any) -> list[WriteResult]:
        results: dict[int, WriteResult] = dict(
            zip((i.index for i in batch), self._stamped(send(batch)), strict=True)
        )
        policy = self.conn.policy
        for attempt in range(policy.max_retries):
            locked = [
                item
                for item in batch
                if results[item.index].retryable and results[item.index].error_code != UNKNOWN
            ]
            if not locked:
                break
            self.conn.sleep(policy.delay(attempt))
            results.update(zip((i.index for i in locked), self._stamped(send(locked)), strict=True))
        return [results[item.index] for item in batch]

    # --- the three operations ----------------------------------------------------------

    def _record(self, write: Write, **extra: Any) -> dict[str, Any]:
        values = {name: to_wire(value) for name, value in write.values.items() if name != KEY_FIELD}
        return {"attributes": {"type": self.spec.name}, **values, **extra}

    def _create(self, batch: list[Item]) -> list[WriteResult]:
        results = creates(batch, self.spec.external_id_field, self._keyed, self._create_plain)
        return [results[item.index] for item in batch]

    def _create_plain(self, items: list[Item]) -> dict[int, WriteResult]:
        answer = self.conn.rest(
            f"creating {self.spec.name} records",
            "composite/sobjects",
            method="POST",
            idempotent=False,
            json={"allOrNone": False, "records": [self._record(i.write) for i in items]},
        )
        made = (entry_result(e, created_default=True) for e in answer)
        return dict(zip((i.index for i in items), made, strict=True))

    def _keyed(self, items: list[Item], key_field: str) -> dict[int, WriteResult]:
        """Creates by key (``create_by_key``): looked up when in doubt, else upserted."""
        return create_by_key(
            items,
            lambda doubtful: self._made_already(doubtful, key_field),
            lambda fresh: self._upsert(fresh, key_field),
        )

    def _upsert(self, items: list[Item], key_field: str) -> dict[int, WriteResult]:
        records = [self._record(i.write, **{key_field: i.write.idempotency_key}) for i in items]
        answer = self.conn.rest(
            f"upserting {self.spec.name} records",
            f"composite/sobjects/{self.spec.name}/{key_field}",
            method="PATCH",
            idempotent=False,
            json={"allOrNone": False, "records": records},
        )
        made = (entry_result(e, created_default=True) for e in answer)
        return dict(zip((i.index for i in items), made, strict=True))

    def _made_already(self, items: list[Item], key_field: str) -> dict[int, WriteResult]:
        """Successes for the creates whose record Salesforce holds under their key."""
        by_key = {str(i.write.idempotency_key).lower(): i for i in items}
        keys = ", ".join(_soql_string(key) for key in by_key)
        answer = self.conn.query(
            f"SELECT {KEY_FIELD}, {key_field} FROM {self.spec.name} WHERE {key_field} IN ({keys})",
            action=f"looking up {self.spec.name} records by key",
        )
        results: dict[int, WriteResult] = {}
        for row in answer["records"]:
            item = by_key.get(str(row.get(key_field) or "").lower())
            if item is not None:
                results[item.index] = WriteResult(ok=True, record_id=to_18(row[KEY_FIELD]))
        return results

    def _update(self, batch: list[Item]) -> list[WriteResult]:
        records = [self._record(i.write, id=i.write.record_id) for i in batch]
        answer = self.conn.rest(
            f"updating {self.spec.name} records",
            "composite/sobjects",
            method="PATCH",
            # sent again after a lost answer, it could revert a change made in between
            idempotent=False,
            json={"allOrNone": False, "records": records},
        )
        return [entry_result(entry) for entry in answer]

    def _delete(self, batch: list[Item]) -> list[WriteResult]:
        ids = ",".join(str(i.write.record_id) for i in batch)
        answer = self.conn.rest(
            f"deleting {self.spec.name} records",
            "composite/sobjects",
            method="DELETE",
            params={"ids": ids, "allOrNone": "false"},
        )
        results = []
        for item, entry in zip(batch, answer, strict=True):
            result = entry_result(entry)
            if not result.ok and result.error_code == ALREADY_DELETED:
                result = WriteResult(ok=True, record_id=to_18(str(item.write.record_id)))
            results.append(result)
        return results

    # --- versions ------------------------------------------------------------------------

    def _checked_fields(self, items: Sequence[Item]) -> list[str]:
        """The fields whose edited values the check reads along with the versions."""
        names = {name for i in items for name in i.write.expected_values or ()}
        skip = {KEY_FIELD, self.spec.cursor_field}
        return sorted(n for n in names if n not in skip and self.spec.has_field(n))

    def _versions_query(self, fields: Sequence[str], where: str) -> str:
        columns = ", ".join([KEY_FIELD, self.spec.cursor_field, *fields])
        return f"SELECT {columns} FROM {self.spec.name} WHERE {where}"

    def _current(self, row: dict[str, Any]) -> tuple[datetime, Record]:
        """A checked row's version and values (as the reads convert them)."""
        stamp = parse_datetime(row[self.spec.cursor_field])
        try:
            return stamp, self.converter.from_json(row)
        except ValueError:
            return stamp, {k: v for k, v in row.items() if k != "attributes"}

    def _modstamps(
        self, ids: Sequence[str], fields: Sequence[str]
    ) -> dict[str, tuple[datetime, Record]]:
        if not ids:
            return {}
        quoted = ", ".join(f"'{record_id}'" for record_id in ids)
        answer = self.conn.query(
            self._versions_query(fields, f"{KEY_FIELD} IN ({quoted})"),
            action=f"reading {self.spec.name} versions",
        )
        return {to_18(row[KEY_FIELD]): self._current(row) for row in answer["records"]}

    def _check_versions(self, batch: list[Item]) -> list[WriteResult | None]:
        """A failure for each write whose record changed or vanished; ``None`` to go ahead."""
        checked = [i for i in batch if i.write.expected_version and i.write.record_id]
        current = self._modstamps(
            [to_18(str(i.write.record_id)) for i in checked], self._checked_fields(checked)
        )
        verdicts: dict[int, WriteResult] = {}
        for item in checked:
            record_id = to_18(str(item.write.record_id))
            found = current.get(record_id)
            if found is None:
                verdicts[item.index] = vanished(
                    item.write, record_id, ALREADY_DELETED, "Salesforce"
                )
            elif (verdict := self._verdict(item.write, record_id, *found)) is not None:
                verdicts[item.index] = verdict
        return [verdicts.get(item.index) for item in batch]

    def _verdict(
        self, write: Write, record_id: str, stamp: datetime, values: Record
    ) -> WriteResult | None:
        """A failure when the record changed since the edited version, or when a field the
        write sets holds another value than the one edited (a change in that version's
        second); ``None`` to go ahead."""
        if not _same_version(write.expected_version, stamp):
            return _changed(record_id, stamp)
        changed = changed_fields(self.spec, write.expected_values, values)
        if changed:
            return _changed(record_id, stamp, changed)
        return None

    def _stamped(self, results: list[WriteResult]) -> list[WriteResult]:
        """Successful creates and updates carry the answer's ``Date`` as their new version."""
        version = format_cursor(self.conn.server_now())
        return [replace(r, version=version) if r.ok and r.record_id else r for r in results]

    def _check_whole_call(self, writes: Sequence[Write]) -> dict[int, WriteResult] | None:
        """Verdicts for every versioned update or delete of the call from ONE query of what
        changed at or since the oldest edited version; ``None`` when too much changed to
        list."""
        items = [
            Item(index, write)
            for index, write in enumerate(writes)
            if write.op is not WriteOp.CREATE and write.expected_version and write.record_id
        ]
        if not items:
            return {}
        oldest = min(parse_datetime(str(i.write.expected_version)) for i in items)
        synced = [parse_datetime(i.write.synced_through) for i in items if i.write.synced_through]
        if len(synced) == len(items):
            oldest = max(oldest, min(synced) - timedelta(seconds=1))
        elif len(items) <= BATCH_SIZE:
            return None
        limit = max(len(items), BATCH_SIZE)
        changed = self._changed_since(oldest, limit, self._checked_fields(items))
        if changed is None:
            return None
        verdicts: dict[int, WriteResult] = {}
        for item in items:
            record_id = to_18(str(item.write.record_id))
            found = changed.get(record_id)
            if found is not None:
                verdict = self._verdict(item.write, record_id, *found)
                if verdict is not None:
                    verdicts[item.index] = verdict
        return verdicts

    def _changed_since(
        self, oldest: datetime, limit: int, fields: Sequence[str]
    ) -> dict[str, tuple[datetime, Record]] | None:
        # at or since: a record changed in the oldest version's own second still carries it
        answer = self.conn.query(
            self._versions_query(fields, f"{self.spec.cursor_field} >= {soql_datetime(oldest)}"),
            action=f"reading recent {self.spec.name} versions",
        )
        if int(answer.get("totalSize", 0)) > limit:
            return None
        changed: dict[str, tuple[datetime, Record]] = {}
        while True:
            for row in answer["records"]:
                changed[to_18(row[KEY_FIELD])] = self._current(row)
            if answer.get("done", True) or not answer.get("nextRecordsUrl"):
                return changed
            answer = self.conn.query_more(answer["nextRecordsUrl"])


def _changed(record_id: str, stamp: datetime, fields: Sequence[str] = ()) -> WriteResult:
    return STALE.refusal(record_id, format_cursor(stamp), fields)


def _soql_string(value: str) -> str:
    """``value`` as a SOQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _same_version(expected: str | None, current: datetime) -> bool:
    """Whether the record is unchanged since ``expected`` (an exact version, or an upper bound
    such as the answer time of our own write)."""
    try:
        return current <= parse_datetime(str(expected))
    except ValueError:
        return str(expected) == format_cursor(current)
