"""``GET /subscriptions/{name}/ws``: a subscription over a WebSocket, with acks.

JSON text messages mirror the gRPC ``Subscribe`` stream: the client's first message is
``{"subscribe": {...}}``; the server answers ``{"subscribed": {...}}``, then sends
``{"events": [envelope, ...]}`` (what one engine fetch returned, at most ``max_batch_size``) and,
for a correlation-scoped consumer, ``{"completed": {...}}`` after the terminal event. The client
sends ``ack``, ``nack`` (with ``delay_seconds``), ``in_progress``, ``heartbeat`` and
``unsubscribe``. Delivery is at least once: what is not acked is redelivered by the engine.

A message the server cannot use closes the socket with a code and a reason naming the field
(1003 for a binary message, 1008 otherwise), after an ``{"error": {...}}`` message with the
full text; what the consumer held is redelivered.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from svrnty_events import Consumer
from svrnty_events.errors import (
    ConsumerClosedError,
    StoreUnavailableError,
    SvrntyEventsError,
    UnknownDeliveryError,
)
from svrnty_events.subscriptions import ConsumerLimitError

from .gateway import WebGateway, start_position
from .messages import Request, encoder, envelope, request_decoder, request_kind

log = logging.getLogger("svrnty_events.web")

#: how long the client has to send its subscribe message
SUBSCRIBE_TIMEOUT = 30.0


class Close(Exception):
    """Ends the socket with ``code`` and ``reason`` (the reason names the field)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def _reason(text: str) -> bytes:
    # a close reason is at most 123 bytes of UTF-8: cut on a character boundary
    return text.encode()[:123].decode(errors="ignore").encode()


def _closed(exc: ConsumerClosedError) -> Close:
    reason = str(exc) or "consumer is closed"
    if reason.startswith("replaced"):
        # another connection took this consumer id: retrying would kick it out in turn
        return Close(WSCloseCode.POLICY_VIOLATION, f"consumer_id: {reason}")
    if "stopping" in reason:
        return Close(WSCloseCode.GOING_AWAY, f"{reason}; retry")
    return Close(WSCloseCode.TRY_AGAIN_LATER, f"{reason}; retry")


def _decode(msg: Any) -> tuple[str, Request]:
    if msg.type == WSMsgType.BINARY:
        raise Close(WSCloseCode.UNSUPPORTED_DATA, "request: binary messages are not supported; "
                                                  "send JSON text")
    try:
        request = request_decoder.decode(msg.data)
        return request_kind(request), request
    except msgspec.ValidationError as exc:
        raise Close(WSCloseCode.POLICY_VIOLATION, f"request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise Close(WSCloseCode.POLICY_VIOLATION, f"request: invalid JSON: {exc}") from None
    except ValueError as exc:
        raise Close(WSCloseCode.POLICY_VIOLATION, str(exc)) from None


async def _send(ws: web.WebSocketResponse, message: Any) -> None:
    await ws.send_str(encoder.encode(message).decode())


async def websocket_view(gateway: WebGateway, request: web.Request) -> web.StreamResponse:
    subscription = gateway.admit(request)
    async with gateway.connection():
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=gateway.options.max_message_bytes)
        await ws.prepare(request)
        gateway.track(ws)
        try:
            await _session(gateway, subscription, ws)
        except Close as close:
            with suppress(Exception):
                await _send(ws, ({"error": {"code": close.code,
                                                              "message": close.reason}}))
                await ws.close(code=close.code, message=_reason(close.reason))
        finally:
            gateway.untrack(ws)
            if not ws.closed:
                await ws.close()
    return ws


async def _session(gateway: WebGateway, subscription: str, ws: web.WebSocketResponse) -> None:
    try:
        first = await asyncio.wait_for(ws.receive(), SUBSCRIBE_TIMEOUT)
    except TimeoutError:
        raise Close(WSCloseCode.POLICY_VIOLATION,
                    f"subscribe: not received within {SUBSCRIBE_TIMEOUT:g}s") from None
    if first.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
        return
    kind, request = _decode(first)
    if kind != "subscribe":
        raise Close(WSCloseCode.POLICY_VIOLATION,
                    f"request: the first message must be `subscribe`, got `{kind}`")
    consumer = await _open(gateway, subscription, request)
    reason = "disconnected"
    try:
        reason = await _serve(gateway, consumer, ws, request)
    except ConsumerClosedError as exc:
        raise _closed(exc) from None
    except StoreUnavailableError as exc:
        raise Close(WSCloseCode.TRY_AGAIN_LATER, f"store unavailable: {exc}") from None
    except Close as close:
        reason = close.reason
        raise
    finally:
        # on any exit: what the consumer holds goes back at once
        await gateway.close_consumer(consumer, reason)
    if not ws.closed:
        await ws.close(code=WSCloseCode.OK, message=_reason(reason))


