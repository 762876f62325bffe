"""The Pub/Sub API (``eventbus.v1.PubSub`` over gRPC) serving the org's change events.

The service is defined by Salesforce's published ``pubsub_api.proto`` (shipped beside this
module); its messages are built at start from that file into a private descriptor pool, so the
sandbox never shares generated code with a client in the same process. Every call must carry
the metadata Salesforce requires, ``accesstoken`` (a session the org issued), ``instanceurl``
and ``tenantid`` (the org id), or it fails with UNAUTHENTICATED. Errors carry Salesforce's
``error-code`` trailer. ``Subscribe`` follows the API's pull model: the client's
``FetchRequest``s grant ``num_requested`` events; the server sends at most that many, an empty
``FetchResponse`` with ``latest_replay_id`` as a keepalive when nothing came for
``ChangeBus.keepalive_seconds``, and ends the stream with UNAVAILABLE when the subscriptions are
dropped. Publishing to a change event channel is refused, as Salesforce refuses it.
"""

from __future__ import annotations

import re
import tempfile
import threading
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from sandboxes.salesforce.cdc import ReplayRefused, decode_replay, encode_replay
from sandboxes.salesforce.cdc_avro import EventSchema
from sandboxes.salesforce.org import Org

SERVICE = "eventbus.v1.PubSub"
AUTH_ERROR = "sfdc.platform.eventbus.grpc.service.auth.error"
REPLAY_ERROR = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
TOPIC_ERROR = "sfdc.platform.eventbus.grpc.subscription.topic.not.found"
SCHEMA_ERROR = "sfdc.platform.eventbus.grpc.schema.not.found"
PUBLISH_ERROR = "sfdc.platform.eventbus.grpc.publish.topic.not.permitted"
UNAVAILABLE_ERROR = "sfdc.platform.eventbus.grpc.service.unavailable"
MAX_REQUESTED = 100
_TOPIC = re.compile(r"^/data/(\w+?)ChangeEvent$")
_WAIT = 0.25


