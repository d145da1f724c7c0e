"""``svrnty-events subscribe``, ``svrnty-events dlq`` and ``svrnty-events projection``, added
through ``register_commands``."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TARGET_ENV = "SVRNTY_EVENTS_TARGET"
TOKEN_ENV = "SVRNTY_EVENTS_TOKEN"
CONSUMER_ENV = "SVRNTY_EVENTS_CONSUMER"
DEFAULT_TARGET = "127.0.0.1:6000"


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (a bad one is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def sequence(text: str) -> int:
    """An argparse type: a stream sequence (an integer >= 0)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def instant(text: str) -> datetime:
    """An argparse type: an ISO 8601 date and time; without an offset it is UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2026-01-31T12:00:00Z, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=os.environ.get(TARGET_ENV, DEFAULT_TARGET),
                        metavar="HOST:PORT",
                        help=f"gRPC endpoint (default: ${TARGET_ENV} or {DEFAULT_TARGET}); "
                             "grpcs://HOST:PORT for TLS")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"bearer token (default: ${TOKEN_ENV})")
    parser.add_argument("--ca", metavar="FILE",
                        help="PEM root certificates to verify the server with (enables TLS)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="timeout of admin calls (default: 10)")


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``subscribe`` and ``dlq`` to the ``svrnty-events`` command line."""
    p = subparsers.add_parser(
        "subscribe", help="consume a subscription of a running host over gRPC",
        description="Print each delivered event and ack it after printing. Each run is a new "
                    "consumer unless --consumer names one: on a broadcast or read_receipt "
                    "subscription of a persistent stream, a consumer that runs again with the "
                    "same id resumes after the last event it acked (an ephemeral stream "
                    "forgets a consumer's cursor when it leaves). A start position places a "
                    "new cursor only; without one a new consumer starts at the oldest event "
                    "the subscription retains.")
    _connection_options(p)
    p.add_argument("subscription", metavar="SUBSCRIPTION")
    p.add_argument("--consumer", "--consumer-id", dest="consumer", metavar="ID",
                   default=os.environ.get(CONSUMER_ENV) or None,
                   help=f"consumer id; keep one across runs to resume where the last run left "
                        f"off (default: ${CONSUMER_ENV}, else a new cli-HOSTNAME-PID per run)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", dest="start", action="store_const",
                       const="beginning", help="a new consumer starts at the stream's first "
                                               "retained event")
    start.add_argument("--new-only", dest="start", action="store_const", const="new",
                       help="a new consumer gets only events appended from now on")
    start.add_argument("--from-sequence", dest="start", type=sequence, metavar="N",
                       help="a new consumer starts at stream sequence N")
    start.add_argument("--from-time", dest="start", type=instant, metavar="TIME",
                       help="a new consumer starts at the first event at or after TIME "
                            "(ISO 8601; UTC unless it has an offset)")
    p.add_argument("--event-type", action="append", default=[], metavar="TYPE",
                   help="deliver only this event type (repeatable)")
    p.add_argument("--correlation-id", metavar="ID", help="only the events of one workflow")
    p.add_argument("--terminal-event-type", action="append", default=[], metavar="TYPE",
                   help="stop after delivering this event type (repeatable)")
    p.add_argument("--max-events", type=positive_int, metavar="N",
                   help="exit after N events (N >= 1)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per line: id, type, correlation_id, stream, "
                        "sequence, attempt, data")
    p.set_defaults(func=cmd_subscribe)

    dlq = subparsers.add_parser("dlq", help="list, replay or purge a subscription's dead letters")
    actions = dlq.add_subparsers(dest="dlq_action", metavar="ACTION")
    actions.required = True
    for action, help_text in (("list", "list dead letters"),
                              ("replay", "put dead letters back for delivery"),
                              ("purge", "delete dead letters")):
        a = actions.add_parser(action, help=help_text)
        _connection_options(a)
        a.add_argument("subscription", metavar="SUBSCRIPTION")
        if action == "list":
            a.add_argument("--limit", type=positive_int, metavar="N",
                           help="at most N dead letters")
            a.add_argument("--json", action="store_true", help="print JSON")
        else:
            a.add_argument("--event-id", action="append", default=[], metavar="ID",
                           help="only this event (repeatable; default: all)")
        if action == "purge":
            a.add_argument("--yes", "-y", action="store_true",
                           help="delete without asking (needed when stdin is not a terminal)")
        a.set_defaults(func=cmd_dlq)

    from .projections import register_commands as add_projection
    add_projection(subparsers, _connection_options, sequence)
    from .stats import register as add_stats
    add_stats(subparsers, _connection_options)


