"""Projections over the gRPC admin API: the server's ``GetProjectionStatus``,
``RebuildProjection`` and ``ResetProjection``, the client's methods, and
``svrnty-events projection status|rebuild|reset``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from typing import Any

from svrnty_events.errors import StoreUnavailableError, UnknownProjectionError

from .proto import events_pb2 as pb


def status_to_proto(s: Any) -> pb.ProjectionStatus:
    return pb.ProjectionStatus(name=s.name, stream=s.stream, position=s.position, lag=s.lag,
                               state=s.state, transactional=s.transactional,
                               error=s.error or "")


def status_from_proto(m: pb.ProjectionStatus) -> dict[str, Any]:
    """The fields of :class:`svrnty_events.projections.ProjectionStatus`, as a dict."""
    return {"name": m.name, "stream": m.stream, "position": m.position, "lag": m.lag,
            "state": m.state, "transactional": m.transactional, "error": m.error or None}


# --- server ------------------------------------------------------------------------------------


class ProjectionAdmin:
    """The projection calls of ``EventServicer`` (it has ``self.host``)."""

    host: Any

    async def _projection_call(self, context: Any, call: Callable[[], Any]) -> Any:
        import grpc

        try:
            return await call()
        except UnknownProjectionError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"name: {exc}")
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"position: {exc}")
        except StoreUnavailableError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"store unavailable: {exc}")

    async def GetProjectionStatus(self, request: pb.ProjectionRequest,
                                  context: Any) -> pb.ProjectionStatusList:
        statuses = await self._projection_call(
            context, lambda: self.host.projections.status(request.name or None))
        return pb.ProjectionStatusList(projections=[status_to_proto(s) for s in statuses])

    async def ResetProjection(self, request: pb.ResetProjectionRequest,
                              context: Any) -> pb.ProjectionStatus:
        status = await self._projection_call(
            context, lambda: self.host.projections.reset(request.name, request.position))
        return status_to_proto(status)

    async def RebuildProjection(self, request: pb.ProjectionRequest,
                                context: Any) -> AsyncIterator[pb.RebuildProgress]:
        queue: asyncio.Queue[pb.RebuildProgress] = asyncio.Queue()

        def progress(position: int, target: int) -> None:
            queue.put_nowait(pb.RebuildProgress(position=position, target=target))

        async def rebuild() -> Any:
            return await self.host.projections.rebuild(request.name, progress=progress)

        task = asyncio.ensure_future(self._projection_call(context, rebuild))
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                    continue
                getter.cancel()
                while not queue.empty():
                    yield queue.get_nowait()
                status = task.result()
                yield pb.RebuildProgress(position=status.position, target=status.position,
                                         done=status_to_proto(status))
                return
        finally:
            if not task.done():
                task.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await task


# --- client --------------------------------------------------------------------------------------


class ProjectionClient:
    """The projection methods of ``EventClient``."""

    async def _unary(self, method: str, request: Any, timeout: float | None) -> Any:
        raise NotImplementedError

    async def projection_status(self, name: str | None = None, *,
                                timeout: float | None = None) -> list[dict[str, Any]]:
        """Status of one projection (or all): position, lag, state (as
        ``host.projections.status``)."""
        r = await self._unary("GetProjectionStatus", pb.ProjectionRequest(name=name or ""),
                              timeout)
        return [status_from_proto(m) for m in r.projections]

    async def reset_projection(self, name: str, position: int, *,
                               timeout: float | None = None) -> dict[str, Any]:
        """Move a projection to ``position`` (its view untouched); returns its status."""
        r = await self._unary("ResetProjection", pb.ResetProjectionRequest(
            name=name, position=position), timeout)
        return status_from_proto(r)

    async def rebuild_projection(self, name: str, *,
                                 progress: Callable[[int, int], Any] | None = None,
                                 timeout: float | None = None) -> dict[str, Any]:
        """Clear a projection's view and project its stream again from the beginning;
        ``progress(position, target)`` as it goes. Returns its status once rebuilt."""
        import grpc

        from .client import RemoteError

        call = self.stub.RebuildProjection(  # type: ignore[attr-defined]
            pb.ProjectionRequest(name=name), metadata=self.metadata,  # type: ignore[attr-defined]
            timeout=timeout)
        try:
            async for message in call:
                if message.HasField("done"):
                    return status_from_proto(message.done)
                if progress is not None:
                    progress(message.position, message.target)
        except grpc.aio.AioRpcError as exc:
            raise RemoteError.from_rpc(exc) from None
        raise RemoteError(grpc.StatusCode.UNAVAILABLE, "the rebuild ended without its status")


# --- command line --------------------------------------------------------------------------------


def register_commands(subparsers: argparse._SubParsersAction, connection_options: Any,
                      sequence: Any) -> None:
    p = subparsers.add_parser("projection", help="status, rebuild or reset a host's projections")
    actions = p.add_subparsers(dest="projection_action", metavar="ACTION")
    actions.required = True
    status = actions.add_parser("status", help="position, lag and state of the projections")
    status.add_argument("name", nargs="?", metavar="NAME", help="one projection (default: all)")
    status.add_argument("--json", action="store_true", help="print JSON")
    rebuild = actions.add_parser("rebuild", help="clear a projection's view and project its "
                                 "stream from the beginning, with a progress line")
    rebuild.add_argument("name", metavar="NAME")
    reset = actions.add_parser("reset", help="move a projection to a position (its view is "
                               "left as it is)")
    reset.add_argument("name", metavar="NAME")
    reset.add_argument("--position", type=sequence, required=True, metavar="N",
                       help="the next sequence it reads")
    for a in (status, rebuild, reset):
        connection_options(a)
        a.set_defaults(func=cmd_projection)


def _line(s: dict[str, Any]) -> str:
    error = f" error={s['error']!r}" if s["error"] else ""
    return (f"{s['name']} stream={s['stream']} position={s['position']} lag={s['lag']} "
            f"state={s['state']}{error}")


def cmd_projection(args: argparse.Namespace) -> int:
    return asyncio.run(_projection(args))


async def _projection(args: argparse.Namespace) -> int:
    from .cli import _client

    async with _client(args) as client:
        if args.projection_action == "status":
            statuses = await client.projection_status(args.name, timeout=args.timeout)
            if args.json:
                print(json.dumps(statuses, indent=2))
            else:
                for s in statuses:
                    print(_line(s))
            return 0
        if args.projection_action == "reset":
            s = await client.reset_projection(args.name, args.position, timeout=args.timeout)
            print(f"reset {_line(s)}")
            return 0
        tty = sys.stderr.isatty()

        def progress(position: int, target: int) -> None:
            percent = 100 if not target else position * 100 // target
            line = f"rebuilding {args.name}: {position}/{target} events ({percent}%)"
            print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr,
                  flush=True)
        s = await client.rebuild_projection(args.name, progress=progress)
        if tty:
            print(file=sys.stderr)
        print(f"rebuilt {_line(s)}")
        return 0
