"""Stopping a host with events in flight: remote consumers see their stream end with UNAVAILABLE
(retry), in-process iterators end, every event a consumer held goes back to the store, nothing
acked comes back, and ``svrnty-events serve`` exits 0 promptly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import grpc
import pytest

from svrnty_events import EventStreaming
from svrnty_events_grpc import EventClient, RemoteError

from ..support import CLI, subprocess_env
from .grpc_support import (
    Job,
    LedgerStore,
    kill_process,
    ledger,
    new_streaming,
    publish_jobs,
    running,
    target,
    until,
    within,
)

WINDOW = 10


async def _read_to_status(deliveries: Any) -> tuple[list[Any], RemoteError]:
    """What the subscriber still had buffered, then the error that ended its stream."""
    rest = []
    with pytest.raises(RemoteError) as info:
        for _ in range(10 * WINDOW):
            d = await within(deliveries.next(timeout=10))
            assert d is not None, "the stream did not end"
            rest.append(d)
    return rest, info.value


# --- in-process: host.stop() --------------------------------------------------------------------


def _streaming() -> EventStreaming:
    streaming = new_streaming()
    # a stream per subscription: the ledger counts per event id
    for name in ("local", "remote", "workers"):
        streaming.add_stream(name, type="persistent")
        streaming.add_subscription(name, name, mode="exclusive", window=WINDOW,
                                   visibility_timeout=300.0)
    return streaming


def _check_returned(store: LedgerStore, subscription: str, ids: list[str]) -> None:
    """At close, every event of the subscription not acked was claimable again, at the attempt
    after its deliveries so far; no acked event was."""
    assert store.claimable_at_close is not None
    claimable = store.claimable_at_close[(subscription, "")]
    acked = {i for i in ids if i in store.acked}
    assert set(claimable) == set(ids) - acked, "held events returned, acked ones not"
    for event_id, attempt in claimable.items():
        delivered = store.claims[event_id]
        # a hand-over to code counts as an attempt: a claim that was only prefetched by an
        # iterator and never reached its loop body gives its attempt back, so the next claim
        # is the last one's attempt again (never seen) or one more (seen)
        last = delivered[-1][1] if delivered else 0
        assert attempt in (last, last + 1), (event_id, attempt, delivered)
        assert attempt >= 1


async def test_host_stop_ends_consumers_and_returns_what_they_held():
    streaming = _streaming()
    host = streaming.build_host()
    await within(host.start())
    try:
        store = ledger(host)
        local_ids = [e.id for e in await publish_jobs(host, "local", range(30))]
        remote_ids = [e.id for e in await publish_jobs(host, "remote", range(30))]

        # in-process: 14 delivered, 4 acked, 10 held, and one more fetch waiting for room
        local = host.subscribe("local", "local", auto_ack=False)
        got = [await within(local.__anext__()) for _ in range(WINDOW)]
        for d in got[:4]:
            await within(d.ack())
        got += [await within(local.__anext__()) for _ in range(4)]
        waiting = asyncio.ensure_future(local.__anext__())

        # remote: 13 delivered, 3 acked, 10 held
        client = EventClient(target(host))
        remote = client.subscribe("remote", "remote", auto_ack=False)
        await within(remote.open())
        first = [await within(remote.__anext__()) for _ in range(WINDOW)]
        for d in first[:3]:
            await d.ack()
        await until(lambda: len(store.acked) == 7
                     and host.consumers("remote")[0]["delivered"] == 13)

        started = time.monotonic()
        await within(host.stop(), 10)
        assert time.monotonic() - started < 3.0

        with pytest.raises(StopAsyncIteration):
            await within(waiting)
        with pytest.raises(StopAsyncIteration):
            await within(local.__anext__())
        _, error = await _read_to_status(remote)
        assert error.code == grpc.StatusCode.UNAVAILABLE and error.retryable
        await within(remote.aclose())
        await within(client.close())

        assert set(store.acked) == {d.id for d in got[:4]} | {d.id for d in first[:3]}
        _check_returned(store, "local", local_ids)
        _check_returned(store, "remote", remote_ids)
    finally:
        await within(host.stop())


async def _stop_while_loops_run() -> tuple[LedgerStore, list[str], set[str]]:
    """Three auto-acking loops are mid-stream when the host stops; return the store, the
    event ids and the ids the loops handled."""
    async with running(_streaming()) as host:
        store = ledger(host)
        ids = [e.id for e in await publish_jobs(host, "workers", range(2000))]
        handled: set[str] = set()
        busy = asyncio.Event()

        async def loop(consumer_id: str) -> None:
            async with host.subscribe("workers", consumer_id) as deliveries:
                async for d in deliveries:
                    handled.add(d.id)
                    if len(handled) == 500:
                        busy.set()
                    await asyncio.sleep(0)

        loops = [asyncio.ensure_future(loop(f"w{i}")) for i in range(3)]
        try:
            await within(busy.wait())
            await within(host.stop(), 10)
            await within(asyncio.gather(*loops), 5)  # ended by themselves, without an error
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
    return store, ids, handled


async def test_host_stop_while_in_process_loops_are_running_loses_nothing():
    """Every event is either acked (once) or back in the store for the next run."""
    store, ids, handled = await _stop_while_loops_run()
    assert 500 <= len(handled) < len(ids)
    assert all(len(ackers) == 1 for ackers in store.acked.values())
    assert set(store.acked) <= handled
    _check_returned(store, "workers", ids)


async def test_an_in_process_iterator_hands_out_nothing_once_the_host_returned_its_events():
    async with running(_streaming()) as host:
        store = ledger(host)
        await publish_jobs(host, "workers", range(30))
        deliveries = host.subscribe("workers", "w", auto_ack=False)
        await within(deliveries.__anext__())  # fetched a window: one handed out, 9 buffered
        await within(host.stop())
        assert store.claimable_at_close is not None
        assert len(store.claimable_at_close[("workers", "")]) == 30  # all 10 returned
        with pytest.raises(StopAsyncIteration):
            await within(deliveries.__anext__())


# --- a host process: SIGTERM --------------------------------------------------------------------

CONFIG = """
[store]
plugin = "sqlite"
path = "{db}"

