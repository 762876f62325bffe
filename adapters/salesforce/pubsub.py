"""The Pub/Sub API client: Salesforce's ``eventbus.v1.PubSub`` service over grpcio.

The messages are generated from Salesforce's published ``pubsub_api.proto`` (committed as
``pubsub_api_pb2``; regenerate with ``python -m grpc_tools.protoc -I . --python_out=.
--pyi_out=. adapters/salesforce/pubsub_api.proto``). The three calls the listener makes
(``Subscribe``, ``GetSchema``, ``GetTopic``) are bound here on a plain ``grpc.Channel``
instead of through the generated ``_grpc`` stub module, which pins grpcio to the exact version
that generated it. Every call carries the session as Salesforce requires: ``accesstoken``,
``instanceurl`` and ``tenantid`` metadata; the token never leaves that metadata.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from adapters.salesforce import pubsub_api_pb2 as pb
from adapters.salesforce.settings import SalesforceSettings

SERVICE = "/eventbus.v1.PubSub/"
REPLAY_CORRUPTED = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
AUTH_ERROR = "sfdc.platform.eventbus.grpc.service.auth.error"


@dataclass(frozen=True)
class Session:
    """What every call is authenticated with (``repr`` leaves the token out)."""

    token: str
    instance_url: str
    tenant_id: str

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata Salesforce requires."""
        return (
            ("accesstoken", self.token),
            ("instanceurl", self.instance_url),
            ("tenantid", self.tenant_id),
        )

    def __repr__(self) -> str:
        """No token in logs or tracebacks."""
        return f"Session(instance_url={self.instance_url!r}, tenant_id={self.tenant_id!r})"


def tenant_of(token: str, configured: str | None) -> str:
    """The org id a session belongs to: the configured one, else the ``00D...`` part before
    the ``!`` of a Salesforce session id."""
    if configured:
        return configured
    head = token.split("!", 1)[0]
    return head if head.startswith("00D") else ""


def error_code(error: grpc.RpcError) -> str | None:
    """Salesforce's ``error-code`` trailer of a failed call, if it sent one."""
    trailers = getattr(error, "trailing_metadata", None)
    for key, value in (trailers() if callable(trailers) else None) or ():
        if key == "error-code":
            return str(value)
    return None


def status_of(error: grpc.RpcError) -> grpc.StatusCode | None:
    """The gRPC status of a failed call."""
    code = getattr(error, "code", None)
    result = code() if callable(code) else None
    return result if isinstance(result, grpc.StatusCode) else None


class CallCounter:
    """Pub/Sub API requests counted across every listener of one adapter."""

    def __init__(self) -> None:
        """Start at zero."""
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int = 1) -> None:
        """Count ``n`` more requests."""
        with self._lock:
            self.value += n


class PubSubClient:
    """One channel to the Pub/Sub API and the calls the change listener makes on it."""

    def __init__(self, settings: SalesforceSettings, counter: CallCounter | None = None) -> None:
        """Open a channel to ``settings.pubsub_endpoint`` (TLS unless it is on loopback);
        requests are counted in ``counter``."""
        target = settings.pubsub_endpoint
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        if settings.pubsub_is_loopback():
            self.channel = grpc.insecure_channel(target, options=options)
        else:
            credentials = grpc.ssl_channel_credentials()
            self.channel = grpc.secure_channel(target, credentials, options=options)
        self._subscribe = self.channel.stream_stream(
            SERVICE + "Subscribe",
            request_serializer=pb.FetchRequest.SerializeToString,
            response_deserializer=pb.FetchResponse.FromString,
        )
        self._get_schema = self.channel.unary_unary(
            SERVICE + "GetSchema",
            request_serializer=pb.SchemaRequest.SerializeToString,
            response_deserializer=pb.SchemaInfo.FromString,
        )
        self._get_topic = self.channel.unary_unary(
            SERVICE + "GetTopic",
            request_serializer=pb.TopicRequest.SerializeToString,
            response_deserializer=pb.TopicInfo.FromString,
        )
        self.timeout = settings.timeout
        self.counter = counter or CallCounter()

    def count(self, n: int = 1) -> None:
        """Count ``n`` more requests (an RPC opened or a FetchRequest sent)."""
        self.counter.add(n)

    def subscribe(self, requests: Iterator[pb.FetchRequest], session: Session) -> Any:
        """Open a Subscribe stream fed by ``requests``; the returned call iterates over
        ``FetchResponse``s and can be cancelled."""
        self.count()
        return self._subscribe(requests, metadata=session.metadata())

    def schema(self, schema_id: str, session: Session) -> str:
        """The Avro schema JSON of ``schema_id``."""
        self.count()
        answer = self._get_schema(
            pb.SchemaRequest(schema_id=schema_id), metadata=session.metadata(),
            timeout=self.timeout,
        )  # fmt: skip
        return str(answer.schema_json)

    def topic(self, topic_name: str, session: Session) -> pb.TopicInfo:
        """The topic's info (whether it can be subscribed to, its schema id)."""
        self.count()
        return self._get_topic(
            pb.TopicRequest(topic_name=topic_name), metadata=session.metadata(),
            timeout=self.timeout,
        )  # fmt: skip

    def close(self) -> None:
        """Close the channel (ends every call on it)."""
        self.channel.close()
