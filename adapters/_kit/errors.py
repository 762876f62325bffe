"""The scaffold of every adapter's error table: answers described for messages, outcomes turned
into the engine's ``MirrorError`` tree, and the error of a request that may have been applied.

Each adapter keeps its own ``Outcome`` enum and its own ``ErrorTable``: which outcome an
answer has (from its HTTP status and its CRM's error codes), how an answer is described, and
what each outcome ends in, a ``Consequence``: the class of the ``MirrorError`` the engine sees
and the message it carries, a template of ``{action}`` (what the adapter was doing, completing
"while ..."), ``{said}`` (the CRM's answer, as described) and ``{hint}`` (the settings to
check). Messages quote the CRM's own message and never a token, password or secret.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from mirror.errors import CrmError, MirrorError, TransientError

K = TypeVar("K")
A = TypeVar("A", bound="Answer")


class OutcomeUnknown(TransientError):
    """The connection dropped after a non-idempotent request was sent: it may have been applied."""


def describe(parts: Iterable[object], message: str) -> str:
    """``"409 CONFLICT: Contact already exists"``: the parts that are set (status, code), then
    the CRM's message, for messages."""
    head = " ".join(str(part) for part in parts if part)
    return f"{head}: {message}" if message else head


@dataclass(frozen=True)
class Consequence:
    """The ``MirrorError`` one outcome ends in: its class and its message template."""

    error: type[MirrorError]
    template: str

    def error_for(
        self,
        said: str,
        *,
        action: str = "",
        hint: str = "",
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> MirrorError:
        """The error, its message filled in; a ``TransientError`` carries ``retry_after``, a
        ``CrmError`` the answer's ``status`` and ``code``."""
        message = self.template.format(action=action, said=said, hint=hint)
        kind = self.error
        if issubclass(kind, TransientError):
            return kind(message, retry_after=retry_after)
        if issubclass(kind, CrmError):
            return kind(message, status=status, code=code)
        return kind(message)


class Answer(Protocol):
    """The parts of a CRM's error answer a ``CrmError`` carries."""

    @property
    def status(self) -> int | None:
        """The HTTP status (``None``: no answer)."""
        ...

    @property
    def code(self) -> str | None:
        """The CRM's error code, if it sent one."""
        ...

    @property
    def message(self) -> str:
        """The CRM's own message."""
        ...


def describe_answer(answer: Answer) -> str:
    """``"429 0x80072322: Number of requests exceeded"``: status, code and message."""
    return describe((answer.status, answer.code), answer.message)


@dataclass(frozen=True)
class ErrorTable(Generic[A, K]):
    """One adapter's error table: the ``outcome`` of an answer, what each outcome ends in
    (``otherwise``: every outcome not listed), and how an answer is described in messages."""

    outcome: Callable[[A], K]
    otherwise: Consequence
    consequences: Mapping[K, Consequence]
    describe: Callable[[A], str] = describe_answer

    def mirror_error(
        self, answer: A, action: str = "", retry_after: float | None = None, *, hint: str = ""
    ) -> MirrorError:
        """The ``MirrorError`` the engine sees when ``action`` ended with ``answer``."""
        consequence = self.consequences.get(self.outcome(answer), self.otherwise)
        return consequence.error_for(
            self.describe(answer),
            action=action,
            hint=hint,
            status=answer.status,
            code=answer.code,
            retry_after=retry_after,
        )
