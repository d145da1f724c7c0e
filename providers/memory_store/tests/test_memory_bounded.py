"""The memory store keeps nothing per workflow once nothing can need it (a long-lived host does
not grow with the number of workflows it has seen)."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest

from svrnty_events import Event, EventStreaming, Workflow
from svrnty_events.errors import UnknownWorkflowError
from svrnty_events.events import record
from svrnty_events.testing import within

import msgspec


class BoundedPing(Event):
    n: int


class Ping(msgspec.Struct):
    n: int


class PingWorkflow(Workflow):
    pass


def streaming(forget_after: float) -> EventStreaming:
    s = EventStreaming(store="memory", store_options={"forget_workflows_after": forget_after},
                       load_entrypoints=False, plugins=[__import__("svrnty_events_memory.plugin",
                                                                   fromlist=["plugin"])])
    s.add_stream(PingWorkflow, name="pings", type="ephemeral")
    s.add_subscription("pings", "work", mode="exclusive")

    @s.command_handler(Ping, workflow=PingWorkflow)
    async def ping(command: Ping, workflow: PingWorkflow) -> None:
        workflow.emit(BoundedPing(n=command.n))

    return s


async def test_retained_heap_per_finished_workflow_is_under_16_bytes():
    total = 200_000
    async with streaming(0.0).run() as host:
        async def consume(count: int) -> None:
            consumer = await host.open_consumer("work", "c")
            got = 0
            while got < count:
                batch = await consumer.fetch(timeout=10)
                assert batch, f"{got} of {count}"
                await consumer.ack([d.id for d in batch])
                got += len(batch)
            await consumer.close()

        async def run(start: int, count: int) -> None:
            for i in range(start, start + count, 1000):
                await host.publish("pings", [record(BoundedPing(n=n), stream="pings",
                                                    correlation_id=f"wf-{n}")
                                             for n in range(i, i + 1000)], external=False)
            await within(consume(count), 60)

        await run(0, 20_000)  # warm up: dicts and lists at their working size
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await run(20_000, total)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        per_workflow = (after - before) / total
        assert per_workflow < 16, f"{per_workflow:.1f} bytes kept per finished workflow"


async def test_a_forgotten_workflow_cannot_be_continued_a_known_one_can():
    async with streaming(3600.0).run() as host:
        kept = await host.send(Ping(n=1))
        consumer = await host.open_consumer("work", "c")
        [d] = await within(consumer.fetch())
        await consumer.ack([d.id])
        await host.send(Ping(n=2), workflow_id=kept.workflow_id)  # known for an hour
    async with streaming(0.0).run() as host:
        first = await host.send(Ping(n=1))
        consumer = await host.open_consumer("work", "c")
        [d] = await within(consumer.fetch())
        await consumer.ack([d.id])
        store = host.store
        store._trim_acked(store._streams["pings"])  # what retention does after 1,024 events
        with pytest.raises(UnknownWorkflowError):
            await host.send(Ping(n=2), workflow_id=first.workflow_id)
