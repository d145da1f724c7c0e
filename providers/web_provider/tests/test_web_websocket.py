"""WebSocket end to end: subscribe, batches, ack, nack with delay -> redelivery with attempt 2,
redelivery of what a closed socket held, terminal events, many events counted."""

from __future__ import annotations

import asyncio

from web_testkit import TaskDone, TaskAdded, TaskStarted, append, base_url, websocket, within


def ws_url(host, name: str = "work") -> str:
    return f"{base_url(host)}/subscriptions/{name}/ws"


async def test_subscribe_then_events_in_batches_then_ack(host, http):
    await append(host, *[TaskAdded(task_id=i) for i in range(30)])
    async with websocket(http, ws_url(host)) as ws:
        await ws.send(subscribe={"consumer_id": "tab-1", "window": 30})
        subscribed = (await ws.receive())["subscribed"]
        assert subscribed["subscription"] == "work" and subscribed["consumer_id"] == "tab-1"
        assert (subscribed["stream"], subscribed["window"]) == ("tasks", 30)
        first = await ws.receive()
        assert len(first["events"]) == 30  # everything one fetch returned, in one message
        assert [e["sequence"] for e in first["events"]] == list(range(30))
        assert first["events"][0]["data"] == {"task_id": 0}
        await ws.send(ack={"event_ids": [e["id"] for e in first["events"]]})
        await ws.send(unsubscribe={})
        assert (await ws.closed())[0] == 1000
    assert await within(_no_consumers(host, "work"))
    async with websocket(http, ws_url(host)) as ws:  # all 30 settled by one ack
        await ws.send(subscribe={"consumer_id": "tab-2"})
        await ws.receive()
        await append(host, TaskStarted(task_id=99))
        [only] = await ws.events(1)
        assert only["data"] == {"task_id": 99}


async def _no_consumers(host, name: str) -> bool:
    while host.consumers(name):
        await asyncio.sleep(0.01)
    return True


async def test_nack_redelivers_with_attempt_2_and_acks_are_counted(host, http):
    total = 40
    await append(host, *[TaskAdded(task_id=i) for i in range(total)])
    attempts: dict[int, list[int]] = {}
    async with websocket(http, ws_url(host)) as ws:
        await ws.send(subscribe={"consumer_id": "c", "max_batch_size": 7})
        await ws.receive()
        done = 0
        while done < total:
            [*batch] = await ws.events(1)
            for e in batch:
                attempts.setdefault(e["sequence"], []).append(e["attempt"])
                if e["sequence"] % 5 == 0 and e["attempt"] == 1:
                    await ws.send(nack={"event_id": e["id"], "delay_seconds": 0.05,
                                        "reason": "try again"})
                else:
                    await ws.send(ack={"event_ids": [e["id"]]})
                    done += 1
    assert sorted(attempts) == list(range(total))
    for seq, seen in attempts.items():
        assert seen == ([1, 2] if seq % 5 == 0 else [1]), (seq, seen)
    assert await within(_no_consumers(host, "work"))
    assert await host.dead_letters("work") == []


async def test_what_a_closed_socket_held_is_redelivered(host, http):
    await append(host, TaskAdded(task_id=1), TaskAdded(task_id=2))
    async with websocket(http, ws_url(host)) as ws:
        await ws.send(subscribe={"consumer_id": "a"})
        await ws.receive()
        held = await ws.events(2)
        await ws.send(ack={"event_ids": [held[0]["id"]]})
        await ws.send(heartbeat={})
        await ws.send(in_progress={"event_ids": [held[1]["id"]]})
    async with websocket(http, ws_url(host)) as ws:
        await ws.send(subscribe={"consumer_id": "b"})
        await ws.receive()
        [again] = await ws.events(1)
    assert (again["id"], again["attempt"]) == (held[1]["id"], 2)


async def test_a_correlation_scoped_socket_completes_at_its_terminal_event(host, http):
    await append(host, TaskAdded(task_id=1), correlation_id="wf-1")
    await append(host, TaskAdded(task_id=2), correlation_id="wf-2")
    async with websocket(http, ws_url(host, "tracking")) as ws:
        await ws.send(subscribe={"consumer_id": "page", "correlation_id": "wf-1"})
        await ws.receive()
        await append(host, TaskDone(task_id=1), correlation_id="wf-1")
        events = await ws.events(2)
        assert [e["type"] for e in events] == ["TaskAdded", "TaskDone"]
        completed = await ws.receive()
        assert completed == {"completed": {"event_id": events[1]["id"],
                                           "event_type": "TaskDone"}}
        await ws.send(ack={"event_ids": [e["id"] for e in events]})
        code, reason = await ws.closed()
    assert (code, reason) == (1000, "completed")
    assert await within(_no_consumers(host, "tracking"))


async def test_a_start_position_places_a_new_cursor(host, http):
    await append(host, *[TaskAdded(task_id=i) for i in range(5)])
    async with websocket(http, ws_url(host, "all")) as ws:
        await ws.send(subscribe={"consumer_id": "late", "from_sequence": 3})
        await ws.receive()
        events = await ws.events(2)
    assert [e["sequence"] for e in events] == [3, 4]
    async with websocket(http, ws_url(host, "all")) as ws:
        await ws.send(subscribe={"consumer_id": "new", "new_only": True})
        await ws.receive()
        await append(host, TaskStarted(task_id=7))
        [e] = await ws.events(1)
    assert e["sequence"] == 5
