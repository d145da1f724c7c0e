"""A host process for the many-host tests (run as a script, one process per host).

It starts an EventStreamingHost on the PostgreSQL store, then obeys commands read from stdin:

    open CONSUMER_ID ack|hold WINDOW [START]   consume (acking each batch, or holding it)
    close CONSUMER_ID                          the consumer leaves (what it holds is released)
    quit                                       stop the host and exit

and reports on stdout, one JSON object a line: {"event": "ready"}, {"event": "opened", ...},
{"event": "acked" | "held", "consumer": ..., "n": [...], "wf": [correlation ids],
"attempt": [...], "at": time.time() when the batch was handed over}, {"event": "closed", ...},
{"event": "unavailable", ...} when PostgreSQL cannot be reached (the consumer retries with a
backoff).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from svrnty_events import EventStreaming
from svrnty_events.errors import StoreUnavailableError


def report(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def consume(host, consumer_id: str, ack: bool, window: int, start: int | None,
                  leave: asyncio.Event) -> None:
    consumer = None
    backoff = 0.05
    while not leave.is_set():
        try:
            if consumer is None or consumer.closed:
                consumer = await host.open_consumer("sub", consumer_id, window=window,
                                                    start=start)
                report(event="opened", consumer=consumer_id)
            batch = await consumer.fetch(timeout=0.5)
            if not batch:
                continue
            at = time.time()
            numbers = [json.loads(d.data)["n"] for d in batch]
            attempts = [d.attempt for d in batch]
            if ack:
                await consumer.ack([d.id for d in batch])
            report(event="acked" if ack else "held", consumer=consumer_id, n=numbers,
                   wf=[d.correlation_id for d in batch], attempt=attempts, at=at)
            backoff = 0.05
        except StoreUnavailableError as exc:
            report(event="unavailable", consumer=consumer_id, error=str(exc)[:200])
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)
    if consumer is not None:
        await consumer.close("left")
    report(event="closed", consumer=consumer_id)


#: partitions of the shared stream "s" (the tests' own hosts use the same)
PARTITIONS = 8


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--mode", default="exclusive")
    parser.add_argument("--visibility-timeout", type=float, default=30.0)
    parser.add_argument("--sync-interval", type=float, default=None)
    args = parser.parse_args()
    options = {} if args.sync_interval is None else {"sync_interval": args.sync_interval}
    streaming = EventStreaming(store="postgres", store_options={
        "url": args.url, "schema": args.schema, "connect_timeout": 2.0,
        "command_timeout": 5.0})
    # partitions belong to the stream: consumer_group spreads them over the consumers
    streaming.add_stream("s", type="persistent", partitions=PARTITIONS)
    streaming.add_subscription("s", "sub", mode=args.mode,
                               visibility_timeout=args.visibility_timeout,
                               max_delivery_attempts=0, options=options)
    tasks: list[asyncio.Task[None]] = []
    leaving: dict[str, asyncio.Event] = {}
    async with streaming.run() as host:
        report(event="ready")
        try:
            while True:
                line = await asyncio.to_thread(sys.stdin.readline)
                words = line.split()
                if not words or words[0] == "quit":
                    break
                if words[0] == "open":
                    start = int(words[4]) if len(words) > 4 else None
                    leave = leaving[words[1]] = asyncio.Event()
                    tasks.append(asyncio.ensure_future(
                        consume(host, words[1], words[2] == "ack", int(words[3]), start,
                                leave)))
                elif words[0] == "close":
                    leaving[words[1]].set()
        finally:
            for leave in leaving.values():
                leave.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
    report(event="stopped")


if __name__ == "__main__":
    asyncio.run(main())
