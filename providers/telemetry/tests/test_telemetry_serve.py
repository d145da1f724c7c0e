"""``svrnty-events serve`` lists the metrics endpoint in its banner, and it answers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from test_telemetry_metrics import TIMEOUT, scrape_text

CLI = str(Path(sys.executable).with_name("svrnty-events"))


async def test_serve_banner_lists_the_metrics_endpoint(tmp_path: Path) -> None:
    config = tmp_path / "host.toml"
    config.write_text("""
[store]
plugin = "memory"

[[streams]]
name = "telemetry-served"

[[subscriptions]]
name = "served"
stream = "telemetry-served"

[telemetry.prometheus]
host = "127.0.0.1"
port = 0
""")
    env = {**os.environ, "SVRNTY_EVENTS_PLUGINS": "memory,telemetry", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    proc = await asyncio.create_subprocess_exec(
        CLI, "serve", "--config", str(config), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        url = None
        async with asyncio.timeout(TIMEOUT):
            while url is None:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"serve exited: {(await proc.stderr.read()).decode()}")
                match = re.search(r"endpoint: +metrics (http://127\.0\.0\.1:\d+/metrics)", line)
                url = match.group(1) if match else None
        text = await scrape_text(url)
        assert 'svrnty_events_consumers{' in text and 'subscription="served"' in text
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