def _client(args: argparse.Namespace) -> Any:
    from .client import EventClient

    try:
        roots = Path(args.ca).read_bytes() if args.ca else None
    except OSError as exc:
        print(f"svrnty-events: error: --ca: {exc.strerror or exc}: {args.ca}", file=sys.stderr)
        raise SystemExit(2) from None
    return EventClient(args.target, token=args.token, root_certificates=roots)


def _data(data: bytes, content_type: str) -> dict[str, Any]:
    if content_type in ("", "application/json"):
        try:
            return {"data": json.loads(data)}
        except ValueError:
            pass
    return {"data_base64": base64.b64encode(data).decode(), "content_type": content_type}


def event_json(d: Any) -> dict[str, Any]:
    """What ``subscribe --json`` prints for a delivery."""
    return {"id": d.id, "type": d.type, "correlation_id": d.correlation_id, "stream": d.stream,
            "sequence": d.sequence, "attempt": d.attempt, **_data(d.data, d.content_type)}


def cmd_subscribe(args: argparse.Namespace) -> int:
    return asyncio.run(_subscribe(args))


async def _subscribe(args: argparse.Namespace) -> int:
    consumer = args.consumer or f"cli-{socket.gethostname()}-{os.getpid()}"
    count = 0
    async with _client(args) as client:
        # with --max-events, hold no more than will be printed: the rest stays for others
        async with client.subscribe(
                args.subscription, consumer, correlation_id=args.correlation_id,
                event_types=args.event_type or None,
                terminal_event_types=args.terminal_event_type or None,
                window=args.max_events, auto_ack=False, start=args.start) as deliveries:
            async for d in deliveries:
                if args.json:
                    print(json.dumps(event_json(d)), flush=True)
                else:
                    body = event_json(d)
                    payload = json.dumps(body.get("data", body.get("data_base64")))
                    print(f"#{d.sequence} {d.type} id={d.id} correlation_id={d.correlation_id} "
                          f"attempt={d.attempt} {payload}", flush=True)
                await d.ack()
                count += 1
                if args.max_events is not None and count >= args.max_events:
                    break
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    if args.dlq_action == "purge" and not args.yes:
        refused = _confirm_purge(args)
        if refused is not None:
            return refused
    return asyncio.run(_dlq(args))


def _confirm_purge(args: argparse.Namespace) -> int | None:
    """Ask before deleting dead letters: None when confirmed, else the exit code (2, a usage
    error, where stdin is no terminal to ask on; 1 when the answer is no)."""
    what = (f"{len(args.event_id)} selected dead letter(s)" if args.event_id
            else "every dead letter")
    if not sys.stdin.isatty():
        print(f"svrnty-events dlq purge: error: refusing to delete {what} of "
              f"{args.subscription} without --yes (stdin is not a terminal to confirm on)",
              file=sys.stderr)
        return 2
    # the question goes to stderr: stdout stays what the command prints
    print(f"Delete {what} of {args.subscription}? This cannot be undone. [y/N] ", end="",
          file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    if answer.strip().lower() in ("y", "yes"):
        return None
    print("nothing deleted", file=sys.stderr)
    return 1


def dead_letter_json(dl: Any) -> dict[str, Any]:
    """What ``dlq list --json`` prints for a dead letter."""
    e = dl.event
    return {"id": e.id, "type": e.type, "correlation_id": e.correlation_id, "stream": e.stream,
            "sequence": e.sequence, **_data(e.data, e.content_type),
            "subscription": dl.subscription, "group": dl.group, "consumer_id": dl.consumer_id,
            "attempts": dl.attempts, "reason": dl.reason, "error": dl.error,
            "dead_lettered_at": dl.dead_lettered_at.isoformat()}


async def _dlq(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        if args.dlq_action == "list":
            letters = await client.dead_letters(args.subscription, limit=args.limit,
                                                timeout=args.timeout)
            if args.json:
                print(json.dumps([dead_letter_json(dl) for dl in letters], indent=2))
            else:
                for dl in letters:
                    e = dl.event
                    # group "" is the subscription's shared delivery group
                    print(f"{e.id} {e.type} #{e.sequence} group={dl.group or '(shared)'} "
                          f"consumer={dl.consumer_id or '-'} attempts={dl.attempts} "
                          f"reason={dl.reason!r}")
                print(f"{len(letters)} dead letter(s) in {args.subscription}")
            return 0
        method = client.replay_dead_letters if args.dlq_action == "replay" \
            else client.purge_dead_letters
        count = await method(args.subscription, args.event_id or None, timeout=args.timeout)
        verb = "replayed" if args.dlq_action == "replay" else "purged"
        print(f"{verb} {count} dead letter(s) of {args.subscription}")
        return 0
