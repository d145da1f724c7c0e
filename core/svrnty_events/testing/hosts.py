"""Host processes for tests of stores shared by several hosts: ``HostProcess`` (the test's
side) starts ``python -m svrnty_events.testing.hosts`` (this module's ``main``, one process per
host) on a store, which obeys commands read from stdin:

    open CONSUMER_ID ack|hold WINDOW [START]   consume (acking each batch, or holding it)
    close CONSUMER_ID                          the consumer leaves (what it holds is released)
    due                                        report the store's next schedule due time
    schedule FIRST COUNT AFTER                 schedule COUNT events (HostsScheduled n = FIRST,
                                               FIRST+1, ...; a workflow each) AFTER seconds on
    crash N AFTER before|after                 one command that appends HostsStarted n = N and
                                               schedules HostsScheduled n = N AFTER seconds on;
                                               the host SIGKILLs itself just before (or just
                                               after) the store appends HostsStarted
    quit                                       stop the host and exit

and reports on stdout, one JSON object a line: {"event": "ready"}, {"event": "opened", ...},
{"event": "acked" | "held", "consumer": ..., "n": [...], "wf": [correlation ids],
"attempt": [...], "type": [...], "at": time.time() when the batch was handed over}, {"event": "closed", ...},
{"event": "scheduled", "first": FIRST, "count": COUNT},
{"event": "unavailable", ...} when the store cannot be reached (the consumer retries with a
backoff). The host has one persistent stream "s" of ``PARTITIONS`` partitions, and one
subscription "sub" of the mode asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec

from .. import scheduling
from ..errors import StoreUnavailableError
from ..events import Event
from ..host import EventStreaming
from ..workflow import Workflow


class HostsScheduled(Event):
    """What the ``schedule`` command of a host process schedules."""

    n: int


class HostsSchedule(msgspec.Struct):
    n: int
    after: float


class HostsStarted(Event):
    """What the ``crash`` command's command appends (beside the event it schedules)."""

    n: int


class HostsStartAndSchedule(msgspec.Struct):
    n: int
    after: float


class HostsScheduleWorkflow(Workflow):
    pass


class HostProcess:
    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.reports: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, name: str, store: str, store_options: dict[str, Any], log_dir: Path, *,
                    mode: str = "exclusive", visibility_timeout: float = 30.0,
                    sync_interval: float | None = None,
                    anchor_grace: float | None = None,
                    schedule_lease: float | None = None) -> HostProcess:
        stderr = open(log_dir / f"{name}.stderr", "wb")  # noqa: SIM115 - owned by the process
        extra = [] if sync_interval is None else ["--sync-interval", str(sync_interval)]
        if anchor_grace is not None:
            extra += ["--anchor-grace", str(anchor_grace)]
        if schedule_lease is not None:
            extra += ["--schedule-lease", str(schedule_lease)]
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", __name__, "--store", store,
                "--store-options", json.dumps(store_options),
                "--mode", mode, "--visibility-timeout", str(visibility_timeout), *extra,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr)
        finally:
            stderr.close()
        host = cls(name, proc)
        await host.wait_for(lambda r: r["event"] == "ready", 20)
        return host

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.reports.append(json.loads(line))
            self._changed.set()
        self._changed.set()

    async def wait_until(self, condition: Callable[[], bool], timeout: float) -> None:
        """Wait until ``condition()`` holds after some report (TimeoutError otherwise)."""
        async def loop() -> None:
            while not condition():
                if self._reader.done():
                    raise RuntimeError(f"host {self.name} exited: {self.proc.returncode}")
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(loop(), timeout)

    async def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float) -> None:
        await self.wait_until(lambda: any(match(r) for r in self.reports), timeout)

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def open(self, consumer_id: str, *, ack: bool = True, window: int = 20,
                   start: int | None = None) -> None:
        extra = "" if start is None else f" {start}"
        await self.send(f"open {consumer_id} {'ack' if ack else 'hold'} {window}{extra}")
        await self.wait_for(lambda r: r["event"] == "opened" and r["consumer"] == consumer_id,
                            10)

    async def schedule(self, first: int, count: int, after: float) -> None:
        """Have the host schedule ``count`` events, due ``after`` seconds from now."""
        await self.send(f"schedule {first} {count} {after}")
        await self.wait_for(lambda r: r["event"] == "scheduled" and r["first"] == first, 30)

    async def crash(self, n: int, after: float, when: str) -> None:
        """Have the host send one command and SIGKILL itself ``when`` ("before" or "after")
        the store appends its event; returns once the process is gone."""
        await self.send(f"crash {n} {after} {when}")
        await asyncio.wait_for(self.proc.wait(), 30)
        assert self.proc.returncode == -signal.SIGKILL, self.proc.returncode

    async def next_due(self) -> float | None:
        """The store's earliest due time of a kept schedule (None: it keeps none)."""
        count = sum(r["event"] == "due" for r in self.reports)
        await self.send("due")
        await self.wait_until(lambda: sum(r["event"] == "due" for r in self.reports) > count, 20)
        return [r for r in self.reports if r["event"] == "due"][-1]["at"]

    async def close(self, consumer_id: str) -> None:
        await self.send(f"close {consumer_id}")
        await self.wait_for(lambda r: r["event"] == "closed" and r["consumer"] == consumer_id,
                            20)

    def numbers(self, event: str = "acked", consumer: str | None = None,
                type: str | None = None) -> list[int]:
        """``n`` of the events reported (of ``type`` only, when given)."""
        return [n for r in self.reports if r["event"] == event
                and (consumer is None or r["consumer"] == consumer)
                for n, t in zip(r["n"], r["type"]) if type is None or t == type]

    def deliveries(self, event: str = "acked") -> list[tuple[float, str, str, int, int]]:
        """(handed over at, consumer, correlation id, n, attempt) of every event reported."""
        return [(r["at"], r["consumer"], wf, n, a) for r in self.reports if r["event"] == event
                for wf, n, a in zip(r["wf"], r["n"], r["attempt"])]

    def attempts(self, event: str = "acked") -> list[int]:
        return [a for r in self.reports if r["event"] == event for a in r["attempt"]]

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        """Ask the host to quit; SIGKILL it if it does not within a few seconds."""
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.send("quit"), 2)
                await asyncio.wait_for(self.proc.wait(), 10)
            except (asyncio.TimeoutError, TimeoutError, ConnectionError, BrokenPipeError):
                self.kill()
                await asyncio.wait_for(self.proc.wait(), 10)
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


