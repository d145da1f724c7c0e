"""Remote consumers crash: a consumer process killed with SIGKILL, a TCP connection cut, a client
that cancels. What they held goes back at once (not after the visibility timeout); over 20,000
events with crashes at random, every event is acked exactly once, none is lost, and every
duplicate delivery is a redelivery of an event that a crashed consumer held un-acked."""

from __future__ import annotations

import asyncio
import random
import signal
from contextlib import AsyncExitStack, suppress
from typing import Any

import grpc
import pytest

from svrnty_events import EventStreaming
from svrnty_events.testing import eventually
from svrnty_events_grpc import EventClient, RemoteError

from .grpc_support import (
    LedgerStore,
    TcpProxy,
    kill_process,
    ledger,
    new_streaming,
    publish_jobs,
    read_deliveries,
    running,
    start_consumer_process,
    target,
    within,
)

WINDOW = 50


def _streaming() -> EventStreaming:
    streaming = new_streaming()
    streaming.add_stream("jobs", type="ephemeral")
    # visibility far beyond the test: a crashed consumer's events can only come back because
    # the server released them when the connection went away
    streaming.add_subscription("jobs", "workers", mode="exclusive", window=WINDOW,
                               visibility_timeout=60.0, max_delivery_attempts=0)
    return streaming


async def _gone(host: Any, consumer_id: str, timeout: float = 5.0) -> None:
    async def wait() -> None:
        while any(c["consumer_id"] == consumer_id for c in host.consumers("workers")):
            await asyncio.sleep(0.01)

    await within(wait(), timeout)


async def _in_flight(host: Any, consumer_id: str, count: int) -> None:
    async def wait() -> None:
        while not any(c["consumer_id"] == consumer_id and c["in_flight"] == count
                      for c in host.consumers("workers")):
            await asyncio.sleep(0.01)

    await within(wait(), 10)


async def _redelivered_to_next_consumer(host: Any, held: set[str]) -> None:
    """A new consumer gets exactly the released events first, each at attempt 2."""
    async with EventClient(target(host)) as client:
        async with client.subscribe("workers", "next", window=WINDOW,
                                    auto_ack=False) as deliveries:
            got = {}
            while len(got) < len(held):
                d = await within(deliveries.__anext__(), 5)
                got[d.id] = d.attempt
                await d.ack()
    assert set(got) == held
    assert set(got.values()) == {2}


async def test_sigkilled_consumer_process_releases_what_it_held_at_once():
    async with running(_streaming()) as host:
        await publish_jobs(host, "jobs", range(200))
        proc = await start_consumer_process(target(host), "workers", "doomed", window=WINDOW,
                                            mode="hold")
        try:
            held = await read_deliveries(proc, WINDOW)
            await _in_flight(host, "doomed", WINDOW)
            proc.kill()
        finally:
            await kill_process(proc)
        await _gone(host, "doomed")  # well before the 60 s visibility timeout
        await _redelivered_to_next_consumer(host, {event_id for event_id, _ in held})
        assert {a for _, a in held} == {1}


async def test_cut_tcp_connection_releases_what_the_consumer_held_at_once():
    async with running(_streaming()) as host:
        await publish_jobs(host, "jobs", range(200))
        port = host.providers["grpc"].port
        async with TcpProxy(port) as proxy, EventClient(proxy.target) as client:
            async with client.subscribe("workers", "cut", window=WINDOW,
                                        auto_ack=False) as deliveries:
                held = {(await within(deliveries.__anext__())).id for _ in range(WINDOW)}
                await _in_flight(host, "cut", WINDOW)
                proxy.drop()
                with pytest.raises(RemoteError) as info:
                    await within(deliveries.next(timeout=8))
                assert info.value.code == grpc.StatusCode.UNAVAILABLE
                await _gone(host, "cut")
        await _redelivered_to_next_consumer(host, held)


TOTAL = 20_000


