"""Garbage on the Subscribe stream: random field values, messages in the wrong order, unknown
ids, messages over max_message_bytes, nacks with negative / NaN / infinite delays and bytes that
are no protobuf at all. Each stream ends with the status a model of the protocol predicts, the
server keeps serving, and a consumer on the same server receives all of its events meanwhile."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from svrnty_events import EventStreaming
from svrnty_events_grpc import EventClient
from svrnty_events_grpc.proto import events_pb2 as pb

from .grpc_support import (
    JOB_TYPE,
    final_status,
    new_streaming,
    publish_jobs,
    raw_subscribe,
    running,
    target,
    within,
)

MAX_BYTES = 65536
SUBSCRIPTIONS = ("feed", "side")
CORRELATION = "feed-1"
FEED_EVENTS = 5
OK, INVALID = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT


def _streaming() -> EventStreaming:
    streaming = new_streaming(max_message_bytes=MAX_BYTES)
    streaming.add_stream("feed", type="persistent")
    streaming.add_stream("side", type="persistent")
    # nacked events without a delay of their own come back after a minute: not during a case
    slow = {"visibility_timeout": 60.0, "redelivery_delay": 60.0}
    streaming.add_subscription("feed", "feed", mode="broadcast", **slow)
    streaming.add_subscription("side", "side", mode="broadcast", **slow)
    streaming.add_subscription("feed", "work", mode="exclusive", **slow)
    return streaming


# --- the model: what the server must answer -------------------------------------------------------


@dataclass
class Model:
    """The Subscribe protocol as the provider documents it, fed one client message at a time.
    ``feed`` returns the (code, text the details must contain) that ends the stream, or None
    while the stream goes on."""

    subscribed: bool = False
    held: set[str] = field(default_factory=set)
    nacked: set[str] = field(default_factory=set)

    def feed(self, size: int, msg: pb.SubscribeRequest | None
             ) -> tuple[grpc.StatusCode, str] | None:
        if size > MAX_BYTES:
            return grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"
        if msg is None:
            return INVALID, "request: cannot decode"
        kind = msg.WhichOneof("request")
        if not self.subscribed:
            if kind != "subscribe":
                return INVALID, "request: the first message must be `subscribe`"
            s = msg.subscribe
            if not s.subscription:
                return INVALID, "subscribe.subscription"
            if not s.consumer_id:
                return INVALID, "subscribe.consumer_id"
            if s.HasField("correlation_id") and not s.correlation_id:
                return INVALID, "subscribe.correlation_id"
            if s.subscription not in SUBSCRIPTIONS:
                return grpc.StatusCode.NOT_FOUND, "subscribe.subscription"
            self.subscribed = True
            return None
        if kind == "ack":
            # an id listed twice in one Ack counts once; acked before, it is no longer held
            ids = set(msg.ack.event_ids)
            if not ids <= self.held:
                return INVALID, "ack.event_ids"
            self.held -= ids
            return None
        if kind == "nack":
            nack = msg.nack
            if not nack.event_id:
                return INVALID, "nack.event_id"
            if nack.HasField("delay_seconds") and not (math.isfinite(nack.delay_seconds)
                                                       and nack.delay_seconds >= 0):
                return INVALID, "nack.delay_seconds"
            if nack.event_id not in self.held:
                return INVALID, "nack.event_id"
            self.held.discard(nack.event_id)
            self.nacked.add(nack.event_id)
            return None
        if kind == "heartbeat":
            return None
        if kind == "unsubscribe":
            return OK, ""
        if kind == "subscribe":
            return grpc.StatusCode.FAILED_PRECONDITION, "subscribe: this stream is already"
        return INVALID, "request: empty message"


# --- generated client messages --------------------------------------------------------------------
# Items are data; they become bytes when a case runs, because acks and nacks may refer to events
# the server handed over in that case ("held" references: an index into what was received).

names = st.text(max_size=10)


def subscribe_items(plausible: bool) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """Subscribe messages: plausible ones (a subscription that exists, events to hand over) so
    that what follows a subscribe is exercised, or anything at all."""
    if plausible:
        subscription: st.SearchStrategy[str] = st.sampled_from(SUBSCRIPTIONS)
        consumer: st.SearchStrategy[str | None] = names
        correlation: st.SearchStrategy[str | None] = st.sampled_from([None, CORRELATION])
        types: st.SearchStrategy[list[str]] = st.sampled_from([[], [JOB_TYPE]])
    else:
        subscription = st.one_of(st.sampled_from(SUBSCRIPTIONS), names)
        consumer = st.one_of(names, st.none())  # None: missing consumer_id
        correlation = st.one_of(st.none(), st.just(CORRELATION), st.just(""), names)
        types = st.lists(st.one_of(st.just(JOB_TYPE), names), max_size=3)
    return st.fixed_dictionaries({
        "subscription": subscription,
        "consumer": consumer,
        "correlation_id": correlation,
        "event_types": types,
        # a terminal event would complete the stream: kept out of the random values
        "terminal_event_types": st.lists(names.filter(lambda n: n != JOB_TYPE), max_size=2),
        "delivery_mode": st.integers(0, 3),
        "window": st.one_of(st.integers(0, 10), st.just(2**32 - 1)),
        "metadata": st.dictionaries(names, names, max_size=3),
        "max_batch_size": st.one_of(st.integers(0, 3), st.just(2**32 - 1)),
        "max_batch_delay_ms": st.integers(0, 30),
    }).map(lambda d: ("subscribe", d))


refs = st.one_of(st.integers(0, FEED_EVENTS - 1), st.integers(0, FEED_EVENTS - 1),
                 names.map(lambda n: f"unknown-{n}"))
delays = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, -0.0, 0.5, -1.0, math.nan, math.inf, -math.inf]))
later_items = st.one_of(
    st.lists(refs, max_size=4).map(lambda r: ("ack", r)),
    st.lists(refs, max_size=4).map(lambda r: ("ack", r)),
    st.tuples(st.one_of(st.none(), refs), delays, names).map(lambda t: ("nack", *t)),
    st.tuples(refs, delays, names).map(lambda t: ("nack", *t)),
    st.just(("heartbeat",)),
    st.just(("unsubscribe",)),
    st.just(("empty",)),
    st.sampled_from(["ack", "nack", "subscribe"]).map(lambda k: ("huge", k)),
    st.binary(min_size=1, max_size=48).map(lambda b: ("bytes", b)),
    subscribe_items(plausible=False),
)
# mostly a subscribe first; otherwise anything, in any order
cases = st.one_of(
    st.tuples(subscribe_items(plausible=True), st.lists(later_items, max_size=6)).map(
        lambda t: [t[0], *t[1]]),
    st.tuples(subscribe_items(plausible=False), st.lists(later_items, max_size=4)).map(
        lambda t: [t[0], *t[1]]),
    st.lists(later_items, min_size=1, max_size=3),
)


def render(item: tuple[Any, ...], case_no: int, received: list[str],
           model: Model) -> bytes:
    """The bytes of one item. A held reference to an event already nacked becomes an unknown id:
    a nacked event may or may not have been handed out again by then."""

    def resolve(ref: int | str) -> str:
        if isinstance(ref, str):
            return ref
        if received:
            event_id = received[ref % len(received)]
            if event_id not in model.nacked:
                return event_id
        return f"never-delivered-{ref}"

    kind = item[0]
    if kind == "subscribe":
        d = item[1]
        sub = pb.Subscribe(
            subscription=d["subscription"],
            consumer_id="" if d["consumer"] is None else f"c{case_no}-{d['consumer']}",
            event_types=d["event_types"], terminal_event_types=d["terminal_event_types"],
            delivery_mode=d["delivery_mode"], window=d["window"], metadata=d["metadata"],
            max_batch_size=d["max_batch_size"], max_batch_delay_ms=d["max_batch_delay_ms"])
        if d["correlation_id"] is not None:
            sub.correlation_id = d["correlation_id"]
        msg = pb.SubscribeRequest(subscribe=sub)
    elif kind == "ack":
        msg = pb.SubscribeRequest(ack=pb.Ack(event_ids=[resolve(r) for r in item[1]]))
    elif kind == "nack":
        _, ref, delay, reason = item
        nack = pb.Nack(event_id="" if ref is None else resolve(ref), reason=reason)
        if delay is not None:
            nack.delay_seconds = delay
        msg = pb.SubscribeRequest(nack=nack)
    elif kind == "heartbeat":
        msg = pb.SubscribeRequest(heartbeat=pb.Heartbeat())
    elif kind == "unsubscribe":
        msg = pb.SubscribeRequest(unsubscribe=pb.Unsubscribe())
    elif kind == "empty":
        msg = pb.SubscribeRequest()
    elif kind == "huge":
        big = "x" * (MAX_BYTES + 1024)
        msg = {"ack": pb.SubscribeRequest(ack=pb.Ack(event_ids=[big])),
               "nack": pb.SubscribeRequest(nack=pb.Nack(event_id="e", reason=big)),
               "subscribe": pb.SubscribeRequest(subscribe=pb.Subscribe(
                   subscription="feed", consumer_id=f"c{case_no}", metadata={"k": big}))}[item[1]]
    else:
        return bytes(item[1])
    return msg.SerializeToString()


def decode(data: bytes) -> pb.SubscribeRequest | None:
    try:
        return pb.SubscribeRequest.FromString(data)
    except DecodeError:
        return None


async def run_case(channel: grpc.aio.Channel, case_no: int, case: list[tuple[Any, ...]]) -> None:
    call = raw_subscribe(channel)
    model = Model()
    received: list[str] = []
    expected: tuple[grpc.StatusCode, str] | None = None
    pending: asyncio.Future[Any] | None = None
    for i, item in enumerate(case):
        data = render(item, case_no, received, model)
        try:
            await within(call.write(data))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # the call ended early: its status tells why, below
        was_subscribed = model.subscribed
        expected = model.feed(len(data), decode(data))
        if expected is not None:
            break
        if model.subscribed and not was_subscribed:
            first = pb.SubscribeResponse.FromString(await within(call.read()))
            assert first.WhichOneof("response") == "subscribed", first
            if i + 1 < len(case):
                # learn what the server handed over first, for the held references
                pending = asyncio.ensure_future(call.read())
                done, _ = await asyncio.wait((pending,), timeout=0.1)
                if done:
                    batch = pb.SubscribeResponse.FromString(pending.result())
                    pending = None
                    received = [e.id for e in batch.events.events]
                    model.held = set(received)
    if expected is None:
        try:
            await within(call.done_writing())
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass
        expected = (OK, "")
    if pending is not None:  # one read at a time on a call
        await asyncio.wait((pending,), timeout=10)
        if pending.done() and not pending.cancelled():
            pending.exception()  # the status is read again below
    code, details = await final_status(call)
    assert (code, expected[1] in details) == (expected[0], True), (case, code, details)


async def run_example(cases_: list[list[tuple[Any, ...]]]) -> None:
    async with running(_streaming()) as host:
        await publish_jobs(host, "feed", range(FEED_EVENTS), correlation_id=CORRELATION)
        early = range(1000, 1000 + FEED_EVENTS)
        await publish_jobs(host, "side", early, correlation_id=CORRELATION)
        async with EventClient(target(host)) as client, \
                client.subscribe("side", "bystander") as bystander, \
                grpc.aio.insecure_channel(target(host)) as channel:
            seen: list[tuple[int, int]] = []

            async def watch() -> None:
                async for d in bystander:
                    seen.append((d.event.n, d.attempt))
                    if len(seen) == len(early) + len(cases_):
                        return

            watcher = asyncio.ensure_future(watch())
            try:
                for case_no, case in enumerate(cases_):
                    await run_case(channel, case_no, case)
                    await publish_jobs(host, "side", range(case_no, case_no + 1))
                await within(watcher)
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            assert seen == [(n, 1) for n in [*early, *range(len(cases_))]]
            # every garbage consumer is gone (what it held released); the bystander is served
            assert host.consumers("feed") == []
            assert [c["consumer_id"] for c in host.consumers("side")] == ["bystander"]


def _sub(subscription: str = "feed", consumer: str | None = "x",
         correlation_id: str | None = None) -> tuple[str, dict[str, Any]]:
    return ("subscribe", {
        "subscription": subscription, "consumer": consumer, "correlation_id": correlation_id,
        "event_types": [], "terminal_event_types": [], "delivery_mode": 0, "window": 0,
        "metadata": {}, "max_batch_size": 0, "max_batch_delay_ms": 0})


# every status, every run; hypothesis explores around them
KNOWN_CASES = [
    [("bytes", b"\xff\xff\xff")],                       # undecodable: INVALID_ARGUMENT
    [_sub(), ("bytes", b"\x0a\x05abc")],                 # undecodable after subscribe
    [("ack", [0])],                                      # ack before subscribe
    [("empty",)],
    [_sub(consumer=None)],
    [_sub(subscription="")],
    [_sub(correlation_id="")],
    [_sub(subscription="nope")],                         # NOT_FOUND
    [_sub(), _sub("side")],                              # two subscribes: FAILED_PRECONDITION
    [("huge", "subscribe")],                             # RESOURCE_EXHAUSTED
    [_sub(), ("huge", "ack")],
    [_sub(), ("ack", [0, 1]), ("ack", [1])],             # second ack of the same event
    [_sub(), ("ack", [0, 0]), ("ack", [1])],             # one id twice in one ack: once
    [_sub(), ("ack", ["unknown-x"])],
    [_sub(), ("nack", None, None, "")],                  # nack without an event id
    [_sub(), ("nack", 0, math.nan, "")],
    [_sub(), ("nack", 1, -1.0, "")],
    [_sub(), ("nack", 2, math.inf, "")],
    [_sub(), ("nack", 0, 0.0, "r"), ("ack", [0])],       # nacked: no longer held
    [_sub(), ("ack", [0]), ("heartbeat",), ("unsubscribe",), ("empty",)],  # OK, then ignored
    [_sub(correlation_id=CORRELATION), ("ack", [0, 1, 2, 3, 4])],          # OK
]


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(cases, min_size=1, max_size=4))
@example(KNOWN_CASES)
def test_garbage_on_the_subscribe_stream_gets_a_precise_status(cases_):
    asyncio.run(within(run_example(cases_), 180))


# --- the same, one case at a time, where the events a bad consumer held must come back ------------


async def _hold(channel: grpc.aio.Channel, consumer_id: str, count: int) -> tuple[Any, list[Any]]:
    call = raw_subscribe(channel)
    await within(call.write(pb.SubscribeRequest(subscribe=pb.Subscribe(
        subscription="work", consumer_id=consumer_id, window=count)).SerializeToString()))
    first = pb.SubscribeResponse.FromString(await within(call.read()))
    assert first.WhichOneof("response") == "subscribed"
    batch = pb.SubscribeResponse.FromString(await within(call.read()))
    assert len(batch.events.events) == count
    return call, list(batch.events.events)


async def _redelivered(host: Any, ids: list[str]) -> None:
    """A well-behaved consumer gets the released events at once (visibility is 60 s), each at
    its second attempt."""
    async with EventClient(target(host)) as client, \
            client.subscribe("work", "good", window=len(ids)) as deliveries:
        got = [(d.id, d.attempt) for d in [await within(deliveries.__anext__(), 5)
                                           for _ in ids]]
    assert got == [(i, 2) for i in ids]


async def test_undecodable_bytes_after_subscribe_end_the_stream_and_release_its_events():
    async with running(_streaming()) as host:
        await publish_jobs(host, "feed", range(3))
        async with grpc.aio.insecure_channel(target(host)) as channel:
            call, held = await _hold(channel, "garbler", 3)
            await within(call.write(b"\xff\xfe\xfd not protobuf"))
            code, details = await final_status(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("request: cannot decode SubscribeRequest")
        await _redelivered(host, [e.id for e in held])


async def test_a_nack_delay_that_is_not_a_finite_number_is_refused_and_the_event_comes_back():
    async with running(_streaming()) as host:
        await publish_jobs(host, "feed", range(3))
        first = (await host.read("feed"))[0].id
        async with grpc.aio.insecure_channel(target(host)) as channel:
            for n, delay in enumerate((math.inf, math.nan, -1.0, -math.inf)):
                call, held = await _hold(channel, f"nacker-{n}", 1)
                # not parked for ever by the nack before: back at once for the next consumer
                assert (held[0].id, held[0].attempt) == (first, n + 1)
                await within(call.write(pb.SubscribeRequest(nack=pb.Nack(
                    event_id=first, delay_seconds=delay)).SerializeToString()))
                code, details = await final_status(call)
                assert (code, details) == (INVALID, "nack.delay_seconds: must be a finite "
                                                    "number >= 0")

