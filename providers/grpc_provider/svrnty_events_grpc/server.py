"""The gRPC delivery provider: ``EventService`` over the host's subscription engine.

The service is an adapter: filters, acks, redelivery, dead letters and flow control are the
engine's (``host.open_consumer``), so a remote consumer behaves exactly as an in-process one.
Throughput comes from batching both ways: every ``events`` message carries what one engine
fetch returned (up to ``max_batch``), and every ``ack`` message settles many ids in one store call.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import msgspec
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from svrnty_events.errors import (
    ConfigError,
    ConsumerClosedError,
    StoreUnavailableError,
    StreamScopeError,
    SvrntyEventsError,
    UnknownDeliveryError,
    UnknownStreamError,
    UnknownSubscriptionError,
)
from svrnty_events.events import JSON, RecordedEvent, new_event_id, utcnow
from svrnty_events.subscriptions import Consumer, ConsumerLimitError, Delivery

from . import hookspecs, wire
from .convert import dead_letter_to_proto, from_timestamp
from .options import GrpcOptions
from .projections import ProjectionAdmin
from .proto import events_pb2 as pb
from .proto import events_pb2_grpc as pb_grpc

log = logging.getLogger("svrnty_events.grpc")

EVENT_SERVICE = pb.DESCRIPTOR.services_by_name["EventService"].full_name
#: services reachable without a token
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
#: BATCHED mode: default wait for a batch to fill
DEFAULT_BATCH_DELAY = 0.010
#: room left in a message for the envelope of a batch
_MESSAGE_SLACK = 1024

_json_decoder = msgspec.json.Decoder()


class StreamAbort(Exception):
    """Ends a Subscribe stream with a status; the message names the offending field."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


def _undecodable(exc: DecodeError) -> StreamAbort:
    # the client sent bytes that are not a SubscribeRequest: its error (not retryable), so it
    # is not logged as a failure of the server
    return StreamAbort(grpc.StatusCode.INVALID_ARGUMENT,
                       f"request: cannot decode SubscribeRequest: {exc}")


def _closed_status(exc: ConsumerClosedError) -> StreamAbort:
    reason = str(exc) or "consumer is closed"
    if reason.startswith("replaced"):
        # another connection took this consumer id: retrying would kick it out in turn
        return StreamAbort(grpc.StatusCode.ABORTED, f"consumer_id: {reason}")
    return StreamAbort(grpc.StatusCode.UNAVAILABLE, f"{reason}; retry")


class _Sender:
    """What a stream's sender is doing, for a drain that stops it between two batches."""

    __slots__ = ("writing", "stop", "gathered")

    def __init__(self) -> None:
        #: a batch was taken from the consumer and is not written yet: not to be cancelled
        self.writing = False
        #: batched delivery: the batch taken so far while more is waited for (a drain cancels
        #: that wait and writes this batch itself)
        self.gathered: list[Delivery] | None = None
        #: return once the batch being written is out
        self.stop = False


