"""A Python client of ``svrnty.events.v1.EventService``, shaped like the in-process API::

    async with EventClient("127.0.0.1:6000", token="...") as client:
        async with client.subscribe("billing", consumer_id="worker-1") as deliveries:
            async for delivery in deliveries:
                delivery.event        # decoded into its registered Event class, if known
                await delivery.ack()  # or: await delivery.nack(delay=1.0, reason="...")

Acks are batched: ``ack()`` queues the id and one writer task sends every id queued meanwhile in
one message, so a fast consumer settles hundreds of events per round trip.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from typing import Any, NamedTuple

import grpc
import grpc.aio

from svrnty_events.errors import SvrntyEventsError, UnknownDeliveryError
from svrnty_events.events import JSON, EventTypes, RecordedEvent, encode_payload, event_type_name
from svrnty_events.store import DeadLetter
from svrnty_events.subscriptions import type_names

from .convert import consumer_info_from_proto, dead_letter_from_proto, from_timestamp, to_timestamp
from .options import MIB
from .projections import ProjectionClient
from .proto import events_pb2 as pb
from .proto import events_pb2_grpc as pb_grpc

#: most ids per ack message
ACK_CHUNK = 4096
#: acks arriving faster than one per this interval are gathered for at most this long into one
#: message; a lone ack is sent at once
ACK_DELAY = 0.002
#: how long closing waits for the server to end the stream after unsubscribe
CLOSE_TIMEOUT = 5.0
#: most events in one Publish request that gathers several publish() calls
PUBLISH_CHUNK = 1000
#: statuses of a gathered Publish request that each of its calls may not share: each is sent
#: again alone (a bad event, a request too large together, another call's deadline)
_RETRY_ALONE = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
                          grpc.StatusCode.DEADLINE_EXCEEDED})

_DELIVERY_MODES = {"immediate": pb.DELIVERY_MODE_IMMEDIATE, "batched": pb.DELIVERY_MODE_BATCHED}


class _PublishCall:
    """A publish() call waiting for the next Publish request of its stream."""

    __slots__ = ("messages", "future", "deadline", "size")

    def __init__(self, messages: list[Any], future: asyncio.Future[list[Published]],
                 deadline: float | None) -> None:
        self.messages, self.future, self.deadline = messages, future, deadline
        self.size = sum(m.ByteSize() for m in messages)


class _PublishLane:
    """One stream's publish() calls: whether a request is in flight, and who waits for it."""

    __slots__ = ("busy", "queue", "sender")

    def __init__(self) -> None:
        self.busy = False
        self.queue: deque[_PublishCall] = deque()
        #: the task sending what queued (held here: the event loop keeps only a weak reference)
        self.sender: asyncio.Future[None] | None = None


def _fail(calls: Iterable[_PublishCall], error: BaseException) -> None:
    for call in calls:
        if not call.future.done():
            call.future.set_exception(error)


def _closed() -> RemoteError:
    return RemoteError(grpc.StatusCode.CANCELLED, "the client was closed")


def _too_late() -> RemoteError:
    return RemoteError(grpc.StatusCode.DEADLINE_EXCEEDED,
                       "publish: the timeout passed before it was sent")


class RemoteError(SvrntyEventsError):
    """A call failed with a gRPC status. ``code`` is the ``grpc.StatusCode``, ``details`` the
    server's message (which names the offending field)."""

    def __init__(self, code: grpc.StatusCode, details: str | None) -> None:
        self.code, self.details = code, details or ""
        super().__init__(f"{code.name}: {self.details}")

    @property
    def retryable(self) -> bool:
        return self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)

    @classmethod
    def from_rpc(cls, exc: grpc.aio.AioRpcError) -> RemoteError:
        return cls(exc.code(), exc.details())


class Published(NamedTuple):
    """An event appended by :meth:`EventClient.publish`."""

    id: str
    sequence: int


#: channel arguments of a client on the server's machine: a small HTTP/2 receive window
#: (room for the message being read and 1 KiB more) without bandwidth-delay probing, which only
#: grows the window. A client that falls behind then holds up the server's next write, and the
#: server sends everything that became ready meanwhile in one message, instead of a queue of
#: small messages that each cost both processes a read or write (about 60 µs apiece in
#: grpc.aio). Across a network a large window is what keeps the link busy, so only loopback
#: targets get these.
LOOPBACK_OPTIONS: tuple[tuple[str, Any], ...] = (("grpc.http2.bdp_probe", 0),
                                                 ("grpc.http2.lookahead_bytes", 1024))


