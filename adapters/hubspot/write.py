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
  reported ``precondition_failed`` too (``hubspot.updates``, ``hubspot.overwrites``).
- An update whose answer was lost is not sent again (it could revert a change made since it
  landed): when the written properties' history shows it landed, it is a success at that
  moment (``hubspot.overwrites.landed_at``); otherwise it is ``OUTCOME_UNKNOWN``, retryable,
  and the engine reads the record back before retrying it (``mirror.push.landed``).
- A 207 answer fails only the records it names; a batch refused as a whole (400, 409) is
  retried record by record so one bad record never blocks the rest.
- Association fields (``partner_company_id``, ``primary_company_id``, ``deal_id``) are written
  as associations after the record itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters._kit.writes import (
    Item,
    create_by_key,
    creates,
    failed,
    runs,
    send_batches,
    settle_batch,
)
from adapters.hubspot.client import Reply
from adapters.hubspot.updates import Updates
from adapters.hubspot.writer import BATCH_SIZE
from mirror.types import Write, WriteOp, WriteResult


class BatchWriter(Updates):
    """Applies ``Write`` lists to one object through the batch APIs."""

    def write(self, writes: Sequence[Write]) -> list[WriteResult]:
        """One result per write, in order. A failure before anything was applied is
        raised; after that, the remaining writes fail as retryable instead."""
        results: list[WriteResult | None] = [None] * len(writes)
        send_batches(runs(writes, BATCH_SIZE), self._batch, results)
        return [result for result in results if result is not None]

    def _batch(self, batch: list[Item]) -> list[WriteResult]:
        op = batch[0].write.op

        def apply() -> list[WriteResult]:
            if op is WriteOp.CREATE:
                done = self._create(batch)
            else:
                verdicts = self._check_versions(batch)
                pending = [item for item in batch if item.index not in verdicts]
                send = self._update if op is WriteOp.UPDATE else self._delete
                done = {**verdicts, **(send(pending) if pending else {})}
            return [done[item.index] for item in batch]

        return settle_batch(op, len(batch), apply)

    # -- create ---------------------------------------------------------------------------

    def _create(self, batch: list[Item]) -> dict[int, WriteResult]:
        results = creates(
            batch,
            self.spec.external_id_field,
            self._keyed,
            lambda plain: self._isolated(plain, self._send_create),
        )
        self._link(batch, results, lambda item: str(results[item.index].record_id))
        return results

    def _keyed(self, items: list[Item], key_field: str) -> dict[int, WriteResult]:
        """Creates by key (``create_by_key``): looked up when in doubt, else upserted."""
        return create_by_key(
            items,
            lambda doubtful: self._made_already(doubtful, key_field),
            lambda fresh: self._isolated(fresh, lambda rest: self._send_upsert(rest, key_field)),
        )

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
