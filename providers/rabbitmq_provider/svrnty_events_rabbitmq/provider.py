"""The ``rabbitmq`` delivery provider: subscriptions of this host published to an exchange, and
queues bridged into streams of this host. No delivery logic of its own beyond the broker's.

**Outbound** (``[[delivery.rabbitmq.outbound]]``): one engine consumer per subscription
(consumer id ``rabbitmq:EXCHANGE``, window = the route's ``window``). Each batch it is handed is
published on a channel with publisher confirms, and an event is acked in the engine only once
the broker confirmed it. A broker that refuses a message (``basic.nack``, or ``basic.return``
with ``mandatory``) gets it back through the engine (``nack``: the subscription's backoff,
attempts and dead-letter queue apply). While the broker is unreachable the batch is held (its
visibility timeout extended, no attempt used up) and published again once the connection is
back, so an outage or a broker restart loses nothing and resumes by itself. A message whose
confirm was lost with the connection is published again: receivers deduplicate on the message
id, which is the event id.

**Inbound** (``[[delivery.rabbitmq.inbound]]``): the queue is consumed with ``prefetch``
unacknowledged messages at most; what has arrived is appended to the local stream in one batch
(``host.publish``: idempotent by event id, so a redelivered message is not appended twice), and
acked to the broker only after the append. A message that is not an event envelope is sent to
the queue's dead-letter exchange with the reason in its ``svrnty-rejected-reason`` header. While
the store is unavailable the batch is retried, unacked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue

from svrnty_events.config import StreamScope, SubscriptionConfig
from svrnty_events.errors import (
    ConfigError,
    ConsumerClosedError,
    SvrntyEventsError,
    UnknownDeliveryError,
)
from svrnty_events.host import EventStreamingHost
from svrnty_events.subscriptions import Consumer, Delivery

from .envelope import (
    REJECTED_QUEUE_HEADER,
    REJECTED_REASON_HEADER,
    NotAnEnvelope,
    event_of,
    message_of,
)
from .options import Inbound, Outbound, RabbitMQOptions, check_url, redacted_url

log = logging.getLogger("svrnty_events.rabbitmq")

#: longest pause between two tries while the broker or the store is away
MAX_PAUSE = 5.0
#: pause after an unexpected error in a loop before it goes on
ERROR_PAUSE = 1.0
#: the errors that mean "the link to the broker is down", not "the broker refused this"
LINK_ERRORS = (aiormq.exceptions.AMQPConnectionError, aiormq.exceptions.ChannelClosed,
               aiormq.exceptions.ChannelInvalidStateError, ConnectionError, OSError,
               TimeoutError, RuntimeError)


@dataclass
class _Route:
    """One outbound subscription at run time."""

    options: Outbound
    index: int
    subscription: SubscriptionConfig
    exchange_name: str
    consumer_id: str
    channel: AbstractChannel | None = None
    exchange: AbstractExchange | None = None
    consumer: Consumer | None = None
    published: int = 0
    refused: int = 0
    #: set while the route waits for the broker to come back
    down_since: float | None = None


@dataclass
class _Bridge:
    """One inbound queue at run time."""

    options: Inbound
    index: int
    exchange_name: str
    prefetch: int
    channel: AbstractChannel | None = None
    queue: AbstractQueue | None = None
    dead_letters: AbstractExchange | None = None
    consumer_tag: str | None = None
    buffer: asyncio.Queue[AbstractIncomingMessage] = field(default_factory=asyncio.Queue)
    appended: int = 0
    rejected: int = 0


class _Abandoned(Exception):
    """A batch left unacked (the provider is stopping): the broker redelivers it."""


class RabbitMQDeliveryProvider:
    """The ``rabbitmq`` delivery provider. Built by the host from ``[delivery.rabbitmq]``."""

    def __init__(self, host: EventStreamingHost, options: RabbitMQOptions | None = None) -> None:
        self.host = host
        self.options = options if options is not None else RabbitMQOptions()
        self.url = self.options.url
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.routes: list[_Route] = []
        self.bridges: list[_Bridge] = []
        self._tasks: list[asyncio.Task[None]] = []
        #: the loops publishing a batch or appending one right now
        self._busy: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._started = False

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, declare, and start publishing and consuming. Raises ConfigError for an
        unknown subscription or stream, a stream that does not take events from other services,
        an unset ``url_env``, a bad URL, credentials the broker refuses, a broker that cannot be
        reached within ``connect_timeout``, or a declaration the broker refuses."""
        self._started = True
        self.url = self._url()
        self.routes = [self._route(i, r) for i, r in enumerate(self.options.outbound)]
        self.bridges = [self._bridge(i, b) for i, b in enumerate(self.options.inbound)]
        try:
            self.connection = await self._connect()
            if self.options.declare_exchange:
                await self._declare(
                    "delivery.rabbitmq.exchange",
                    self._declare_exchange(self.options.exchange, self.options.exchange_type))
            for route in self.routes:
                await self._start_route(route)
            for bridge in self.bridges:
                await self._start_bridge(bridge)
        except BaseException:
            await self.stop(0)
            raise

    async def stop(self, grace: float) -> None:
        """Stop taking events and messages; let what is being published or appended finish for
        up to ``grace`` seconds, then cancel the rest. Events not confirmed are released for
        redelivery when their consumers close; messages not acked are redelivered by the broker
        when the channel closes. May be called twice."""
        if self._stopping or not self._started:
            return
        self._stopping = True
        try:
            for bridge in self.bridges:
                if bridge.queue is not None and bridge.consumer_tag is not None:
                    with suppress(Exception):
                        await asyncio.wait_for(bridge.queue.cancel(bridge.consumer_tag),
                                               max(grace, 1.0))
            # a loop waiting for events or messages stops now; one publishing or appending
            # gets the grace to finish (its events are then settled)
            for task in self._tasks:
                if task not in self._busy:
                    task.cancel()
            if self._tasks:
                _, pending = await asyncio.wait(self._tasks, timeout=max(grace, 0.0))
                for task in pending:
                    task.cancel()
                for task in self._tasks:
                    with suppress(asyncio.CancelledError):
                        try:
                            await task
                        except Exception:
                            log.exception("rabbitmq task %s failed", task.get_name())
            self._tasks.clear()
        finally:
            for route in self.routes:
                if route.consumer is not None:
                    with suppress(Exception):
                        await route.consumer.close("rabbitmq provider stopping")
            if self.connection is not None:
                with suppress(Exception):
                    await asyncio.wait_for(self.connection.close(), 10)

    def endpoints(self) -> list[str]:
        """One line per route and bridge."""
        url = redacted_url(self.url)
        return [*(f"rabbitmq {url}: {r.subscription.name} -> exchange {r.exchange_name!r} "
                  f"(routing key {r.options.routing_key})" for r in self.routes),
                *(f"rabbitmq {url}: queue {b.options.queue!r} -> stream {b.options.stream}"
                  for b in self.bridges)]

    def stats(self) -> dict[str, Any]:
        """Counters: per route events published (confirmed) and refused by the broker, and
        whether it waits for the broker now; per bridge messages appended (a redelivered copy
        counts again, though the stream keeps the event once) and rejected to the dead-letter
        exchange."""
        return {"outbound": {r.subscription.name: {"published": r.published,
                                                    "refused": r.refused,
                                                    "broker_down": r.down_since is not None}
                             for r in self.routes},
                "inbound": {b.options.queue: {"appended": b.appended, "rejected": b.rejected}
                            for b in self.bridges}}

    # --- configuration ----------------------------------------------------------------------

    def _url(self) -> str:
        source = self.host.streaming.source
        name = self.options.url_env
        if name is None:
            return self.options.url
        url = os.environ.get(name, "")
        if not url:
            raise ConfigError("delivery.rabbitmq.url_env", f"environment variable {name} is "
                              "not set", source=source)
        try:
            check_url("url_env", url)
        except ValueError as exc:
            raise ConfigError("delivery.rabbitmq.url_env", f"{name}: {exc}",
                              source=source) from None
        return url

    def _route(self, index: int, route: Outbound) -> _Route:
        subscriptions = {s.name: s for s in self.host.config.subscriptions}
        sub = subscriptions.get(route.subscription)
        if sub is None:
            known = ", ".join(sorted(subscriptions)) or "none"
            raise ConfigError(f"delivery.rabbitmq.outbound[{index}].subscription",
                              f'unknown subscription "{route.subscription}"; subscriptions: '
                              f"{known}", source=self.host.streaming.source)
        return _Route(route, index, sub, route.exchange or self.options.exchange,
                      self.options.consumer_id(route))

    def _bridge(self, index: int, bridge: Inbound) -> _Bridge:
        path = f"delivery.rabbitmq.inbound[{index}].stream"
        stream = self.host.streams.get(bridge.stream)
        if stream is None:
            known = ", ".join(sorted(self.host.streams)) or "none"
            raise ConfigError(path, f'unknown stream "{bridge.stream}"; streams: {known}',
                              source=self.host.streaming.source)
        if stream.scope != StreamScope.CROSS_SERVICE:
            raise ConfigError(path, f'stream "{bridge.stream}" has scope "{stream.scope}"; '
                              'events from other services need scope = "cross_service"',
                              source=self.host.streaming.source)
        return _Bridge(bridge, index, bridge.exchange or self.options.exchange,
                       bridge.prefetch or self.options.prefetch)

    # --- connecting and declaring -------------------------------------------------------------

    async def _connect(self) -> aio_pika.abc.AbstractRobustConnection:
        options, source = self.options, self.host.streaming.source
        path = "delivery.rabbitmq.url_env" if options.url_env else "delivery.rabbitmq.url"
        shown = redacted_url(self.url)
        deadline = time.monotonic() + options.connect_timeout
        while True:
            left = deadline - time.monotonic()
            try:
                connection = await asyncio.wait_for(aio_pika.connect_robust(
                    self.url, timeout=max(left, 0.1), heartbeat=options.heartbeat,
                    reconnect_interval=options.reconnect_interval,
                    client_properties={"connection_name": f"svrnty-events {os.getpid()}"}),
                    max(left, 0.1))
            except (aiormq.exceptions.ProbableAuthenticationError,
                    aiormq.exceptions.AuthenticationError) as exc:
                raise ConfigError(path, f"the broker at {shown} refused the credentials: "
                                  f"{_reason(exc)}", source=source) from None
            except aiormq.exceptions.ConnectionClosed as exc:
                # e.g. NOT_ALLOWED for a virtual host that does not exist
                raise ConfigError(path, f"the broker at {shown} closed the connection: "
                                  f"{_reason(exc)}", source=source) from None
            except aiormq.exceptions.ProtocolSyntaxError:
                # the broker closed the connection in the handshake's last step (Connection.Open):
                # the virtual host does not exist or the user may not use it
                vhost = urlsplit(self.url).path[1:] or "/"
                raise ConfigError(path, f"the broker at {shown} refused to open virtual host "
                                  f"{unquote(vhost)!r}: it does not exist or the user may not "
                                  "use it", source=source) from None
            except (aiormq.exceptions.IncompatibleProtocolError, ValueError) as exc:
                raise ConfigError(path, f"cannot use {shown}: {_reason(exc)}",
                                  source=source) from None
            except (OSError, TimeoutError, aiormq.exceptions.AMQPConnectionError) as exc:
                if _tls_failure(exc):
                    # a certificate the client does not trust, a host name it does not match,
                    # a port that does not speak TLS: waiting does not help
                    raise ConfigError(path, f"TLS with the broker at {shown} failed: "
                                      f"{_reason(exc)} (amqps:// URLs take cafile=, certfile=, "
                                      "keyfile= parameters)", source=source) from None
                if time.monotonic() + options.reconnect_interval >= deadline:
                    raise ConfigError(path, f"cannot reach the broker at {shown} within "
                                      f"{options.connect_timeout}s (connect_timeout): "
                                      f"{_reason(exc)}", source=source) from None
                await asyncio.sleep(options.reconnect_interval)
                continue
            log.info("rabbitmq: connected to %s", shown)
            return connection

    async def _declare(self, path: str, declaration: Any) -> Any:
        """Await a declaration; the broker's refusal (a queue declared with other arguments,
        an exchange that does not exist, no permission) is a ConfigError naming ``path``."""
        try:
            return await asyncio.wait_for(declaration, self.options.connect_timeout)
        except (aiormq.exceptions.ChannelClosed, aiormq.exceptions.ChannelAccessRefused,
                aiormq.exceptions.ChannelNotFoundEntity,
                aiormq.exceptions.ChannelPreconditionFailed) as exc:
            raise ConfigError(path, f"the broker refused: {_reason(exc)}",
                              source=self.host.streaming.source) from None

    async def _declare_exchange(self, name: str, kind: str) -> AbstractExchange:
        assert self.connection is not None
        channel = await self.connection.channel()
        try:
            return await channel.declare_exchange(name, kind, durable=True)
        finally:
            await channel.close()

    async def _exchange(self, channel: AbstractChannel, name: str, path: str
                        ) -> AbstractExchange:
        # the provider's own exchange was declared at start; any other must exist
        return await self._declare(path, channel.get_exchange(name, ensure=True))

    # --- outbound ---------------------------------------------------------------------------

    async def _start_route(self, route: _Route) -> None:
        assert self.connection is not None
        route.channel = await self.connection.channel(publisher_confirms=True,
                                                      on_return_raises=True)
        route.exchange = await self._exchange(
            route.channel, route.exchange_name,
            f"delivery.rabbitmq.outbound[{route.index}].exchange")
        window = route.options.window
        route.consumer = await self.host.open_consumer(
            route.subscription.name, route.consumer_id, window=window,
            metadata={"provider": "rabbitmq", "exchange": route.exchange_name,
                      "url": redacted_url(self.url)})
        self._tasks.append(asyncio.create_task(
            self._outbound_loop(route), name=f"rabbitmq: publish {route.subscription.name}"))

    async def _outbound_loop(self, route: _Route) -> None:
        consumer = route.consumer
        assert consumer is not None
        while not self._stopping:
            try:
                batch = await consumer.fetch()
            except ConsumerClosedError as exc:
                if not self._stopping:
                    log.error("rabbitmq: consumer of %s was closed (%s); nothing more is "
                              "published from it until the host restarts",
                              route.subscription.name, exc)
                return
            except Exception:
                log.exception("rabbitmq: fetching from %s failed; trying again in %.0fs",
                              route.subscription.name, ERROR_PAUSE)
                await asyncio.sleep(ERROR_PAUSE)
                continue
            if not batch:
                if consumer.completed:
                    return
                continue
            self._busy.add(task := asyncio.current_task())  # type: ignore[arg-type]
            try:
                await self._publish(route, batch)
            except Exception:
                # a bug must not stop the route; what was not settled is redelivered after its
                # visibility timeout
                log.exception("rabbitmq: publishing a batch of %s failed",
                              route.subscription.name)
                await asyncio.sleep(ERROR_PAUSE)
            finally:
                self._busy.discard(task)

    def routing_key(self, route: _Route, delivery: Delivery) -> str:
        record = delivery.record
        return route.options.routing_key.format(
            stream=record.stream, type=record.type, correlation_id=record.correlation_id,
            partition=record.partition)

    async def _publish(self, route: _Route, batch: list[Delivery]) -> None:
        """Publish ``batch`` until each event is confirmed (acked in the engine), refused by the
        broker (nacked in the engine), or no longer held (the engine took it back)."""
        consumer, exchange = route.consumer, route.exchange
        assert consumer is not None and exchange is not None
        mandatory = route.options.mandatory
        # an attempt that hangs (the robust channel waits for the connection) gives up before
        # the deliveries' visibility timeout, so they can be extended and tried again
        attempt_timeout = max(route.subscription.visibility_timeout / 3, 0.5)
        pending = batch
        pause = self.options.reconnect_interval
        while pending:
            try:
                async with asyncio.timeout(attempt_timeout):
                    results = await asyncio.gather(
                        *(exchange.publish(message_of(d), self.routing_key(route, d),
                                           mandatory=mandatory) for d in pending),
                        return_exceptions=True)
            except TimeoutError:
                results = [TimeoutError("no confirm within the attempt")] * len(pending)
            confirmed: list[Delivery] = []
            refused: list[tuple[Delivery, BaseException]] = []
            again: list[Delivery] = []
            for d, result in zip(pending, results):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                if not isinstance(result, BaseException):
                    confirmed.append(d)
                elif isinstance(result, aiormq.exceptions.DeliveryError):
                    refused.append((d, result))
                elif isinstance(result, LINK_ERRORS):
                    again.append(d)
                else:
                    raise result
            if confirmed:
                await self._settle(route, consumer.ack([d.id for d in confirmed]), "ack")
                route.published += len(confirmed)
            for d, exc in refused:
                route.refused += 1
                reason = f"the broker refused the message: {_reason(exc)}"
                log.warning("rabbitmq: %s %s of %s: %s; the engine redelivers it", d.type,
                            d.id, route.subscription.name, reason)
                await self._settle(route, consumer.nack(d.id, reason=reason), "nack")
            if not again:
                if route.down_since is not None:
                    log.info("rabbitmq: publishing %s again after %.1fs without the broker",
                             route.subscription.name, time.monotonic() - route.down_since)
                    route.down_since = None
                return
            if route.down_since is None:
                route.down_since = time.monotonic()
                log.warning("rabbitmq: cannot publish %s (%d events held): the broker is not "
                            "reachable; trying again every %.1fs up to %.0fs",
                            route.subscription.name, len(again), pause, MAX_PAUSE)
            if self._stopping:
                return  # released for redelivery when the consumer closes
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)
            pending = await self._still_held(route, again)

    async def _still_held(self, route: _Route, deliveries: list[Delivery]) -> list[Delivery]:
        """Extend the visibility of ``deliveries`` (no attempt is used up while the broker is
        away) and return those the consumer still holds."""
        consumer = route.consumer
        assert consumer is not None
        try:
            await consumer.extend(d.id for d in deliveries)
        except UnknownDeliveryError as exc:
            gone = set(exc.event_ids)
            log.info("rabbitmq: %d events of %s were taken back by the engine while the broker "
                     "was away; they are redelivered", len(gone), route.subscription.name)
            return [d for d in deliveries if d.id not in gone]
        except SvrntyEventsError as exc:
            log.warning("rabbitmq: could not extend held events of %s: %s",
                        route.subscription.name, exc)
        return [d for d in deliveries if not d.settled]

    async def _settle(self, route: _Route, call: Any, what: str) -> None:
        try:
            await call
        except SvrntyEventsError as exc:
            # the engine let go of the event meanwhile (its visibility timeout passed, or the
            # store is away): it is redelivered, and published again with the same message id
            log.warning("rabbitmq: could not %s events of %s: %s", what,
                        route.subscription.name, exc)

    # --- inbound ----------------------------------------------------------------------------

    async def _start_bridge(self, bridge: _Bridge) -> None:
        assert self.connection is not None
        opts, path = bridge.options, f"delivery.rabbitmq.inbound[{bridge.index}]"
        channel = bridge.channel = await self.connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=bridge.prefetch)
        dlx = opts.dead_letters
        if opts.declare:
            bridge.dead_letters = await self._declare(
                f"{path}.dead_letter_exchange",
                channel.declare_exchange(dlx, aio_pika.ExchangeType.FANOUT, durable=True))
            keep = await self._declare(f"{path}.dead_letter_exchange",
                                       channel.declare_queue(dlx, durable=True))
            await self._declare(f"{path}.dead_letter_exchange", keep.bind(dlx, "#"))
            bridge.queue = await self._declare(
                f"{path}.queue", channel.declare_queue(
                    opts.queue, durable=True, arguments={"x-dead-letter-exchange": dlx}))
        else:
            bridge.dead_letters = await self._exchange(channel, dlx,
                                                       f"{path}.dead_letter_exchange")
            bridge.queue = await self._declare(f"{path}.queue",
                                               channel.get_queue(opts.queue, ensure=True))
        if opts.bindings:
            source = await self._exchange(channel, bridge.exchange_name, f"{path}.exchange")
            for key in opts.bindings:
                await self._declare(f"{path}.bindings", bridge.queue.bind(source, key))
        self._tasks.append(asyncio.create_task(
            self._inbound_loop(bridge), name=f"rabbitmq: consume {opts.queue}"))

        async def received(message: AbstractIncomingMessage) -> None:
            bridge.buffer.put_nowait(message)

        bridge.consumer_tag = await bridge.queue.consume(received, no_ack=False)

    async def _inbound_loop(self, bridge: _Bridge) -> None:
        buffer = bridge.buffer
        while not self._stopping:
            first = await buffer.get()
            batch = [first]
            while len(batch) < bridge.prefetch and not buffer.empty():
                batch.append(buffer.get_nowait())
            self._busy.add(task := asyncio.current_task())  # type: ignore[arg-type]
            try:
                await self._bridge_batch(bridge, batch)
            except (_Abandoned, *LINK_ERRORS) as exc:
                # not acked: the broker redelivers these once the channel is back
                log.warning("rabbitmq: queue %s: %d messages left unacked (%s); the broker "
                            "redelivers them", bridge.options.queue, len(batch),
                            _reason(exc))
            except Exception:
                log.exception("rabbitmq: queue %s: settling %d messages failed; they go "
                              "back to the queue", bridge.options.queue, len(batch))
                await asyncio.sleep(ERROR_PAUSE)
                await _requeue(batch)
            finally:
                self._busy.discard(task)

    async def _bridge_batch(self, bridge: _Bridge, batch: list[AbstractIncomingMessage]) -> None:
        events, seen = [], set()
        for message in batch:
            try:
                event = event_of(message, bridge.options.stream)
            except NotAnEnvelope as exc:
                await self._reject(bridge, message, f"not an event envelope: {exc}")
                continue
            if event.id not in seen:  # the same message twice in one batch (a redelivery)
                seen.add(event.id)
                events.append(event)
        if events:
            failed = await self._append(bridge, events)
            for message in batch:
                reason = failed.get(message.message_id or "")
                if reason is not None:
                    await self._reject(bridge, message, reason)
            bridge.appended += len(events) - len(failed)
        await _ack_all(batch)

    async def _append(self, bridge: _Bridge, events: list[Any]) -> dict[str, str]:
        """Append ``events`` to the bridge's stream, trying again while the store is
        unavailable. Returns, by event id, the events the stream refused and why (a batch the
        stream refuses is appended one event at a time, so one bad event does not hold back the
        others)."""
        stream = bridge.options.stream
        pause = self.options.reconnect_interval
        while True:
            try:
                await self.host.publish(stream, events)
                return {}
            except SvrntyEventsError as exc:
                if getattr(exc, "retryable", False):
                    if self._stopping:
                        raise _Abandoned(f"the store is unavailable ({exc})") from None
                    log.warning("rabbitmq: queue %s: cannot append to %s (%s); trying again "
                                "in %.1fs", bridge.options.queue, stream, exc, pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, MAX_PAUSE)
                    continue
                if len(events) == 1:
                    return {events[0].id: f"the stream {stream} refused it: {exc}"}
            failed: dict[str, str] = {}
            for event in events:
                failed.update(await self._append(bridge, [event]))
            return failed

    async def _reject(self, bridge: _Bridge, message: AbstractIncomingMessage,
                      reason: str) -> None:
        """Send ``message`` to the dead-letter exchange with ``reason`` (it is acked with the
        rest of its batch). Should the broker refuse that, reject it: the queue's own
        dead-letter exchange, if it has one, gets it without the reason."""
        bridge.rejected += 1
        log.warning("rabbitmq: queue %s: message %s goes to the dead-letter exchange %s: %s",
                    bridge.options.queue, message.message_id or "(no id)",
                    bridge.options.dead_letters, reason)
        assert bridge.dead_letters is not None
        copy = aio_pika.Message(
            message.body, headers={**(message.headers or {}), REJECTED_REASON_HEADER: reason,
                                   REJECTED_QUEUE_HEADER: bridge.options.queue},
            content_type=message.content_type, content_encoding=message.content_encoding,
            message_id=message.message_id, correlation_id=message.correlation_id,
            type=message.type, timestamp=message.timestamp, app_id=message.app_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        try:
            await bridge.dead_letters.publish(copy, message.routing_key or "", mandatory=False)
        except aiormq.exceptions.DeliveryError as exc:
            log.error("rabbitmq: queue %s: the dead-letter exchange refused message %s (%s); "
                      "rejecting it", bridge.options.queue, message.message_id, _reason(exc))
            await message.reject(requeue=False)


async def _ack_all(batch: Sequence[AbstractIncomingMessage]) -> None:
    """Ack every message of ``batch`` not yet settled: one ``multiple`` ack per channel (the
    messages of one channel arrive, and are settled, in delivery-tag order). A batch may hold
    messages of a channel lost meanwhile: those cannot be acked (the broker redelivers them, and
    the append of the copy is a no-op), which must not keep the others unacked."""
    last: dict[int, AbstractIncomingMessage] = {}
    for message in batch:
        if not message.processed:
            last[id(message.channel)] = message
    lost: BaseException | None = None
    for message in last.values():
        try:
            await message.ack(multiple=True)
        except LINK_ERRORS as exc:
            lost = exc
    if lost is not None:
        raise lost


async def _requeue(batch: Sequence[AbstractIncomingMessage]) -> None:
    for message in batch:
        if not message.processed:
            with suppress(Exception):
                await message.nack(requeue=True)


def _tls_failure(exc: BaseException) -> bool:
    """True for an ssl.SSLError, also as aiormq wraps it (AMQPConnectionError(errno, text))."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "[SSL" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