class EventServicer(ProjectionAdmin, pb_grpc.EventServiceServicer):
    """``svrnty.events.v1.EventService`` over an :class:`EventStreamingHost`."""

    def __init__(self, host: Any, options: GrpcOptions, stopping: asyncio.Event) -> None:
        self.host = host
        self.options = options
        self.stopping = stopping
        #: how long each Subscribe stream drains once ``stopping`` is set (set by the provider's
        #: stop before it sets ``stopping``)
        self.drain_timeout = 0.0

    # --- Subscribe ---------------------------------------------------------------------------

    async def Subscribe(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        try:
            first = await context.read()
        except DecodeError as exc:
            garbage = _undecodable(exc)
            await context.abort(garbage.code, garbage.details)
        if first is grpc.aio.EOF:
            return
        kind = first.WhichOneof("request")
        if kind != "subscribe":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"request: the first message must be `subscribe`, got "
                                f"`{kind or 'an empty request'}`")
        req = first.subscribe
        consumer = await self._open(req, context)
        reason = "disconnected"
        status: StreamAbort | None = None
        try:
            reason = await self._serve(req, consumer, context)
        except StreamAbort as exc:
            status, reason = exc, exc.details
        except ConsumerClosedError as exc:
            status = _closed_status(exc)
            reason = status.details
        except StoreUnavailableError as exc:
            status = StreamAbort(grpc.StatusCode.UNAVAILABLE, f"store unavailable: {exc}")
            reason = status.details
        except Exception as exc:
            log.exception("Subscribe of %s by %s failed", req.subscription, req.consumer_id)
            status = StreamAbort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
            reason = status.details
        finally:
            # on any exit, cancellation included: what the consumer holds goes back at once
            await self._close(consumer, reason)
        if status is not None:
            await context.abort(status.code, status.details)

    async def _open(self, req: pb.Subscribe, context: grpc.aio.ServicerContext) -> Consumer:
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        if not req.subscription:
            await context.abort(invalid, "subscribe.subscription: required")
        if not req.consumer_id:
            await context.abort(invalid, "subscribe.consumer_id: required")
        if req.HasField("correlation_id") and not req.correlation_id:
            await context.abort(invalid, "subscribe.correlation_id: must not be empty when set")
        if self.stopping.is_set():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server is stopping; retry")
        try:
            config = self.host.subscription_config(req.subscription)
            return await self.host.open_consumer(
                req.subscription, req.consumer_id,
                correlation_id=req.correlation_id if req.HasField("correlation_id") else None,
                event_types=list(req.event_types) or None,
                terminal_event_types=list(req.terminal_event_types) or None,
                window=req.window or None, metadata=dict(req.metadata),
                heartbeat_timeout=config.heartbeat_timeout, start=_start(req))
        except UnknownSubscriptionError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"subscribe.subscription: {exc}")
        except ConsumerLimitError as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"subscribe.subscription: {exc}")
        except ConsumerClosedError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}; retry")
        except (ValueError, SvrntyEventsError) as exc:
            await context.abort(invalid, f"subscribe: {exc}")
        raise AssertionError("unreachable")  # context.abort raises

    async def _serve(self, req: pb.Subscribe, consumer: Consumer,
                     context: grpc.aio.ServicerContext) -> str:
        """Run the sender and the reader of one stream until one ends; return why."""
        config = consumer.config
        batch_size = min(req.max_batch_size or self.options.max_batch, self.options.max_batch)
        await context.write(pb.SubscribeResponse(subscribed=pb.Subscribed(
            subscription=consumer.subscription, consumer_id=consumer.consumer_id,
            stream=consumer.stream, window=consumer.window,
            max_batch_size=batch_size, heartbeat_timeout_seconds=config.heartbeat_timeout)))
        settled = asyncio.Event()
        batched = req.delivery_mode == pb.DELIVERY_MODE_BATCHED
        delay = req.max_batch_delay_ms / 1000 if req.max_batch_delay_ms else DEFAULT_BATCH_DELAY
        state = _Sender()
        reader = asyncio.ensure_future(self._read_loop(consumer, context, settled))
        sender = asyncio.ensure_future(self._send_loop(
            consumer, context, settled, reader, state, batch_size, delay if batched else None))
        stopping = asyncio.ensure_future(self.stopping.wait())
        tasks = (reader, sender, stopping)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                await self._drain(consumer, context, settled, reader, sender, state)
                raise StreamAbort(grpc.StatusCode.UNAVAILABLE, "server is stopping; retry")
            # a reader that ended cleanly (unsubscribe / end of requests) ends the stream, as
            # does a sender that completed; an error of either one is the stream's status
            done = reader if reader.done() else sender
            return done.result()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with suppress(asyncio.CancelledError, Exception):
                    await task

    async def _drain(self, consumer: Consumer, context: grpc.aio.ServicerContext,
                     settled: asyncio.Event, reader: asyncio.Future[str],
                     sender: asyncio.Future[str], state: _Sender) -> None:
        """The server is stopping: stop sending, say ``draining``, and let the reader apply
        what the client sends back until the consumer holds nothing it was sent, the client
        leaves, or ``drain_timeout`` passes. At-most-once consumers hold nothing: no drain."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout
        if self.drain_timeout <= 0 or consumer.at_most_once or reader.done() or consumer.closed:
            return
        # between two batches: a fetch that waits is cancelled (what its claim brings stays
        # prefetched, released unseen at the close); a batch being written goes out first
        state.stop = True
        if not state.writing or state.gathered is not None:
            sender.cancel()
        await asyncio.wait((sender,), timeout=max(deadline - loop.time(), 0.0))
        if sender.done() and state.gathered:  # its wait for more was cancelled: write the
            batch, state.gathered = state.gathered, None  # batch it had taken
            try:
                await asyncio.wait_for(self._send_batch(consumer, context, batch),
                                       max(deadline - loop.time(), 0.0))
            except Exception:  # noqa: BLE001 - the call ended, or the deadline passed: done
                return
        if not sender.done() or reader.done() \
                or len(consumer.held) <= len(consumer.prefetched):
            # a write the client does not read held the sender past the deadline, the client
            # left, or nothing it was sent is left to settle
            return
        remaining = max(deadline - loop.time(), 0.0)
        try:  # (a client that stopped reading holds the write up: bounded as the rest)
            await asyncio.wait_for(context.write(pb.SubscribeResponse(
                draining=pb.Draining(grace_seconds=remaining))), remaining)
        except Exception:  # noqa: BLE001 - the call ended, or the deadline passed: done
            return
        await _settling(consumer, reader, settled, deadline)

    async def _read_loop(self, consumer: Consumer, context: grpc.aio.ServicerContext,
                         settled: asyncio.Event) -> str:
        try:
            return await self._read_requests(consumer, context, settled)
        finally:
            settled.set()  # whoever waits for settlements stops waiting for this reader

    async def _read_requests(self, consumer: Consumer, context: grpc.aio.ServicerContext,
                             settled: asyncio.Event) -> str:
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        while True:
            try:
                request = await context.read()
            except DecodeError as exc:
                raise _undecodable(exc) from None
            if request is grpc.aio.EOF:
                return "end of requests"
            kind = request.WhichOneof("request")
            if kind == "ack":
                try:
                    await consumer.ack(request.ack.event_ids)
                except UnknownDeliveryError as exc:
                    if consumer.closed:
                        raise ConsumerClosedError(consumer.close_reason or "closed") from None
                    raise StreamAbort(invalid, f"ack.event_ids: {exc}") from None
                settled.set()
            elif kind == "nack":
                nack = request.nack
                if not nack.event_id:
                    raise StreamAbort(invalid, "nack.event_id: required")
                delay = nack.delay_seconds if nack.HasField("delay_seconds") else None
                try:
                    await consumer.nack(nack.event_id, delay=delay, reason=nack.reason or None)
                except ValueError:  # the engine refuses a delay that is not finite and >= 0
                    raise StreamAbort(invalid, "nack.delay_seconds: must be a finite number "
                                               ">= 0") from None
                except UnknownDeliveryError as exc:
                    if consumer.closed:
                        raise ConsumerClosedError(consumer.close_reason or "closed") from None
                    raise StreamAbort(invalid, f"nack.event_id: {exc}") from None
                settled.set()
            elif kind == "in_progress":
                try:
                    await consumer.extend(request.in_progress.event_ids)
                except UnknownDeliveryError as exc:
                    if consumer.closed:
                        raise ConsumerClosedError(consumer.close_reason or "closed") from None
                    # its deadline had passed and another consumer may have it: not an error
                    # of the request, the client learns it when its ack is refused
                    log.info("in_progress for events %s no longer holds: %s",
                             consumer.consumer_id, exc)
            elif kind == "heartbeat":
                consumer.heartbeat()
            elif kind == "release":
                await consumer.release_unseen(request.release.event_ids)
            elif kind == "unsubscribe":
                unseen = request.unsubscribe.unprocessed_event_ids
                if unseen:
                    await consumer.release_unseen(unseen)
                return "unsubscribed"
            elif kind == "subscribe":
                raise StreamAbort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f'subscribe: this stream is already subscribed to "{consumer.subscription}" '
                    f'as consumer "{consumer.consumer_id}"; open another stream to subscribe '
                    "again")
            else:
                raise StreamAbort(invalid, "request: empty message; set one of subscribe, ack, "
                                           "nack, in_progress, heartbeat, release, "
                                           "unsubscribe")

    async def _send_loop(self, consumer: Consumer, context: grpc.aio.ServicerContext,
                         settled: asyncio.Event, reader: asyncio.Future[str], state: _Sender,
                         batch_size: int, batch_delay: float | None) -> str:
        loop = asyncio.get_running_loop()
        while not state.stop:
            state.writing = False
            batch = await consumer.fetch(max_events=batch_size)
            state.writing = True
            if batch_delay is not None and len(batch) < batch_size and not consumer.completed:
                deadline = loop.time() + batch_delay
                state.gathered = batch
                while len(batch) < batch_size and not consumer.completed:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    more = await consumer.fetch(max_events=batch_size - len(batch),
                                                timeout=remaining)
                    if not more:
                        break
                    batch.extend(more)
                state.gathered = None
            if batch:
                await self._send_batch(consumer, context, batch)
            if consumer.completed:
                terminal = next((d for d in batch if d.terminal), None)
                await context.write(pb.SubscribeResponse(completed=pb.Completed(
                    event_id=terminal.id if terminal else "",
                    event_type=terminal.type if terminal else "")))
                state.writing = False
                # let the consumer settle what it holds (the terminal event among them) before
                # the stream ends; it may also unsubscribe, which ends the reader
                await _settling(consumer, reader, settled,
                                loop.time() + consumer.config.visibility_timeout)
                return "completed"
        return "draining"

    async def _send_batch(self, consumer: Consumer, context: grpc.aio.ServicerContext,
                          batch: list[Delivery]) -> None:
        # encoded straight to bytes (see wire.py), in messages of at most max_message_bytes
        limit = self.options.max_message_bytes - _MESSAGE_SLACK
        messages, too_large = wire.events_messages(batch, limit)
        for d, n in too_large:
            await consumer.nack(d.id, reason=f"event of {n} bytes exceeds the gRPC "
                                             f"max_message_bytes ({limit})")
        for message in messages:
            await context.write(message)

    async def _close(self, consumer: Consumer, reason: str) -> None:
        # a cancelled close still finishes: the engine owns the rest (awaited on host stop)
        await consumer.close(reason)

    # --- Publish -----------------------------------------------------------------------------

    async def Publish(self, request: pb.PublishRequest,
                      context: grpc.aio.ServicerContext) -> pb.PublishResponse:
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        if not request.stream:
            await context.abort(invalid, "stream: required")
        now = utcnow()
        events = []
        for i, e in enumerate(request.events):
            if not e.type:
                await context.abort(invalid, f"events[{i}].type: required")
            if not e.correlation_id:
                await context.abort(invalid, f"events[{i}].correlation_id: required")
            content_type = e.content_type or JSON
            if content_type == JSON:
                try:
                    _json_decoder.decode(e.data)
                except msgspec.DecodeError as exc:
                    await context.abort(invalid, f"events[{i}].data: invalid JSON: {exc}")
            events.append(RecordedEvent(
                id=e.id or new_event_id(), stream=request.stream, type=e.type,
                correlation_id=e.correlation_id,
                timestamp=from_timestamp(e.timestamp) if e.HasField("timestamp") else now,
                data=e.data, content_type=content_type, headers=dict(e.headers)))
        try:
            appended = await self.host.publish(request.stream, events)
        except StreamScopeError as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"stream: {exc}")
        except UnknownStreamError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"stream: {exc}")
        except StoreUnavailableError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"store unavailable: {exc}")
        except SvrntyEventsError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return pb.PublishResponse(events=[pb.PublishedEvent(id=e.id, sequence=e.sequence)
                                          for e in appended])

    # --- dead letters and introspection ---------------------------------------------------------

    async def _admin(self, context: grpc.aio.ServicerContext, field: str,
                     call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await call()
        except (UnknownSubscriptionError, UnknownStreamError) as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{field}: {exc}")
        except StoreUnavailableError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"store unavailable: {exc}")

    async def ListDeadLetters(self, request: pb.ListDeadLettersRequest,
                              context: grpc.aio.ServicerContext) -> pb.ListDeadLettersResponse:
        letters = await self._admin(context, "subscription", lambda: self.host.dead_letters(
            request.subscription, limit=request.limit or None))
        return pb.ListDeadLettersResponse(dead_letters=[dead_letter_to_proto(d) for d in letters])

    async def ReplayDeadLetters(self, request: pb.DeadLetterSelection,
                                context: grpc.aio.ServicerContext) -> pb.DeadLetterCount:
        count = await self._admin(context, "subscription", lambda: self.host.replay_dead_letters(
            request.subscription, list(request.event_ids) or None))
        return pb.DeadLetterCount(count=count)

    async def PurgeDeadLetters(self, request: pb.DeadLetterSelection,
                               context: grpc.aio.ServicerContext) -> pb.DeadLetterCount:
        count = await self._admin(context, "subscription", lambda: self.host.purge_dead_letters(
            request.subscription, list(request.event_ids) or None))
        return pb.DeadLetterCount(count=count)

    async def GetSubscriptionStats(self, request: pb.SubscriptionStatsRequest,
                                   context: grpc.aio.ServicerContext
                                   ) -> pb.SubscriptionStatsList:
        stats = await self._admin(context, "subscription", lambda: self.host.subscription_stats(
            request.subscription or None))
        return pb.SubscriptionStatsList(subscriptions=[pb.SubscriptionStats(
            subscription=st["subscription"], stream=st["stream"], mode=st["mode"],
            lag_known=st["lag"] is not None, lag=st["lag"] or 0,
            groups=[pb.GroupLag(group=g, lag=n) for g, n in sorted((st["groups"] or {}).items())],
            in_flight=st["in_flight"], consumers=st["consumers"],
            dead_letters=st["dead_letters"],
            oldest_dead_letter_age_seconds=st["oldest_dead_letter_age"]) for st in stats])

    async def GetStreamInfo(self, request: pb.GetStreamInfoRequest,
                            context: grpc.aio.ServicerContext) -> pb.StreamInfo:
        info = await self._admin(context, "stream", lambda: self.host.stream_info(request.stream))
        config = self.host.stream_config(request.stream)
        return pb.StreamInfo(
            name=info.name, type=str(info.type), delivery_semantics=str(config.delivery_semantics),
            scope=str(config.scope), length=info.length, first_sequence=info.first_sequence,
            next_sequence=info.next_sequence, metadata=info.metadata)

    async def ListConsumers(self, request: pb.ListConsumersRequest,
                            context: grpc.aio.ServicerContext) -> pb.ListConsumersResponse:
        async def consumers() -> list[dict[str, Any]]:
            return self.host.consumers(request.subscription)

        infos = await self._admin(context, "subscription", consumers)
        out = []
        for c in infos:
            connected = c.get("connected_at") or 0.0
            seconds = int(connected)
            out.append(pb.ConsumerInfo(
                consumer_id=c["consumer_id"], subscription=c["subscription"],
                in_flight=c["in_flight"], delivered=c["delivered"],
                correlation_id=c.get("correlation_id") or "",
                connected_at=Timestamp(seconds=seconds, nanos=int((connected - seconds) * 1e9)),
                metadata=c.get("metadata") or {}, group=c.get("group") or ""))
        return pb.ListConsumersResponse(consumers=out)


# --- authentication ----------------------------------------------------------------------------


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuse calls without ``authorization: Bearer TOKEN`` metadata naming an accepted token
    (UNAUTHENTICATED). Health checking and reflection stay open."""

    def __init__(self, tokens: list[str]) -> None:
        self._tokens = [t.encode() for t in tokens]

    def _accepts(self, metadata: Any) -> str | None:
        for key, value in metadata or ():
            if key == "authorization":
                scheme, _, token = (value if isinstance(value, str) else value.decode()
                                    ).partition(" ")
                if scheme.lower() != "bearer" or not token:
                    return "authorization: expected `Bearer TOKEN`"
                given = token.strip().encode()
                # compare against every token, so timing does not tell which one nearly matched
                ok = False
                for t in self._tokens:
                    ok |= hmac.compare_digest(given, t)
                return None if ok else "authorization: invalid bearer token"
        return "authorization: missing bearer token (metadata `authorization: Bearer TOKEN`)"

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        if details.method.startswith(OPEN_METHOD_PREFIXES):
            return await continuation(details)
        problem = self._accepts(details.invocation_metadata)
        handler = await continuation(details)
        if problem is None or handler is None:
            return handler
        return _denying_handler(handler, problem)


