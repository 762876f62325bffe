"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 that keeps every request,
answers with scripted statuses and may hand each delivery to a callback (an adapter's
``receive``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

Handler = Callable[[str, str, Mapping[str, str], bytes], Any]


@dataclass
class Received:
    """One request the receiver got: method, full URL, headers, body, and what it answered."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    status: int
    result: Any = None
    at: float = field(default_factory=time.monotonic)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The delivered events."""
        parsed = orjson.loads(self.body)
        return parsed if isinstance(parsed, list) else []


class Receiver:
    """Serves ``http://127.0.0.1:<port>/hooks/hubspot`` until closed.

    ``statuses`` are answered in turn (then 204); ``handler`` is called with each request, its
    result kept, and a handler's exception answered 401 (a refused signature). ``pause`` makes
    each answer wait that long (to count concurrent requests)."""

    def __init__(self, handler: Handler | None = None, pause: float = 0.0) -> None:
        """Start serving."""
        self.handler = handler
        self.pause = pause
        self.statuses: list[int] = []
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.active = 0
        self.most_active = 0
        receiver = self

        class Answer(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._answer(self)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """The target URL to register."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/hubspot?source=hubspot"

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            status = self.statuses.pop(0) if self.statuses else 204
        try:
            length = int(request.headers.get("Content-Length") or 0)
            body = request.rfile.read(length)
            host = request.headers.get("Host")
            url = f"http://{host}{request.path}"
            headers = dict(request.headers.items())
            result: Any = None
            if self.handler is not None and status < 300:
                try:
                    result = self.handler("POST", url, headers, body)
                except Exception as error:  # the receiver refuses what the handler refuses
                    result, status = error, 401
            if self.pause:
                time.sleep(self.pause)
            with self.lock:
                self.received.append(Received("POST", url, headers, body, status, result))
            request.send_response(status)
            request.send_header("Content-Length", "0")
            request.end_headers()
        finally:
            with self.lock:
                self.active -= 1

    def events(self, status: int | None = 204) -> list[dict[str, Any]]:
        """Every event received in requests answered ``status`` (``None``: any)."""
        with self.lock:
            got = list(self.received)
        return [e for r in got if status is None or r.status == status for e in r.events]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate()`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
