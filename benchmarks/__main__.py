"""Run the benchmarks: ``python -m benchmarks [--quick] [--json FILE] [--only NAME ...]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time

from . import inprocess
from .common import Result

SCENARIOS = {"inprocess": inprocess}


def _optional() -> None:
    for name in ("grpc_bench", "stores", "peer", "consumers", "telemetry_bench",
                 "rabbitmq_bench", "hosts_bench"):
        try:
            module = __import__(f"benchmarks.{name}", fromlist=["run"])
        except ImportError as exc:
            print(f"[benchmarks] {name}: skipped ({exc})", file=sys.stderr)
            continue
        SCENARIOS[name] = module


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table(results: list[Result]) -> str:
    rows = [("scenario", "events/s", "p50 µs", "p99 µs", "baseline", "baseline ev/s", "ratio",
             "notes")]
    for r in results:
        notes = ", ".join(f"{k}={v:,.1f}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in r.extra.items())
        rows.append((r.name, fmt(r.events_per_s), fmt(r.p50_us, 1), fmt(r.p99_us, 1),
                     r.baseline or "-", fmt(r.baseline_events_per_s),
                     fmt(r.ratio, 2), notes))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for j, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) for i in range(len(widths))] + [row[-1]]
        lines.append("| " + " | ".join(cells) + " |")
        if j == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|---|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller counts (about a minute)")
    parser.add_argument("--json", metavar="FILE", help="write one record per scenario")
    parser.add_argument("--only", nargs="*", help="scenario groups to run")
    args = parser.parse_args(argv)
    _optional()
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    results: list[Result] = []
    for name, module in SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        results.extend(asyncio.run(module.run(args.quick, progress)))
    print(f"machine: {machine()}")
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.to_dict() for r in results], f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