def _denying_handler(handler: Any, details: str) -> Any:
    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, details)

    kwargs = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny, **kwargs)
    return grpc.unary_unary_rpc_method_handler(deny, **kwargs)


# --- the provider ------------------------------------------------------------------------------


class GrpcDeliveryProvider:
    """The ``grpc`` delivery provider: a ``grpc.aio`` server with ``EventService``, health,
    reflection, and the services other plugins add through ``register_grpc_services``.

    Built by the host as ``GrpcDeliveryProvider(host, options)``; ``port`` is the bound port
    once started.
    """

    def __init__(self, host: Any, options: GrpcOptions | None = None) -> None:
        self.host = host
        self.options = options if options is not None else GrpcOptions()
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None
        self.health: Any = None
        self.service_names: list[str] = []
        self._stopping = asyncio.Event()
        self._servicer: EventServicer | None = None

    @property
    def tls(self) -> bool:
        return self.options.tls_cert is not None

    def tokens(self) -> list[str]:
        """Accepted bearer tokens: the configured ones and those of ``token_env``. Raises
        ConfigError when ``token_env`` names an unset or empty variable."""
        tokens = list(self.options.tokens)
        if self.options.token_env:
            value = os.environ.get(self.options.token_env, "")
            env_tokens = [t.strip() for t in value.split(",") if t.strip()]
            if not env_tokens:
                raise ConfigError("delivery.grpc.token_env", f"environment variable "
                                  f"{self.options.token_env} is not set or holds no token")
            tokens.extend(env_tokens)
        return tokens

    def _server_credentials(self) -> grpc.ServerCredentials:
        o = self.options
        assert o.tls_cert is not None and o.tls_key is not None
        pair = []
        for field, path in (("tls_key", o.tls_key), ("tls_cert", o.tls_cert)):
            try:
                pair.append(Path(path).read_bytes())
            except OSError as exc:
                raise ConfigError(f"delivery.grpc.{field}", f"cannot read {path}: "
                                  f"{exc.strerror or exc}") from None
        return grpc.ssl_server_credentials([(pair[0], pair[1])])

    async def start(self) -> None:
        """Bind, register the services, start serving. Raises ConfigError for unusable TLS
        files, token settings or address."""
        o = self.options
        tokens = self.tokens()
        credentials = self._server_credentials() if self.tls else None
        server = grpc.aio.server(
            interceptors=[BearerTokenInterceptor(tokens)] if tokens else None,
            options=[
                ("grpc.max_receive_message_length", o.max_message_bytes),
                ("grpc.max_send_message_length", o.max_message_bytes),
                # never share a port silently with another process
                ("grpc.so_reuseport", 0),
                # detect dead peers, so their events are released without waiting for timeouts
                ("grpc.keepalive_time_ms", 20_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ])
        self._servicer = EventServicer(self.host, o, self._stopping)
        _add_event_service(self._servicer, server)
        names = [EVENT_SERVICE]
        pm = self.host.pm
        if not hasattr(pm.hook, "register_grpc_services"):
            pm.add_hookspecs(hookspecs)
        for result in pm.hook.register_grpc_services(server=server, host=self.host):
            names.extend(result)
        self.service_names = names
        if o.health:
            from grpc_health.v1 import health, health_pb2, health_pb2_grpc

            self.health = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
            for name in ("", *names):
                await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
            names = [*names, health.SERVICE_NAME]
        if o.reflection:
            from grpc_reflection.v1alpha import reflection

            reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
        host = f"[{o.host}]" if ":" in o.host and not o.host.startswith("[") else o.host
        address = f"{host}:{o.port}"
        try:
            if credentials is not None:
                port = server.add_secure_port(address, credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ConfigError("delivery.grpc.port", f"cannot bind {address}: {exc}") from None
        if not port:
            raise ConfigError("delivery.grpc.port", f"cannot bind {address}")
        self.port = port
        await server.start()
        self.server = server
        log.info("gRPC delivery listening on %s", ", ".join(self.endpoints()))

    async def stop(self, grace: float | None) -> None:
        """Drain every Subscribe stream, then end it with UNAVAILABLE (what its consumer still
        holds is released), and stop the server, letting unary calls finish within ``grace``
        seconds. A drain stops sending, tells the client (``draining``) and applies its acks
        and nacks until it holds nothing it was sent, leaves, or ``drain_timeout`` seconds
        pass, and at most ``grace / 2``. May be called twice."""
        if self._servicer is not None and not self._stopping.is_set():
            self._servicer.drain_timeout = max(min((grace or 0.0) / 2,
                                                   self.options.drain_timeout), 0.0)
        self._stopping.set()
        server, self.server = self.server, None
        if server is None:
            return
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
        await server.stop(grace)

    def endpoints(self) -> list[str]:
        """``grpc://HOST:PORT`` (``grpcs://`` with TLS) once started."""
        if self.port is None:
            return []
        scheme = "grpcs" if self.tls else "grpc"
        host = f"[{self.options.host}]" if ":" in self.options.host else self.options.host
        return [f"{scheme}://{host}:{self.port}"]


class _Handlers:
    """Stands in for the server while the generated code registers EventService's handlers."""

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.service, self.handlers = service, handlers


def _serialize_response(response: pb.SubscribeResponse | bytes) -> bytes:
    # event batches come encoded already (wire.events_response), the other responses as messages
    return response if type(response) is bytes else response.SerializeToString()


def _add_event_service(servicer: EventServicer, server: grpc.aio.Server) -> None:
    """``add_EventServiceServicer_to_server``, with Subscribe writing bytes as they are."""
    captured = _Handlers()
    pb_grpc.add_EventServiceServicer_to_server(servicer, captured)
    handlers = dict(captured.handlers)
    subscribe = handlers["Subscribe"]
    handlers["Subscribe"] = grpc.stream_stream_rpc_method_handler(
        subscribe.stream_stream, request_deserializer=subscribe.request_deserializer,
        response_serializer=_serialize_response)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(captured.service,
                                                                          handlers),))
    server.add_registered_method_handlers(captured.service, handlers)


async def _settling(consumer: Consumer, reader: asyncio.Future[str], settled: asyncio.Event,
                    deadline: float) -> None:
    """Wait until ``consumer`` holds nothing it handed over (what it prefetched and did not
    send is not the client's to settle), its stream's reader ended, or ``deadline`` (loop time)
    passed. ``settled`` is set by each ack and nack the reader applies, and at its end."""
    loop = asyncio.get_running_loop()
    while len(consumer.held) > len(consumer.prefetched) and not reader.done():
        settled.clear()
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        with suppress(TimeoutError):
            await asyncio.wait_for(settled.wait(), remaining)


def _start(req: pb.Subscribe) -> int | datetime | str | None:
    """The engine's start position from the subscribe message's ``start`` oneof."""
    which = req.WhichOneof("start")
    if which == "from_sequence":
        return max(req.from_sequence, 0)
    if which == "from_time":
        return req.from_time.ToDatetime(tzinfo=timezone.utc)
    if which == "from_beginning":
        return "beginning" if req.from_beginning else None
    if which == "new_only":
        return "new" if req.new_only else None
    return None
