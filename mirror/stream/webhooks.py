"""The endpoint CRMs post their change deliveries to: ``POST /hooks/<source>``.

Each delivery is handed to the source's adapter (``WebhookReceiver.receive``) through
``Mirror.receive_webhook``, which answers 200 only after the delivery's changes are committed to
the inbox, 500 when they could not be stored (the CRM delivers again), 401 when the adapter
cannot verify the signature, 404 for a source without a webhook stream. The server is
werkzeug's threaded one, as for the metrics, on its own host and port
(``[daemon] webhook_host``, ``webhook_port``); put TLS in front of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from mirror.observability import PlainRequestLog

# (source, method, url, headers, body) -> (status, text)
Receive = Callable[[str, str, str, Mapping[str, str], bytes], tuple[int, str]]
MAX_BODY = 16 * 1024 * 1024
log = logging.getLogger("prm_mirror.stream")


def hook_app(
    receive: Receive, stored: Callable[[str], None] | None = None, public_url: str | None = None
) -> Any:
    """The WSGI application: ``stored(source)`` is called after each delivery answered 200;
    with ``public_url`` (what the CRM posts to, through a proxy), each delivery's URL is that
    address with the request's path and query."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        parts = request.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "hooks" or not parts[1]:
            return Response("not found", status=404)(environ, start_response)
        source = parts[1]
        if (request.content_length or 0) > MAX_BODY:
            return Response("too large", status=413)(environ, start_response)
        body = request.get_data(cache=False)
        headers = {key: value for key, value in request.headers.items()}
        url = request.url
        if public_url:
            query = request.query_string.decode("latin-1")
            url = public_url.rstrip("/") + request.path + (f"?{query}" if query else "")
        status, text = receive(source, request.method, url, headers, body)
        if status == 200 and stored is not None:
            stored(source)
        return Response(text, status=status, content_type="text/plain")(environ, start_response)

    return app


class WebhookServer:
    """``POST /hooks/<source>`` on a background thread."""

    def __init__(
        self,
        receive: Receive,
        host: str,
        port: int,
        stored: Callable[[str], None] | None = None,
        public_url: str | None = None,
    ) -> None:
        app = hook_app(receive, stored, public_url)
        try:
            self._server: BaseWSGIServer = make_server(
                host, port, app, threaded=True, request_handler=PlainRequestLog
            )
        except SystemExit as exc:  # werkzeug exits the process when it cannot bind
            raise OSError(f"cannot listen on {host}:{port} (in use?)") from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhooks", daemon=True
        )

    @property
    def port(self) -> int:
        """The port it listens on (useful with port 0)."""
        return int(self._server.server_port)

    def start(self) -> WebhookServer:
        """Serve in the background."""
        self._thread.start()
        log.info("receiving change-stream deliveries on port %d", self.port)
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