def is_loopback(address: str) -> bool:
    """Whether a ``HOST:PORT`` address (or ``unix:PATH``) is on this machine's loopback."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rsplit(":", 1)[0] if not address.startswith("[") else \
        address[1:address.find("]")]
    if host.startswith("ipv4:") or host.startswith("ipv6:"):
        host = host[5:]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_target(target: str) -> tuple[str, bool | None]:
    """``HOST:PORT``, ``grpc://HOST:PORT`` or ``grpcs://HOST:PORT`` -> (address, tls or None)."""
    if target.startswith("grpcs://"):
        return target[len("grpcs://"):].rstrip("/"), True
    if target.startswith("grpc://"):
        return target[len("grpc://"):].rstrip("/"), False
    return target, None


class EventClient(ProjectionClient):
    """A connection to a svrnty-events gRPC endpoint. An async context manager.

    ``target`` is ``HOST:PORT`` (or an endpoint as the host banner prints it, ``grpc://...`` /
    ``grpcs://...``). TLS is used with ``root_certificates`` (PEM bytes), a ``grpcs://`` target
    or ``tls=True`` (system roots). ``token`` is sent as ``authorization: Bearer TOKEN``.
    ``options`` are grpc channel arguments; on a loopback target :data:`LOOPBACK_OPTIONS` are
    added unless ``options`` sets the same keys.
    """

    def __init__(self, target: str, *, token: str | None = None,
                 root_certificates: bytes | None = None, tls: bool | None = None,
                 max_message_bytes: int = 4 * MIB,
                 options: Sequence[tuple[str, Any]] = (),
                 event_types: Iterable[type] = ()) -> None:
        self.address, scheme_tls = parse_target(target)
        #: classes deliveries decode into, before the process-wide Event registry
        self.event_types = EventTypes(event_types)
        self.tls = bool(tls if tls is not None else
                        (scheme_tls if scheme_tls is not None else root_certificates))
        self.token = token
        self.root_certificates = root_certificates
        #: bytes of events one gathered Publish request carries at most (room for the rest)
        self._publish_bytes = max(max_message_bytes - 64 * 1024, max_message_bytes // 2)
        self._options = [("grpc.max_receive_message_length", max_message_bytes),
                         ("grpc.max_send_message_length", max_message_bytes), *options]
        if is_loopback(self.address):
            given = {key for key, _ in options}
            self._options += [o for o in LOOPBACK_OPTIONS if o[0] not in given]
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.EventServiceStub | None = None
        #: per stream: publish() calls waiting for the Publish request in flight to finish
        self._lanes: dict[str, _PublishLane] = {}
        #: Publish requests sent (a gathered request counts once)
        self.publish_requests = 0
        self._closes = 0  # what a publish sender started before a close must not send after it

    # --- connection ------------------------------------------------------------------------

    @property
    def channel(self) -> grpc.aio.Channel:
        """The underlying channel (created on first use), e.g. for other services' stubs."""
        if self._channel is None:
            if self.tls:
                creds = grpc.ssl_channel_credentials(root_certificates=self.root_certificates)
                self._channel = grpc.aio.secure_channel(self.address, creds, self._options)
            else:
                self._channel = grpc.aio.insecure_channel(self.address, self._options)
        return self._channel

    @property
    def stub(self) -> pb_grpc.EventServiceStub:
        if self._stub is None:
            self._stub = pb_grpc.EventServiceStub(self.channel)
        return self._stub

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    async def __aenter__(self) -> EventClient:
        _ = self.channel
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel (ongoing calls are cancelled, publish() calls waiting for a
        request fail with RemoteError CANCELLED). May be called twice."""
        # (a request in flight fails with CANCELLED as the channel closes)
        self._closes += 1
        for lane in self._lanes.values():
            _fail(lane.queue, _closed())
            lane.queue.clear()
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    async def _unary(self, method: str, request: Any, timeout: float | None) -> Any:
        try:
            return await getattr(self.stub, method)(request, metadata=self.metadata,
                                                    timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise RemoteError.from_rpc(exc) from None

    # --- consuming ---------------------------------------------------------------------------

    def subscribe(self, subscription: str, consumer_id: str, *,
                  correlation_id: str | None = None,
                  event_types: Iterable[type | str] | None = None,
                  terminal_event_types: Iterable[type | str] | None = None,
                  window: int | None = None, auto_ack: bool = True,
                  delivery_mode: str = "immediate", max_batch_size: int | None = None,
                  max_batch_delay: float | None = None,
                  metadata: Mapping[str, str] | None = None,
                  start: int | datetime | str | None = None) -> RemoteSubscriber:
        """Consume a subscription: ``async with client.subscribe(...) as deliveries: async for
        delivery in deliveries: ...``. The options mean what they mean for
        ``host.subscribe``; ``window=None`` takes the subscription's. ``delivery_mode`` is
        ``"immediate"`` (send what is ready) or ``"batched"`` (wait up to ``max_batch_delay``
        seconds for ``max_batch_size`` events). Raises RemoteError on entry when the server
        refuses the subscription (NOT_FOUND for an unknown one)."""
        if delivery_mode not in _DELIVERY_MODES:
            raise ValueError(f"delivery_mode: expected one of {', '.join(_DELIVERY_MODES)}, "
                             f"got {delivery_mode!r}")
        request = pb.Subscribe(
            subscription=subscription, consumer_id=consumer_id,
            event_types=type_names(event_types), terminal_event_types=type_names(
                terminal_event_types), delivery_mode=_DELIVERY_MODES[delivery_mode],
            window=window or 0, metadata=dict(metadata or {}),
            max_batch_size=max_batch_size or 0,
            max_batch_delay_ms=round(max_batch_delay * 1000) if max_batch_delay else 0)
        if correlation_id is not None:
            request.correlation_id = correlation_id
        # where a new cursor starts: a sequence, a datetime, "beginning" or "new"
        if isinstance(start, bool) or not (start is None or isinstance(start, (int, datetime))
                                           or start in ("beginning", "new")):
            raise ValueError(f"start: expected a sequence, a datetime, 'beginning' or 'new', "
                             f"got {start!r}")
        if isinstance(start, int):
            request.from_sequence = start
        elif isinstance(start, datetime):
            request.from_time.FromDatetime(start)
        elif start == "beginning":
            request.from_beginning = True
        elif start == "new":
            request.new_only = True
        decoders = EventTypes([t for t in (*(event_types or ()), *(terminal_event_types or ()))
                               if not isinstance(t, str)])
        for cls in self.event_types.classes():
            if event_type_name(cls) not in decoders:
                decoders.add(cls)
        return RemoteSubscriber(self, request, auto_ack=auto_ack, event_types=decoders)

    # --- publishing --------------------------------------------------------------------------

    async def publish(self, stream: str, events: Sequence[Any], *,
                      correlation_id: str | None = None, headers: Mapping[str, str] | None = None,
                      timeout: float | None = None) -> list[Published]:
        """Append events to a ``cross_service`` stream of the server. Each item is a user
        ``Event`` (encoded as JSON, under ``correlation_id``: a new id shared by the batch when
        not given) or a ``RecordedEvent``. Raises RemoteError: PERMISSION_DENIED for an internal
        stream, NOT_FOUND for an unknown one, INVALID_ARGUMENT naming a bad field.

        A call made while a Publish request to the same stream is in flight goes with the calls
        made meanwhile in the next request (at most ``PUBLISH_CHUNK`` events, and what fits in
        a message), so many concurrent one-event publishers cost a request per round trip, not
        one per event; a call alone goes at once. Each call still gets its own result: when a
        gathered request is refused for a bad event, for its size or for the deadline of one of
        its calls, each call is sent again on its own (appends are idempotent by event id), so
        only the call at fault fails. ``timeout`` counts from the call, waiting included."""
        messages = self._new_events(events, correlation_id, headers)
        lane = self._lanes.get(stream)
        if lane is None:
            lane = self._lanes[stream] = _PublishLane()
        if not lane.busy:  # nothing in flight for the stream: this call goes now, alone
            lane.busy = True
            try:
                return await self._publish_now(stream, messages, timeout)
            finally:
                lane.busy = False
                self._send_queued(stream, lane)
        loop = asyncio.get_running_loop()
        call = _PublishCall(messages, loop.create_future(),
                            None if timeout is None else loop.time() + timeout)
        lane.queue.append(call)
        try:
            if call.deadline is None:
                return await call.future
            try:
                return await asyncio.wait_for(asyncio.shield(call.future),
                                              max(call.deadline - loop.time(), 0.0))
            except TimeoutError:
                if call not in lane.queue:  # sent: its request carries its deadline
                    return await call.future
                lane.queue.remove(call)
                raise _too_late() from None
        except asyncio.CancelledError:
            if call in lane.queue:  # not sent: it never will be
                lane.queue.remove(call)
            raise

    def _new_events(self, events: Sequence[Any], correlation_id: str | None,
                    headers: Mapping[str, str] | None) -> list[Any]:
        correlation = correlation_id or str(uuid.uuid4())
        extra = dict(headers or {})
        messages = []
        for event in events:
            if isinstance(event, RecordedEvent):
                messages.append(pb.NewEvent(
                    id=event.id, type=event.type, correlation_id=event.correlation_id,
                    data=event.data, content_type=event.content_type,
                    headers={**extra, **event.headers}, timestamp=to_timestamp(event.timestamp)))
            else:
                messages.append(pb.NewEvent(
                    id=str(uuid.uuid4()), type=event_type_name(type(event)),
                    correlation_id=correlation, data=encode_payload(event), content_type=JSON,
                    headers=extra))
        return messages

    async def _publish_now(self, stream: str, messages: list[Any], timeout: float | None
                           ) -> list[Published]:
        self.publish_requests += 1
        response = await self._unary("Publish", pb.PublishRequest(stream=stream,
                                                                  events=messages), timeout)
        return [Published(e.id, e.sequence) for e in response.events]

    def _send_queued(self, stream: str, lane: _PublishLane) -> None:
        if lane.queue and not lane.busy:
            lane.busy = True
            lane.sender = asyncio.ensure_future(self._send_gathered(stream, lane))

    async def _send_gathered(self, stream: str, lane: _PublishLane) -> None:
        """Send what queued for ``stream``, as few requests as ``PUBLISH_CHUNK`` allows, until
        nothing is queued."""
        closes = self._closes
        try:
            while lane.queue:
                calls: list[_PublishCall] = []
                count = size = 0
                while lane.queue and (not calls or (
                        count + len(lane.queue[0].messages) <= PUBLISH_CHUNK
                        and size + lane.queue[0].size <= self._publish_bytes)):
                    call = lane.queue.popleft()
                    if not call.future.done():  # (a caller cancelled meanwhile)
                        calls.append(call)
                        count += len(call.messages)
                        size += call.size
                if calls:
                    try:
                        await self._send_calls(stream, calls, closes)
                    except BaseException as exc:  # noqa: BLE001 - none of them may hang
                        _fail(calls, exc if isinstance(exc, RemoteError) else RemoteError(
                            grpc.StatusCode.CANCELLED, f"publish did not complete: {exc!r}"))
                        raise
        finally:
            lane.busy = False
            lane.sender = None
            self._send_queued(stream, lane)  # (queued while the last step ran)

    async def _send_calls(self, stream: str, calls: list[_PublishCall], closes: int) -> None:
        if closes != self._closes:  # closed since they were queued: not sent on a new channel
            _fail(calls, _closed())
            return
        now = asyncio.get_running_loop().time()
        late = [c for c in calls if c.deadline is not None and c.deadline <= now]
        _fail(late, _too_late())  # their timeout passed while they waited
        calls = [c for c in calls if c not in late]
        if not calls:
            return
        deadlines = [c.deadline for c in calls if c.deadline is not None]
        messages = [m for c in calls for m in c.messages]
        try:
            published = await self._publish_now(
                stream, messages, min(deadlines) - now if deadlines else None)
        except RemoteError as exc:
            if len(calls) > 1 and exc.code in _RETRY_ALONE:
                # nothing of the request was appended, or appending again is harmless: each
                # call alone, so that only the call at fault fails (with its own index)
                for call in calls:
                    await self._send_calls(stream, [call], closes)
                return
            _fail(calls, exc)
            return
        at = 0
        for call in calls:
            n = len(call.messages)
            if not call.future.done():
                call.future.set_result(published[at:at + n])
            at += n

    # --- dead letters and introspection ----------------------------------------------------------

    async def dead_letters(self, subscription: str, *, limit: int | None = None,
                           timeout: float | None = None) -> list[DeadLetter]:
        """The subscription's dead-letter queue (as ``host.dead_letters``)."""
        response = await self._unary("ListDeadLetters", pb.ListDeadLettersRequest(
            subscription=subscription, limit=limit or 0), timeout)
        return [dead_letter_from_proto(d) for d in response.dead_letters]

    async def replay_dead_letters(self, subscription: str,
                                  event_ids: Sequence[str] | None = None, *,
                                  timeout: float | None = None) -> int:
        """Put dead letters (all, or ``event_ids``) back for delivery; returns how many."""
        response = await self._unary("ReplayDeadLetters", pb.DeadLetterSelection(
            subscription=subscription, event_ids=list(event_ids or ())), timeout)
        return response.count

    async def purge_dead_letters(self, subscription: str,
                                 event_ids: Sequence[str] | None = None, *,
                                 timeout: float | None = None) -> int:
        """Delete dead letters (all, or ``event_ids``); returns how many."""
        response = await self._unary("PurgeDeadLetters", pb.DeadLetterSelection(
            subscription=subscription, event_ids=list(event_ids or ())), timeout)
        return response.count

    async def stream_info(self, stream: str, *, timeout: float | None = None
                          ) -> dict[str, Any]:
        """Name, type, delivery semantics, scope, length and sequences of a stream."""
        r = await self._unary("GetStreamInfo", pb.GetStreamInfoRequest(stream=stream), timeout)
        return {"name": r.name, "type": r.type, "delivery_semantics": r.delivery_semantics,
                "scope": r.scope, "length": r.length, "first_sequence": r.first_sequence,
                "next_sequence": r.next_sequence, "metadata": dict(r.metadata)}

    async def consumers(self, subscription: str, *, timeout: float | None = None
                        ) -> list[dict[str, Any]]:
        """The consumers connected to a subscription (as ``host.consumers``)."""
        r = await self._unary("ListConsumers", pb.ListConsumersRequest(
            subscription=subscription), timeout)
        return [consumer_info_from_proto(c) for c in r.consumers]


    async def subscription_stats(self, subscription: str | None = None, *,
                                 timeout: float | None = None) -> list[dict[str, Any]]:
        """As ``host.subscription_stats`` on the server's host."""
        r = await self._unary("GetSubscriptionStats", pb.SubscriptionStatsRequest(
            subscription=subscription or ""), timeout)
        return [{"subscription": st.subscription, "stream": st.stream, "mode": st.mode,
                 "lag": st.lag if st.lag_known else None,
                 "groups": {g.group: g.lag for g in st.groups} if st.lag_known else None,
                 "in_flight": st.in_flight, "consumers": st.consumers,
                 "dead_letters": st.dead_letters,
                 "oldest_dead_letter_age": st.oldest_dead_letter_age_seconds}
                for st in r.subscriptions]

class RemoteDelivery:
    """One event handed to a remote consumer; the same attributes as the in-process
    :class:`svrnty_events.Delivery`."""

    __slots__ = ("message", "subscriber", "settled", "_event")

    def __init__(self, message: pb.DeliveredEvent, subscriber: RemoteSubscriber) -> None:
        self.message = message
        self.subscriber = subscriber
        self.settled = False
        self._event: Any = None

    @property
    def id(self) -> str:
        return self.message.id

    @property
    def type(self) -> str:
        return self.message.type

    @property
    def correlation_id(self) -> str:
        return self.message.correlation_id

    @property
    def stream(self) -> str:
        return self.message.stream

    @property
    def sequence(self) -> int:
        return self.message.sequence

    @property
    def timestamp(self) -> datetime:
        return from_timestamp(self.message.timestamp)

    @property
    def attempt(self) -> int:
        return self.message.attempt

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.message.headers)

    @property
    def data(self) -> bytes:
        return self.message.data

    @property
    def content_type(self) -> str:
        return self.message.content_type or JSON

    @property
    def subscription(self) -> str:
        return self.subscriber.subscription

    @property
    def terminal(self) -> bool:
        return self.subscriber.completed_event_id == self.message.id

    @property
    def event(self) -> Any:
        """The payload decoded into its registered Event class (plain JSON values if the type
        is not known in this process; bytes for a non-JSON content type)."""
        if self._event is None:
            self._event = self.subscriber.event_types.decode(self.message.type, self.message.data,
                                                             self.content_type)
        return self._event

    @property
    def record(self) -> RecordedEvent:
        """The event as the kernel's envelope."""
        from .convert import recorded_event

        return recorded_event(self.message)

    async def ack(self) -> None:
        """Settle the event (sent in a batch with other acks). Raises UnknownDeliveryError if
        it was settled already."""
        self.subscriber._ack(self)

    async def nack(self, delay: float | None = None, reason: str | None = None) -> None:
        """Give the event back for redelivery after ``delay`` seconds (default: the
        subscription's backoff); past its max delivery attempts it is dead-lettered with
        ``reason``."""
        self.subscriber._nack(self, delay, reason)

    async def in_progress(self) -> None:
        """Say the consumer is still working on the event: the server moves its visibility
        deadline to a full visibility timeout from now (JetStream's +WPI)."""
        self.subscriber._in_progress(self)

    @property
    def partition(self) -> int:
        return self.message.partition

    def __repr__(self) -> str:
        return (f"<RemoteDelivery {self.type} id={self.id} seq={self.sequence} "
                f"attempt={self.attempt}>")


