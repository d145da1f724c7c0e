"""A host on a SQLite file that appends and consumes until it is killed (run by test_sigkill).

Usage: python kill_host.py DB LOG ROUND

It appends batches of BATCH events (each tagged with its batch id) and consumes the
subscription "sub", logging to LOG, one line per fact, written with O_APPEND so that every line
is in the file before the next step even if the process is killed right after:

    A <batch>      the append of the batch returned
    D <event id>   the event was delivered
    K <event id>   the ack of the event returned
"""

from __future__ import annotations

import asyncio
import os
import sys

from svrnty_events import DeliverySemantics, EventStreaming, StreamType
from svrnty_events.events import Event, record

BATCH = 20
MAX_BATCHES = 150


class KillTick(Event):
    n: int


def streaming(path: str) -> EventStreaming:
    s = EventStreaming(store="sqlite", store_options={"path": path})
    s.add_stream("s", type=StreamType.PERSISTENT,
                 delivery_semantics=DeliverySemantics.AT_LEAST_ONCE)
    # a visibility timeout far longer than the test: what comes back after a kill comes back
    # because the restarted store returned it, not because a deadline passed
    s.add_subscription("s", "sub", mode="exclusive", visibility_timeout=600, window=25,
                       max_delivery_attempts=0)
    return s


async def main(path: str, log_path: str, round_no: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def log(line: str) -> None:
        os.write(fd, (line + "\n").encode())

    async with streaming(path).run() as host:
        async def produce() -> None:
            for k in range(MAX_BATCHES):
                batch_id = f"{round_no}-{k}"
                events = [record(KillTick(n=i), stream="s", correlation_id=batch_id,
                                 headers={"batch": batch_id}) for i in range(BATCH)]
                await host.publish("s", events, external=False)
                log(f"A {batch_id}")
                await asyncio.sleep(0)

        async def consume() -> None:
            consumer = await host.open_consumer("sub", f"worker-{round_no}")
            while True:
                batch = await consumer.fetch(max_events=7, timeout=5)
                for d in batch:
                    log(f"D {d.id}")
                if batch:
                    await consumer.ack([d.id for d in batch])
                    for d in batch:
                        log(f"K {d.id}")

        await asyncio.gather(produce(), consume())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