async def _open(gateway: WebGateway, subscription: str, request: Request) -> Consumer:
    sub = request.subscribe
    assert sub is not None
    if not sub.consumer_id:
        raise Close(WSCloseCode.POLICY_VIOLATION, "subscribe.consumer_id: required")
    if sub.subscription is not None and sub.subscription != subscription:
        raise Close(WSCloseCode.POLICY_VIOLATION,
                    f'subscribe.subscription: "{sub.subscription}" differs from the '
                    f'subscription of the URL, "{subscription}"')
    if sub.correlation_id is not None and not sub.correlation_id:
        raise Close(WSCloseCode.POLICY_VIOLATION,
                    "subscribe.correlation_id: must not be empty when set")
    if sub.max_batch_size is not None and sub.max_batch_size < 1:
        raise Close(WSCloseCode.POLICY_VIOLATION, "subscribe.max_batch_size: must be >= 1")
    try:
        start = start_position(
            from_sequence=sub.from_sequence, from_time=sub.from_time,
            from_beginning=sub.from_beginning, new_only=sub.new_only,
            names=("subscribe.from_sequence", "subscribe.from_time", "subscribe.from_beginning",
                   "subscribe.new_only"))
        return await gateway.open_consumer(
            subscription, sub.consumer_id, correlation_id=sub.correlation_id,
            event_types=sub.event_types or None,
            terminal_event_types=sub.terminal_event_types or None, window=sub.window,
            metadata={**sub.metadata, "transport": "websocket"}, start=start)
    except ConsumerLimitError as exc:
        raise Close(WSCloseCode.TRY_AGAIN_LATER, f"subscribe.subscription: {exc}") from None
    except ConsumerClosedError as exc:
        raise Close(WSCloseCode.TRY_AGAIN_LATER, f"{exc}; retry") from None
    except StoreUnavailableError as exc:
        raise Close(WSCloseCode.TRY_AGAIN_LATER, f"store unavailable: {exc}") from None
    except (ValueError, SvrntyEventsError) as exc:
        text = str(exc)
        raise Close(WSCloseCode.POLICY_VIOLATION,
                    text if text.startswith("subscribe.") else f"subscribe: {text}") from None


async def _serve(gateway: WebGateway, consumer: Consumer, ws: web.WebSocketResponse,
                 request: Request) -> str:
    """Run the sender and the reader until one ends; return why."""
    sub = request.subscribe
    assert sub is not None
    limit = gateway.options.max_batch
    batch_size = min(sub.max_batch_size or limit, limit)
    await _send(ws, ({"subscribed": {
        "subscription": consumer.subscription, "consumer_id": consumer.consumer_id,
        "stream": consumer.stream, "window": consumer.window, "max_batch_size": batch_size,
        "heartbeat_timeout_seconds": consumer.config.heartbeat_timeout}}))
    settled = asyncio.Event()
    reader = asyncio.ensure_future(_read_loop(consumer, ws, settled))
    sender = asyncio.ensure_future(_send_loop(consumer, ws, settled, reader, batch_size))
    tasks = (reader, sender)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        done = reader if reader.done() else sender
        return done.result()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task


async def _read_loop(consumer: Consumer, ws: web.WebSocketResponse,
                     settled: asyncio.Event) -> str:
    async for msg in ws:
        if msg.type == WSMsgType.ERROR:
            return f"connection error: {ws.exception()}"
        kind, request = _decode(msg)
        if kind == "ack":
            assert request.ack is not None
            await _settle(consumer, "ack.event_ids", consumer.ack(request.ack.event_ids))
            settled.set()
        elif kind == "nack":
            nack = request.nack
            assert nack is not None
            if not nack.event_id:
                raise Close(WSCloseCode.POLICY_VIOLATION, "nack.event_id: required")
            try:
                await _settle(consumer, "nack.event_id", consumer.nack(
                    nack.event_id, delay=nack.delay_seconds, reason=nack.reason))
            except ValueError:  # the engine refuses a delay that is not finite and >= 0
                raise Close(WSCloseCode.POLICY_VIOLATION,
                            "nack.delay_seconds: must be a finite number >= 0") from None
            settled.set()
        elif kind == "in_progress":
            assert request.in_progress is not None
            try:
                await consumer.extend(request.in_progress.event_ids)
            except UnknownDeliveryError as exc:
                if consumer.closed:
                    raise ConsumerClosedError(consumer.close_reason or "closed") from None
                # its deadline had passed and another consumer may have it: the client
                # learns it when its ack is refused
                log.info("in_progress of %s no longer holds: %s", consumer.consumer_id, exc)
        elif kind == "heartbeat":
            consumer.heartbeat()
        elif kind == "unsubscribe":
            return "unsubscribed"
        else:  # subscribe
            raise Close(WSCloseCode.POLICY_VIOLATION,
                        f'subscribe: this socket is already subscribed to '
                        f'"{consumer.subscription}" as consumer "{consumer.consumer_id}"; open '
                        "another socket to subscribe again")
    return "disconnected"


async def _settle(consumer: Consumer, field: str, call: Any) -> None:
    try:
        await call
    except UnknownDeliveryError as exc:
        if consumer.closed:
            raise ConsumerClosedError(consumer.close_reason or "closed") from None
        raise Close(WSCloseCode.POLICY_VIOLATION, f"{field}: {exc}") from None


async def _send_loop(consumer: Consumer, ws: web.WebSocketResponse, settled: asyncio.Event,
                     reader: asyncio.Future[str], batch_size: int) -> str:
    loop = asyncio.get_running_loop()
    while True:
        batch = await consumer.fetch(max_events=batch_size)
        if batch:
            await _send(ws, ({"events": [envelope(d) for d in batch]}))
        if consumer.completed:
            terminal = next((d for d in batch if d.terminal), None)
            await _send(ws, ({"completed": {
                "event_id": terminal.id if terminal else None,
                "event_type": terminal.type if terminal else None}}))
            # let the client settle what it holds (the terminal event among them) before the
            # socket closes; it may also unsubscribe, which ends the reader
            deadline = loop.time() + consumer.config.visibility_timeout
            while consumer.held and not reader.done():
                settled.clear()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                with suppress(TimeoutError):
                    await asyncio.wait_for(settled.wait(), remaining)
            return "completed"
