"""One logging setup for every way prm-mirror runs: text or JSON lines on stderr, each carrying
the context it was written in (source, object, run id, job), with secrets masked.

The engine writes to loggers under ``prm_mirror``; :func:`log_context` adds fields to every line
logged inside it (on this thread), so a line from deep inside a page of a run still says which
source, object and run it belongs to. :func:`configure_logging` is what the CLI and the daemon
call; an embedding application keeps its own handlers and may add :class:`ContextFilter` and
:class:`JsonFormatter` to them.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Literal, TextIO

from mirror import redaction

LogFormat = Literal["text", "json"]
# the order context fields appear in on a text line
CONTEXT_FIELDS = ("source", "object", "run_id", "job", "worker")

_context: ContextVar[dict[str, str]] = ContextVar("prm_mirror_log_context", default={})  # noqa: B039


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add ``fields`` (``None`` values left out) to every line logged inside the block."""
    added = {name: str(value) for name, value in fields.items() if value is not None}
    token = _context.set({**_context.get(), **added})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    """The context fields in force here."""
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Puts the current :func:`log_context` fields on each record as ``record.context``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the context; never drops a record."""
        if not hasattr(record, "context"):
            record.context = current_context()
        return True


class RedactSecrets(logging.Filter):
    """Masks every registered secret (``mirror.redaction``) in the records a handler emits:
    the message, the formatted exception and the stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact in place; never drops a record."""
        redaction.redact_record(record)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created).astimezone().isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "context", {}),
        }
        if record.exc_text:
            line["exc"] = record.exc_text
        elif record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [source=… object=… run_id=…]``, plain text, no colour."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record on one line, its context fields appended."""
        text = super().format(record)
        context: dict[str, str] = getattr(record, "context", {})
        if not context:
            return text
        ordered = sorted(context, key=lambda k: (k not in CONTEXT_FIELDS, _rank(k), k))
        fields = " ".join(f"{name}={context[name]}" for name in ordered)
        head, newline, rest = text.partition("\n")
        return f"{head} [{fields}]{newline}{rest}"


def _rank(name: str) -> int:
    return CONTEXT_FIELDS.index(name) if name in CONTEXT_FIELDS else len(CONTEXT_FIELDS)


def configure_logging(
    fmt: LogFormat = "text", level: int = logging.WARNING, stream: TextIO | None = None
) -> logging.Handler:
    """Send log lines at ``level`` and above to ``stream`` (stderr) in ``fmt``.

    Calling it again replaces the handler it installed before and leaves other handlers (an
    embedding application's, a test runner's) alone. The HTTP server's per-request lines and
    the scheduler's chatter stay below WARNING unless ``level`` is DEBUG.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactSecrets())
    handler.setLevel(level)
    handler.set_name("prm-mirror")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "prm-mirror"]:
        root.removeHandler(old)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    quiet = logging.DEBUG if level <= logging.DEBUG else logging.WARNING
    for noisy in ("werkzeug", "apscheduler", "urllib3", "msal"):
        logging.getLogger(noisy).setLevel(quiet)
    return handler
