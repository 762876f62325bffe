"""Writes to Dataverse through ``$batch``, with etag preconditions and idempotent creates.

- Creates get a client-generated guid, derived from the write's idempotency key (uuid5), and
  are sent as ``PATCH /<set>(<guid>)`` with ``If-None-Match: *`` (create-only upsert). A create
  retried after a lost answer then gets 412 "already exists", which is the success it was:
  the row is there, once.
- Updates and deletes with an ``expected_version`` (the ``modifiedon`` the portal edited) are
  checked against a fresh read of ``modifiedon`` and ``@odata.etag`` (one query per 50 rows,
  all the queries of a call sent as the parts of one ``$batch``: ``write_versions``); a record
  changed since is ``precondition_failed`` without sending anything, and the write itself
  carries ``If-Match: <etag>`` so a change landing between the check and the write is a 412
  too. That etag is the one the check read, not the one the portal edited (the mirror
  keeps ``modifiedon``, whole seconds): a change made in the second of the edited version
  leaves ``modifiedon`` as it was, so the same read takes the fields an update sets, and one
  whose fields no longer hold the values the portal edited (``Write.expected_values``) is
  ``precondition_failed`` as well. An update's 412 is read back once: when the row already
  holds the values sent (an earlier attempt of this write landed), it is a success. Updates
  without a version send ``If-Match: *`` so they never create a row; a ``$batch`` holding one
  is not sent again after a lost answer (the engine reads the rows back, ``mirror.push.landed``).
- Lookups are written through ``<navigation property>@odata.bind``; a polymorphic lookup's
  target table comes from the lookup annotation of earlier reads or, failing that, from
  looking the guid up in each target table.
- Requests go ``batch_size`` at a time in one ``$batch`` with ``odata.continue-on-error``, so
  one bad record never blocks the rest; each answer becomes that write's ``WriteResult``, whose
  ``version`` is the row's new ``modifiedon``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import field as default
from datetime import datetime
from typing import Any

from adapters._kit.writes import Staleness, chunked, failed, send_batches, vanished
from adapters.dynamics import batch
from adapters.dynamics.client import DataverseConnection
from adapters.dynamics.errors import ErrorAnswer, RowNotFound, record_outcome
from adapters.dynamics.fetch import fetch_rows
from adapters.dynamics.types import (
    CURSOR_FIELD,
    RecordConverter,
    TableInfo,
    format_cursor,
    parse_datetime,
    to_wire,
)
from adapters.dynamics.write_versions import read_versions
from mirror.adapter import changed_fields
from mirror.errors import CrmError, MirrorError
from mirror.types import FieldSpec, FieldType, ObjectSpec, Record, Write, WriteOp, WriteResult

CREATE_NAMESPACE = uuid.UUID("b6f2a4e0-6c1d-4f7a-9e35-2d8c0a1f7e59")
NOT_FOUND_CODE = "0x80040217"
STALE = Staleness("Dataverse", "modifiedon", "that second")


def create_id(object_name: str, idempotency_key: str | None) -> str:
    """The guid a create is sent with: derived from its idempotency key, else random."""
    if not idempotency_key:
        return str(uuid.uuid4())
    return str(uuid.uuid5(CREATE_NAMESPACE, f"{object_name}:{idempotency_key}"))


@dataclass(frozen=True)
class Current:
    """A row's version as a fresh read found it, with the values of the fields checked."""

    modifiedon: datetime
    etag: str
    values: Record = default(default_factory=dict)


@dataclass
class Planned:
    """One write turned into a batch request."""

    index: int
    write: Write
    record_id: str
    request: batch.BatchRequest


