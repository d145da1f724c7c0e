"""Helpers of the gRPC reliability tests: real hosts with the gRPC provider on 127.0.0.1 port 0,
a store that keeps a ledger of every claim and ack, a TCP proxy whose connections can be cut,
a remote consumer process, self-signed certificates.

The ledger store is the in-memory store itself, noting what it did: which consumer was handed
which event at which attempt, which acks it accepted, and what was claimable again when the host
closed it. Tests count with it on the server side, where "delivered" and "acked" are decided.
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import svrnty_events_memory.plugin
from svrnty_events_memory import MemoryStore

import svrnty_events_grpc.plugin
from svrnty_events import Event, EventStreaming
from svrnty_events.events import event_type_name, record
from svrnty_events.store import ClaimFilter, ClaimResult
from svrnty_events.testing import self_signed_certificate, within

from ..support import store_plugin, subprocess_env

__all__ = ["within"]

#: the venv's interpreter, for remote consumer processes
PYTHON = sys.executable
SUBSCRIBE_METHOD = "/svrnty.events.v1.EventService/Subscribe"


class Job(Event):
    n: int


JOB_TYPE = event_type_name(Job)


# --- the ledger store ----------------------------------------------------------------------------


class LedgerStore(MemoryStore):
    """The in-memory store, keeping a ledger of what it handed out and what was acked."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        #: event id -> [(consumer id, attempt)] in claim order
        self.claims: defaultdict[str, list[tuple[str, int]]] = defaultdict(list)
        #: event id -> [consumer id] of every ack the store accepted
        self.acked: defaultdict[str, list[str]] = defaultdict(list)
        #: (subscription, group) of every delivery group used
        self.groups: set[tuple[str, str]] = set()
        #: what was claimable, per (subscription, group), when the host closed the store:
        #: event id -> attempt it would be delivered with
        self.claimable_at_close: dict[tuple[str, str], dict[str, int]] | None = None

    @property
    def acked_count(self) -> int:
        return len(self.acked)

    async def ensure_group(self, subscription: str, group: str, *,
                           start: int | None = None, filter: ClaimFilter | None = None) -> None:
        self.groups.add((subscription, group))
        await super().ensure_group(subscription, group, start=start, filter=filter)

    async def claim(self, subscription: str, group: str, consumer_id: str, *, max_count: int,
                    visibility_timeout: float, filter: ClaimFilter | None = None) -> ClaimResult:
        result = await super().claim(subscription, group, consumer_id, max_count=max_count,
                                     visibility_timeout=visibility_timeout, filter=filter)
        for c in result.claimed:
            self.claims[c.event.id].append((consumer_id, c.attempt))
        return result

    async def ack(self, subscription: str, group: str, consumer_id: str,
                  event_ids: Sequence[str]) -> list[str]:
        missing = await super().ack(subscription, group, consumer_id, event_ids)
        refused = set(missing)
        for event_id in event_ids:
            if event_id not in refused:
                self.acked[event_id].append(consumer_id)
        return missing

    async def close(self) -> None:
        if self.claimable_at_close is None:
            snapshot: dict[tuple[str, str], dict[str, int]] = {}
            for subscription, group in sorted(self.groups):
                with suppress(Exception):  # a group deleted meanwhile (private, per workflow)
                    result = await MemoryStore.claim(
                        self, subscription, group, "<snapshot at close>", max_count=10**9,
                        visibility_timeout=3600.0)
                    snapshot[(subscription, group)] = {c.event.id: c.attempt
                                                       for c in result.claimed}
            self.claimable_at_close = snapshot
        await super().close()


LEDGER_PLUGIN = store_plugin("ledger", LedgerStore, name="ledger-store")


def new_streaming(**grpc_options: Any) -> EventStreaming:
    """The ledger store and the gRPC provider on 127.0.0.1, port 0; no entry points loaded, so
    the plugins are exactly these whatever is installed."""
    streaming = EventStreaming(store="ledger", load_entrypoints=False, plugins=[
        LEDGER_PLUGIN, svrnty_events_memory.plugin, svrnty_events_grpc.plugin])
    streaming.add_delivery("grpc", **{"host": "127.0.0.1", "port": 0, **grpc_options})
    return streaming