@asynccontextmanager
async def host_processes(log_dir: Path) -> AsyncIterator[Callable[..., Awaitable[HostProcess]]]:
    """``async with host_processes(dir) as start``: ``await start(name, store, store_options,
    **options)`` starts a HostProcess (its stderr in ``dir/NAME.stderr``); every one started is
    stopped, or killed, on the way out."""
    started: list[HostProcess] = []

    async def start(name: str, store: str, store_options: dict[str, Any],
                    **options: Any) -> HostProcess:
        host = await HostProcess.start(name, store, store_options, log_dir, **options)
        started.append(host)
        return host

    try:
        yield start
    finally:
        for host in started:
            try:
                await host.stop()
            finally:
                host.kill()


async def check_schedules_survive_a_crash_around_the_append(log_dir: Path, store: str,
                                                           options: dict[str, Any]) -> None:
    """A command that appends an event and schedules another, its host SIGKILLed just after
    the append: the scheduled event fires once after restart. The same SIGKILLed just before
    the append: neither event ever appears, and the schedule is dropped."""
    async with host_processes(log_dir) as start:
        # short leases: a host killed while it holds a claim does not delay the others long
        first = await start("crash-after", store, options, schedule_lease=1.0)
        await first.crash(1, 0.5, "after")
        second = await start("crash-before", store, options, schedule_lease=1.0)
        await second.crash(2, 0.5, "before")
        third = await start("restarted", store, options, mode="broadcast", anchor_grace=1.0)
        await third.open("counter", start=0)
        await third.wait_until(lambda: third.numbers(type="HostsScheduled") == [1], 60)

        async def dropped() -> None:  # the orphan is dropped once its grace has passed
            while await third.next_due() is not None:
                await asyncio.sleep(0.1)
        await asyncio.wait_for(dropped(), 60)
        await asyncio.sleep(1.0)  # a late or second append would be delivered by now
        assert third.numbers(type="HostsStarted") == [1]
        assert third.numbers(type="HostsScheduled") == [1]


# --- the host process ---------------------------------------------------------------------

