"""The ``svrnty-events`` command line. Plugins add subcommands through ``register_commands``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence

from . import plugins as plugin_registry
from .errors import SvrntyEventsError


def build_parser(pm=None) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
    parser = argparse.ArgumentParser(
        prog="svrnty-events",
        description="Event streaming for CQRS applications: inspect plugins, run a host, "
                    "describe it as AsyncAPI.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("plugins", help="list installed plugins and what they register")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("serve", help="run a host from a TOML configuration file")
    p.add_argument("--config", required=True, metavar="FILE", help="TOML configuration file")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("asyncapi", help="print the AsyncAPI 3.0 document of a host's "
                                         "configuration",
                       description="Streams as channels, event types as messages, subscriptions "
                                   "as operations, delivery providers as servers. Nothing is "
                                   "started: the configuration is only validated.")
    p.add_argument("--config", required=True, metavar="FILE", help="TOML configuration file")
    p.add_argument("--title", help="info.title (default: the file's name)")
    p.add_argument("--version", dest="doc_version", default="0.1.0", metavar="VERSION",
                   help="info.version (default: 0.1.0)")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=cmd_asyncapi)

    p = sub.add_parser("new-plugin", help="scaffold a delivery provider plugin package")
    p.add_argument("name", help="plugin name, e.g. my-sink (entry point and config name)")
    p.add_argument("--directory", default=".", metavar="DIR",
                   help="where to create the package folder (default: here)")
    p.set_defaults(func=cmd_new_plugin)

    if pm is not None:
        pm.hook.register_commands(subparsers=sub)
    return parser


def cmd_plugins(args: argparse.Namespace) -> int:
    pm = plugin_registry.get_plugin_manager()
    registry = plugin_registry.collect_registry(pm)
    infos = plugin_registry.list_plugins(pm, registry)
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    for info in infos:
        dist = f"{info.distribution} {info.version}" if info.distribution else "(not installed)"
        print(f"{info.name}  [{dist}]")
        print(f"    hooks: {', '.join(info.hooks)}")
        for kind, names in info.registered.items():
            print(f"    {kind}s: {', '.join(names)}")
    if not registry.stores:
        print("no event store installed: pip install svrnty-events-memory", file=sys.stderr)
    return 0


async def serve(streaming, *, extra_endpoints=(), ready=None) -> None:  # type: ignore[no-untyped-def]
    """Run a host until SIGINT or SIGTERM; print the banner once it is up."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with streaming.run() as host:
            if ready is not None:
                await ready(host)
            print(host.banner(extra_endpoints), flush=True)
            await stop.wait()
            print("svrnty-events host stopping", flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def cmd_asyncapi(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .asyncapi import document_for
    from .host import EventStreaming

    streaming = EventStreaming.from_toml(args.config)
    doc = document_for(streaming, title=args.title or Path(args.config).name,
                       version=args.doc_version)
    text = json.dumps(doc, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_new_plugin(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .scaffold import scaffold

    target = scaffold(args.name, Path(args.directory))
    print(f"created {target}")
    print(f'next: pip install -e "{target}[test]" && pytest {target}')
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .host import EventStreaming

    streaming = EventStreaming.from_toml(args.config)
    logging.basicConfig(level=streaming.config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(streaming))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        pm = plugin_registry.get_plugin_manager()
        parser = build_parser(pm)
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except SvrntyEventsError as exc:
        print(f"svrnty-events: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
