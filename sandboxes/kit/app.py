"""What every sandbox's WSGI app does around its CRM's own routing.

A request to the admin path runs a test control. Any other request may first be refused by the
web front the CRM sits behind (a URL over its limit); else it is answered as a CRM-facing
request (its writes logged with the ``api`` origin), and an injected drop then closes the
connection without the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Request, Response

from sandboxes.kit.admin import Controls, admin_answer, is_admin_path
from sandboxes.kit.server import drop_connection
from sandboxes.kit.writelog import api_request


class SandboxApp:
    """The WSGI callable of one sandbox; a CRM's app provides ``answer`` and may refine
    ``refuse``, ``fault_path`` and ``finish``.

    ``world`` is the sandbox's live state: an object with ``faults`` (``kit.faults.Faults``)
    and ``calls`` (``kit.calllog.CallLog``)."""

    control_errors: tuple[type[Exception], ...] = ()
    """The CRM's own errors a control may raise, answered 400 on the admin path."""

    def __init__(self, world: Any, admin_token: str, controls: Controls) -> None:
        """Serve ``world``; ``controls(name, kwargs)`` runs a test control for the admin path."""
        self.world = world
        self.admin_token = admin_token
        self.controls = controls

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Answer one request."""
        request = Request(environ)
        if is_admin_path(request.path):
            answer = admin_answer(request, self.admin_token, self.controls, self.control_errors)
            return answer(environ, start_response)
        refused = self.refuse(request)
        if refused is not None:
            return refused(environ, start_response)
        with api_request():
            response = self.answer(request)
        if self.world.faults.take(self.world.faults.drops, self.fault_path(request)) is not None:
            drop_connection(environ)
        self.finish(response)
        return response(environ, start_response)

    def refuse(self, request: Request) -> Response | None:
        """The front end's answer to a request it refuses before the API sees it, or ``None``."""
        return None

    def answer(self, request: Request) -> Response:
        """The CRM's answer to one CRM-facing request."""
        raise NotImplementedError

    def fault_path(self, request: Request) -> str:
        """What an injected fault's ``path_contains`` is matched against."""
        return request.path

    def finish(self, response: Response) -> None:
        """Add what every answer carries (limit headers), once the answer is final."""

    def log_call(self, request: Request, path: str) -> None:
        """Log the request as ``path`` and wait the injected latency, if any."""
        self.world.calls.record(request.method, path)
        self.world.faults.pause()