def report(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def consume(host, consumer_id: str, ack: bool, window: int, start: int | None,
                  leave: asyncio.Event) -> None:
    consumer = None
    backoff = 0.05
    while not leave.is_set():
        try:
            if consumer is None or consumer.closed:
                consumer = await host.open_consumer("sub", consumer_id, window=window,
                                                    start=start)
                report(event="opened", consumer=consumer_id)
            batch = await consumer.fetch(timeout=0.5)
            if not batch:
                continue
            at = time.time()
            numbers = [json.loads(d.data)["n"] for d in batch]
            types = [d.type for d in batch]
            attempts = [d.attempt for d in batch]
            if ack:
                await consumer.ack([d.id for d in batch])
            report(event="acked" if ack else "held", consumer=consumer_id, n=numbers,
                   wf=[d.correlation_id for d in batch], attempt=attempts, type=types, at=at)
            backoff = 0.05
        except StoreUnavailableError as exc:
            report(event="unavailable", consumer=consumer_id, error=str(exc)[:200])
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)
    if consumer is not None:
        await consumer.close("left")
    report(event="closed", consumer=consumer_id)


def crash_around_append(store: Any, when: str) -> None:
    """SIGKILL this process just before or just after ``store`` appends HostsStarted."""
    append = store.append

    async def crashing(stream: str, events: Any, **options: Any) -> Any:
        if not any(e.type == "HostsStarted" for e in events):
            return await append(stream, events, **options)
        if when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        appended = await append(stream, events, **options)
        os.kill(os.getpid(), signal.SIGKILL)
        return appended

    store.append = crashing


#: partitions of the shared stream "s" (the tests' own hosts use the same)
PARTITIONS = 8


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--store-options", required=True, help="a JSON object")
    parser.add_argument("--mode", default="exclusive")
    parser.add_argument("--visibility-timeout", type=float, default=30.0)
    parser.add_argument("--sync-interval", type=float, default=None)
    parser.add_argument("--anchor-grace", type=float, default=None,
                        help="seconds a schedule waits for its command's events")
    parser.add_argument("--schedule-lease", type=float, default=None)
    args = parser.parse_args()
    if args.anchor_grace is not None:
        scheduling.ANCHOR_GRACE = args.anchor_grace
    if args.schedule_lease is not None:
        scheduling.LEASE = args.schedule_lease
    options = {} if args.sync_interval is None else {"sync_interval": args.sync_interval}
    streaming = EventStreaming(store=args.store,
                               store_options=json.loads(args.store_options))
    # partitions belong to the stream: consumer_group spreads them over the consumers
    streaming.add_stream("s", type="persistent", partitions=PARTITIONS)
    streaming.add_subscription("s", "sub", mode=args.mode,
                               visibility_timeout=args.visibility_timeout,
                               max_delivery_attempts=0, options=options)
    streaming.bind_workflow(HostsScheduleWorkflow, "s")

    @streaming.command_handler(HostsSchedule, workflow=HostsScheduleWorkflow)
    def schedule(command: HostsSchedule, workflow: HostsScheduleWorkflow) -> str:
        return workflow.schedule(HostsScheduled(n=command.n), after=command.after)

    @streaming.command_handler(HostsStartAndSchedule, workflow=HostsScheduleWorkflow)
    def start_and_schedule(command: HostsStartAndSchedule,
                           workflow: HostsScheduleWorkflow) -> str:
        workflow.emit(HostsStarted(n=command.n))
        return workflow.schedule(HostsScheduled(n=command.n), after=command.after)

    tasks: list[asyncio.Task[None]] = []
    leaving: dict[str, asyncio.Event] = {}
    async with streaming.run() as host:
        report(event="ready")
        try:
            while True:
                line = await asyncio.to_thread(sys.stdin.readline)
                words = line.split()
                if not words or words[0] == "quit":
                    break
                if words[0] == "open":
                    start = int(words[4]) if len(words) > 4 else None
                    leave = leaving[words[1]] = asyncio.Event()
                    tasks.append(asyncio.ensure_future(
                        consume(host, words[1], words[2] == "ack", int(words[3]), start,
                                leave)))
                elif words[0] == "close":
                    leaving[words[1]].set()
                elif words[0] == "schedule":
                    first, count, after = int(words[1]), int(words[2]), float(words[3])
                    for n in range(first, first + count):
                        await host.send(HostsSchedule(n=n, after=after))
                    report(event="scheduled", first=first, count=count)
                elif words[0] == "due":
                    report(event="due", at=await host.store.next_schedule_due())
                elif words[0] == "crash":
                    crash_around_append(host.store, words[3])
                    await host.send(HostsStartAndSchedule(n=int(words[1]),
                                                          after=float(words[2])))
        finally:
            for leave in leaving.values():
                leave.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
    report(event="stopped")


if __name__ == "__main__":
    asyncio.run(main())
