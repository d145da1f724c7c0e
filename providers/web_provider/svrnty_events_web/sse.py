"""``GET /subscriptions/{name}/events``: a subscription as Server-Sent Events.

A browser cannot ack over SSE, so the connection settles each event itself once it has written
it out: delivery to one connection is at most once. What makes a reconnect lossless is the
position, which is the client's: each connection reads through a cursor of its own, started
after the ``Last-Event-ID`` the browser sends back (the sequence of the last event it received).
That holds wherever a consumer has a cursor of its own (broadcast, read_receipt, or scoped to a
correlation id); on a subscription whose consumers share one group (exclusive, consumer_group)
an SSE connection is one more competing consumer and ``Last-Event-ID`` cannot apply. For
at-least-once with acks from a browser, use the WebSocket endpoint.
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import datetime
from typing import Any

import msgspec
from aiohttp import web

from svrnty_events import Consumer, Delivery
from svrnty_events.errors import (
    ConfigError,
    ConsumerClosedError,
    StoreUnavailableError,
    SvrntyEventsError,
)
from svrnty_events.subscriptions import ConsumerLimitError

from .access import TOKEN_PARAMETER
from .gateway import Start, WebGateway, start_position
from .messages import encoder, envelope
from .problems import Problem, bad_parameter

log = logging.getLogger("svrnty_events.web")

PARAMETERS = ("consumer_id", "correlation_id", "event_types", "terminal_event_types", "window",
              "from_sequence", "from_time", "from_beginning", "new_only", "last_event_id",
              TOKEN_PARAMETER)
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_TRUE, _FALSE = {"", "1", "true", "yes"}, {"0", "false", "no"}


class SseRequest(msgspec.Struct, kw_only=True):
    consumer_id: str | None
    correlation_id: str | None
    event_types: list[str]
    terminal_event_types: list[str]
    window: int | None
    start: Start


def parse(request: web.Request) -> SseRequest:
    """The query parameters and ``Last-Event-ID``. Raises Problem 400 naming the parameter."""
    query = request.query
    for key in query:
        if key not in PARAMETERS:
            raise bad_parameter(key, f"unknown parameter; known: {', '.join(PARAMETERS)}")

    def one(name: str) -> str | None:
        values = query.getall(name, [])
        if len(values) > 1:
            raise bad_parameter(name, "given more than once")
        return values[0] if values else None

    def names(name: str) -> list[str]:
        out = [n.strip() for v in query.getall(name, []) for n in v.split(",")]
        if any(not n for n in out):
            raise bad_parameter(name, "expected comma-separated event type names, got an "
                                      "empty name")
        return out

    def integer(name: str, value: str | None, minimum: int) -> int | None:
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError:
            raise bad_parameter(name, f"expected an integer, got {value!r}") from None
        if number < minimum:
            raise bad_parameter(name, f"must be >= {minimum}")
        return number

    def flag(name: str) -> bool:
        value = one(name)
        if value is None:
            return False
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise bad_parameter(name, f"expected true or false, got {value!r}")

    consumer_id = one("consumer_id")
    if consumer_id is not None and not consumer_id.strip():
        raise bad_parameter("consumer_id", "must not be empty when given")
    correlation_id = one("correlation_id")
    if correlation_id is not None and not correlation_id:
        raise bad_parameter("correlation_id", "must not be empty when given")
    from_time = None
    raw_time = one("from_time")
    if raw_time is not None:
        try:
            from_time = datetime.fromisoformat(raw_time.replace("Z", "+00:00").replace(" ", "+"))
        except ValueError:
            raise bad_parameter("from_time", f"expected an ISO 8601 time "
                                f"(2026-01-31T12:00:00Z), got {raw_time!r}") from None
    try:
        start = start_position(
            from_sequence=integer("from_sequence", one("from_sequence"), 0),
            from_time=from_time, from_beginning=flag("from_beginning"),
            new_only=flag("new_only"),
            names=("from_sequence", "from_time", "from_beginning", "new_only"))
    except ValueError as exc:
        name = str(exc).partition(":")[0]
        raise bad_parameter(name, str(exc).partition(": ")[2]) from None
    # a reconnecting EventSource sends the header; a page opening a new one may pass the
    # parameter. Either wins over the start parameters: the client has seen up to there.
    last = request.headers.get("Last-Event-ID")
    where = "Last-Event-ID"
    if last is None:
        last, where = one("last_event_id"), "last_event_id"
    if last is not None and last.strip():
        seen = integer(where, last.strip(), 0)
        assert seen is not None
        start = seen + 1
    return SseRequest(consumer_id=consumer_id, correlation_id=correlation_id,
                      event_types=names("event_types"),
                      terminal_event_types=names("terminal_event_types"),
                      window=integer("window", one("window"), 1), start=start)


def message(delivery: Delivery) -> bytes:
    """One SSE message: ``id:`` the sequence, ``event:`` the type, ``data:`` the envelope."""
    body = encoder.encode(envelope(delivery))
    # a payload published by another service may hold line breaks between JSON tokens: each
    # line its own data field, which the browser joins back with "\n" (still the same JSON)
    data = b"".join(b"data: " + line + b"\n" for line in _LINE_BREAK.split(body))
    event_type = _LINE_BREAK.sub(b"", delivery.type.encode())
    return b"id: %d\nevent: %s\n%s\n" % (delivery.sequence, event_type, data)


async def sse_view(gateway: WebGateway, request: web.Request) -> web.StreamResponse:
    subscription = gateway.admit(request)
    params = parse(request)
    shared = gateway.shares_group(subscription, params.correlation_id)
    if shared:
        # one group for all consumers: the browser's Last-Event-ID is no position of its own
        # (an explicit start still places a group not created yet, as for any consumer)
        if "Last-Event-ID" in request.headers or "last_event_id" in request.query:
            params.start = None
        consumer_id = params.consumer_id or f"sse-{secrets.token_hex(4)}"
    else:
        # a cursor per connection: its position is the client's (Last-Event-ID)
        consumer_id = f"{params.consumer_id or 'sse'}-{secrets.token_hex(4)}"
    async with gateway.connection():
        try:
            consumer = await gateway.open_consumer(
                subscription, consumer_id, correlation_id=params.correlation_id,
                event_types=params.event_types or None,
                terminal_event_types=params.terminal_event_types or None,
                window=params.window, start=params.start, transient=not shared,
                metadata={"transport": "sse", "peer": str(request.remote or "")})
        except ConsumerLimitError as exc:
            raise Problem(503, "Too many consumers", f"subscription: {exc}",
                          headers={"Retry-After": "1"}) from None
        except (ConsumerClosedError, StoreUnavailableError) as exc:
            raise Problem(503, "Unavailable", f"{exc}; retry",
                          headers={"Retry-After": "1"}) from None
        except ConfigError as exc:
            # the engine names the argument in the path, e.g. "subscribe(event_types)"
            name = exc.path.partition("(")[2].rstrip(")") or "subscription"
            raise bad_parameter(name, exc.message) from None
        except (ValueError, SvrntyEventsError) as exc:
            raise bad_parameter("subscription", str(exc)) from None
        try:
            response = web.StreamResponse(headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache, no-transform",
                "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
                **gateway.access.cors_headers(request)})
            await response.prepare(request)
            await response.write(b"retry: %d\n: subscribed %s as %s\n\n" % (
                gateway.options.retry_ms, subscription.encode(), consumer_id.encode()))
            await _stream(gateway, consumer, response)
        except (ConnectionError, ConsumerClosedError):
            pass  # the browser went away, or the consumer was closed (host stopping, replaced)
        finally:
            await gateway.close_consumer(consumer, "disconnected")
    return response


async def _stream(gateway: WebGateway, consumer: Consumer, response: web.StreamResponse) -> None:
    keepalive = gateway.options.keepalive
    while True:
        batch = await consumer.fetch(timeout=keepalive)
        if batch:
            await response.write(b"".join(message(d) for d in batch))
            # written out: that is as far as SSE can tell (see the module docstring)
            await consumer.ack([d.id for d in batch])
        elif not consumer.completed:
            await response.write(b": keepalive\n\n")
        consumer.heartbeat()
        if consumer.completed:
            terminal = next((d for d in batch if d.terminal), None)
            completed: dict[str, Any] = {
                "event_id": terminal.id if terminal else None,
                "event_type": terminal.type if terminal else None}
            await response.write(b"event: completed\ndata: %s\n\n" % encoder.encode(completed))
            await response.write_eof()
            return
