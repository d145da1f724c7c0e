"""Subscribe over the wire: payloads, filters, terminal completion, acks, nacks, redelivery."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import grpc
import grpc.aio
import pytest
from conftest import (
    OrderClosed,
    OrderPlaced,
    OrderShipped,
    append,
    build_streaming,
    running,
    target,
    within,
)

from svrnty_events.errors import UnknownDeliveryError
from svrnty_events_grpc import EventClient, RemoteError
from svrnty_events_grpc.proto import events_pb2 as pb
from svrnty_events_grpc.proto import events_pb2_grpc as pb_grpc


async def test_user_event_round_trips_with_its_envelope(host, client):
    [appended] = await append(host, OrderPlaced(order_id=7, amount=9.5, items=["a", "b"]),
                              correlation_id="wf-7")
    async with client.subscribe("all", "c1") as deliveries:
        d = await within(deliveries.__anext__())
    assert d.event == OrderPlaced(order_id=7, amount=9.5, items=["a", "b"])
    assert (d.id, d.type, d.correlation_id, d.stream, d.sequence, d.attempt) == (
        appended.id, "OrderPlaced", "wf-7", "orders", 0, 1)
    assert d.content_type == "application/json"
    assert json.loads(d.data) == {"order_id": 7, "amount": 9.5, "items": ["a", "b"]}
    assert abs((d.timestamp - appended.timestamp).total_seconds()) < 1e-5
    assert d.timestamp.tzinfo is not None and d.timestamp <= datetime.now(timezone.utc)
    assert d.subscription == "all"


async def test_headers_and_non_json_payloads_pass_through(host, client):
    from svrnty_events.events import RecordedEvent, utcnow

    raw = RecordedEvent(id="e-bin", stream="orders", type="Blob", correlation_id="wf",
                        timestamp=utcnow(), data=b"\x00\xff", content_type="application/octet-stream",
                        headers={"trace": "t-1"})
    await host.publish("orders", [raw], external=False)
    async with client.subscribe("all", "c1") as deliveries:
        d = await within(deliveries.__anext__())
    assert (d.id, d.data, d.content_type, d.headers, d.event) == (
        "e-bin", b"\x00\xff", "application/octet-stream", {"trace": "t-1"}, b"\x00\xff")


async def test_several_ready_events_travel_in_one_message(host):
    await append(host, *[OrderPlaced(order_id=i, amount=1.0) for i in range(50)])
    async with grpc.aio.insecure_channel(target(host)) as channel:
        call = pb_grpc.EventServiceStub(channel).Subscribe()
        await call.write(pb.SubscribeRequest(subscribe=pb.Subscribe(
            subscription="work", consumer_id="raw", window=50)))
        first = await within(call.read())
        assert first.WhichOneof("response") == "subscribed"
        assert (first.subscribed.window, first.subscribed.stream) == (50, "orders")
        batch = await within(call.read())
        assert len(batch.events.events) == 50
        # one ack message settles the whole batch
        await call.write(pb.SubscribeRequest(ack=pb.Ack(
            event_ids=[e.id for e in batch.events.events])))
        await call.write(pb.SubscribeRequest(unsubscribe=pb.Unsubscribe()))
        assert await within(call.read()) is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
    async with EventClient(target(host)) as c, c.subscribe("work", "next") as deliveries:
        assert await deliveries.next(timeout=0.3) is None  # all 50 settled by one ack


async def test_batched_mode_fills_batches(host, client):
    async def trickle():
        for i in range(20):
            await append(host, OrderPlaced(order_id=i, amount=1.0))
            await asyncio.sleep(0.002)

    sizes = []
    async with grpc.aio.insecure_channel(target(host)) as channel:
        call = pb_grpc.EventServiceStub(channel).Subscribe()
        await call.write(pb.SubscribeRequest(subscribe=pb.Subscribe(
            subscription="all", consumer_id="b", delivery_mode=pb.DELIVERY_MODE_BATCHED,
            max_batch_size=20, max_batch_delay_ms=500)))
        await within(call.read())
        feeder = asyncio.ensure_future(trickle())
        try:
            got = 0
            while got < 20:
                msg = await within(call.read())
                sizes.append(len(msg.events.events))
                got += sizes[-1]
        finally:
            await within(feeder)
        call.cancel()
    assert sum(sizes) == 20 and len(sizes) < 20


async def test_subscription_and_consumer_filters(host, client):
    await append(host, OrderPlaced(order_id=1, amount=1.0), OrderShipped(order_id=1),
                 OrderClosed(order_id=1))
    async with client.subscribe("shipping", "s") as deliveries:
        d = await within(deliveries.__anext__())
        assert d.event == OrderShipped(order_id=1)
        assert await deliveries.next(timeout=0.3) is None
    async with client.subscribe("all", "closing", event_types=[OrderClosed]) as deliveries:
        d = await within(deliveries.__anext__())
        assert d.type == "OrderClosed"
        assert await deliveries.next(timeout=0.3) is None


async def test_correlation_filter_and_terminal_completion(host, client):
    await append(host, OrderPlaced(order_id=1, amount=1.0), correlation_id="wf-a")
    await append(host, OrderPlaced(order_id=2, amount=2.0), correlation_id="wf-b")
    await append(host, OrderShipped(order_id=1), OrderClosed(order_id=1),
                 OrderShipped(order_id=99), correlation_id="wf-a")
    seen = []

    async def consume():
        async with client.subscribe("tracking", "t", correlation_id="wf-a") as deliveries:
            async for d in deliveries:
                seen.append(d.type)
            return deliveries

    deliveries = await within(consume())
    assert seen == ["OrderPlaced", "OrderShipped", "OrderClosed"]
    assert deliveries.completed and deliveries.completed_event_id


async def test_terminal_event_ends_the_stream_with_completed_and_ok(host):
    await append(host, OrderPlaced(order_id=1, amount=1.0), OrderClosed(order_id=1),
                 correlation_id="wf-x")
    async with grpc.aio.insecure_channel(target(host)) as channel:
        call = pb_grpc.EventServiceStub(channel).Subscribe()
        await call.write(pb.SubscribeRequest(subscribe=pb.Subscribe(
            subscription="all", consumer_id="t", correlation_id="wf-x",
            terminal_event_types=["OrderClosed"])))
        await within(call.read())
        ids, kinds = [], []
        while True:
            msg = await within(call.read())
            kinds.append(msg.WhichOneof("response"))
            if kinds[-1] == "events":
                ids += [e.id for e in msg.events.events]
            else:
                completed = msg.completed
                break
        assert completed.event_type == "OrderClosed" and completed.event_id == ids[-1]
        await call.write(pb.SubscribeRequest(ack=pb.Ack(event_ids=ids)))
        assert await within(call.read()) is grpc.aio.EOF
        assert await within(call.code()) == grpc.StatusCode.OK


async def test_nack_with_delay_redelivers_after_the_delay(host, client):
    await append(host, OrderPlaced(order_id=1, amount=1.0))
    async with client.subscribe("all", "n", auto_ack=False) as deliveries:
        d = await within(deliveries.__anext__())
        assert d.attempt == 1
        nacked_at = time.monotonic()
        await d.nack(delay=0.4, reason="not now")
        again = await within(deliveries.__anext__())
        assert time.monotonic() - nacked_at >= 0.35
        assert (again.id, again.attempt) == (d.id, 2)
        await again.ack()
        assert await deliveries.next(timeout=0.5) is None


async def test_unacked_events_come_back_after_the_visibility_timeout(host, client):
    await append(host, OrderPlaced(order_id=1, amount=1.0))
    async with client.subscribe("all", "v", auto_ack=False) as deliveries:
        d = await within(deliveries.__anext__())
        again = await within(deliveries.__anext__())  # visibility_timeout = 0.3
        assert (again.id, again.attempt) == (d.id, 2)
        with pytest.raises(UnknownDeliveryError):
            await d.ack()  # superseded by the redelivery, as in-process
        await again.ack()
        assert await deliveries.next(timeout=0.5) is None  # the stream is intact


async def test_auto_ack_skips_a_delivery_its_redelivery_superseded():
    """A slow loop body holds a delivery past the visibility timeout (1 s): the server hands
    the event out again, the redelivery reaches the buffer, and the automatic ack of the old
    delivery is skipped (it would settle nothing) instead of raising out of the loop. The
    redelivery is handed out next and acked by the exit."""
    streaming = build_streaming()
    streaming.add_subscription("orders", "slowish", mode="exclusive", visibility_timeout=1.0)
    async with streaming.run() as host, EventClient(target(host)) as client:
        [appended] = await append(host, OrderPlaced(order_id=1, amount=1.0))
        async with client.subscribe("slowish", "body") as deliveries:
            first = await within(deliveries.__anext__())
            assert first.attempt == 1

            async def superseded() -> None:
                while deliveries._held.get(first.id) is first:
                    await asyncio.sleep(0.01)

            await within(superseded())  # the redelivery arrived while the body "worked"
            again = await within(deliveries.__anext__())  # no UnknownDeliveryError
            assert (again.id, again.attempt) == (appended.id, 2)
        # acked by the exit: another consumer gets nothing (not acked, it would get the
        # event at once: the close released it)
        async with client.subscribe("slowish", "other") as deliveries:
            assert await deliveries.next(timeout=0.5) is None


async def test_in_progress_keeps_a_slow_event_from_coming_back(host, client):
    """A remote handler working longer than the visibility timeout (0.3 s) says so: the event
    is not redelivered meanwhile, and the partition travels with it."""
    await append(host, OrderPlaced(order_id=1, amount=1.0))
    async with client.subscribe("all", "slow", auto_ack=False) as deliveries:
        d = await within(deliveries.__anext__())
        assert d.partition == 0
        for _ in range(6):  # 0.9 s of work, three visibility timeouts
            await d.in_progress()
            assert await deliveries.next(timeout=0.15) is None
        await d.ack()
        assert await deliveries.next(timeout=0.5) is None


async def test_acks_are_batched_and_settle(host, client):
    await append(host, *[OrderPlaced(order_id=i, amount=1.0) for i in range(300)])
    got = []
    async with client.subscribe("work", "w", window=300) as deliveries:
        async for d in deliveries:
            got.append(d.sequence)
            if len(got) == 300:
                break
    assert sorted(got) == list(range(300))
    async with client.subscribe("work", "w2") as deliveries:
        assert await deliveries.next(timeout=0.3) is None  # all acked, nothing redelivered


async def test_auto_ack_nacks_when_the_body_raises(host, client):
    await append(host, OrderPlaced(order_id=1, amount=1.0))
    with pytest.raises(RuntimeError):
        async with client.subscribe("quick", "q") as deliveries:
            async for d in deliveries:
                raise RuntimeError("boom")
    async with client.subscribe("quick", "q") as deliveries:
        d = await within(deliveries.__anext__())
        assert d.attempt == 2


async def test_disconnect_releases_in_flight_events_to_another_consumer_at_once(host):
    # "work" has a 30 s visibility timeout: only the disconnect can explain a fast redelivery
    await append(host, OrderPlaced(order_id=1, amount=1.0))
    a = EventClient(target(host))
    try:
        sub = a.subscribe("work", "a", auto_ack=False)
        await within(sub.open())
        d = await within(sub.__anext__())
    finally:
        await a.close()  # cancels the call: a dropped connection, no unsubscribe
    async with EventClient(target(host)) as b:
        async with b.subscribe("work", "b") as deliveries:
            again = await within(deliveries.__anext__(), 5.0)
    assert again.id == d.id and again.attempt == 2


async def test_killed_client_process_releases_its_events(host, tmp_path):
    import sys

    await append(host, OrderPlaced(order_id=1, amount=1.0))
    script = tmp_path / "hold.py"
    script.write_text(
        "import asyncio, sys\n"
        "from svrnty_events_grpc import EventClient\n"
        "async def main():\n"
        "    async with EventClient(sys.argv[1]) as c:\n"
        "        async with c.subscribe('work', 'victim', auto_ack=False) as s:\n"
        "            d = await s.__anext__()\n"
        "            print(d.id, flush=True)\n"
        "            await asyncio.sleep(60)\n"
        "asyncio.run(main())\n")
    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), target(host),
                                                stdout=asyncio.subprocess.PIPE)
    try:
        held = (await within(proc.stdout.readline(), 20)).decode().strip()
        assert held
        assert host.consumers("work")[0]["in_flight"] == 1
    finally:
        proc.kill()
        await within(proc.wait())
    async with EventClient(target(host)) as c:
        async with c.subscribe("work", "survivor") as deliveries:
            d = await within(deliveries.__anext__(), 5.0)
    assert d.id == held


async def test_host_stop_ends_streams_with_unavailable():
    async with running() as h:
        async with EventClient(target(h)) as c:
            sub = c.subscribe("all", "s")
            await within(sub.open())
            waiting = asyncio.ensure_future(sub.__anext__())
            await asyncio.sleep(0.05)
            await within(h.stop(grace=1.0))
            with pytest.raises(RemoteError) as info:
                await within(waiting)
            assert info.value.code == grpc.StatusCode.UNAVAILABLE
            await sub.aclose()


async def test_remote_consumer_is_listed(host, client):
    async with client.subscribe("all", "listed", metadata={"region": "eu"}):
        [info] = await within(client.consumers("all"))
    assert info["consumer_id"] == "listed" and info["metadata"] == {"region": "eu"}
    assert await within(client.consumers("all")) == []  # unsubscribed: gone


async def test_a_cancelled_or_timed_out_wait_leaves_the_stream_and_its_order_intact(host, client):
    async with client.subscribe("work", "patient") as deliveries:
        assert await deliveries.next(timeout=0.05) is None
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(deliveries.__anext__(), 0.05)  # cancels the wait
        await append(host, *[OrderPlaced(order_id=i, amount=1.0) for i in range(200)])
        seen = []
        while len(seen) < 200:
            d = await within(deliveries.__anext__())
            seen.append(d.event.order_id)
        assert seen == list(range(200))  # each once, in order
        assert await deliveries.next(timeout=0.2) is None
    async with client.subscribe("work", "after") as deliveries:
        assert await deliveries.next(timeout=0.3) is None  # all acked


async def _until(predicate: Callable[[], bool]) -> None:
    async def wait() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await within(wait())


async def _one_in_hand_four_buffered(host: Any, client: EventClient, subscription: str
                                     ) -> tuple[Any, Any]:
    """Five events appended, a subscriber that handed out the first and buffered the rest."""
    await append(host, *[OrderPlaced(order_id=i, amount=1.0) for i in range(5)])
    sub = client.subscribe(subscription, "s", auto_ack=False)
    await within(sub.open())
    first = await within(sub.__anext__())
    await _until(lambda: len(sub._buffer) == 4)
    return sub, first


async def test_deliveries_that_came_before_an_error_status_are_handed_out_first():
    async with running() as h:
        async with EventClient(target(h)) as c:
            sub, first = await _one_in_hand_four_buffered(h, c, "all")
            # the reader has the batch; the stream then ends with ABORTED, as another
            # connection takes the consumer id
            async with c.subscribe("all", "s", auto_ack=False):
                rest = [await within(sub.__anext__()) for _ in range(4)]
                assert [d.event.order_id for d in (first, *rest)] == list(range(5))
                with pytest.raises(RemoteError) as info:
                    await within(sub.__anext__())
                assert info.value.code == grpc.StatusCode.ABORTED
                assert await within(sub.next(timeout=0.1)) is None  # ended: stays ended
                await sub.aclose()


async def test_a_draining_server_gets_the_acks_of_what_code_had_and_hands_out_no_more():
    """On a graceful stop the buffered deliveries are not handed out (the server releases
    them); the ack of the one in hand is applied, then the subscriber leaves and the stream
    ends with UNAVAILABLE without waiting out the drain."""
    async with running(drain_timeout=30.0) as h:
        async with EventClient(target(h)) as c:
            sub, first = await _one_in_hand_four_buffered(h, c, "work")
            stop = asyncio.ensure_future(h.stop(grace=120.0))  # a drain of up to 30 s
            try:
                await _until(lambda: sub.draining)
                assert not sub._buffer
                await first.ack()
                with pytest.raises(RemoteError) as info:
                    await within(sub.__anext__())  # nothing buffered is handed out
                assert info.value.code == grpc.StatusCode.UNAVAILABLE
                assert info.value.details == "server is stopping; retry"
                await within(stop)  # the client left: no drain of 30 s
            finally:
                stop.cancel()
            await sub.aclose()