class BatchWriter:
    """Applies ``Write`` lists to one table through ``$batch``."""

    def __init__(
        self,
        conn: DataverseConnection,
        spec: ObjectSpec,
        table: TableInfo,
        table_of: Callable[[str], TableInfo],
        navigation: Callable[[], Mapping[str, Mapping[str, str]]],
        lookup_targets: dict[str, str],
    ) -> None:
        """A writer for ``spec`` (stored in ``table``); ``table_of`` resolves lookup targets,
        ``navigation()`` gives ``{lookup: {target: navigation property}}``."""
        self.conn = conn
        self.spec = spec
        self.table = table
        self.table_of = table_of
        self.navigation = navigation
        self.lookup_targets = lookup_targets
        self.batch_size = conn.settings.effective_batch_size
        self.converter = RecordConverter(spec)

    def write(self, writes: Sequence[Write]) -> list[WriteResult]:
        """One result per write, in order (see the module docstring)."""
        results: list[WriteResult | None] = [None] * len(writes)
        current = self._current(writes)
        planned: list[Planned] = []
        for index, write in enumerate(writes):
            try:
                outcome = self._plan(index, write, current)
            except (ValueError, CrmError) as error:
                outcome = failed("INVALID_VALUE", str(error))
            if isinstance(outcome, Planned):
                planned.append(outcome)
            else:
                results[index] = outcome
        self._send(planned, results)
        self._fill_versions(writes, results)
        return [result or failed("NOT_ATTEMPTED", "no answer") for result in results]

    # --- planning ------------------------------------------------------------------------

    def _current(self, writes: Sequence[Write]) -> dict[str, Current]:
        checked = [
            w for w in writes if w.op is not WriteOp.CREATE and w.expected_version and w.record_id
        ]
        if not checked:
            return {}
        skip = {self.spec.key, CURSOR_FIELD}
        names = sorted({n for w in checked for n in w.expected_values or ()
                        if n not in skip and self.spec.has_field(n)})  # fmt: skip
        ids = [str(w.record_id).lower() for w in checked]
        rows = read_versions(self.conn, self.spec, self.table, ids,
                             [self.spec.key, CURSOR_FIELD, *names])  # fmt: skip
        return {
            str(row[self.spec.key]).lower(): Current(
                parse_datetime(row[CURSOR_FIELD]),
                str(row.get("@odata.etag")),
                self._values(row, names),
            )
            for row in rows
        }

    def _values(self, row: Mapping[str, Any], names: Sequence[str]) -> Record:
        """The checked fields of ``row`` as the reads convert them."""
        try:
            record = self.converter.from_json(row)
        except ValueError:
            record = dict(row)
        return {name: record.get(name) for name in names}

    def _plan(
        self, index: int, write: Write, current: Mapping[str, Current]
    ) -> Planned | WriteResult:
        if write.op is WriteOp.CREATE:
            record_id = create_id(self.spec.name, write.idempotency_key)
            request = self._request("PATCH", record_id, {"If-None-Match": "*"}, write.values)
            return Planned(index, write, record_id, request)
        record_id = str(write.record_id or "").lower()
        if not record_id:
            return failed("MISSING_ID", f"{write.op.value} of {self.spec.name} without an id")
        condition = "*"
        if write.expected_version:
            found = current.get(record_id)
            if found is None:
                return vanished(write, record_id, NOT_FOUND_CODE, "Dataverse")
            if not same_version(write.expected_version, found):
                return _changed(record_id, found.modifiedon)
            if changed := changed_fields(self.spec, write.expected_values, found.values):
                return _changed(record_id, found.modifiedon, changed)
            condition = found.etag
        if write.op is WriteOp.DELETE:
            url = self.conn.url(f"{self.table.set_name}({record_id})")
            headers = {"If-Match": condition} if write.expected_version else {}
            return Planned(index, write, record_id, batch.BatchRequest("DELETE", url, headers))
        request = self._request("PATCH", record_id, {"If-Match": condition}, write.values)
        return Planned(index, write, record_id, request)

    def _request(
        self, method: str, record_id: str, headers: Mapping[str, str], values: Mapping[str, Any]
    ) -> batch.BatchRequest:
        url = self.conn.url(
            f"{self.table.set_name}({record_id})?$select={self.spec.key},{CURSOR_FIELD}"
        )
        sent = {**headers, "Prefer": "return=representation"}
        return batch.BatchRequest(method, url, sent, self.payload(values))

    def payload(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The Web API body of ``values`` (lookups as ``@odata.bind``)."""
        body: dict[str, Any] = {}
        for name, value in values.items():
            if name == self.spec.key:
                continue
            field = self.spec.field(name) if self.spec.has_field(name) else None
            if field is not None and field.type is FieldType.REFERENCE:
                nav, target = self._bind(field, value)
                body[f"{nav}@odata.bind"] = (
                    None if value is None else f"/{self.table_of(target).set_name}({value})"
                )
            else:
                body[name] = to_wire(value)
        return body

    def _bind(self, field: FieldSpec, value: Any) -> tuple[str, str]:
        """``(navigation property, target table)`` to write ``value`` into lookup ``field``."""
        attribute = field.name.removeprefix("_").removesuffix("_value")
        navs = self.navigation().get(attribute, {})
        if len(field.references) == 1 or value is None:
            target = field.references[0] if field.references else next(iter(navs))
        else:
            target = self._target_of(str(value), field.references)
        nav = navs.get(target) or field.relationship_name or attribute
        return nav, target

    def _target_of(self, record_id: str, targets: Sequence[str]) -> str:
        known = self.lookup_targets.get(record_id.lower())
        if known in targets:
            return str(known)
        for target in targets:
            table = self.table_of(target)
            try:
                self.conn.request(
                    "GET",
                    f"{table.set_name}({record_id})?$select={table.primary_id}",
                    action=f"finding the table of {record_id}",
                )
            except (RowNotFound, KeyError):
                continue
            except CrmError as error:
                if error.status in (400, 404):
                    continue
                raise
            self.lookup_targets[record_id.lower()] = target
            return target
        raise ValueError(f"{record_id} is not a row of any of {', '.join(targets)}")

    # --- sending -------------------------------------------------------------------------

    def _send(self, planned: list[Planned], results: list[WriteResult | None]) -> None:
        chunks = (list(chunk) for chunk in chunked(planned, self.batch_size))
        send_batches(chunks, self._post, results, self._result)

    def _post(self, chunk: list[Planned]) -> list[batch.BatchAnswer]:
        content_type, body = batch.build([item.request for item in chunk])
        response = self.conn.request(
            "POST",
            "$batch",
            action=f"writing {len(chunk)} {self.spec.name} records",
            data=body,
            headers={"Content-Type": content_type},
            prefer="odata.continue-on-error",
            # an update without an etag, sent again after a lost answer, could revert a change
            # made since it landed (``If-Match`` turns that into a 412 for the others)
            idempotent=not any(_unconditional_update(item) for item in chunk),
        )
        answers = batch.parse(response.headers.get("Content-Type", ""), response.content)
        if len(answers) != len(chunk):
            raise CrmError(
                f"Dataverse answered {len(answers)} of {len(chunk)} $batch requests",
                status=response.status_code,
            )
        return answers

    def _result(self, item: Planned, answer: batch.BatchAnswer) -> WriteResult:
        op = item.write.op
        if answer.status < 400:
            if op is WriteOp.CREATE:
                self.lookup_targets[item.record_id] = self.spec.name
            return WriteResult(ok=True, record_id=item.record_id, created=op is WriteOp.CREATE,
                               version=self._version(answer))  # fmt: skip
        verdict = record_outcome(ErrorAnswer.from_parts(answer.status, answer.body))
        if op is WriteOp.CREATE and answer.status == 412:
            return WriteResult(ok=True, record_id=item.record_id, created=False)
        if op is WriteOp.DELETE and verdict.not_found:
            return WriteResult(ok=True, record_id=item.record_id)
        if op is WriteOp.UPDATE and verdict.precondition_failed:
            return self._landed_already(item) or failed(
                verdict.error_code, verdict.message, record_id=item.record_id,
                precondition_failed=True,
            )  # fmt: skip
        return failed(verdict.error_code, verdict.message, record_id=item.record_id,
                      retryable=verdict.retryable,
                      precondition_failed=verdict.precondition_failed)  # fmt: skip

    def _version(self, answer: batch.BatchAnswer) -> str | None:
        try:
            stamp = answer.json().get(CURSOR_FIELD)
        except ValueError:
            return None
        return format_cursor(parse_datetime(stamp)) if stamp else None

    def _landed_already(self, item: Planned) -> WriteResult | None:
        """A success when the row already holds what the update sent (an earlier attempt)."""
        sent = item.request.body or {}
        if any("@" in name for name in sent):
            return None
        select = ",".join(dict.fromkeys([self.spec.key, CURSOR_FIELD, *sent]))
        rows = fetch_rows(self.conn, self.spec, self.table, [item.record_id], select=select)
        if not rows or any(not _same_value(rows[0].get(n), value) for n, value in sent.items()):
            return None
        version = format_cursor(parse_datetime(rows[0][CURSOR_FIELD]))
        return WriteResult(ok=True, record_id=item.record_id, version=version)

    def _fill_versions(self, writes: Sequence[Write], results: list[WriteResult | None]) -> None:
        missing = {
            index: str(result.record_id)
            for index, (write, result) in enumerate(zip(writes, results, strict=True))
            if write.op is not WriteOp.DELETE and result is not None and result.ok
            and result.record_id and result.version is None
        }  # fmt: skip
        if not missing:
            return
        try:
            rows = fetch_rows(self.conn, self.spec, self.table, list(missing.values()),
                              select=f"{self.spec.key},{CURSOR_FIELD}")  # fmt: skip
        except MirrorError:
            return  # the writes stand; only their new versions stay unknown
        stamps = {str(r[self.spec.key]).lower(): r[CURSOR_FIELD] for r in rows}
        for index, record_id in missing.items():
            stamp = stamps.get(record_id.lower())
            result = results[index]
            if stamp and result is not None:
                results[index] = replace(result, version=format_cursor(parse_datetime(stamp)))


def _unconditional_update(item: Planned) -> bool:
    """Whether ``item`` is an update that would overwrite whatever the row holds."""
    return item.write.op is WriteOp.UPDATE and item.request.headers.get("If-Match") == "*"


def same_version(expected: str, current: Current) -> bool:
    """Whether the edited version (a ``modifiedon`` or an etag) is the row's current one."""
    try:
        return parse_datetime(expected) == current.modifiedon
    except ValueError:
        return expected == current.etag


def _same_value(stored: Any, sent: Any) -> bool:
    if isinstance(stored, int | float) and isinstance(sent, int | float):
        return float(stored) == float(sent)
    return bool(stored == sent)


def _changed(record_id: str, stamp: datetime, fields: Sequence[str] = ()) -> WriteResult:
    return STALE.refusal(record_id, format_cursor(stamp), fields)
