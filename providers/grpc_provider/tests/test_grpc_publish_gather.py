"""Concurrent publish() calls to one stream share Publish requests: a call made while a request
to the stream is in flight goes with the others made meanwhile in the next one. Each call still
gets its own result, and only a call with a bad event fails."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from msgspec.structs import replace
import svrnty_events_grpc.plugin
from conftest import within

from svrnty_events import Event, EventStreaming, hookimpl
from svrnty_events.events import record
from svrnty_events_grpc import EventClient, RemoteError
from svrnty_events_memory import MemoryStore


class ParcelBooked(Event):
    n: int


class GatedStore(MemoryStore):
    """The memory store; while ``gate`` is set to an unset asyncio.Event, appends wait for it
    (a Publish request stays in flight until the test lets it go)."""

    gate: asyncio.Event | None = None
    appends_waiting = 0

    async def append(self, *args, **kwargs):
        gate = self.gate
        if gate is not None:
            self.appends_waiting += 1
            try:
                await gate.wait()
            finally:
                self.appends_waiting -= 1
        return await super().append(*args, **kwargs)


class GatedPlugin:
    @hookimpl
    def register_event_stores(self, register):
        register("gated", GatedStore)


def _streaming() -> EventStreaming:
    s = EventStreaming(store="gated", load_entrypoints=False,
                       plugins=[GatedPlugin(), svrnty_events_grpc.plugin])
    s.add_stream("parcels", scope="cross_service")
    s.add_stream("letters", scope="cross_service")
    s.add_delivery("grpc", port=0)
    return s


def _event(n: int, stream: str = "parcels"):
    return record(ParcelBooked(n=n), stream=stream, correlation_id=f"wf-{n % 7}")


def _bad_event():
    """An event whose JSON payload the server refuses (INVALID_ARGUMENT)."""
    return replace(record(ParcelBooked(n=99), stream="parcels", correlation_id="wf-bad"),
                   data=b"{not json")


async def _until(condition, timeout: float = 10.0) -> None:
    async def loop() -> None:
        while not condition():
            await asyncio.sleep(0.005)
    await within(loop(), timeout)


async def _parked(host, client):
    """A client whose first Publish to ``parcels`` is held in the server's store."""
    store = host.store
    store.gate = asyncio.Event()
    first = asyncio.ensure_future(client.publish("parcels", [_event(-1)]))
    await _until(lambda: store.appends_waiting == 1)
    return first


async def test_concurrent_one_event_calls_share_requests_and_each_gets_its_own_result():
    async with _streaming().run() as host:
        port = host.providers["grpc"].port
        async with EventClient(f"127.0.0.1:{port}") as client:
            first = await _parked(host, client)
            events = [_event(i) for i in range(300)]
            calls = [asyncio.ensure_future(client.publish("parcels", [e])) for e in events]
            await _until(lambda: len(client._lanes["parcels"].queue) == 300)
            host.store.gate.set()
            results = await within(asyncio.gather(first, *calls))
            requests = client.publish_requests
        stored = await host.read("parcels")
    # each call: one result, its own event's id
    assert [r[0].id for r in results[1:]] == [e.id for e in events]
    assert all(len(r) == 1 for r in results)
    # every event once, and each result's sequence is where its event is
    assert len(stored) == 301 and len({e.id for e in stored}) == 301
    where = {e.id: e.sequence for e in stored}
    assert all(where[r[0].id] == r[0].sequence for r in results)
    # the 300 calls that waited went in one request (PUBLISH_CHUNK is 1000), after the first
    assert requests == 2


async def test_a_bad_event_fails_only_its_own_call():
    async with _streaming().run() as host:
        port = host.providers["grpc"].port
        async with EventClient(f"127.0.0.1:{port}") as client:
            first = await _parked(host, client)
            good = [_event(i) for i in range(20)]
            bad = _bad_event()
            calls = [asyncio.ensure_future(client.publish("parcels", [e])) for e in good[:10]]
            failing = asyncio.ensure_future(client.publish("parcels", [bad]))
            calls += [asyncio.ensure_future(client.publish("parcels", [e])) for e in good[10:]]
            await _until(lambda: len(client._lanes["parcels"].queue) == 21)
            host.store.gate.set()
            await within(first)
            results = await within(asyncio.gather(*calls))
            with pytest.raises(RemoteError) as info:
                await within(failing)
        stored = await host.read("parcels")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "events[0].data" in info.value.details  # the index within its own call
    assert [r[0].id for r in results] == [e.id for e in good]
    ids = [e.id for e in stored]
    assert len(ids) == 21 and len(set(ids)) == 21 and bad.id not in ids


