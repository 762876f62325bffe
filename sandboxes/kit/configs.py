"""The config that mirrors a running sandbox: what ``prm-mirror sandbox serve`` prints.

Each CRM's sandbox accepts one set of credentials; the config written here carries exactly those,
so ``prm-mirror -c <file> check`` logs in to the sandbox as served.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any


def source_settings(crm: str, box: Any) -> dict[str, Any]:
    """The ``[sources.<crm>]`` table (as a dict) that mirrors the running sandbox ``box``."""
    if crm == "hubspot":
        return {"crm": "hubspot", "host": box.base_url, "access_token": box.access_token}
    if crm == "dynamics":
        return dict(box.source_settings())
    settings = {
        "crm": "salesforce",
        "auth": "password",
        "login_url": box.base_url,
        "username": box.username,
        "password": box.password,
        "security_token": box.security_token,
    }
    endpoint = getattr(box, "pubsub_endpoint", None)
    with contextlib.suppress(RuntimeError):  # a sandbox not serving yet has no endpoint
        if endpoint is not None:
            settings["pubsub_endpoint"] = endpoint()
    return settings


def config_toml(crm: str, box: Any, database: str) -> str:
    """A whole config file (TOML) mirroring ``box`` into ``database``."""
    lines = [
        f"# Mirrors the {crm} sandbox served on {box.base_url} (`prm-mirror sandbox serve`).",
        "",
        "[store]",
        f"database = {_toml(database)}",
        "",
        f"[sources.{crm}]",
        *(f"{key} = {_toml(value)}" for key, value in source_settings(crm, box).items()),
        "",
        f"[sources.{crm}.visibility.partners]",
        'field_rules = "allow"',
        "",
    ]
    return "\n".join(lines)


def _toml(value: Any) -> str:
    # JSON's string escapes are a subset of TOML's basic strings
    return json.dumps(str(value))
