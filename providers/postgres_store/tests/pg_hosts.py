"""Drive host processes (host_process.py) from a test."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HOST_SCRIPT = Path(__file__).with_name("host_process.py")


class HostProcess:
    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.reports: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, name: str, url: str, schema: str, log_dir: Path, *,
                    mode: str = "exclusive", visibility_timeout: float = 30.0,
                    sync_interval: float | None = None) -> HostProcess:
        stderr = open(log_dir / f"{name}.stderr", "wb")  # noqa: SIM115 - owned by the process
        extra = [] if sync_interval is None else ["--sync-interval", str(sync_interval)]
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(HOST_SCRIPT), "--url", url, "--schema", schema,
                "--mode", mode, "--visibility-timeout", str(visibility_timeout), *extra,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr)
        finally:
            stderr.close()
        host = cls(name, proc)
        await host.wait_for(lambda r: r["event"] == "ready", 20)
        return host

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.reports.append(json.loads(line))
            self._changed.set()
        self._changed.set()

    async def wait_until(self, condition: Callable[[], bool], timeout: float) -> None:
        """Wait until ``condition()`` holds after some report (TimeoutError otherwise)."""
        async def loop() -> None:
            while not condition():
                if self._reader.done():
                    raise RuntimeError(f"host {self.name} exited: {self.proc.returncode}")
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(loop(), timeout)

    async def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float) -> None:
        await self.wait_until(lambda: any(match(r) for r in self.reports), timeout)

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def open(self, consumer_id: str, *, ack: bool = True, window: int = 20,
                   start: int | None = None) -> None:
        extra = "" if start is None else f" {start}"
        await self.send(f"open {consumer_id} {'ack' if ack else 'hold'} {window}{extra}")
        await self.wait_for(lambda r: r["event"] == "opened" and r["consumer"] == consumer_id,
                            10)

    async def close(self, consumer_id: str) -> None:
        await self.send(f"close {consumer_id}")
        await self.wait_for(lambda r: r["event"] == "closed" and r["consumer"] == consumer_id,
                            20)

    def numbers(self, event: str = "acked", consumer: str | None = None) -> list[int]:
        return [n for r in self.reports if r["event"] == event
                and (consumer is None or r["consumer"] == consumer) for n in r["n"]]

    def deliveries(self, event: str = "acked") -> list[tuple[float, str, str, int, int]]:
        """(handed over at, consumer, correlation id, n, attempt) of every event reported."""
        return [(r["at"], r["consumer"], wf, n, a) for r in self.reports if r["event"] == event
                for wf, n, a in zip(r["wf"], r["n"], r["attempt"])]

    def attempts(self, event: str = "acked") -> list[int]:
        return [a for r in self.reports if r["event"] == event for a in r["attempt"]]

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        """Ask the host to quit; SIGKILL it if it does not within a few seconds."""
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.send("quit"), 2)
                await asyncio.wait_for(self.proc.wait(), 10)
            except (asyncio.TimeoutError, TimeoutError, ConnectionError, BrokenPipeError):
                self.kill()
                await asyncio.wait_for(self.proc.wait(), 10)
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
