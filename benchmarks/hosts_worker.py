"""One host process of the shared-store benchmark (``benchmarks.hosts_bench``):

    python -m benchmarks.hosts_worker STORE OPTIONS_JSON SUBSCRIPTION

Starts a host on the store, prints ``ready``, waits for ``go`` on stdin, then consumes the
subscription (``host.subscribe``, automatic acks) and prints the running count every 500 events
and whenever its buffer runs dry, until stdin closes."""

from __future__ import annotations

import asyncio
import json
import sys

from .common import streaming
from svrnty_events import StreamType


async def main(store: str, options: dict, subscription: str) -> None:
    s = streaming(stream_type=StreamType.PERSISTENT, window=500)
    s.config.store.plugin = store
    s.config.store.options = options
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with s.run() as host:
        print("ready", flush=True)
        await reader.readline()  # go
        seen = 0

        async def consume() -> None:
            nonlocal seen
            async with host.subscribe(subscription, f"bench-{id(host)}") as deliveries:
                async for _ in deliveries:
                    seen += 1
                    if seen % 500 == 0:
                        print(seen, flush=True)

        task = asyncio.create_task(consume())

        async def report() -> None:
            last = -1
            while True:
                await asyncio.sleep(0.02)
                if seen != last:
                    last = seen
                    print(seen, flush=True)

        reporter = asyncio.create_task(report())
        await reader.readline()  # stdin closed: stop
        task.cancel()
        reporter.cancel()
        await asyncio.gather(task, reporter, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]))
