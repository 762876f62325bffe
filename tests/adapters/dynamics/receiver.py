"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 that hands each delivery
to a ``WebhookReceiver`` (or just records it) and answers as the engine would: 200 once the
changes are taken, 401 on a key that cannot be verified, or an injected failure status."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mirror.errors import StreamSignatureError


@dataclass
class Received:
    """One delivery as it arrived and what the receiver made of it."""

    path: str
    headers: dict[str, str]
    body: bytes
    items: list[Any] | None
    error: Exception | None
    status: int
    at: float = field(default_factory=time.monotonic)


class Receiver:
    """Serves ``POST`` on ``url``; ``handle(method, url, headers, body)`` is the adapter's
    ``receive`` (``None``: record only). ``fail_next(n, status)`` answers the next ``n`` with
    ``status`` before handling them."""

    def __init__(self, handle: Callable[[str, str, dict[str, str], bytes], list[Any]] | None):
        """Start serving on a free port."""
        self.handle = handle
        self.deliveries: list[Received] = []
        self.failures: list[int] = []
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver._take(self, body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """The webhook URL to register."""
        return f"http://127.0.0.1:{self.server.server_port}/dataverse/hook"

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next ``count`` deliveries with ``status``."""
        with self._lock:
            self.failures.extend([status] * count)

    def _take(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k: v for k, v in request.headers.items()}
        full_url = f"http://127.0.0.1:{self.server.server_port}{request.path}"
        items: list[Any] | None = None
        error: Exception | None = None
        with self._lock:
            status = self.failures.pop(0) if self.failures else 0
        if not status:
            try:
                items = self.handle("POST", full_url, headers, body) if self.handle else []
                status = 200
            except StreamSignatureError as exc:
                error, status = exc, 401
        with self._lock:
            self.deliveries.append(Received(request.path, headers, body, items, error, status))
            self._lock.notify_all()
        request.send_response(status)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until ``count`` deliveries arrived; all of them so far."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.deliveries) < count and time.monotonic() < deadline:
                self._lock.wait(0.05)
            return list(self.deliveries)

    def clear(self) -> None:
        """Forget the deliveries and pending failures."""
        with self._lock:
            self.deliveries.clear()
            self.failures.clear()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
