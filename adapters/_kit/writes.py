"""Write batching every adapter shares, around the CRM's own batch call.

A call's writes go out in batches (runs of one operation, or chunks of prepared requests), and
each result lands at its write's place in the caller's list. A failure before anything was
applied is raised; once a batch has been applied, a failure stops the call and fails the
remaining writes as retryable (``NOT_ATTEMPTED``), so the results of the applied ones are not
lost. Inside a batch, a lost answer fails its writes ``OUTCOME_UNKNOWN`` (never repeated here:
an update is retryable once the engine has read its record back) and a refusal of the whole
batch fails each write with the CRM's code. Creates with an idempotency key look up the records
an earlier attempt may have made before they are sent (``create_by_key``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from adapters._kit.errors import OutcomeUnknown
from mirror.errors import CrmError, MirrorError
from mirror.types import Write, WriteOp, WriteResult

UNKNOWN = "OUTCOME_UNKNOWN"
"""The error code of a write that may have landed: never repeated without a look first."""


@dataclass(frozen=True)
class Item:
    """One write of a batch with its position in the caller's list."""

    index: int
    write: Write


class Placed(Protocol):
    """Anything that knows its write's position in the caller's list."""

    @property
    def index(self) -> int:
        """The position of its write in the caller's list."""
        ...


P = TypeVar("P", bound=Placed)
T = TypeVar("T")


def runs(writes: Sequence[Write], size: int) -> Iterator[list[Item]]:
    """Consecutive writes of the same op, cut into batches of at most ``size``."""
    batch: list[Item] = []
    for index, write in enumerate(writes):
        if batch and (batch[0].write.op is not write.op or len(batch) == size):
            yield batch
            batch = []
        batch.append(Item(index, write))
    if batch:
        yield batch


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def failed(code: str, message: str, **extra: Any) -> WriteResult:
    """A failed ``WriteResult``."""
    return WriteResult(ok=False, error_code=code, message=message, **extra)


def not_attempted(error: MirrorError) -> WriteResult:
    """The result of a write left unsent because the call stopped at ``error``."""
    return failed("NOT_ATTEMPTED", f"not attempted: {error}", retryable=True)


def outcome_unknown(error: OutcomeUnknown, next_step: str, *, retryable: bool) -> WriteResult:
    """The result of a write whose answer was lost (``next_step`` says what happens to it)."""
    return failed(UNKNOWN, f"{error}; {next_step}", retryable=retryable)


def send_batches(
    batches: Iterable[list[P]],
    send: Callable[[list[P]], Sequence[Any]],
    results: list[WriteResult | None],
    settle: Callable[[P, Any], WriteResult] | None = None,
) -> None:
    """Fill ``results`` at each item's index, batch after batch, with ``send(batch)``: the
    results, or the answers ``settle(item, answer)`` turns into results.

    A ``MirrorError`` of ``send`` while nothing has a result yet is raised; later, it fails the
    rest of the batches as not attempted."""
    stopped: MirrorError | None = None
    for batch in batches:
        answers: Sequence[Any] = ()
        if stopped is None:
            try:
                answers = send(batch)
            except MirrorError as error:
                if all(result is None for result in results):
                    raise
                stopped = error
        if stopped is not None:
            outcome: Sequence[WriteResult] = [not_attempted(stopped) for _ in batch]
        elif settle is not None:
            outcome = [settle(item, answer) for item, answer in zip(batch, answers, strict=True)]
        else:
            outcome = answers
        for item, result in zip(batch, outcome, strict=True):
            results[item.index] = result


def settle_batch(
    op: WriteOp, size: int, send: Callable[[], list[WriteResult]]
) -> list[WriteResult]:
    """``send()``'s results, or a failure for each of the batch's ``size`` writes when its
    answer was lost (an update retryable: the engine reads it back first, ``mirror.push.
    landed``) or the CRM refused the batch as a whole."""
    try:
        return send()
    except OutcomeUnknown as error:
        unknown = outcome_unknown(
            error, "check the record before retrying", retryable=op is WriteOp.UPDATE
        )
        return [unknown for _ in range(size)]
    except CrmError as error:
        return [failed(error.code or "CRM_ERROR", str(error)) for _ in range(size)]


Sent = Callable[[list[Item]], dict[int, WriteResult]]


def creates(
    batch: Sequence[Item],
    key_field: str | None,
    keyed: Callable[[list[Item], str], dict[int, WriteResult]],
    plain: Sent,
) -> dict[int, WriteResult]:
    """The results of a batch of creates: those that carry an idempotency key for the
    object's ``key_field`` through ``keyed(items, key_field)``, the rest through ``plain``."""
    with_key = [i for i in batch if key_field and i.write.idempotency_key]
    without = [i for i in batch if not (key_field and i.write.idempotency_key)]
    results: dict[int, WriteResult] = {}
    if with_key:
        results |= keyed(with_key, str(key_field))
    if without:
        results |= plain(without)
    return results


def create_by_key(
    items: Sequence[Item],
    made_already: Sent,
    upsert: Sent,
) -> dict[int, WriteResult]:
    """Creates by key: those the CRM made already (``Write.in_doubt``: an earlier attempt whose
    answer was lost, found by ``made_already``) are answered as they are, the others upserted;
    an upsert whose answer is lost is not sent again (it would overwrite a change made since
    it landed): it is looked up by its key when it is sent again."""
    doubtful = [i for i in items if i.write.in_doubt]
    results = made_already(doubtful) if doubtful else {}
    fresh = [i for i in items if i.index not in results]
    if not fresh:
        return results
    try:
        return results | upsert(fresh)
    except OutcomeUnknown as error:
        unknown = outcome_unknown(error, "looked up next time", retryable=True)
    return results | {i.index: unknown for i in fresh if i.index not in results}


def vanished(write: Write, record_id: str, code: str, crm: str) -> WriteResult:
    """The answer to a versioned write whose record is gone: done for a delete, else a
    failure with the CRM's not-found ``code``."""
    if write.op is WriteOp.DELETE:
        return WriteResult(ok=True, record_id=record_id)
    return failed(code, f"the record no longer exists in {crm}", record_id=record_id)


@dataclass(frozen=True)
class Staleness:
    """How one CRM words the refusal of a write whose record changed since the version edited.

    ``crm`` names the CRM, ``stamp`` its change stamp, ``instant`` the stamp's resolution
    ("that second"), ``edited`` the version the portal edited."""

    crm: str
    stamp: str
    instant: str
    edited: str = "the version that was edited"

    def refusal(
        self, record_id: str, version: str | None, fields: Sequence[str] = ()
    ) -> WriteResult:
        """The ``precondition_failed`` result: the record changed at ``version`` (or, naming
        ``fields``, those fields changed in the edited version's own instant)."""
        what = (
            f"{', '.join(fields)} changed in {self.crm} without a later {self.stamp} than the "
            f"one edited ({version}): a change made in {self.instant}"
            if fields
            else f"the record changed in {self.crm} at {version}, after {self.edited}"
        )
        return failed(
            "PRECONDITION_FAILED",
            what,
            record_id=record_id,
            precondition_failed=True,
            version=version,
        )
