"""Shared pieces of the benchmark scenarios."""

from __future__ import annotations

import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Any

from svrnty_events import Event, EventStreaming, StreamType
from svrnty_events.events import RecordedEvent, record


class Tick(Event):
    n: int
    sent_ns: int = 0


@dataclass
class Result:
    name: str
    events_per_s: float | None
    p50_us: float | None = None
    p99_us: float | None = None
    baseline: str | None = None
    baseline_events_per_s: float | None = None
    ratio: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[k]


def latency_stats(samples_ns: list[int]) -> tuple[float, float, float]:
    us = [s / 1000 for s in samples_ns]
    return percentile(us, 0.50), percentile(us, 0.99), percentile(us, 0.999)


def ticks(stream: str, count: int, correlation_id: str = "bench") -> list[RecordedEvent]:
    return [record(Tick(n=i), stream=stream, correlation_id=correlation_id)
            for i in range(count)]


def streaming(mode: str = "exclusive", streams: int = 1, window: int = 100,
              stream_type: StreamType = StreamType.EPHEMERAL, **subscription: Any
              ) -> EventStreaming:
    s = EventStreaming()
    for i in range(streams):
        s.add_stream(f"s{i}", type=stream_type)
        s.add_subscription(f"s{i}", f"sub{i}", mode=mode, window=window, **subscription)
    return s


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / (1024 * 1024)


ROOT = Path(__file__).resolve().parent.parent


class CountingWorkers:
    """Worker processes (``python -m MODULE ARGS...``, one per argument list) that print
    ``ready`` once set up, then their running count of events, one number per line, until their
    stdin closes. ``async with CountingWorkers(argvs) as workers``: started and ready inside."""

    def __init__(self, argvs: list[list[str]], ready_timeout: float = 120.0) -> None:
        self.argvs = argvs
        self.ready_timeout = ready_timeout
        self.procs: list[asyncio.subprocess.Process] = []
        self.counts = [0] * len(argvs)

    async def __aenter__(self) -> CountingWorkers:
        try:
            for argv in self.argvs:
                self.procs.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", *argv, cwd=str(ROOT), stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE))
            for p in self.procs:
                assert p.stdout is not None
                line = await asyncio.wait_for(p.stdout.readline(), self.ready_timeout)
                if line.strip() != b"ready":
                    raise RuntimeError(f"benchmark worker did not start: {line!r}")
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def send(self, line: bytes) -> None:
        """Write ``line`` to every worker's stdin."""
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write(line)
            await p.stdin.drain()

    async def wait_total(self, n: int, timeout: float = 300.0) -> int:
        """Wait until the workers together reported at least ``n`` events; returns the total.
        RuntimeError when a worker exits first or ``timeout`` passes."""
        reached = asyncio.Event()

        async def follow(i: int, p: asyncio.subprocess.Process) -> None:
            assert p.stdout is not None
            while True:
                line = await p.stdout.readline()
                if not line:
                    raise RuntimeError("a benchmark worker exited")
                self.counts[i] = int(line)
                if sum(self.counts) >= n:
                    reached.set()

        followers = [asyncio.create_task(follow(i, p)) for i, p in enumerate(self.procs)]
        done_waiting = asyncio.create_task(reached.wait())
        try:
            done, _ = await asyncio.wait([done_waiting, *followers], timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                raise RuntimeError(f"the workers did not report {n} events in {timeout} s")
            for task in done:
                if task is not done_waiting:
                    task.result()  # a worker exited: raises
            return sum(self.counts)
        finally:
            for task in (done_waiting, *followers):
                task.cancel()

    async def __aexit__(self, *exc: Any) -> None:
        for p in self.procs:
            if p.stdin is not None and not p.stdin.is_closing():
                p.stdin.close()
        for p in self.procs:
            try:
                await asyncio.wait_for(p.wait(), 30)
            except TimeoutError:
                p.kill()
                await p.wait()


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.elapsed = time.perf_counter() - self.start


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")
