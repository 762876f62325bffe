"""Reach a plain-HTTP loopback endpoint through an SDK that only speaks https.

simple-salesforce (and msal) build every URL as ``https://host/...``. When a source's settings
name an ``http://127.0.0.1:PORT`` instance (a local sandbox, a recording proxy, a test double),
mounting :class:`RedirectToLocal` on the adapter's ``requests.Session`` for those https prefixes
rewrites each request to that loopback address while keeping the path and query, so the official
SDK runs unchanged. Only loopback targets are ever redirected; a caller that needs anything else
passes its own session to the adapter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

LOGIN_HOSTS = ("https://login.salesforce.com", "https://test.salesforce.com")


class RedirectToLocal(HTTPAdapter):
    """A transport adapter that sends every request it is mounted for to ``target``."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        """Send requests to ``target`` (``http://127.0.0.1:PORT``), keeping path and query."""
        super().__init__(**kwargs)
        self.target = target.rstrip("/")

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Rewrite the request URL to the target, then send it."""
        parts = urlsplit(request.url or "")
        request.url = self.target + parts.path + ("?" + parts.query if parts.query else "")
        kwargs["verify"] = False
        return super().send(request, **kwargs)


def local_session(base_url: str, extra_prefixes: Iterable[str] = ()) -> requests.Session:
    """A session whose https requests to the sandbox, and to the login hosts, reach ``base_url``.

    Mounted for ``https://127.0.0.1:PORT``, ``https://localhost:PORT``,
    ``https://login.salesforce.com`` and ``https://test.salesforce.com``, plus any
    ``extra_prefixes`` (for example a My Domain host used by the client-credentials flow).
    """
    port = urlsplit(base_url).port
    session = requests.Session()
    session.trust_env = False
    adapter = RedirectToLocal(base_url)
    prefixes = [f"https://127.0.0.1:{port}", f"https://localhost:{port}", *LOGIN_HOSTS]
    for prefix in [*prefixes, *extra_prefixes]:
        session.mount(prefix, adapter)
    return session