def _messages() -> dict[str, Any]:
    """The proto's message classes, compiled from the shipped ``pubsub_api.proto``."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pubsub.desc"
        here = Path(__file__).parent
        code = protoc.main(
            ["protoc", f"-I{here}", f"--descriptor_set_out={out}", "pubsub_api.proto"]
        )
        if code != 0:
            raise RuntimeError("protoc could not compile pubsub_api.proto")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    names = ("TopicRequest", "TopicInfo", "SchemaRequest", "SchemaInfo", "FetchRequest",
             "FetchResponse", "ConsumerEvent", "ProducerEvent", "PublishRequest",
             "PublishResponse")  # fmt: skip
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"eventbus.v1.{name}"))
        for name in names
    }


class PubSubService:
    """The handlers of ``eventbus.v1.PubSub`` for one org."""

    def __init__(self, org: Org) -> None:
        """Serve ``org``'s change bus."""
        self.org = org
        self.bus = org.cdc
        self.m = _messages()
        self._schemas: dict[str, EventSchema] = {}
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler registering every method of the service."""
        m = self.m

        def unary(fn: Any, request: str, reply: str) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                fn, m[request].FromString, m[reply].SerializeToString
            )

        def stream(fn: Any, request: str, reply: str) -> grpc.RpcMethodHandler:
            return grpc.stream_stream_rpc_method_handler(
                fn, m[request].FromString, m[reply].SerializeToString
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "GetTopic": unary(self.get_topic, "TopicRequest", "TopicInfo"),
                "GetSchema": unary(self.get_schema, "SchemaRequest", "SchemaInfo"),
                "Publish": unary(self.publish, "PublishRequest", "PublishResponse"),
                "Subscribe": stream(self.subscribe, "FetchRequest", "FetchResponse"),
                "PublishStream": stream(self.publish_stream, "PublishRequest", "PublishResponse"),
            },
        )

    def _fail(self, context: grpc.ServicerContext, status: grpc.StatusCode, code: str,
              message: str) -> NoReturn:  # fmt: skip
        rpc_id = str(uuid.uuid4())
        context.set_trailing_metadata((("error-code", code), ("rpc-id", rpc_id)))
        context.abort(status, f"{message} rpcId: {rpc_id}")
        raise AssertionError("abort returns only by raising")

    def _authorize(self, context: grpc.ServicerContext, method: str) -> None:
        self.org.calls.record("GRPC", f"/{SERVICE}/{method}")
        metadata = {key: value for key, value in context.invocation_metadata()}
        token = metadata.get("accesstoken")
        tenant = str(metadata.get("tenantid") or "")
        org_id = self.org.org_id
        if not self.org.sessions.valid(str(token) if token else None) or tenant not in (
            org_id,
            org_id[:15],
        ):
            self._fail(context, grpc.StatusCode.UNAUTHENTICATED, AUTH_ERROR,
                       "An authentication exception occurred. Provide valid authentication"
                       " via metadata headers.")  # fmt: skip

    def _entities(self, context: grpc.ServicerContext, topic: str) -> set[str] | None:
        """The entities a topic carries (``None``: every selected one); refuses a topic that
        is not a change event channel of a selected entity."""
        if topic == "/data/ChangeEvents":
            return None
        match = _TOPIC.match(topic)
        name = match.group(1) if match else ""
        if name.endswith("__"):
            name += "c"
        obj = self.org.schema.sobject(name) if name else None
        if obj is None or obj.name not in self.bus.selected:
            self._fail(context, grpc.StatusCode.NOT_FOUND, TOPIC_ERROR,
                       f"The topic {topic} doesn't exist or you don't have access to it. Check"
                       " that the entity is selected for Change Data Capture.")  # fmt: skip
        return {obj.name}

    def _schema(self, entity: str) -> EventSchema:
        obj = self.org.records.sobject(entity)
        schema = EventSchema(obj)
        with self._lock:
            self._schemas.setdefault(schema.id, schema)
        return schema

    # -- unary methods ----------------------------------------------------------------------

    def get_topic(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The topic's info: subscribable, not publishable, its current schema id."""
        self._authorize(context, "GetTopic")
        entities = self._entities(context, request.topic_name)
        schema_id = self._schema(next(iter(entities))).id if entities else ""
        return self.m["TopicInfo"](
            topic_name=request.topic_name, tenant_guid=self.org.org_id, can_publish=False,
            can_subscribe=True, schema_id=schema_id, rpc_id=str(uuid.uuid4()),
        )  # fmt: skip

    def get_schema(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The Avro schema JSON of a schema id handed out with an event or a topic."""
        self._authorize(context, "GetSchema")
        with self._lock:
            schema = self._schemas.get(request.schema_id)
        if schema is None:
            self._fail(context, grpc.StatusCode.NOT_FOUND, SCHEMA_ERROR,
                       f"No schema with id {request.schema_id}.")  # fmt: skip
        return self.m["SchemaInfo"](
            schema_json=schema.json, schema_id=schema.id, rpc_id=str(uuid.uuid4())
        )

    def publish(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Change events are published by Salesforce only."""
        self._authorize(context, "Publish")
        self._fail(context, grpc.StatusCode.PERMISSION_DENIED, PUBLISH_ERROR,
                   f"Publishing to {request.topic_name} is not permitted.")  # fmt: skip

    def publish_stream(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        """As ``publish``: refused."""
        self._authorize(context, "PublishStream")
        self._fail(context, grpc.StatusCode.PERMISSION_DENIED, PUBLISH_ERROR,
                   "Publishing to a change event channel is not permitted.")  # fmt: skip

    # -- Subscribe --------------------------------------------------------------------------

    def subscribe(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        """Deliver the topic's events as the client's FetchRequests allow."""
        self._authorize(context, "Subscribe")
        with self.bus.condition:
            unavailable = self.bus.faults.unavailable > 0
            self.bus.faults.unavailable -= int(unavailable)
        if unavailable:
            self._fail(context, grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_ERROR,
                       "The Pub/Sub API service is unavailable.")  # fmt: skip
        first = next(requests, None)
        if first is None:
            return
        entities = self._entities(context, first.topic_name)
        position = self._start(context, first)
        credit = [min(max(first.num_requested, 0), MAX_REQUESTED)]
        bus = self.bus
        drops = bus.drops
        threading.Thread(
            target=self._grants, args=(requests, credit), daemon=True, name="pubsub-grants"
        ).start()
        latest = encode_replay(bus.latest())
        idle = 0.0
        while context.is_active():
            with bus.condition:
                if bus.drops != drops:
                    break
                events, after, last = bus.read(position, entities, credit[0])
                if not events and after == position:
                    bus.condition.wait(_WAIT)
                    idle += _WAIT
                    if idle < bus.keepalive_seconds:
                        continue
                credit[0] -= len(events)
                pending = credit[0]
            position = after
            if last is not None:
                latest = encode_replay(last)
            if events or idle >= bus.keepalive_seconds:
                idle = 0.0
                yield self.m["FetchResponse"](
                    events=[self._consumer_event(event) for event in events],
                    latest_replay_id=latest, rpc_id=str(uuid.uuid4()),
                    pending_num_requested=pending,
                )  # fmt: skip
        if context.is_active():
            self._fail(context, grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_ERROR,
                       "RST_STREAM closed stream.")  # fmt: skip

    def _start(self, context: grpc.ServicerContext, first: Any) -> int:
        preset = first.replay_preset
        try:
            if preset == 2:  # CUSTOM
                return self.bus.start_after(decode_replay(first.replay_id))
            return self.bus.start_after(None, earliest=preset == 1)
        except ReplayRefused:
            self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, REPLAY_ERROR,
                       "The Replay ID validation failed. Ensure that the Replay ID is valid"
                       " and within the retention window.")  # fmt: skip

    def _grants(self, requests: Iterator[Any], credit: list[int]) -> None:
        """Add each later FetchRequest's ``num_requested`` to the stream's credit."""
        try:
            for request in requests:
                with self.bus.condition:
                    credit[0] = min(credit[0] + max(request.num_requested, 0), MAX_REQUESTED)
                    self.bus.condition.notify_all()
        except grpc.RpcError:
            return

    def _consumer_event(self, event: Any) -> Any:
        schema = self._schema(event.entity)
        producer = self.m["ProducerEvent"](
            id=event.event_id, schema_id=schema.id, payload=schema.encode(event)
        )
        return self.m["ConsumerEvent"](event=producer, replay_id=encode_replay(event.replay_id))


class PubSubServer:
    """The gRPC server of the Pub/Sub API on 127.0.0.1 (plain HTTP/2, like a local proxy)."""

    def __init__(self, org: Org, port: int = 0) -> None:
        """Prepare the server of ``org``'s change bus on ``port`` (0: any free one)."""
        self.service = PubSubService(org)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        self.server.add_generic_rpc_handlers((self.service.handler(),))
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")

    def start(self) -> None:
        """Serve in the background."""
        self.server.start()

    def stop(self) -> None:
        """End every call and stop serving."""
        self.service.bus.drop_subscriptions()
        self.server.stop(grace=0.5).wait(5)