async def test_random_remote_crashes_lose_nothing():
    rng = random.Random(20261128)
    crashed: set[str] = set()
    counts = {"kill": 0, "drop": 0, "cancel": 0}
    async with running(_streaming()) as host:
        store = ledger(host)
        events = await publish_jobs(host, "jobs", range(TOTAL))
        port = host.providers["grpc"].port

        def done() -> bool:
            return store.acked_count >= TOTAL

        async def processes() -> None:
            """Consumer processes, each SIGKILLed after a random number of deliveries."""
            for i in range(10_000):
                if done():
                    return
                consumer_id = f"proc-{i}"
                crash_after = rng.randint(1, 1000)
                proc = await start_consumer_process(f"127.0.0.1:{port}", "workers",
                                                    consumer_id, window=WINDOW)
                try:
                    assert proc.stdout is not None
                    seen = 0
                    while seen < crash_after and not done():
                        with suppress(asyncio.TimeoutError, TimeoutError):
                            line = await asyncio.wait_for(proc.stdout.readline(), 0.2)
                            assert line, (await within(proc.stderr.read())).decode()[-2000:]
                            seen += 1
                    if seen >= crash_after:
                        crashed.add(consumer_id)
                        counts["kill"] += 1
                        with suppress(ProcessLookupError):
                            proc.kill()
                finally:
                    await kill_process(proc)

        async def clients() -> None:
            """In-process gRPC clients, each crashing after a random number of deliveries: the
            TCP connection is cut under them, or the client cancels its call."""
            for i in range(10_000):
                if done():
                    return
                consumer_id = f"client-{i}"
                crash_after = rng.randint(1, 1000)
                how = rng.choice(("drop", "cancel"))
                async with AsyncExitStack() as stack:
                    proxy = await stack.enter_async_context(TcpProxy(port))
                    client = await stack.enter_async_context(EventClient(proxy.target))
                    deliveries = await within(stack.enter_async_context(client.subscribe(
                        "workers", consumer_id, window=WINDOW, auto_ack=False)))
                    seen = 0
                    while seen < crash_after and not done():
                        d = await within(deliveries.next(timeout=0.2))
                        if d is not None:
                            seen += 1
                            await d.ack()
                    if seen < crash_after:
                        continue  # everything is acked: leave cleanly
                    crashed.add(consumer_id)
                    counts[how] += 1
                    if how == "drop":
                        proxy.drop()
                        with pytest.raises(RemoteError) as info:
                            for _ in range(WINDOW + 1):  # what was received, then the status
                                await within(deliveries.next(timeout=8))
                        _assert_connection_lost(info.value)
                    else:
                        await within(client.close())  # cancels the call: no unsubscribe, no acks sent

        async def chaos() -> None:
            async with asyncio.TaskGroup() as group:  # a failure cancels the other side
                group.create_task(processes())
                group.create_task(clients())

        await within(chaos(), 30)

        assert sum(counts.values()) >= 5, counts
        _check_ledger(store, [e.id for e in events], crashed)
        # every crashed consumer is dropped, once the server has seen its connection go (the
        # last process was killed just now)
        await eventually(lambda: asyncio.sleep(0, host.consumers("workers") == []), 10.0)


def _assert_connection_lost(error: RemoteError) -> None:
    """The client learns its connection was lost. gRPC reports UNAVAILABLE, except when the
    cut hits while the client is writing (here: acks): the aio client then ends the call with
    INTERNAL "Internal error from Core" (grpc/grpc#36066), which RemoteError.retryable does not
    count as retryable."""
    if error.code == grpc.StatusCode.INTERNAL:
        assert error.details == "Internal error from Core", error
    else:
        assert error.code == grpc.StatusCode.UNAVAILABLE, error


def _check_ledger(store: LedgerStore, ids: list[str], crashed: set[str]) -> None:
    """Every event acked exactly once; each was claimed at attempts 1, 2, ... in order (a claim
    released unseen, prefetched by a consumer whose code never saw it, gives its attempt back,
    so the next claim has the same attempt), and every claim but the last went to a consumer
    that crashed without acking it."""
    assert set(store.acked) == set(ids), "every event acked, none lost"
    assert all(len(ackers) == 1 for ackers in store.acked.values())
    duplicates = 0
    for event_id in ids:
        claims = store.claims[event_id]
        attempts = [attempt for _, attempt in claims]
        assert attempts[0] == 1 and all(b - a in (0, 1) for a, b in zip(attempts, attempts[1:])), \
            claims
        last_consumer, _ = claims[-1]
        assert store.acked[event_id] == [last_consumer], (event_id, claims)
        for consumer_id, _ in claims[:-1]:
            assert consumer_id in crashed, (event_id, claims)
        duplicates += len(claims) - 1
    # a crashed consumer held at most a window of un-acked events
    assert duplicates <= len(crashed) * WINDOW, (duplicates, len(crashed))


async def test_frozen_consumer_process_is_dropped_by_its_heartbeat_and_its_events_move():
    """A consumer process stopped with SIGSTOP after taking its window: the TCP connection stays
    open, but it sends nothing (no ack, heartbeat or request). It is dropped within twice its
    heartbeat timeout and what it held goes to another consumer."""
    streaming = new_streaming()
    streaming.add_stream("jobs", type="ephemeral")
    streaming.add_subscription("jobs", "workers", mode="exclusive", window=WINDOW,
                               visibility_timeout=60.0, heartbeat_timeout=1.0)
    async with running(streaming) as host:
        await publish_jobs(host, "jobs", range(200))
        proc = await start_consumer_process(target(host), "workers", "frozen", window=WINDOW,
                                            mode="hold")
        try:
            held = await read_deliveries(proc, WINDOW)
            await _in_flight(host, "frozen", WINDOW)
            proc.send_signal(signal.SIGSTOP)
            loop = asyncio.get_running_loop()
            stopped = loop.time()
            await _gone(host, "frozen", timeout=10)
            # dropped within 2x its heartbeat timeout (plus room for a busy machine's timers)
            assert loop.time() - stopped < 2 * 1.0 + 1.0
            await _redelivered_to_next_consumer(host, {event_id for event_id, _ in held})
        finally:
            with suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
            await kill_process(proc)
