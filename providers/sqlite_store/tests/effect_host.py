"""A host on a SQLite file that applies each event's effect in the store's transaction
(``Delivery.process_once_in_store``) until it is killed (run by test_sigkill_effects).

Usage: python effect_host.py DB LOG ROUND EVENTS

The first round appends EVENTS events. Every round consumes: each effect inserts a row into the
table ``effects`` of the same database, inside the transaction that writes the processed mark and
the ack. LOG gets ``P <event id>`` once process_once_in_store returned (O_APPEND). A round exits
by itself once nothing is left to consume.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys

from svrnty_events import DeliverySemantics, EventStreaming, StreamType
from svrnty_events.events import Event, record


class EffectTick(Event):
    n: int


def streaming(path: str) -> EventStreaming:
    s = EventStreaming(store="sqlite", store_options={"path": path})
    s.add_stream("s", type=StreamType.PERSISTENT,
                 delivery_semantics=DeliverySemantics.EXACTLY_ONCE)
    s.add_subscription("s", "sub", mode="exclusive", visibility_timeout=600, window=25,
                       max_delivery_attempts=0)
    return s


def apply(event_id: str):  # type: ignore[no-untyped-def]
    def effect(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS effects (event_id TEXT NOT NULL)")
        conn.execute("INSERT INTO effects (event_id) VALUES (?)", (event_id,))
    return effect


async def main(path: str, log_path: str, round_no: str, events: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    async with streaming(path).run() as host:
        if round_no == "0":
            for i in range(0, int(events), 100):
                await host.publish("s", [record(EffectTick(n=n), stream="s",
                                                correlation_id=f"wf-{n}")
                                         for n in range(i, min(i + 100, int(events)))],
                                   external=False)
        consumer = await host.open_consumer("sub", f"worker-{round_no}")
        while True:
            batch = await consumer.fetch(timeout=3)
            if not batch:
                return
            for d in batch:
                await d.process_once_in_store(apply(d.id))
                os.write(fd, f"P {d.id}\n".encode())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
