"""The admin path: ``POST /__sandbox/<control>`` runs a sandbox's test control from another
process, for a caller that sends the ``X-Sandbox-Admin: <admin token>`` header.

The body is the control's keyword arguments as a JSON object (none when empty); the answer is
``{"result": ...}`` with dates as ISO strings, 400 ``{"error", "message"}`` when the control
refuses its arguments, and 403 without the right token.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from sandboxes.kit.server import BadJson, json_response, read_json

ADMIN_PREFIX = "/__sandbox/"
ADMIN_HEADER = "X-Sandbox-Admin"
Controls = Callable[[str, dict[str, Any]], Any]
"""Runs one control by name with its keyword arguments; ``KeyError`` for an unknown name."""


def is_admin_path(path: str) -> bool:
    """Whether a request for ``path`` goes to the admin path rather than to the CRM's API."""
    return path.startswith(ADMIN_PREFIX)


def admin_answer(
    request: Request,
    admin_token: str,
    controls: Controls,
    refusals: tuple[type[Exception], ...] = (),
) -> Response:
    """Run the control a request names and answer with its result; ``refusals`` are the
    sandbox's own errors that answer 400 like a bad argument does."""
    supplied = request.headers.get(ADMIN_HEADER, "")
    if not hmac.compare_digest(supplied.encode(), admin_token.encode()):
        return json_response({"error": "forbidden"}, 403)
    name = request.path.removeprefix(ADMIN_PREFIX).strip("/")
    handled: tuple[type[Exception], ...] = (KeyError, ValueError, TypeError, BadJson, *refusals)
    try:
        kwargs = read_json(request) if request.get_data() else {}
        result = controls(name, kwargs)
    except handled as error:
        return json_response({"error": type(error).__name__, "message": str(error)}, 400)
    return json_response({"result": jsonable(result)})


def jsonable(value: Any) -> Any:
    """``value`` with every date and datetime (at any depth) as its ISO string."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


class ControlDispatch:
    """Runs a sandbox's public control methods by name: the ones listed in ``controls`` are
    called with the keyword arguments, the ``properties`` are read; an argument named in
    ``datetime_arguments`` (control name to argument name) arrives as an ISO string and is
    parsed first."""

    controls: tuple[str, ...] = ()
    properties: tuple[str, ...] = ()
    datetime_arguments: dict[str, str] = {}

    def _control(self, name: str, kwargs: dict[str, Any]) -> Any:
        if name in self.properties:
            return getattr(self, name)
        if name not in self.controls:
            raise KeyError(f"no sandbox control named {name!r}")
        argument = self.datetime_arguments.get(name)
        if argument and isinstance(kwargs.get(argument), str):
            kwargs[argument] = datetime.fromisoformat(kwargs[argument])
        return getattr(self, name)(**kwargs)
