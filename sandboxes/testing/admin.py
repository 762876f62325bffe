"""A running sandbox's admin controls over HTTP, from any process that has its admin token."""

from __future__ import annotations

import json
from typing import Any

import requests

from sandboxes.kit.admin import ADMIN_HEADER, ADMIN_PREFIX


class AdminClient:
    """Calls ``POST /__sandbox/<control>`` on the sandbox at ``base_url``."""

    def __init__(self, base_url: str, admin_token: str) -> None:
        """A client of the sandbox at ``base_url`` holding its ``admin_token``."""
        self.base_url = base_url
        self.admin_token = admin_token
        self._http = requests.Session()
        self._http.trust_env = False

    def admin(self, control: str, **kwargs: Any) -> Any:
        """Run ``control`` with ``kwargs`` (dates as ISO strings); returns its ``result``."""
        response = self._http.post(
            f"{self.base_url}{ADMIN_PREFIX}{control}",
            data=json.dumps(kwargs, default=str),
            headers={ADMIN_HEADER: self.admin_token, "Content-Type": "application/json"},
            timeout=600,
        )
        if response.status_code >= 300:
            raise RuntimeError(f"sandbox control {control} failed: {response.text[:300]}")
        return response.json()["result"]

    def close(self) -> None:
        """Release the HTTP session."""
        self._http.close()
