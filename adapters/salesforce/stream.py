"""Change Data Capture for the engine's ``StreamListener``: one Pub/Sub API subscription to a
channel carrying every mirrored object, resumed from the replay id of the stream position.

The channel is ``cdc_channel``: the standard ``/data/ChangeEvents`` (every entity selected for
Change Data Capture) or a custom channel holding just the mirrored ones. One channel means one
replay id vouches for every object, so a position is complete after any event; separate
per-object channels would each need a replay id of their own, and an object quiet since the
stream started would have none to resume from. Before subscribing, each object's own channel
(``/data/<Object>ChangeEvent``) is looked up with GetTopic, so an object not selected for
Change Data Capture is a ``ConfigError`` instead of a silent absence. Events of other objects
on the channel are skipped. The pull model is kept: each ``FetchRequest`` asks for
``stream_batch`` events and the next one goes out when the server says none are pending. A
replay id Salesforce refuses (invalid, or past the 72-hour retention) becomes a
``StreamGap(None)`` and the channel resumes from the tip. A dropped stream is opened again
from the last replay id delivered, with the adapter's backoff; when retries are used up without
a single answer in between, ``TransientError``. An expired session is renewed the way REST
calls renew it. The session token is sent only as call metadata, never logged.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from adapters.salesforce import pubsub_api_pb2 as pb
from adapters.salesforce.pubsub import (
    REPLAY_CORRUPTED,
    PubSubClient,
    Session,
    error_code,
    status_of,
    tenant_of,
)
from adapters.salesforce.stream_events import (
    Schemas,
    decode_position,
    encode_position,
    stream_item,
    topic_of,
)
from mirror.adapter import StreamItem
from mirror.errors import ConfigError, CrmError, TransientError
from mirror.types import ObjectSpec, StreamGap

if TYPE_CHECKING:
    from adapters.salesforce.client import SalesforceConnection

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
_REFUSED_TOPIC = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)


class _Subscription:
    """The channel: its last replay id and the stream currently open on it."""

    def __init__(self, topic: str, replay: bytes | None) -> None:
        self.topic = topic
        self.replay = replay
        self.generation = 0
        self.failures = 0
        self.call: Any = None
        self.requests: queue.Queue[pb.FetchRequest | None] = queue.Queue()

    def close(self) -> None:
        self.requests.put(None)
        if self.call is not None:
            self.call.cancel()
            self.call = None


def _requests(source: queue.Queue[pb.FetchRequest | None]) -> Iterator[pb.FetchRequest]:
    while (request := source.get()) is not None:
        yield request


class ChangeListener:
    """The stream of one ``listen`` call (see the module docstring)."""

    def __init__(
        self,
        connection: SalesforceConnection,
        client: PubSubClient,
        specs: Sequence[ObjectSpec],
        position: str | None,
        stop: threading.Event,
    ) -> None:
        """Listen to ``specs``' channels from ``position`` until ``stop`` is set."""
        self.connection = connection
        self.settings = connection.settings
        self.client = client
        self.stop = stop
        known = decode_position(position)
        self.objects = {spec.name.lower(): spec.name for spec in specs}
        channel = self.settings.cdc_channel
        self.subscriptions = {channel: _Subscription(channel, known.get(channel))}
        self.replays = {t: s.replay for t, s in self.subscriptions.items() if s.replay}
        self.inbox: queue.Queue[tuple[str, _Subscription, int, Any]] = queue.Queue()
        self.schemas = Schemas(lambda schema_id: self.client.schema(schema_id, self._session))
        self._sf: Any = None
        self._session = self._new_session()

    def _new_session(self) -> Session:
        sf = self.connection.client()
        self._sf = sf
        token = str(sf.session_id)
        return Session(token, f"https://{sf.sf_instance}", tenant_of(token, self.settings.org_id))

    def items(self) -> Iterator[StreamItem]:
        """The events and gaps as they come, until ``stop`` is set."""
        try:
            for name in self.objects.values():
                self._check_selected(name)
            for subscription in self.subscriptions.values():
                self._open(subscription)
            while not self.stop.is_set():
                try:
                    kind, subscription, generation, payload = self.inbox.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if generation != subscription.generation:
                    continue
                if kind == "fetched":
                    yield from self._fetched(subscription, payload)
                else:
                    yield from self._recover(subscription, payload)
        finally:
            for subscription in self.subscriptions.values():
                subscription.close()
            self.client.close()

    # --- streams -----------------------------------------------------------------------------

    def _check_selected(self, object_name: str) -> None:
        topic = topic_of(object_name)
        try:
            info = self.client.topic(topic, self._session)
        except grpc.RpcError as error:
            if status_of(error) in _REFUSED_TOPIC:
                info = None
            else:
                raise TransientError(
                    f"Salesforce's Pub/Sub API did not answer for {topic} ({_describe(error)})"
                ) from None
        if info is None or not info.can_subscribe:
            raise ConfigError(
                f"Salesforce refuses the change event channel {topic}: select {object_name} "
                "for Change Data Capture in Setup"
            )

    def _open(self, subscription: _Subscription) -> None:
        subscription.close()
        subscription.generation += 1
        subscription.requests = queue.Queue()
        replay = subscription.replay
        subscription.requests.put(
            pb.FetchRequest(
                topic_name=subscription.topic,
                replay_preset=pb.CUSTOM if replay else pb.LATEST,
                replay_id=replay or b"",
                num_requested=self.settings.stream_batch,
            )
        )
        call = self.client.subscribe(_requests(subscription.requests), self._session)
        subscription.call = call
        threading.Thread(
            target=self._pump,
            args=(subscription, call, subscription.requests, subscription.generation),
            name="cdc-stream",
            daemon=True,
        ).start()

    def _pump(
        self,
        subscription: _Subscription,
        call: Any,
        requests: queue.Queue[pb.FetchRequest | None],
        generation: int,
    ) -> None:
        """Read one stream into the inbox, asking for more events when none are pending."""
        try:
            for response in call:
                self.inbox.put(("fetched", subscription, generation, response))
                if response.pending_num_requested == 0:
                    self.client.count()
                    requests.put(
                        pb.FetchRequest(
                            topic_name=subscription.topic,
                            num_requested=self.settings.stream_batch,
                        )
                    )
        except grpc.RpcError as error:
            self.inbox.put(("failed", subscription, generation, error))
        else:
            self.inbox.put(("failed", subscription, generation, None))
        finally:
            requests.put(None)

    def _fetched(self, subscription: _Subscription, response: Any) -> Iterator[StreamItem]:
        subscription.failures = 0
        for consumer in response.events:
            subscription.replay = bytes(consumer.replay_id)
            self.replays[subscription.topic] = subscription.replay
            position = encode_position(self.replays)
            try:
                record, fields = self.schemas.decode(
                    consumer.event.schema_id, bytes(consumer.event.payload)
                )
            except grpc.RpcError as error:
                raise TransientError(
                    f"Salesforce did not give the schema of a change event on "
                    f"{subscription.topic} ({_describe(error)})"
                ) from None
            except (CrmError, ValueError, EOFError) as error:
                reason = f"undecodable change event ({type(error).__name__})"
                yield StreamGap(None, reason, position)
                continue
            header = record.get("ChangeEventHeader") or {}
            name = self.objects.get(str(header.get("entityName", "")).lower())
            if name is not None:
                yield stream_item(name, record, fields, position)
        if not response.events and response.latest_replay_id:
            # a keepalive: nothing for this channel up to there, so resuming after it is safe
            subscription.replay = bytes(response.latest_replay_id)
            self.replays[subscription.topic] = subscription.replay

    def _recover(self, subscription: _Subscription, error: Any) -> Iterator[StreamItem]:
        if self.stop.is_set():
            return
        status = status_of(error) if error is not None else grpc.StatusCode.UNAVAILABLE
        code = error_code(error) if error is not None else None
        topic = subscription.topic
        if status is grpc.StatusCode.INVALID_ARGUMENT and (
            code == REPLAY_CORRUPTED or subscription.replay is not None
        ):
            log.warning("Salesforce refused the replay id of %s; resuming from now", topic)
            subscription.replay = None
            self.replays.pop(topic, None)
            reason = f"replay id of {topic} refused ({code or status.name}); resumed from now"
            yield StreamGap(None, reason, encode_position(self.replays))
            self._open(subscription)
            return
        if status in _REFUSED_TOPIC:
            raise ConfigError(
                f"Salesforce refuses the change event channel {topic} ({_describe(error)}): "
                "set salesforce.cdc_channel to a channel holding the mirrored objects"
            )
        policy = self.settings.retry_policy
        if policy.gives_up(subscription.failures):
            raise TransientError(
                f"the Salesforce change stream on {topic} keeps failing "
                f"({_describe(error)}); try again later"
            )
        if status is grpc.StatusCode.UNAUTHENTICATED:
            log.info("Salesforce session refused by the Pub/Sub API; logging in again")
            self.connection.renew(expired=self._sf)
            self._session = self._new_session()
        wait = policy.delay(subscription.failures)
        log.warning(
            "Salesforce change stream on %s ended (%s); reconnecting in %.1f s",
            topic, _describe(error), wait,
        )  # fmt: skip
        subscription.failures += 1
        if subscription.replay is None and subscription.failures == 1:
            # no replay id yet (no event since the stream started from now): what was
            # committed while the stream was down cannot be replayed (told once per outage)
            reason = f"stream on {topic} dropped before its first event; resumed from now"
            yield StreamGap(None, reason, encode_position(self.replays))
        if not self.stop.wait(wait):
            self._open(subscription)


def _describe(error: Any) -> str:
    if error is None:
        return "stream ended"
    status = status_of(error)
    code = error_code(error)
    return " ".join(part for part in (status.name if status else None, code) if part)