[[streams]]
name = "orders"
type = "persistent"
scope = "cross_service"

[[subscriptions]]
name = "work"
stream = "orders"
mode = "exclusive"
window = {window}
visibility_timeout = 300

[delivery.grpc]
host = "127.0.0.1"
port = 0
"""


class Served:
    """``svrnty-events serve --config FILE`` as a child process."""

    def __init__(self, proc: asyncio.subprocess.Process, endpoint: str, head: str) -> None:
        self.proc, self.endpoint, self.head = proc, endpoint, head

    @classmethod
    async def start(cls, config: Path) -> Served:
        proc = await asyncio.create_subprocess_exec(
            CLI, "serve", "--config", str(config),
            env=subprocess_env(SVRNTY_EVENTS_PLUGINS="sqlite,grpc"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        head = ""
        try:
            while "endpoint:" not in head:
                line = (await within(proc.stdout.readline(), 30)).decode()
                assert line, f"serve exited before printing its endpoint:\n{head}"
                head += line
        except BaseException:
            await kill_process(proc)
            raise
        endpoint = head.split("endpoint:")[1].split()[0]
        assert endpoint.startswith("grpc://127.0.0.1:"), head
        return cls(proc, endpoint, head)

    async def terminate(self, timeout: float = 10.0) -> tuple[int, str, float]:
        """SIGTERM; return (exit code, the rest of the output, seconds it took to exit)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        out, _ = await within(self.proc.communicate(), timeout)
        assert self.proc.returncode is not None
        return self.proc.returncode, out.decode(), time.monotonic() - started


@pytest.mark.skipif(not Path(CLI).exists(), reason="the svrnty-events script is not installed")
async def test_sigterm_ends_remote_streams_with_unavailable_and_keeps_every_ack(tmp_path: Path):
    pytest.importorskip("svrnty_events_sqlite")
    config = tmp_path / "host.toml"
    config.write_text(CONFIG.format(db=tmp_path / "events.db", window=WINDOW))
    served = await Served.start(config)
    try:
        async with EventClient(served.endpoint) as client:
            published = await within(client.publish("orders", [Job(n=n) for n in range(50)]))
            ids = [p.id for p in published]
            deliveries = client.subscribe("work", "remote", auto_ack=False)
            await within(deliveries.open())
            received = [await within(deliveries.__anext__()) for _ in range(WINDOW)]
            acked = {d.id for d in received[:4]}
            for d in received[:4]:
                await d.ack()

            async def acks_applied() -> None:  # the server holds 10 again: 4 acked, 4 more sent
                while True:
                    [info] = await client.consumers("work", timeout=5)
                    if info["delivered"] == WINDOW + 4 and info["in_flight"] == WINDOW:
                        return
                    await asyncio.sleep(0.02)

            await within(acks_applied())
            code, output, seconds = await served.terminate()
            rest, error = await _read_to_status(deliveries)
            await within(deliveries.aclose())
        assert error.code == grpc.StatusCode.UNAVAILABLE and error.retryable, error
        assert "server is stopping" in error.details
        assert code == 0, served.head + output
        assert seconds < 5.0, seconds
        assert "svrnty-events host stopping" in output
        # the server drained first: the 4 deliveries buffered behind the 6 in hand were not
        # handed out after it said so (they are released with the rest)
        assert deliveries.draining and rest == []
        in_hand = {d.id for d in received[4:]}

        # the same database, a new host: the 6 in hand come back at attempt 2; the 4 buffered,
        # given back unseen on the drain (``release``), and what was never delivered come at
        # attempt 1; nothing acked comes back
        served = await Served.start(config)
        async with EventClient(served.endpoint) as client, \
                client.subscribe("work", "after-restart", auto_ack=False) as again:
            redelivered = {}
            while len(redelivered) < len(ids) - len(acked):
                d = await within(again.__anext__())
                assert d.id not in redelivered and d.id not in acked, d
                redelivered[d.id] = d.attempt
                await d.ack()
            assert await within(again.next(timeout=0.3)) is None
        assert set(redelivered) == set(ids) - acked
        held = {i for i, a in redelivered.items() if a == 2}
        assert held == in_hand and len(held) == WINDOW - 4
        assert {i for i, a in redelivered.items() if a != 2} == set(ids) - acked - held
        assert set(redelivered.values()) == {1, 2}
        code, output, _ = await served.terminate()
        assert code == 0, output
    finally:
        with suppress(ProcessLookupError):
            await kill_process(served.proc)
