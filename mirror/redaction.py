"""Secrets kept out of every log line and every printed error, however it is formatted.

A ``Mirror`` registers the secret values of its config (passwords, security tokens, client
secrets, session and access tokens, the store URL's password) and of the environment
(variables named like ``*_PASSWORD``, ``*_TOKEN``, ``*_SECRET``). From then on every log
record the process creates, whichever logger and handler it goes through (the CLI's, the
daemon's, or the application that embeds the engine), has them replaced by ``***`` in its
message, its formatted exception and its stack; the record factory does it as the record is
made, so no handler sees the value. ``redacted`` does the same for text printed directly.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

MASK = "***"
# shorter values would mask ordinary words
MIN_LENGTH = 4
SECRET_ENV = re.compile(r".*(PASSWORD|PASSWD|TOKEN|SECRET|API_KEY|PRIVATE_KEY)$", re.IGNORECASE)

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()
_installed = False


def register(secrets: Iterable[str]) -> None:
    """Add ``secrets`` to the values redacted from logs, and start redacting log records."""
    global _secrets, _installed
    wanted = {str(s) for s in secrets if s and len(str(s)) >= MIN_LENGTH}
    with _lock:
        if not wanted <= set(_secrets):
            _secrets = tuple(sorted(wanted | set(_secrets), key=len, reverse=True))
        if not _installed:
            logging.setLogRecordFactory(_redacting(logging.getLogRecordFactory()))
            _installed = True


def environment_secrets() -> list[str]:
    """Values of environment variables whose names say they hold a secret."""
    return [value for name, value in os.environ.items() if SECRET_ENV.match(name) and value]


def redacted(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every registered secret (or every one of ``secrets``) masked."""
    for secret in _secrets if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_record(record: logging.LogRecord, secrets: Iterable[str] | None = None) -> None:
    """Mask secrets in the record's message, formatted exception and stack, in place. A
    redacted exception stays only as text (``exc_text``): the exception object is dropped
    so that no formatter or handler can format it again with the secret."""
    chosen = tuple(_secrets if secrets is None else secrets)
    if not chosen:
        return
    try:
        message = record.getMessage()
    except Exception:  # a malformed call is the logging module's to report, as it would
        message = None
    if message is not None:
        clean = redacted(message, chosen)
        if clean != message:
            record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[0] is not None:
        text = record.exc_text or logging.Formatter().formatException(record.exc_info)
        clean = redacted(text, chosen)
        if clean != text:
            record.exc_text, record.exc_info = clean, None
    elif record.exc_text:
        record.exc_text = redacted(record.exc_text, chosen)
    if record.stack_info:
        record.stack_info = redacted(record.stack_info, chosen)


def _redacting(make: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        redact_record(record)
        return record

    return factory
