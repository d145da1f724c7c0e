"""Server-Sent Events end to end: envelopes, resume with Last-Event-ID, terminal events,
keep-alive comments, the position of a connection on a shared group."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from web_testkit import (
    TaskDone,
    TaskAdded,
    TaskStarted,
    append,
    base_url,
    running,
    sse,
    within,
)


async def test_each_event_is_one_message_with_its_envelope(host, http):
    [first, second] = await append(host, TaskAdded(task_id=1), TaskStarted(task_id=1))
    url = f"{base_url(host)}/subscriptions/all/events"
    async with sse(http, url) as stream:
        [a, b] = await stream.take(2)
        assert stream.retry == 2000
        assert any(c.startswith("subscribed all as sse-") for c in stream.comments)
    assert (a["id"], a["event"], b["id"], b["event"]) == ("0", "TaskAdded", "1", "TaskStarted")
    envelope = a.json
    assert envelope["id"] == first.id
    assert {k: envelope[k] for k in ("type", "correlation_id", "stream", "sequence", "attempt",
                                     "data")} == {
        "type": "TaskAdded", "correlation_id": "wf-1", "stream": "tasks", "sequence": 0,
        "attempt": 1, "data": {"task_id": 1}}
    assert envelope["timestamp"].startswith(str(first.timestamp.year))
    assert b.json["id"] == second.id


async def test_filters_and_start_positions(host, http):
    await append(host, TaskAdded(task_id=1), TaskStarted(task_id=1),
                 TaskAdded(task_id=2), correlation_id="wf-a")
    await append(host, TaskStarted(task_id=3), correlation_id="wf-b")
    url = f"{base_url(host)}/subscriptions/all/events"
    async with sse(http, f"{url}?event_types=TaskStarted") as stream:
        got = await stream.take(2)
    assert [m.json["data"]["task_id"] for m in got] == [1, 3]
    async with sse(http, f"{url}?correlation_id=wf-b&from_beginning=true") as stream:
        [only] = await stream.take(1)
    assert only.json["correlation_id"] == "wf-b"
    async with sse(http, f"{url}?from_sequence=2") as stream:
        got = await stream.take(2)
    assert [m["id"] for m in got] == ["2", "3"]
    async with sse(http, f"{url}?new_only=true") as stream:
        await append(host, TaskDone(task_id=9))
        [new] = await stream.take(1)
    assert (new["id"], new["event"]) == ("4", "TaskDone")


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_reconnecting_with_last_event_id_loses_and_repeats_nothing(http, tmp_path: Path,
                                                                         store):
    total = 120
    options = {"path": str(tmp_path / "events.db")} if store == "sqlite" else None
    async with running(store=store, store_options=options) as host:
        url = f"{base_url(host)}/subscriptions/all/events"

        async def publish() -> None:
            for i in range(total):
                await append(host, TaskAdded(task_id=i), correlation_id=f"wf-{i % 7}")
                if i % 10 == 0:
                    await asyncio.sleep(0)  # let the readers interleave with the appends

        publisher = asyncio.ensure_future(publish())
        try:
            seen: list[int] = []
            last: str | None = None
            connections = 0
            # disconnect after a different number of messages each time, mid-stream
            while len(seen) < total:
                connections += 1
                headers = {"Last-Event-ID": last} if last is not None else {}
                async with sse(http, url, headers=headers) as stream:
                    for _ in range(min(7 + connections % 5, total - len(seen))):
                        msg = await stream.next()
                        assert msg is not None
                        seen.append(int(msg["id"]))
                        assert msg.json["data"]["task_id"] == int(msg["id"])
                        last = msg["id"]
            await within(publisher)
        finally:
            publisher.cancel()
        assert seen == list(range(total))  # nothing lost, nothing twice, in order
        assert connections >= 10
        # each connection's cursor was its own and is gone with it
        await within(_until(lambda: host.consumers("all") == []))


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_a_correlation_scoped_stream_ends_after_its_terminal_event(host, http):
    await append(host, TaskAdded(task_id=1), correlation_id="wf-1")
    await append(host, TaskAdded(task_id=2), correlation_id="wf-2")
    url = f"{base_url(host)}/subscriptions/tracking/events?correlation_id=wf-1"
    async with sse(http, url) as stream:
        [placed] = await stream.take(1)
        await append(host, TaskStarted(task_id=1), TaskDone(task_id=1),
                     TaskAdded(task_id=5), correlation_id="wf-1")
        shipped, closed, completed = await stream.take(3)
        assert await stream.next() is None  # the server ended the stream
    assert [m["event"] for m in (placed, shipped, closed)] == [
        "TaskAdded", "TaskStarted", "TaskDone"]
    assert completed["event"] == "completed"
    assert completed.json == {"event_id": closed.json["id"], "event_type": "TaskDone"}
    await within(_until(lambda: host.consumers("tracking") == []))


async def test_idle_streams_get_comment_lines(http):
    async with running(keepalive=0.05) as host:
        url = f"{base_url(host)}/subscriptions/all/events"
        async with sse(http, url) as stream:
            reading = asyncio.ensure_future(stream.next())
            await within(_until(lambda: stream.comments.count("keepalive") >= 2))
            await append(host, TaskAdded(task_id=1))
            msg = await within(reading)
            assert msg is not None and msg["event"] == "TaskAdded"


async def test_a_disconnected_browser_releases_its_consumer(host, http):
    url = f"{base_url(host)}/subscriptions/work/events?consumer_id=tab-1"
    async with sse(http, url) as stream:
        await append(host, TaskAdded(task_id=1))
        await stream.take(1)
        assert [c["consumer_id"] for c in host.consumers("work")] == ["tab-1"]
    await within(_until(lambda: host.consumers("work") == []))
    assert host.providers["web"].gateway.connections == 0


async def test_sse_on_a_shared_group_is_a_competing_consumer(host, http):
    # the browser's Last-Event-ID is no position of its own there: it does not skip events
    await append(host, *[TaskAdded(task_id=i) for i in range(3)])
    url = f"{base_url(host)}/subscriptions/work/events"
    async with sse(http, url, headers={"Last-Event-ID": "1"}) as stream:
        got = await stream.take(3)
    assert [m["id"] for m in got] == ["0", "1", "2"]
    async with sse(http, url) as stream:  # acked as written: not delivered again
        await append(host, TaskAdded(task_id=3))
        [next_one] = await stream.take(1)
    assert next_one["id"] == "3"


async def test_payload_line_breaks_survive(host, http):
    from svrnty_events.events import RecordedEvent, utcnow

    pretty = json.dumps({"task_id": 1, "note": "a"}, indent=2).encode()
    raw = RecordedEvent(id="e-1", stream="tasks", type="Pretty", correlation_id="wf",
                        timestamp=utcnow(), data=pretty)
    blob = RecordedEvent(id="e-2", stream="tasks", type="Blob", correlation_id="wf",
                         timestamp=utcnow(), data=b"\x00\n\xff",
                         content_type="application/octet-stream")
    await host.publish("tasks", [raw, blob], external=False)
    async with sse(http, f"{base_url(host)}/subscriptions/all/events") as stream:
        first, second = await stream.take(2)
    assert first.json["data"] == {"task_id": 1, "note": "a"}
    assert (second.json["data"], second.json["content_type"]) == (
        "AAr/", "application/octet-stream")


async def test_an_older_event_version_arrives_upcast_with_its_version(http):
    import msgspec

    from svrnty_events import Event
    from svrnty_events.events import record
    from web_testkit import build_streaming

    class WebUpcTaskNamed(Event, version=2):
        title: str
        priority: int

    streaming = build_streaming()
    streaming.register_event_types(WebUpcTaskNamed)

    @streaming.upcaster("WebUpcTaskNamed", from_version=1)
    def add_priority(payload: dict) -> dict:
        return {**payload, "priority": 0}

    async with streaming.run() as host:
        v2 = record(WebUpcTaskNamed(title="new", priority=5), stream="tasks",
                    correlation_id="wf-1")
        # as version 1 wrote it: no version header, no priority
        v1 = msgspec.structs.replace(record(WebUpcTaskNamed(title="old", priority=9),
                                            stream="tasks", correlation_id="wf-1"),
                                     data=b'{"title":"old"}', headers={})
        await host.publish("tasks", [v1, v2], external=False)
        async with sse(http, f"{base_url(host)}/subscriptions/all/events") as stream:
            got = await stream.take(2)
    assert [(m.json["version"], m.json["data"]) for m in got] == [
        (2, {"title": "old", "priority": 0}), (2, {"title": "new", "priority": 5})]