@asynccontextmanager
async def running(streaming: EventStreaming) -> AsyncIterator[Any]:
    async with streaming.run() as host:
        yield host


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (checked every 10 ms), at most ``timeout`` seconds."""
    async def wait() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await within(wait(), timeout)


def target(host: Any) -> str:
    return f"127.0.0.1:{host.providers['grpc'].port}"


def ledger(host: Any) -> LedgerStore:
    assert isinstance(host.store, LedgerStore)
    return host.store


async def publish_jobs(host: Any, stream: str, numbers: range, *,
                       correlation_id: str = "jobs") -> list[Any]:
    """Append Job(n) for each n, in batches of 1000; return the recorded events."""
    out: list[Any] = []
    for i in range(numbers.start, numbers.stop, 1000):
        batch = [record(Job(n=n), stream=stream, correlation_id=correlation_id)
                 for n in range(i, min(i + 1000, numbers.stop))]
        out.extend(await host.publish(stream, batch, external=False))
    return out


# --- raw calls -----------------------------------------------------------------------------------


def raw_subscribe(channel: grpc.aio.Channel, metadata: Any = None) -> Any:
    """A Subscribe call sending and receiving raw bytes (identity serializers)."""
    method = channel.stream_stream(SUBSCRIBE_METHOD, request_serializer=None,
                                   response_deserializer=None)
    return method(metadata=metadata)


async def final_status(call: Any, timeout: float = 10.0) -> tuple[grpc.StatusCode, str]:
    """Read a call to its end; return its status code and details."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            msg = await within(call.read(), max(deadline - loop.time(), 0.01))
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        if msg is grpc.aio.EOF:
            return await call.code(), await call.details() or ""


# --- a TCP proxy whose connections can be cut -----------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``upstream``; :meth:`drop` cuts every connection at once,
    both sides, as a failing network or a dead NAT entry does."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TcpProxy:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        pumps = [asyncio.ensure_future(self._pump(reader, up_writer)),
                 asyncio.ensure_future(self._pump(up_reader, writer))]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                w.transport.abort()
                self._writers.discard(w)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    def drop(self) -> None:
        """Cut every open connection now (RST, no goodbye)."""
        for w in list(self._writers):
            w.transport.abort()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.drop()
            with suppress(asyncio.TimeoutError, TimeoutError):
                await within(self.server.wait_closed(), 5)
            self.server = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


# --- a remote consumer process --------------------------------------------------------------------

CONSUMER_SCRIPT = """\
import asyncio, sys
from svrnty_events_grpc import EventClient

async def main(target, subscription, consumer_id, window, mode):
    async with EventClient(target) as client:
        async with client.subscribe(subscription, consumer_id, window=window,
                                    auto_ack=False) as deliveries:
            async for d in deliveries:
                # one line per delivery, written before the ack is queued
                sys.stdout.write(f"{d.id} {d.attempt}\\n")
                sys.stdout.flush()
                if mode == "ack":
                    await d.ack()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
"""


async def start_consumer_process(target: str, subscription: str, consumer_id: str, *,
                                 window: int, mode: str = "ack") -> asyncio.subprocess.Process:
    """A remote consumer in its own process (svrnty_events_grpc.client). It prints ``ID
    ATTEMPT`` per delivery; ``mode="ack"`` acks each one, ``"hold"`` never acks."""
    return await asyncio.create_subprocess_exec(
        PYTHON, "-c", CONSUMER_SCRIPT, target, subscription, consumer_id, str(window), mode,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=subprocess_env(SVRNTY_EVENTS_PLUGINS="memory,grpc"))


async def kill_process(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL (if still running) and reap. Reads the pipes to their end: asyncio's wait() does
    not return while a pipe it stopped reading (its buffer is full) is still open."""
    if proc.returncode is None:
        with suppress(ProcessLookupError):
            proc.kill()
    await within(proc.communicate(), 10)


async def read_deliveries(proc: asyncio.subprocess.Process, count: int,
                          timeout: float = 15.0) -> list[tuple[str, int]]:
    """The next ``count`` (id, attempt) lines a consumer process printed."""
    assert proc.stdout is not None
    out: list[tuple[str, int]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(out) < count:
        line = await within(proc.stdout.readline(), max(deadline - loop.time(), 0.01))
        if not line:
            err = await within(proc.stderr.read()) if proc.stderr else b""
            await kill_process(proc)
            raise AssertionError(f"consumer process exited ({proc.returncode}) after {len(out)} "
                                 f"deliveries: {err.decode()[-2000:]}")
        event_id, attempt = line.decode().split()
        out.append((event_id, int(attempt)))
    return out


# --- certificates ---------------------------------------------------------------------------------


def self_signed(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (the kernel's test helper)."""
    return self_signed_certificate(directory, name)
