"""A claim of a cancelled fetch that finished before its done callback ran: the next fetch must
not spin on it (awaiting a finished future never yields to the event loop). Run in a
subprocess, since a spinning loop could not be interrupted from inside."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import asyncio
from svrnty_events import EventStreaming, StreamType
from svrnty_events.subscriptions.consumer import _Claim

async def main():
    streaming = EventStreaming(store="memory")
    streaming.add_stream("s", type=StreamType.PERSISTENT)
    streaming.add_subscription("s", "sub", mode="exclusive")
    async with streaming.run() as host:
        consumer = await host.open_consumer("sub", "c")
        finished = asyncio.get_running_loop().create_future()
        finished.set_result(_Claim())
        finished.add_done_callback(consumer._claim_done)  # scheduled, not run yet
        consumer._claims.add(finished)
        assert await consumer.fetch(timeout=0.2) == []
        assert not consumer._claims
        print("ok")

asyncio.run(main())
"""


def test_a_finished_claim_whose_callback_has_not_run_does_not_spin_the_next_fetch():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
