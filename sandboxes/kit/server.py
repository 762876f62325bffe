"""A generic threaded werkzeug server for the CRM sandboxes, plus JSON and fault helpers.

Each sandbox builds a WSGI app and hands it to :class:`SandboxServer`, which serves it on
127.0.0.1 either in a daemon thread (tests, benchmarks) or in the foreground (the CLI).
Request logging is silenced: sandboxes count calls themselves and tests read those counts.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    """A request handler that does not log each request to stderr."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Skip the per-request access log line."""

    def log(self, type: str, message: str, *args: Any) -> None:
        """Route werkzeug's own messages to this module's logger at debug level."""
        log.debug("%s: " + message, type, *args)


def _clocked_handler(clock: Callable[[], datetime]) -> type[_QuietHandler]:
    class ClockedHandler(_QuietHandler):
        def date_time_string(self, timestamp: float | None = None) -> str:
            """The ``Date`` header from the sandbox's clock."""
            return email.utils.format_datetime(clock().astimezone(UTC), usegmt=True)

    return ClockedHandler


class SandboxServer:
    """Serves one WSGI app on 127.0.0.1, threaded, in the background or the foreground."""

    def __init__(
        self,
        app: WsgiApp,
        port: int = 0,
        host: str = "127.0.0.1",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Bind ``app`` to ``host:port`` (port 0 picks a free port) without serving yet.

        ``clock`` dates every response's ``Date`` header, as a real CRM's own clock does (so a
        sandbox whose clock tests move forward still answers with its own time)."""
        handler = _QuietHandler if clock is None else _clocked_handler(clock)
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=handler
        )
        self._server.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return int(self._server.server_port)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Serve in a daemon thread and return at once."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response of ``payload`` (serialised with orjson)."""
    return Response(
        orjson.dumps(payload),
        status=status,
        headers=dict(headers or {}),
        content_type="application/json;charset=UTF-8",
    )


def html_response(body: str, status: int, charset: str = "iso-8859-1") -> Response:
    """An HTML answer, as the web servers in front of a CRM API send for requests they refuse
    before the API sees them (a request line or URL over their limit)."""
    content_type = f"text/html; charset={charset}"
    return Response(body.encode(charset), status=status, content_type=content_type)


def request_target(environ: Mapping[str, Any]) -> str:
    """The request target exactly as the client sent it on the request line (path and query,
    still percent-encoded)."""
    raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if raw:
        return str(raw)
    query = environ.get("QUERY_STRING") or ""
    return str(environ.get("PATH_INFO") or "/") + (f"?{query}" if query else "")


def request_head_bytes(environ: Mapping[str, Any]) -> int:
    """The size of the request line and header lines as sent (each ``name: value`` line with
    its CRLF), without the body: what a server's request-head buffer has to hold."""
    line = f"{environ.get('REQUEST_METHOD', 'GET')} {request_target(environ)} "
    line += f"{environ.get('SERVER_PROTOCOL', 'HTTP/1.1')}\r\n"
    size = len(line.encode("latin-1", "replace"))
    for key, value in environ.items():
        if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key.removeprefix("HTTP_")
            size += len(name) + 2 + len(str(value).encode("latin-1", "replace")) + 2
    return size


def empty_response(status: int = 204, headers: Mapping[str, str] | None = None) -> Response:
    """A response without a body (204 No Content by default)."""
    response = Response(status=status, headers=dict(headers or {}))
    response.headers.pop("Content-Type", None)
    return response


class BadJson(ValueError):
    """The request body is not the JSON the endpoint needs."""


def read_json(request: Request) -> Any:
    """The request body parsed as JSON; raises :class:`BadJson` when it is not JSON."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise BadJson("The request body is empty")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadJson(str(error)) from error


def drop_connection(environ: Mapping[str, Any]) -> None:
    """Close the client connection without an answer, then unwind the request quietly.

    The werkzeug dev server treats :class:`ConnectionError` from the app as a dropped client
    and neither answers nor logs, which is exactly what the fault needs.
    """
    connection = environ.get("werkzeug.socket")
    if connection is not None:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)
    raise ConnectionAbortedError("sandbox dropped the response on purpose")
