"""The error scaffold (``adapters._kit.errors``), the values, cursor and paging pieces the
adapters build their error tables, converters and reads from."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest

from adapters._kit.errors import Consequence, ErrorTable, describe
from adapters._kit.paging import Progress, Restarts
from adapters._kit.values import FieldConverter, format_cursor, from_text, to_int
from mirror.errors import AuthError, CrmError, TransientError
from mirror.types import FieldSpec, FieldType, ObjectSpec


class Outcome(enum.Enum):
    RETRY = "retry"
    AUTH = "auth"
    FAIL = "fail"


@dataclass(frozen=True)
class Answer:
    status: int | None
    code: str | None
    message: str


TABLE = ErrorTable(
    lambda answer: {503: Outcome.RETRY, 401: Outcome.AUTH}.get(answer.status, Outcome.FAIL),
    Consequence(CrmError, "the CRM rejected {action} ({said})"),
    {
        Outcome.RETRY: Consequence(TransientError, "the CRM kept failing while {action} ({said})"),
        Outcome.AUTH: Consequence(AuthError, "the CRM refused {action} ({said}); check {hint}"),
    },
)


def test_each_outcome_ends_in_its_error_with_what_that_error_carries() -> None:
    retry = TABLE.mirror_error(Answer(503, None, "busy"), "reading", retry_after=3.0)
    assert isinstance(retry, TransientError) and retry.retry_after == 3.0
    assert str(retry) == "the CRM kept failing while reading (503: busy)"
    auth = TABLE.mirror_error(Answer(401, "BAD", "{no}"), "reading", hint="crm.token")
    assert type(auth) is AuthError
    assert str(auth) == "the CRM refused reading (401 BAD: {no}); check crm.token"
    other = TABLE.mirror_error(Answer(400, "X", ""), "writing")
    assert isinstance(other, CrmError) and (other.status, other.code) == (400, "X")
    assert str(other) == "the CRM rejected writing (400 X)"


def test_an_answer_is_described_by_the_parts_it_has() -> None:
    assert describe((None, "CODE"), "said") == "CODE: said"
    assert describe((500, None), "") == "500"


def test_checkpoint_stamps_have_milliseconds_in_utc() -> None:
    moment = datetime(2024, 1, 31, 10, 0, 0, 123456, tzinfo=UTC)
    assert format_cursor(moment) == "2024-01-31T10:00:00.123Z"


def test_a_field_that_does_not_fit_is_named_with_its_value() -> None:
    spec = ObjectSpec(
        source="crm",
        name="Thing",
        key="id",
        cursor_field="stamp",
        fields=(
            FieldSpec("id", FieldType.ID),
            FieldSpec("count", FieldType.INTEGER),
            FieldSpec("day", FieldType.DATE),
        ),
    )
    fields = FieldConverter(
        spec,
        {FieldType.INTEGER: to_int, FieldType.DATE: from_text("date", date.fromisoformat)},
        str,
    )
    assert fields.convert("count", 2.0) == 2 and fields.convert("day", None) is None
    assert not fields.converts("id") and fields.converts("day")
    with pytest.raises(ValueError, match=r"field day: '31\.1\.' is not a date"):
        fields.convert("day", "31.1.")
    with pytest.raises(ValueError, match="field count: True is not an integer"):
        fields.convert("count", True)


def test_restarts_are_bounded_and_a_full_page_must_move_the_read() -> None:
    restarts = Restarts(2)
    assert [restarts.allowed() for _ in range(3)] == [True, True, False]
    progress = Progress((5, 1))
    progress.check((5, 1), False, lambda: "unused")
    progress.check((6, 1), True, lambda: "unused")
    with pytest.raises(CrmError, match="stuck at 5"):
        progress.check((5, 1), True, lambda: "stuck at 5")
