"""``svrnty-events stats``: per subscription, lag, events in flight, consumers and dead letters
of a running host, over the gRPC admin API (``GetSubscriptionStats``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

COLUMNS = ("subscription", "mode", "lag", "in flight", "consumers", "dead letters",
           "oldest dead letter")


def _age(seconds: float, count: int) -> str:
    if not count:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def table(stats: list[dict[str, Any]]) -> str:
    """The stats as an aligned text table (lag "?" where the store does not report it)."""
    rows = [COLUMNS] + [(
        st["subscription"], st["mode"], "?" if st["lag"] is None else str(st["lag"]),
        str(st["in_flight"]), str(st["consumers"]), str(st["dead_letters"]),
        _age(st["oldest_dead_letter_age"], st["dead_letters"])) for st in stats]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                     for r in rows)


def register(subparsers: argparse._SubParsersAction,
             connection_options: Callable[[argparse.ArgumentParser], None]) -> None:
    p = subparsers.add_parser(
        "stats", help="lag, in flight, consumers and dead letters per subscription",
        description="Per subscription of a running host: lag (events appended and not yet "
                    "settled, over its delivery groups), events in flight and consumers on "
                    "that host, dead letters and the age of the oldest.")
    connection_options(p)
    p.add_argument("subscription", nargs="?", metavar="SUBSCRIPTION",
                   help="only this subscription (default: all)")
    p.add_argument("--json", action="store_true",
                   help="print JSON (with the lag of each delivery group)")
    p.add_argument("--watch", action="store_true",
                   help="refresh until interrupted (Ctrl-C exits 0)")
    p.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                   help="seconds between refreshes with --watch (default: 2)")
    p.set_defaults(func=cmd_stats)


def cmd_stats(args: argparse.Namespace) -> int:
    if not args.interval > 0:
        print("svrnty-events stats: error: --interval must be > 0", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_stats(args))
    except KeyboardInterrupt:
        return 0


async def _stats(args: argparse.Namespace) -> int:
    from .cli import _client

    tty = sys.stdout.isatty()
    async with _client(args) as client:
        while True:
            stats = await client.subscription_stats(args.subscription, timeout=args.timeout)
            if args.json:
                out = json.dumps(stats, indent=None if args.watch else 2)
            else:
                out = table(stats)
            if args.watch and tty and not args.json:
                # in place: home the cursor and clear the screen first
                sys.stdout.write("\x1b[H\x1b[2J")
            if args.watch and not args.json:
                out = f"{time.strftime('%H:%M:%S')}  {args.target}\n{out}\n"
            print(out, flush=True)
            if not args.watch:
                return 0
            await asyncio.sleep(args.interval)
