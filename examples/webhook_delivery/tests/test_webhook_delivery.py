"""The webhook provider against a real receiver on 127.0.0.1 that fails on purpose."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from typing import Any

import msgspec
import pytest
from webhook_support import (
    SECRET,
    WebhookOrderPlaced,
    OrderWorkflow,
    Receiver,
    Reply,
    endpoint,
    eventually,
    make_streaming,
    orders,
)

from svrnty_events import EventStreamingHost
from svrnty_events.testing import within
from svrnty_events_webhook import (
    ATTEMPT_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    SUBSCRIPTION_HEADER,
    SignatureError,
    WebhookEvent,
    verify,
)


async def settled(host: EventStreamingHost, subscription: str = "billing") -> bool:
    """True once the webhook consumer of ``subscription`` holds nothing."""
    return all(c["in_flight"] == 0 for c in host.consumers(subscription))


async def dead_letters(host: EventStreamingHost, count: int, subscription: str = "billing"
                       ) -> list[Any]:
    async def check() -> list[Any]:
        letters = await host.dead_letters(subscription)
        return letters if len(letters) >= count else []

    return await eventually(check)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


async def test_each_event_is_posted_as_signed_json_and_acked(receiver: Receiver) -> None:
    async with make_streaming(endpoint(receiver.url)).run() as host:
        published = await host.publish("orders", orders(3), external=False)
        got = await receiver.wait_count(3)
        await eventually(lambda: settled(host))
        assert await host.dead_letters("billing") == []

    assert len(got) == 3
    by_id = {r.event_id: r for r in got}
    assert set(by_id) == {e.id for e in published}
    for event in published:
        request = by_id[event.id]
        # the signature verifies over the raw body, with the shared secret
        assert verify(SECRET, request.body, request.headers[SIGNATURE_HEADER]) > 0
        with pytest.raises(SignatureError):
            verify("another-secret-0123456789", request.body, request.headers[SIGNATURE_HEADER])
        with pytest.raises(SignatureError):
            verify(SECRET, request.body + b" ", request.headers[SIGNATURE_HEADER])
        body = msgspec.json.decode(request.body, type=WebhookEvent)
        assert (body.id, body.type, body.correlation_id, body.stream, body.subscription) == (
            event.id, "WebhookOrderPlaced", "wf-1", "orders", "billing")
        assert (body.sequence, body.attempt) == (event.sequence, 1)
        assert body.timestamp == event.timestamp
        assert body.data == msgspec.json.decode(event.data)
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers[EVENT_ID_HEADER] == event.id
        assert request.headers[EVENT_TYPE_HEADER] == "WebhookOrderPlaced"
        assert request.headers[ATTEMPT_HEADER] == "1"
        assert request.headers[SUBSCRIPTION_HEADER] == "billing"
        assert request.headers["User-Agent"].startswith("svrnty-events-webhook/")


async def test_events_of_a_command_carry_the_workflow_id(receiver: Receiver) -> None:
    class PlaceOrder(msgspec.Struct):
        order_id: int

    streaming = make_streaming(endpoint(receiver.url, headers={"Authorization": "Bearer t"}))

    @streaming.command_handler(PlaceOrder, workflow=OrderWorkflow)
    async def place(command: PlaceOrder, workflow: OrderWorkflow) -> None:
        workflow.emit(WebhookOrderPlaced(order_id=command.order_id, total=9.5))

    async with streaming.run() as host:
        result = await host.send(PlaceOrder(order_id=7))
        [request] = await receiver.wait_count(1)
    assert request.json["correlation_id"] == result.workflow_id
    assert request.json["data"] == {"order_id": 7, "total": 9.5}
    assert request.headers["Authorization"] == "Bearer t"


async def test_5xx_is_retried_with_exponential_backoff_then_acked(receiver: Receiver) -> None:
    receiver.reply(Reply(503), Reply(500), Reply(502))
    async with make_streaming(endpoint(receiver.url)).run() as host:
        [event] = await host.publish("orders", orders(1), external=False)
        got = await receiver.wait_count(4)
        await eventually(lambda: settled(host))
        await asyncio.sleep(0.3)  # and nothing more arrives: no retry storm
        assert len(receiver.received) == 4
        assert await host.dead_letters("billing") == []
    assert [r.event_id for r in got] == [event.id] * 4
    assert [r.attempt for r in got] == [1, 2, 3, 4]
    assert [r.headers[ATTEMPT_HEADER] for r in got] == ["1", "2", "3", "4"]
    assert [r.status for r in got] == [503, 500, 502, 200]
    # redelivery_delay 0.05, exponential: 0.05, 0.1, 0.2 (timer slack: a few ms early at most)
    for gap, expected in zip(gaps([r.at for r in got]), [0.05, 0.1, 0.2]):
        assert expected - 0.01 <= gap < expected + 0.5


@pytest.mark.parametrize("status", [408, 429, 500, 503, 504])
async def test_retryable_statuses_are_retried(receiver: Receiver, status: int) -> None:
    receiver.reply(Reply(status, body="later"))
    async with make_streaming(endpoint(receiver.url)).run() as host:
        await host.publish("orders", orders(1), external=False)
        got = await receiver.wait_count(2)
        await eventually(lambda: settled(host))
        assert await host.dead_letters("billing") == []
    assert [(r.status, r.attempt) for r in got] == [(status, 1), (200, 2)]


async def test_retry_after_is_honoured(receiver: Receiver) -> None:
    receiver.reply(Reply(429, headers={"Retry-After": "1"}), Reply(503, headers={
        "Retry-After": "0"}))
    async with make_streaming(endpoint(receiver.url)).run() as host:
        await host.publish("orders", orders(1), external=False)
        got = await receiver.wait_count(3)
        await eventually(lambda: settled(host))
    first, second = gaps([r.at for r in got])
    assert 0.99 <= first < 1.5  # waited as asked
    # Retry-After: 0 asks for less than the backoff (0.1 s after attempt 2): the backoff wins
    assert 0.09 <= second < 0.6


async def test_a_timeout_is_retried(receiver: Receiver) -> None:
    receiver.reply(Reply(200, delay=1.0))  # answers too late: the provider gave up at 0.2 s
    async with make_streaming(endpoint(receiver.url, timeout=0.2)).run() as host:
        [event] = await host.publish("orders", orders(1), external=False)
        got = await receiver.wait_for(
            lambda r: any(x.attempt == 2 and x.status == 200 for x in r))
        await eventually(lambda: settled(host))
        assert await host.dead_letters("billing") == []
    # at least once: the receiver may have handled attempt 1 too; both carry the same event id
    assert {r.event_id for r in got} == {event.id}


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
async def test_other_4xx_dead_letter_at_once_with_status_and_body_excerpt(
        receiver: Receiver, status: int) -> None:
    receiver.reply(Reply(status, body="no such hook: " + "x" * 2000))
    async with make_streaming(endpoint(receiver.url, body_excerpt=100)).run() as host:
        [event] = await host.publish("orders", orders(1), external=False)
        [letter] = await dead_letters(host, 1)
        await asyncio.sleep(0.2)
        assert len(receiver.received) == 1  # not retried
    assert letter.event.id == event.id
    assert letter.reason == f"HTTP {status}"
    assert letter.attempts == 1
    assert letter.error == "no such hook: " + "x" * 86 + "..."


async def test_exhausted_retries_dead_letter_with_the_last_status(receiver: Receiver) -> None:
    receiver.plan = lambda request: Reply(500, body="database is down")
    streaming = make_streaming(endpoint(receiver.url),
                               subscriptions={"billing": {"max_delivery_attempts": 3}})
    async with streaming.run() as host:
        [event] = await host.publish("orders", orders(1), external=False)
        [letter] = await dead_letters(host, 1)
        await asyncio.sleep(0.3)
        assert len(receiver.received) == 3
    assert [r.attempt for r in receiver.received] == [1, 2, 3]
    assert (letter.event.id, letter.reason, letter.error, letter.attempts) == (
        event.id, "HTTP 500", "database is down", 3)


async def test_connection_refused_is_retried_then_dead_lettered(down_receiver: Receiver) -> None:
    streaming = make_streaming(endpoint(down_receiver.url),
                               subscriptions={"billing": {"max_delivery_attempts": 2}})
    async with streaming.run() as host:
        [event] = await host.publish("orders", orders(1), external=False)
        [letter] = await dead_letters(host, 1)
    assert letter.event.id == event.id and letter.attempts == 2
    assert letter.reason.startswith("connection error: ")


async def test_nothing_is_lost_while_the_receiver_is_down(down_receiver: Receiver) -> None:
    receiver = down_receiver
    streaming = make_streaming(endpoint(receiver.url, concurrency=4), subscriptions={
        "billing": {"max_delivery_attempts": 0, "max_redelivery_delay": 0.2}})
    async with streaming.run() as host:
        # down from the start: connections are refused
        published = await host.publish("orders", orders(10), external=False)
        await asyncio.sleep(0.4)
        await receiver.start()
        await receiver.wait_for(lambda r: {e.id for e in published} <= set(receiver.ok_ids()))
        # up, then down again while events are being delivered, then back
        receiver.plan = lambda request: Reply(200, delay=0.05)
        published += await host.publish("orders", orders(20, start=10), external=False)
        await receiver.wait_count(len(receiver.received) + 3)
        await receiver.stop(keep_port=True)
        published += await host.publish("orders", orders(10, start=30), external=False)
        await asyncio.sleep(0.4)
        await receiver.start()
        await receiver.wait_for(lambda r: {e.id for e in published} <= set(receiver.ok_ids()))
        await eventually(lambda: settled(host))
        assert await host.dead_letters("billing") == []

    ids = {e.id for e in published}
    assert len(ids) == 40 and set(receiver.ok_ids()) == ids  # every event delivered
    # the events published while the receiver was down were retried, not dropped
    first_batch = {e.id for e in published[:10]}
    assert all(r.attempt > 1 for r in receiver.received if r.event_id in first_batch)
    # duplicates only where at least once allows: a request cut off by the shutdown is
    # retried as a later attempt; the same attempt of an event is never POSTed twice
    attempts: dict[str, list[int]] = defaultdict(list)
    for r in receiver.received:
        attempts[r.event_id].append(r.attempt)
    assert all(len(a) == len(set(a)) for a in attempts.values())
    assert all(a == sorted(a) for a in attempts.values())


async def test_concurrency_is_limited_per_endpoint(receiver: Receiver) -> None:
    receiver.plan = lambda request: Reply(200, delay=0.05)
    streaming = make_streaming(
        endpoint(receiver.url, "billing", "audit", concurrency=3),
        subscriptions={"billing": {}, "audit": {"mode": "broadcast"}})
    async with streaming.run() as host:
        published = await host.publish("orders", orders(15), external=False)
        got = await receiver.wait_count(30)
        await eventually(lambda: settled(host, "billing"))
        await eventually(lambda: settled(host, "audit"))
    assert receiver.max_in_flight == 3
    per_subscription = Counter((r.json["subscription"], r.event_id) for r in got)
    assert set(per_subscription) == {(s, e.id) for s in ("billing", "audit") for e in published}


async def test_endpoints_are_independent(receiver: Receiver) -> None:
    """A failing endpoint does not hold back another one, nor its subscriptions."""
    other = Receiver()
    await other.start()
    try:
        other.plan = lambda request: Reply(503, delay=0.02)
        streaming = make_streaming(
            endpoint(receiver.url, "billing", name="good"),
            endpoint(other.url, "audit", name="bad"),
            subscriptions={"billing": {}, "audit": {"max_delivery_attempts": 0}})
        async with streaming.run() as host:
            published = await host.publish("orders", orders(10), external=False)
            await receiver.wait_for(lambda r: set(receiver.ok_ids()) == {e.id for e in published})
            assert host.endpoints() == [
                f"webhook good: POST {receiver.url} <- billing",
                f"webhook bad: POST {other.url} <- audit"]
            assert {c["consumer_id"] for c in host.consumers("billing")} == {"webhook:good"}
    finally:
        await other.close()


async def test_stop_waits_for_requests_in_flight_within_grace(receiver: Receiver) -> None:
    def hang(request: Any) -> Reply:
        return Reply(200, delay=30.0) if request.json["data"]["order_id"] == 0 else Reply(200)

    receiver.plan = hang
    async with make_streaming(endpoint(receiver.url, timeout=60.0)).run() as host:
        await host.publish("orders", orders(1), external=False)
        await receiver.wait_for(lambda r: receiver.in_flight == 1)
        started = time.monotonic()
        await within(host.stop(grace=0.3), 5)
        assert 0.25 <= time.monotonic() - started < 2.0