async def test_a_call_cancelled_while_it_waits_is_never_sent_and_streams_go_apart():
    async with _streaming().run() as host:
        port = host.providers["grpc"].port
        async with EventClient(f"127.0.0.1:{port}") as client:
            first = await _parked(host, client)
            kept = asyncio.ensure_future(client.publish("parcels", [_event(1)]))
            dropped_event = _event(2)
            dropped = asyncio.ensure_future(client.publish("parcels", [dropped_event]))
            await _until(lambda: len(client._lanes["parcels"].queue) == 2)
            dropped.cancel()
            await asyncio.gather(dropped, return_exceptions=True)
            assert dropped.cancelled()
            # another stream has its own lane: its call goes at once, not behind "parcels"
            # (its append waits at the same gate, so it is in flight beside the first)
            letter = asyncio.ensure_future(client.publish("letters", [_event(3, "letters")]))
            await _until(lambda: host.store.appends_waiting == 2)
            host.store.gate.set()
            await within(asyncio.gather(first, kept, letter))
        parcels = [e.id for e in await host.read("parcels")]
        letters = await host.read("letters")
    assert dropped_event.id not in parcels and len(parcels) == 2
    assert len(letters) == 1


async def test_closing_the_client_fails_the_calls_still_waiting():
    async with _streaming().run() as host:
        port = host.providers["grpc"].port
        client = EventClient(f"127.0.0.1:{port}")
        first = await _parked(host, client)
        waiting = asyncio.ensure_future(client.publish("parcels", [_event(5)]))
        await _until(lambda: len(client._lanes["parcels"].queue) == 1)
        await within(client.close())
        with pytest.raises(RemoteError) as info:
            await within(waiting)
        assert info.value.code == grpc.StatusCode.CANCELLED
        await asyncio.gather(first, return_exceptions=True)
        host.store.gate.set()
        assert all(e.data != b'{"n":5}' for e in await host.read("parcels"))


async def test_closing_while_a_gathered_request_is_retried_call_by_call_resolves_every_call():
    async with _streaming().run() as host:
        port = host.providers["grpc"].port
        client = EventClient(f"127.0.0.1:{port}")
        store = host.store
        first = await _parked(host, client)
        bad = _bad_event()
        calls = [asyncio.ensure_future(client.publish("parcels", [e]))
                 for e in (_event(1), bad, _event(2))]
        await _until(lambda: len(client._lanes["parcels"].queue) == 3)
        # let the first go; from then on appends wait again: the gathered request is refused
        # (the bad event), and the retry of the first call alone waits in the store
        gate, store.gate = store.gate, asyncio.Event()
        gate.set()
        await within(first)
        await _until(lambda: store.appends_waiting == 1)
        await within(client.close())
        outcomes = await within(asyncio.gather(*calls, return_exceptions=True))
        assert all(isinstance(o, RemoteError) and o.code == grpc.StatusCode.CANCELLED
                   for o in outcomes), outcomes
        assert client._channel is None  # nothing was sent on a new channel after the close
        store.gate.set()


async def test_calls_too_large_together_go_alone_and_a_waiting_call_keeps_its_timeout():
    async with _streaming().run() as host:
        port = host.providers["grpc"].port
        async with EventClient(f"127.0.0.1:{port}", max_message_bytes=1024 * 1024) as client:
            first = await _parked(host, client)
            big = [replace(record(ParcelBooked(n=i), stream="parcels", correlation_id="wf-big"),
                           data=b'{"n":%d,"pad":"%s"}' % (i, b"x" * 400_000))
                   for i in range(4)]
            calls = [asyncio.ensure_future(client.publish("parcels", [e])) for e in big]
            hurried = asyncio.ensure_future(client.publish("parcels", [_event(7)],
                                                           timeout=0.2))
            await _until(lambda: len(client._lanes["parcels"].queue) == 5)
            with pytest.raises(RemoteError) as info:
                await within(hurried)  # its 0.2 s passed while the first was held
            assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            host.store.gate.set()
            await within(first)
            results = await within(asyncio.gather(*calls))
        assert [r[0].id for r in results] == [e.id for e in big]
        stored = [e.id for e in await host.read("parcels")]
        assert len(stored) == 5 and set(stored) >= {e.id for e in big}
