"""The cost of the telemetry plugin: in-process publish -> consume -> ack with ``[telemetry]``
on (metrics counted, no exporter, no tracer provider) against the same without it, in rounds
that alternate so both see the same machine."""

from __future__ import annotations

import svrnty_events_telemetry  # noqa: F401  (skipped when the plugin is not installed)

from .common import Result
from .inprocess import ours_throughput


async def run(quick: bool, progress) -> list[Result]:  # type: ignore[no-untyped-def]
    n = 50_000 if quick else 300_000
    progress("telemetry overhead: in-process with and without [telemetry]")
    without: list[float] = []
    with_it: list[float] = []
    for _ in range(3):
        without.append(await ours_throughput(n))
        with_it.append(await ours_throughput(n, telemetry=True))
    base, ours = max(without), max(with_it)
    return [Result("in-process with telemetry (metrics, no exporter)", ours,
                   baseline="same without telemetry", baseline_events_per_s=base,
                   ratio=ours / base)]
