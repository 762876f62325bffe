"""One error tree rooted at ``MirrorError``, grouped by what the caller should do next.

- ``ConfigError``: fatal; the user fixes the configuration (every problem listed at once).
- ``AuthError``: fatal until credentials are fixed or renewed.
- ``TransientError``: retry later; ``retry_after`` says when, if the CRM said.
- ``RecordError``: skip this one record, keep going.
- ``ConflictError``: the record changed on both sides; resolve by policy or by hand.
- ``AccessDenied``: a partner reached outside its slice; nothing was changed.
- ``QueryError``: a partner query with an argument it cannot take; nothing was run.

Messages say what to do next and never contain a secret.
"""

from __future__ import annotations

from collections.abc import Sequence


class MirrorError(Exception):
    """Root of every error the engine and its adapters raise."""


class ConfigError(MirrorError):
    """The configuration or schema is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[str] | str) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


class AuthError(MirrorError):
    """The CRM refused the credentials or the session could not be renewed."""


class TransientError(MirrorError):
    """A temporary failure (throttling, lock, outage); retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceeded(TransientError):
    """The CRM's API budget is used up; sync resumes when the quota resets."""


class RecordError(MirrorError):
    """One record cannot be processed; it is set aside with this reason and the rest go on."""

    def __init__(self, message: str, record_id: str | None = None, code: str | None = None):
        super().__init__(message)
        self.record_id = record_id
        self.code = code


class ValidationError(MirrorError):
    """A portal write with a value that does not fit its field; nothing was changed.
    ``problems`` lists each ``(field, problem)`` found; ``field`` is the first one's field."""

    def __init__(
        self,
        message: str,
        field: str | None = None,
        problems: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.problems = list(problems) if problems is not None else []
        if not self.problems and field is not None:
            self.problems = [(field, message)]


class ConflictError(MirrorError):
    """The same record changed on both sides since the last sync."""


class AccessDenied(MirrorError):
    """A partner asked for something outside its slice, or wrote a field it may not write."""


class QueryError(MirrorError, ValueError):
    """A partner query with an argument it cannot take (named in the message and in
    ``argument``); nothing was run. Fix the call."""

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument}: {problem}")
        self.argument = argument


class CrmError(MirrorError):
    """The CRM answered with an error that fits none of the groups above (a bug or a bad query)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class StreamSignatureError(MirrorError):
    """A change-stream delivery whose signature or key cannot be verified: refused, and the
    objects it would have told of are polled instead."""