def _delivery_spans() -> Any:
    try:
        from svrnty_events_telemetry.tracing import delivery_spans
    except ImportError:  # tracing comes with svrnty-events-telemetry
        return None
    return delivery_spans()


class RemoteSubscriber:
    """A Subscribe stream as an async context manager and async iterator of RemoteDelivery.

    With ``auto_ack=True`` each delivery is acked when the loop asks for the next one, and
    nacked (with the exception as reason) if the loop body raised inside ``async with``.
    Iteration ends when a terminal event completed the consumer; it raises RemoteError when the
    server ends the stream with an error status (after the deliveries that came before it).

    When the server stops gracefully it says ``draining`` (``draining`` becomes True): the
    deliveries still buffered, which no code saw, are dropped (the server releases them for
    redelivery when the stream ends), the acks and nacks of what code was handed go out, and
    once code settled all of it (with automatic acks: when the loop asks for the next delivery)
    the subscriber unsubscribes, so the server ends the stream without waiting out its drain
    time. Iteration then raises RemoteError UNAVAILABLE, as for any stop: retry against a
    running server.

    One reader task takes the server's messages into a buffer as they come (a message costs
    one read, however many events it carries, and no task of its own), and one writer task
    sends the acks, nacks and heartbeats.
    """

    def __init__(self, client: EventClient, request: pb.Subscribe, *, auto_ack: bool,
                 event_types: EventTypes | None = None) -> None:
        self.client = client
        self.event_types = event_types if event_types is not None else client.event_types
        self.request = request
        self.auto_ack = auto_ack
        self.subscription = request.subscription
        self.consumer_id = request.consumer_id
        self.subscribed: pb.Subscribed | None = None
        self.completed = False
        self.completed_event_id: str | None = None
        #: the server is stopping gracefully (see the class docstring)
        self.draining = False
        #: ids of deliveries received and given up before code saw them (sent on unsubscribe)
        self._unprocessed: list[str] = []
        self._call: Any = None
        self._buffer: deque[RemoteDelivery] = deque()
        self._last: RemoteDelivery | None = None
        self._acks: list[str] = []
        self._control: list[pb.SubscribeRequest] = []
        self._unsubscribe = False
        #: resolved when the writer has something to send (set while it waits)
        self._wake: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        #: resolved when the reader added to the buffer or the stream ended (set while the
        #: iterator waits for it)
        self._arrived: asyncio.Future[None] | None = None
        #: the stream ended (the reader is done); the buffer may still hold deliveries
        self._stream_ended = False
        #: why the stream ended, if not with status OK
        self._error: RemoteError | None = None
        #: the iterator reached the end of the stream (after every buffered delivery)
        self._ended = False
        self._closed = False
        self._held: dict[str, RemoteDelivery] = {}
        #: ``process`` spans when svrnty-events-telemetry is installed and a tracer provider
        #: is configured in this process (else None: nothing is traced)
        self._spans = _delivery_spans()

    # --- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> pb.Subscribed:
        """Send the subscribe message and wait for the confirmation."""
        if self.subscribed is not None:
            return self.subscribed
        self._call = self.client.stub.Subscribe(metadata=self.client.metadata)
        try:
            await self._call.write(pb.SubscribeRequest(subscribe=self.request))
        except grpc.aio.AioRpcError as exc:
            raise RemoteError.from_rpc(exc) from None
        except asyncio.InvalidStateError:
            pass  # the call already ended: read() below raises its status
        try:
            response = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            self._ended = self._stream_ended = True
            raise RemoteError.from_rpc(exc) from None
        if response is grpc.aio.EOF:
            self._ended = self._stream_ended = True
            code = await self._call.code()
            if code != grpc.StatusCode.OK:
                raise RemoteError(code, await self._call.details())
        if response is grpc.aio.EOF or response.WhichOneof("response") != "subscribed":
            self._call.cancel()
            raise RemoteError(grpc.StatusCode.INTERNAL,
                              "protocol: expected `subscribed` as the first response")
        self.subscribed = response.subscribed
        self._reader = asyncio.ensure_future(self._read_loop())
        self._writer = asyncio.ensure_future(self._write_loop(
            max(response.subscribed.heartbeat_timeout_seconds / 3, 0.05)))
        return self.subscribed

    async def __aenter__(self) -> RemoteSubscriber:
        await self.open()
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        last = self._last
        if self.auto_ack and self._still_held(last) and not self._ended:
            if exc is None or isinstance(exc, GeneratorExit):
                self._ack(last)
            elif isinstance(exc, Exception):
                self._nack(last, None, f"{type(exc).__name__}: {exc}")
        await self.aclose()

    async def aclose(self) -> None:
        """Send the queued acks and unsubscribe (events still held go back to the
        subscription), wait for the server to end the stream, close. May be called twice."""
        if self._closed:
            return
        self._closed = True
        if self._spans is not None:
            self._spans.end_consumer(self.subscription, self.consumer_id, "unsubscribed")
        call = self._call
        try:
            if self._writer is not None and not self._stream_ended:
                self._drop_buffer()
                self._unsubscribe = True
                self._poke()
                with suppress(asyncio.TimeoutError, TimeoutError, Exception):
                    await asyncio.wait_for(asyncio.shield(self._writer), CLOSE_TIMEOUT)
                # read to the status, so the acks are processed before the call goes away
                if self._reader is not None:
                    with suppress(asyncio.TimeoutError, TimeoutError, Exception):
                        await asyncio.wait_for(asyncio.shield(self._reader), CLOSE_TIMEOUT)
        finally:
            for task in (self._writer, self._reader):
                if task is not None:
                    task.cancel()
                    with suppress(asyncio.CancelledError, Exception):
                        await task
            if call is not None and not call.done():
                call.cancel()

    # --- reading -----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        """Take the server's messages into the buffer until the stream ends."""
        call = self._call
        held, buffer = self._held, self._buffer
        try:
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    code = await call.code()
                    if code != grpc.StatusCode.OK:
                        self._error = RemoteError(code, await call.details())
                    return
                kind = response.WhichOneof("response")
                if kind == "events":
                    for m in response.events.events:
                        d = held[m.id] = RemoteDelivery(m, self)
                        buffer.append(d)
                elif kind == "completed":
                    self.completed = True
                    self.completed_event_id = response.completed.event_id or None
                elif kind == "draining":
                    self._drain()
                arrived = self._arrived
                if arrived is not None and not arrived.done():
                    arrived.set_result(None)
        except grpc.aio.AioRpcError as exc:
            self._error = RemoteError.from_rpc(exc)
        except asyncio.CancelledError:
            self._error = RemoteError(grpc.StatusCode.CANCELLED, "the stream was cancelled")
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # aclose stops the reader; otherwise the call itself was cancelled
        finally:
            self._stream_ended = True
            arrived = self._arrived
            if arrived is not None and not arrived.done():
                arrived.set_result(None)

    def _drain(self) -> None:
        """The server stops sending and releases, at the stream's end, what this consumer still
        holds: hand out nothing more, leave once code settled what it was handed."""
        self.draining = True
        self._drop_buffer()
        if self._unprocessed:  # given back at once, not only when this subscriber leaves
            self._control.append(pb.SubscribeRequest(release=pb.Release(
                event_ids=self._unprocessed)))
            self._unprocessed = []
            self._poke()
        self._leave_if_settled()

    def _drop_buffer(self) -> None:
        """Deliveries buffered and never handed to code: given up, their ids sent with the
        unsubscribe, so the server releases them with no attempt counted."""
        held = self._held
        for d in self._buffer:
            if held.get(d.id) is d:
                del held[d.id]
                self._unprocessed.append(d.id)
        self._buffer.clear()

    def _leave_if_settled(self) -> None:
        # draining, and code settled everything it was handed: the writer sends the acks and
        # nacks queued, then unsubscribes, and the server ends the stream at once
        if self.draining and not self._held and not self._unsubscribe:
            self._unsubscribe = True
            self._poke()

    # --- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> RemoteSubscriber:
        return self

    async def __anext__(self) -> RemoteDelivery:
        delivery = await self._next(None)
        if delivery is None:
            raise StopAsyncIteration
        return delivery

    async def next(self, timeout: float | None = None) -> RemoteDelivery | None:
        """The next delivery, or None after ``timeout`` seconds without one (or at the end).
        A timeout leaves the stream intact."""
        return await self._next(timeout)

    async def _next(self, timeout: float | None) -> RemoteDelivery | None:
        if self.subscribed is None:
            await self.open()
        last = self._last
        if self.auto_ack and self._still_held(last) and not self._ended:
            self._ack(last)
        if not self._buffer and not await self._wait_for_buffer(timeout):
            return None
        self._last = delivery = self._buffer.popleft()
        if self._spans is not None:
            self._spans.start(delivery, self.subscription, self.consumer_id)
        return delivery

    async def _wait_for_buffer(self, timeout: float | None) -> bool:
        """Wait until the buffer holds a delivery: False after ``timeout`` or at the end;
        RemoteError once the stream ended with an error status (and the buffer is empty)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._buffer:
            if self._ended:
                return False
            if self._stream_ended:
                self._ended = True
                if self._error is not None:
                    raise self._error
                return False
            if self.completed:
                # the terminal event and all before it were handed out: finish cleanly
                await self.aclose()
                return False
            arrived = self._arrived = loop.create_future()
            timer = None
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                timer = loop.call_later(remaining, _resolve, arrived)
            try:
                await arrived
            finally:
                self._arrived = None
                if timer is not None:
                    timer.cancel()
        return True

    # --- settling ----------------------------------------------------------------------------

    def _still_held(self, delivery: RemoteDelivery | None) -> bool:
        """``delivery`` is not settled and not superseded by a redelivery of its event (its
        visibility deadline passed while it waited, so the server handed it out again): what
        an automatic ack or nack settles. A superseded one is skipped, as in-process."""
        return delivery is not None and not delivery.settled \
            and self._held.get(delivery.id) is delivery

    def _settle(self, delivery: RemoteDelivery) -> None:
        # settled already, or superseded by a redelivery of the same event: the server does
        # not hold it for this delivery any more (the in-process API raises the same)
        if delivery.settled or self._held.get(delivery.id) is not delivery:
            raise UnknownDeliveryError([delivery.id])
        if self._closed or self._ended:
            raise RemoteError(grpc.StatusCode.FAILED_PRECONDITION,
                              "the subscription stream is closed; its events were released")
        del self._held[delivery.id]
        delivery.settled = True
        self._leave_if_settled()

    def _poke(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _ack(self, delivery: RemoteDelivery) -> None:
        self._settle(delivery)
        self._acks.append(delivery.id)
        self._poke()
        if self._spans is not None:
            self._spans.end(self.subscription, self.consumer_id, delivery.id)

    def _nack(self, delivery: RemoteDelivery, delay: float | None, reason: str | None) -> None:
        self._settle(delivery)
        nack = pb.Nack(event_id=delivery.id, reason=reason or "")
        if delay is not None:
            nack.delay_seconds = delay
        self._control.append(pb.SubscribeRequest(nack=nack))
        self._poke()
        if self._spans is not None:
            self._spans.end(self.subscription, self.consumer_id, delivery.id, outcome="nack",
                            error=f"nacked: {reason}" if reason else "nacked",
                            attributes={"reason": reason or ""})

    def _in_progress(self, delivery: RemoteDelivery) -> None:
        if delivery.settled or self._held.get(delivery.id) is not delivery:
            raise UnknownDeliveryError([delivery.id])
        self._control.append(pb.SubscribeRequest(
            in_progress=pb.InProgress(event_ids=[delivery.id])))
        self._poke()

    async def _write_loop(self, heartbeat_interval: float) -> None:
        """One writer: sends every ack queued since its last write in one message (acks batch
        themselves while a write is in flight), then nacks, heartbeats when idle, and finally
        the unsubscribe."""
        call = self._call
        loop = asyncio.get_running_loop()
        last_ack = -math.inf
        try:
            while True:
                if not (self._acks or self._control or self._unsubscribe):
                    wake = self._wake = loop.create_future()
                    timer = loop.call_later(heartbeat_interval, _resolve, wake)
                    try:
                        await wake
                    finally:
                        self._wake = None
                        timer.cancel()
                    if not (self._acks or self._control or self._unsubscribe):
                        await call.write(pb.SubscribeRequest(heartbeat=pb.Heartbeat()))
                        continue
                # acks that come faster than one per ACK_DELAY wait up to ACK_DELAY to go
                # together (one message for many events); a lone ack goes at once
                since = loop.time() - last_ack
                if since < ACK_DELAY and len(self._acks) < ACK_CHUNK and not self._control \
                        and not self._unsubscribe:
                    await asyncio.sleep(ACK_DELAY - since)
                acks, self._acks = self._acks, []
                control, self._control = self._control, []
                for i in range(0, len(acks), ACK_CHUNK):
                    await call.write(pb.SubscribeRequest(ack=pb.Ack(
                        event_ids=acks[i:i + ACK_CHUNK])))
                if acks:
                    last_ack = loop.time()
                for request in control:
                    await call.write(request)
                if self._unsubscribe and not self._acks and not self._control:
                    await call.write(pb.SubscribeRequest(unsubscribe=pb.Unsubscribe(
                        unprocessed_event_ids=self._unprocessed)))
                    await call.done_writing()
                    return
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return  # the call ended: the reading side reports its status


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
