"""``svrnty-events subscribe`` and ``svrnty-events dlq``, added through ``register_commands``."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
from pathlib import Path
from typing import Any

TARGET_ENV = "SVRNTY_EVENTS_TARGET"
TOKEN_ENV = "SVRNTY_EVENTS_TOKEN"
DEFAULT_TARGET = "127.0.0.1:6000"


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
        description="Print each delivered event and ack it after printing.")
    _connection_options(p)
    p.add_argument("subscription", metavar="SUBSCRIPTION")
    p.add_argument("--consumer", metavar="ID",
                   help="consumer id (default: cli-HOSTNAME-PID)")
    p.add_argument("--event-type", action="append", default=[], metavar="TYPE",
                   help="deliver only this event type (repeatable)")
    p.add_argument("--correlation-id", metavar="ID", help="only the events of one workflow")
    p.add_argument("--terminal-event-type", action="append", default=[], metavar="TYPE",
                   help="stop after delivering this event type (repeatable)")
    p.add_argument("--max-events", type=int, metavar="N", help="exit after N events")
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
            a.add_argument("--limit", type=int, metavar="N", help="at most N dead letters")
            a.add_argument("--json", action="store_true", help="print JSON")
        else:
            a.add_argument("--event-id", action="append", default=[], metavar="ID",
                           help="only this event (repeatable; default: all)")
        a.set_defaults(func=cmd_dlq)


def _client(args: argparse.Namespace) -> Any:
    from .client import EventClient

    roots = Path(args.ca).read_bytes() if args.ca else None
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
    if args.max_events is not None and args.max_events < 1:
        raise SystemExit("svrnty-events subscribe: error: --max-events must be >= 1")
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
                window=args.max_events, auto_ack=False) as deliveries:
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
    return asyncio.run(_dlq(args))


async def _dlq(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        if args.dlq_action == "list":
            letters = await client.dead_letters(args.subscription, limit=args.limit,
                                                timeout=args.timeout)
            if args.json:
                print(json.dumps([{
                    **event_json(_Letter(dl)), "reason": dl.reason, "attempts": dl.attempts,
                    "error": dl.error, "consumer_id": dl.consumer_id,
                    "dead_lettered_at": dl.dead_lettered_at.isoformat()} for dl in letters],
                    indent=2))
            else:
                for dl in letters:
                    e = dl.event
                    print(f"{e.id} {e.type} #{e.sequence} attempts={dl.attempts} "
                          f"reason={dl.reason!r}")
                print(f"{len(letters)} dead letter(s) in {args.subscription}")
            return 0
        method = client.replay_dead_letters if args.dlq_action == "replay" \
            else client.purge_dead_letters
        count = await method(args.subscription, args.event_id or None, timeout=args.timeout)
        verb = "replayed" if args.dlq_action == "replay" else "purged"
        print(f"{verb} {count} dead letter(s) of {args.subscription}")
        return 0


class _Letter:
    """A dead letter's event with the attributes ``event_json`` reads."""

    def __init__(self, dl: Any) -> None:
        e = dl.event
        self.id, self.type, self.correlation_id = e.id, e.type, e.correlation_id
        self.stream, self.sequence, self.attempt = e.stream, e.sequence, dl.attempts
        self.data, self.content_type = e.data, e.content_type
