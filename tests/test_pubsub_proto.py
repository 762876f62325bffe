"""The Salesforce Pub/Sub API definition is kept twice on purpose: the adapter's client and the
sandbox's server each compile their own copy (the sandbox never imports the product, and the
two compiled copies must not share one descriptor pool in a process). Both must stay the
published file, byte for byte."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_adapter_and_the_sandbox_speak_the_same_pubsub_api() -> None:
    client = (ROOT / "adapters" / "salesforce" / "pubsub_api.proto").read_bytes()
    server = (ROOT / "sandboxes" / "salesforce" / "pubsub_api.proto").read_bytes()
    assert b"service PubSub" in client
    assert client == server
