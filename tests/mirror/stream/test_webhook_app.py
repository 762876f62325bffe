"""The webhook endpoint's routing: ``/hooks/<source>`` only, the delivery's URL as the CRM
called it (rebuilt on ``webhook_public_url`` behind a proxy), the receiver's answer as is, and
``stored`` told only of deliveries answered 200."""

from __future__ import annotations

from collections.abc import Mapping

from werkzeug.test import Client

from mirror.stream.webhooks import hook_app


class Receiver:
    def __init__(self, status: int) -> None:
        self.status = status
        self.calls: list[tuple[str, str, str, dict[str, str], bytes]] = []

    def __call__(
        self, source: str, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, str]:
        self.calls.append((source, method, url, dict(headers), body))
        return self.status, "answer"


def test_a_delivery_reaches_its_source_with_its_url_and_body() -> None:
    receiver, stored = Receiver(200), []
    client = Client(hook_app(receiver, stored.append))
    answer = client.post("/hooks/crm?x=1", data=b'{"a": 1}', headers={"X-Sig": "s"})
    assert (answer.status_code, answer.get_data()) == (200, b"answer")
    [(source, method, url, headers, body)] = receiver.calls
    assert (source, method, url, body) == (
        "crm",
        "POST",
        "http://localhost/hooks/crm?x=1",
        b'{"a": 1}',
    )
    assert headers["X-Sig"] == "s"
    assert stored == ["crm"]


def test_behind_a_proxy_the_url_is_the_public_one() -> None:
    receiver = Receiver(200)
    client = Client(hook_app(receiver, None, "https://mirror.example.com/"))
    client.post("/hooks/crm?x=1", data=b"{}")
    client.post("/hooks/crm", data=b"{}")
    assert [call[2] for call in receiver.calls] == [
        "https://mirror.example.com/hooks/crm?x=1",
        "https://mirror.example.com/hooks/crm",
    ]


def test_other_paths_are_not_found_and_refusals_are_not_stored() -> None:
    receiver, stored = Receiver(401), []
    client = Client(hook_app(receiver, stored.append))
    assert client.post("/hooks/").status_code == 404
    assert client.post("/metrics").status_code == 404
    assert client.post("/hooks/crm/more").status_code == 404
    assert client.post("/hooks/crm", data=b"x").status_code == 401
    assert stored == [] and len(receiver.calls) == 1
