"""Shared pieces of the benchmark scenarios."""

from __future__ import annotations

import resource
import statistics
import time
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


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.elapsed = time.perf_counter() - self.start


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")
