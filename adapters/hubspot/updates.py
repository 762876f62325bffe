"""HubSpot updates and deletes: checked against the version edited, settled after a lost answer,
and undone where they overwrote a change made in HubSpot meanwhile (``hubspot.overwrites``).

HubSpot has no conditional writes, so updates and deletes with an ``expected_version`` are
checked first against one batch read of the records' last-modified values; the same read takes
the properties an update sets, compared with the values the portal edited. After a versioned
update, the written properties' history is read back: a change made between the check and the
update, which the update overwrote, is given back its value and the update reported
``precondition_failed``. An update whose answer was lost is a success when that history shows
it landed, else ``OUTCOME_UNKNOWN``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters._kit.errors import OutcomeUnknown
from adapters._kit.writes import Item, failed, outcome_unknown, vanished
from adapters.hubspot.errors import RECORD_RETRYABLE_CATEGORIES
from adapters.hubspot.overwrites import (
    Overwritten,
    changed_since,
    checked_fields,
    current_values,
    landed_at,
    overwritten,
)
from adapters.hubspot.types import parse_instant, to_ms
from adapters.hubspot.writer import GONE, WriterBase, errors_by_id, gone
from mirror.adapter import changed_fields
from mirror.errors import CrmError, MirrorError
from mirror.types import WriteResult


class Updates(WriterBase):
    """Versioned updates and deletes of one object through the batch APIs."""

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
                verdicts[item.index] = vanished(item.write, record_id, GONE, "HubSpot")
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
                record_id = str(item.write.record_id)
                obj = current.get(record_id)
                results[item.index] = (
                    WriteResult(ok=True, record_id=record_id, version=self._version(obj))
                    if obj is not None
                    else gone(record_id)
                )
        self._link(items, results, lambda item: str(item.write.record_id))
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
        errors = errors_by_id(reply)
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
        (``hubspot.overwrites.landed_at``), else ``OUTCOME_UNKNOWN``, retryable."""
        unknown = outcome_unknown(error, "check the record before retrying", retryable=True)
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
        their check, whose properties got their values back (see ``hubspot.overwrites``)."""
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


def _same_version(expected: str | None, current: str | None) -> bool:
    if expected is None or current is None:
        return expected == current
    try:
        return to_ms(parse_instant(expected)) == to_ms(parse_instant(current))
    except ValueError:
        return expected == current
