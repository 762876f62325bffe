"""Updates whose answer was lost: did they land?

A write whose answer never came back (the connection dropped after the request went out, past
the adapter's retries) may have been applied by the CRM. Sending it again later is not
harmless: a CRM user may have changed the field since, and the second write would revert that
change; under ``portal_wins`` the next pull would even take that change for a conflict and
force the write through. So before the pusher records such an answer as a failure to retry,
it reads the records back (``CrmAdapter.fetch``, one call per 200 records): a record that
holds every value the update sent has it, and the update is settled as done there and then,
at the version the read found (the write's own, or a later one), exactly as if its answer had
come back. Any later CRM change of those fields is then an ordinary change made after our
write, which the pull takes as the CRM's; and the next pull settles the entry together with
the portal's later edits of the same fields, whose base is the value this write replaced.

A record that does not hold the values stays as it was answered (a retry, whose precondition
still guards it): the write did not land, or it landed and was changed again before the read.
Adapters that can tell the second case apart (HubSpot's property history) answer it themselves.
An answer is checked when it is a retryable failure with no CRM error code (a transport error)
or ``OUTCOME_UNKNOWN``; a read that fails leaves every answer as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mirror.adapter import CrmAdapter
from mirror.errors import MirrorError
from mirror.push.preconditions import changed_fields
from mirror.types import ObjectSpec, Record, Write, WriteOp, WriteResult

log = logging.getLogger("prm_mirror.writeback")
OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
# the error codes of answers that leave open whether the write landed (``None``: no answer)
IN_DOUBT = (None, OUTCOME_UNKNOWN)
FETCH_CHUNK = 200


def may_have_landed(write: Write, answer: WriteResult) -> bool:
    """Whether ``answer`` leaves open that the CRM applied the update ``write``."""
    return (
        write.op is WriteOp.UPDATE
        and write.record_id is not None
        and not answer.ok
        and answer.retryable
        and answer.error_code in IN_DOUBT
    )


def settle_lost_answers(
    adapter: CrmAdapter, spec: ObjectSpec, writes: Sequence[Write], answers: list[WriteResult]
) -> list[WriteResult]:
    """``answers`` with each update whose answer was lost but whose record holds every value
    it sent turned into a success."""
    doubtful = [i for i, (w, a) in enumerate(zip(writes, answers, strict=True))
                if may_have_landed(w, a)]  # fmt: skip
    if not doubtful:
        return answers
    ids = sorted({str(writes[i].record_id) for i in doubtful})
    try:
        records = _fetch(adapter, spec, ids)
    except MirrorError as exc:
        log.warning("could not read back %d %s records after a lost answer (%s)",
                    len(ids), spec.name, exc)  # fmt: skip
        return answers
    settled = list(answers)
    for index in doubtful:
        record = records.get(str(writes[index].record_id).lower())
        if record is not None and _holds(spec, writes[index], record):
            settled[index] = WriteResult(
                ok=True, record_id=str(writes[index].record_id), version=_version(spec, record)
            )
    return settled


def _fetch(adapter: CrmAdapter, spec: ObjectSpec, ids: list[str]) -> dict[str, Record]:
    found: dict[str, Record] = {}
    for start in range(0, len(ids), FETCH_CHUNK):
        for record in adapter.fetch(spec, ids[start : start + FETCH_CHUNK]):
            if not record.get("IsDeleted"):
                found[str(record.get(spec.key)).lower()] = record
    return found


def _version(spec: ObjectSpec, record: Record) -> str | None:
    """The version the read found the record at: the write's version, or a later one. The
    entry stays unconfirmed at it, as after any answered write, so the next pull settles it
    with the portal's later edits of the record (whose base is what this write replaced)."""
    stamp = record.get(spec.cursor_field)
    if stamp is None:
        return None
    return stamp.isoformat() if hasattr(stamp, "isoformat") else str(stamp)


def _holds(spec: ObjectSpec, write: Write, record: Record) -> bool:
    """Whether ``record`` holds every value ``write`` sent (fields it does not carry, such as
    associations some adapters write apart, cannot show it)."""
    sent = {name: value for name, value in write.values.items() if name != spec.key}
    if not sent or any(name not in record for name in sent):
        return False
    return not changed_fields(spec, sent, record)
