"""Run by test_telemetry_tracing_host.py in a subprocess (a process-wide tracer provider is
set once per process): a host with [telemetry] on the memory store; a command emits three
events in one batch and one in another; an in-process consumer acks the first, nacks the
second then acks its redelivery, dead-letters the third; an at-most-once subscription takes
the fourth. Prints "done" at the end."""

from __future__ import annotations

import asyncio
import os
import sys

import msgspec

from svrnty_events import EventStreaming, Workflow
from svrnty_events.events import Event


class TraceProbeEvent(Event):
    n: int


class TraceProbeCommand(msgspec.Struct):
    count: int


class TraceProbeWorkflow(Workflow):
    pass


async def main() -> None:
    s = EventStreaming(store="memory")
    s.add_stream(TraceProbeWorkflow, name="trace-probes", type="persistent")
    s.add_subscription("trace-probes", "probe-worker", mode="exclusive",
                       max_delivery_attempts=5, visibility_timeout=60.0)
    s.add_telemetry()

    @s.command_handler(TraceProbeCommand, workflow=TraceProbeWorkflow)
    def probe(command: TraceProbeCommand, workflow: TraceProbeWorkflow) -> None:
        for n in range(command.count):
            workflow.emit(TraceProbeEvent(n=n))

    async with s.run() as host:
        result = await host.send(TraceProbeCommand(count=3))
        await host.send(TraceProbeCommand(count=1), result.workflow_id)
        async with host.subscribe("probe-worker", "w1", auto_ack=False) as deliveries:
            seen: list[tuple[int, int]] = []
            while len(seen) < 5:
                d = await asyncio.wait_for(deliveries.__anext__(), 30)
                n = d.event.n
                seen.append((n, d.attempt))
                if n == 1 and d.attempt == 1:
                    await d.nack(delay=0.0, reason="try again")
                elif n == 2:
                    await d.dead_letter("poison")
                else:
                    await d.ack()
            print("seen", seen, flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import span_files
    if len(sys.argv) > 1:
        span_files.install(sys.argv[1])
    asyncio.run(main())
