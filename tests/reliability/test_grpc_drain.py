"""A graceful stop drains remote consumers: the server stops sending, says ``draining``, and
applies the acks and nacks that come back until the consumer holds nothing it was sent, leaves,
or the drain time passes; only then does the stream end with UNAVAILABLE. Acks on the wire at
the stop are not lost, so nothing a client processed and acked is delivered again."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

import svrnty_events_grpc.plugin
from svrnty_events import EventStreaming
from svrnty_events_grpc import EventClient, RemoteError
from svrnty_events_grpc.proto import events_pb2 as pb

from .grpc_support import (
    LedgerStore,
    ledger,
    new_streaming,
    publish_jobs,
    raw_subscribe,
    running,
    target,
    until,
    within,
)

TOTAL = 4000
WINDOW = 10
#: the drain of a host stopped with the default grace (5 s): half of it, at most drain_timeout
DEFAULT_DRAIN = 2.0


def _ledger_streaming(**grpc_options: Any) -> EventStreaming:
    streaming = new_streaming(**grpc_options)
    streaming.add_stream("jobs", type="persistent")
    streaming.add_subscription("jobs", "work", mode="exclusive", window=WINDOW,
                               visibility_timeout=300.0)
    return streaming


def _claimable_at_close(store: LedgerStore) -> dict[str, int]:
    assert store.claimable_at_close is not None
    return store.claimable_at_close[("work", "")]


def _sqlite_streaming(db: Path, **grpc_options: Any) -> EventStreaming:
    sqlite_plugin = pytest.importorskip("svrnty_events_sqlite.plugin")
    streaming = EventStreaming(store="sqlite", store_options={"path": str(db)},
                               load_entrypoints=False,
                               plugins=[sqlite_plugin, svrnty_events_grpc.plugin])
    streaming.add_stream("jobs", type="persistent")
    streaming.add_subscription("jobs", "work", mode="exclusive", window=200,
                               visibility_timeout=300.0)
    streaming.add_delivery("grpc", **{"host": "127.0.0.1", "port": 0, **grpc_options})
    return streaming


@pytest.mark.parametrize("mode", ["immediate", "batched"])
async def test_a_graceful_stop_under_load_delivers_nothing_that_was_acked_twice(
        tmp_path: Path, mode: str):
    """An auto-acking remote loop is mid-stream when the host stops; a new host on the same
    database delivers the rest. Every event is processed, none twice, and the rest all come at
    attempt 1: what the client had buffered was given back as never seen (its ids go with the
    unsubscribe), what the server had claimed and not sent too."""
    db = tmp_path / "events.db"
    processed: list[str] = []
    host = _sqlite_streaming(db).build_host()
    await within(host.start())
    try:
        ids = [e.id for e in await publish_jobs(host, "jobs", range(TOTAL))]
        async with EventClient(target(host)) as client:
            async def consume() -> None:
                async with client.subscribe("work", "first",
                                            delivery_mode=mode) as deliveries:
                    async for d in deliveries:
                        processed.append(d.id)
                        await asyncio.sleep(0)

            loop = asyncio.ensure_future(consume())
            try:
                await until(lambda: len(processed) >= TOTAL // 4 or loop.done(), 30.0)
                started = time.monotonic()
                await within(host.stop(), 10)
                stop_seconds = time.monotonic() - started
                with pytest.raises(RemoteError) as info:
                    await within(loop)
            finally:
                loop.cancel()
                await asyncio.gather(loop, return_exceptions=True)
        assert info.value.code == grpc.StatusCode.UNAVAILABLE and info.value.retryable
        assert "server is stopping" in info.value.details
        assert stop_seconds < 3.0, stop_seconds
    finally:
        await within(host.stop())
    first_run = len(processed)
    assert TOTAL // 4 <= first_run < TOTAL

    host = _sqlite_streaming(db).build_host()
    await within(host.start())
    try:
        async with EventClient(target(host)) as client, \
                client.subscribe("work", "second") as deliveries:
            second_attempts: Counter[int] = Counter()
            while not set(ids) <= set(processed):
                d = await within(deliveries.__anext__())
                processed.append(d.id)
                second_attempts[d.attempt] += 1
            assert await within(deliveries.next(timeout=0.5)) is None
        [stats] = await within(host.subscription_stats("work"))
        assert stats["lag"] == 0 and stats["in_flight"] == 0
    finally:
        await within(host.stop())
    twice = sorted(i for i, n in Counter(processed).items() if n > 1)
    assert not twice, (f"{len(twice)} events processed twice ({first_run} processed before "
                       f"the stop)")
    assert sorted(processed) == sorted(ids)
    assert second_attempts == Counter({1: TOTAL - first_run}), second_attempts


def _response_class_without_draining() -> Any:
    """SubscribeResponse as code generated before ``draining`` existed reads it."""
    pool = descriptor_pool.DescriptorPool()
    for module in (timestamp_pb2, pb):
        file = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(file)
        for message in file.message_type:
            if message.name == "SubscribeResponse":
                fields = [f for f in message.field if f.name != "draining"]
                del message.field[:]
                message.field.extend(fields)
        pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("svrnty.events.v1.SubscribeResponse"))


async def test_a_client_that_ignores_draining_gets_unavailable_once_the_drain_time_passed():
    """A client of the protocol before ``draining`` reads the message as an empty response and
    never acks: the stream ends with UNAVAILABLE once the drain time passed, the stop is not
    held longer, and what it held is released."""
    old_response = _response_class_without_draining()
    async with running(_ledger_streaming()) as host:
        store = ledger(host)
        ids = [e.id for e in await publish_jobs(host, "jobs", range(3 * WINDOW))]
        channel = grpc.aio.insecure_channel(target(host))
        try:
            call = raw_subscribe(channel)
            await within(call.write(pb.SubscribeRequest(subscribe=pb.Subscribe(
                subscription="work", consumer_id="old")).SerializeToString()))
            events = 0
            while events < WINDOW:
                message = old_response.FromString(await within(call.read()))
                events += len(message.events.events)
            loop = asyncio.get_running_loop()
            started = loop.time()
            stop = asyncio.ensure_future(host.stop())
            try:
                unknown = []
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    while True:
                        raw = await within(call.read())
                        assert raw is not grpc.aio.EOF
                        old = old_response.FromString(raw)
                        assert old.WhichOneof("response") is None  # an unknown member
                        unknown.append(pb.SubscribeResponse.FromString(raw))
                ended = loop.time() - started
                await within(stop)
                stopped = loop.time() - started
            finally:
                stop.cancel()
        finally:
            await channel.close()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details() == "server is stopping; retry"
    [draining] = unknown
    assert draining.WhichOneof("response") == "draining"
    assert 0 < draining.draining.grace_seconds <= DEFAULT_DRAIN
    assert DEFAULT_DRAIN - 0.1 <= ended < DEFAULT_DRAIN + 1.0, ended
    assert stopped < 3.0, stopped
    assert set(_claimable_at_close(store)) == set(ids)  # nothing acked, nothing lost


async def test_a_client_holding_deliveries_does_not_hold_the_stop_past_the_drain():
    """Deliveries in hand that are never settled: the stop ends after the drain time all the
    same; what was buffered is not handed out; every event not acked is released, none lost.
    A new Subscribe during the drain is refused with UNAVAILABLE."""
    async with running(_ledger_streaming()) as host:
        store = ledger(host)
        ids = [e.id for e in await publish_jobs(host, "jobs", range(3 * WINDOW))]
        async with EventClient(target(host)) as client:
            holder = client.subscribe("work", "holder", auto_ack=False)
            await within(holder.open())
            in_hand = [await within(holder.__anext__()) for _ in range(WINDOW)]
            for d in in_hand[:3]:
                await d.ack()
            await until(lambda: store.acked_count == 3
                         and host.consumers("work")[0]["delivered"] == WINDOW + 3)
            await until(lambda: len(holder._buffer) == 3)
            buffered = [d.id for d in holder._buffer]
            loop = asyncio.get_running_loop()
            started = loop.time()
            stop = asyncio.ensure_future(host.stop())
            try:
                await until(lambda: holder.draining)
                with pytest.raises(RemoteError) as refused:
                    await within(client.subscribe("work", "latecomer").open())
                with pytest.raises(RemoteError) as ended:
                    await within(holder.__anext__())  # the buffered 3 are not handed out
                await within(stop)
                stopped = loop.time() - started
            finally:
                stop.cancel()
            await within(holder.aclose())
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    assert ended.value.code == grpc.StatusCode.UNAVAILABLE and ended.value.retryable
    assert DEFAULT_DRAIN - 0.1 <= stopped < 3.0, stopped
    acked = {d.id for d in in_hand[:3]}
    assert set(store.acked) == acked
    claimable = _claimable_at_close(store)
    assert set(claimable) == set(ids) - acked
    assert all(claimable[d.id] == 2 for d in in_hand[3:])
    # the client gave the buffered ones back as soon as it heard of the drain (``release``):
    # no attempt counted for them, although its code held the others to the end
    assert all(claimable[i] == 1 for i in buffered), {i: claimable[i] for i in buffered}


async def test_a_drain_cuts_short_the_wait_of_a_batch_being_gathered():
    """Batched delivery with a batch delay longer than the drain: the server had taken three
    events and waited for more to fill its batch when the host stopped. The drain ends that
    wait, writes the batch, says ``draining``; the client gives the batch back unseen and
    leaves, so the stop ends early and no attempt is counted."""
    async with running(_ledger_streaming()) as host:
        store = ledger(host)
        ids = [e.id for e in await publish_jobs(host, "jobs", range(3))]
        async with EventClient(target(host)) as client:
            gatherer = client.subscribe("work", "gatherer", delivery_mode="batched",
                                        max_batch_size=100, max_batch_delay=30.0)
            await within(gatherer.open())
            await until(lambda: host.consumers("work")[0]["delivered"] == 3)
            loop = asyncio.get_running_loop()
            started = loop.time()
            stop = asyncio.ensure_future(host.stop())
            try:
                await until(lambda: gatherer.draining)
                with pytest.raises(RemoteError) as ended:
                    await within(gatherer.__anext__())
                await within(stop)
                stopped = loop.time() - started
            finally:
                stop.cancel()
            await within(gatherer.aclose())
    assert ended.value.code == grpc.StatusCode.UNAVAILABLE
    assert stopped < DEFAULT_DRAIN, stopped
    claimable = _claimable_at_close(store)
    assert set(claimable) == set(ids)
    assert set(claimable.values()) == {1}, claimable


async def test_acks_and_nacks_sent_during_the_drain_are_applied():
    """During a drain of up to 30 s the client nacks two of the events in hand (one to come
    back at once, one in 10 minutes) and acks the rest; it then leaves, and the stop ends at
    once. The nacks hold: the delayed one is not released early by the close."""
    streaming = _ledger_streaming(drain_timeout=30.0)
    host = streaming.build_host()
    await within(host.start())
    try:
        store = ledger(host)
        ids = [e.id for e in await publish_jobs(host, "jobs", range(3 * WINDOW))]
        async with EventClient(target(host)) as client:
            holder = client.subscribe("work", "holder", auto_ack=False)
            await within(holder.open())
            in_hand = [await within(holder.__anext__()) for _ in range(5)]
            await until(lambda: host.consumers("work")[0]["delivered"] == WINDOW)
            loop = asyncio.get_running_loop()
            stop = asyncio.ensure_future(host.stop(grace=120.0))
            try:
                await until(lambda: holder.draining)
                started = loop.time()
                await in_hand[0].nack(delay=0.0, reason="retry now")
                await in_hand[1].nack(delay=600.0, reason="retry later")
                for d in in_hand[2:]:
                    await d.ack()
                with pytest.raises(RemoteError) as ended:
                    await within(holder.__anext__())
                await within(stop)
                stopped = loop.time() - started
            finally:
                stop.cancel()
            await within(holder.aclose())
    finally:
        await within(host.stop())
    assert ended.value.code == grpc.StatusCode.UNAVAILABLE
    assert stopped < 10.0, stopped  # the client left: the 30 s drain was not waited out
    acked = {d.id for d in in_hand[2:]}
    assert set(store.acked) == acked
    claimable = _claimable_at_close(store)
    assert in_hand[1].id not in claimable  # nacked with a delay that a release did not cut
    assert claimable[in_hand[0].id] == 2
    assert set(claimable) == set(ids) - acked - {in_hand[1].id}
