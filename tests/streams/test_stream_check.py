"""``prm-mirror check`` (and the daemon, at start) names a webhook stream whose secret is not set:
without it every delivery would be refused and answered with a poll of every object."""

from __future__ import annotations

from typing import Any

import pytest

from mirror import Mirror
from mirror.config import parse_config

HUBSPOT = {"crm": "hubspot", "access_token": "token", "objects": ["deals"]}
DYNAMICS = {
    "crm": "dynamics",
    "org_url": "https://org.example.com",
    "tenant_id": "tenant",
    "client_id": "client",
    "client_secret": "secret",
    "objects": ["opportunity"],
}


@pytest.mark.parametrize(
    ("source", "secret", "value"),
    [(HUBSPOT, "client_secret", "app secret"), (DYNAMICS, "webhook_key", "k" * 24)],
)
def test_a_webhook_stream_without_its_secret_is_a_config_problem(
    source: dict[str, Any], secret: str, value: str, tmp_path: Any
) -> None:
    def problems(settings: dict[str, Any]) -> list[str]:
        config = parse_config(
            {
                "store": {"database": f"sqlite:///{tmp_path / 'm.db'}"},
                "sources": {"crm": settings | {"stream": True}},
            }
        )
        with Mirror(config) as mirror:
            return mirror.stream_problems()

    [problem] = problems(source)
    assert problem.startswith(f"sources.crm.{secret}: not set")
    assert problems(source | {secret: value}) == []
