"""A host with a process manager, for crash tests of process managers on any store:
``sigkill_rounds`` (the test's side) starts ``python -m svrnty_events.testing.process_manager_host``
and SIGKILLs it at random points until every follow-up command was sent, then counts them.

``... --store NAME --store-options JSON seed COUNT`` starts COUNT workflows (PmkStarted each)
and exits; ``... run COUNT`` runs the process manager, which answers each PmkStarted with a
PmkFollowUp command continuing its workflow (a PmkFollowedUp event), and prints ``ready``, then
``progress FOLLOWED_UP RUNS`` lines, then ``done`` once COUNT follow-ups are in the stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from ..events import Event
from ..host import EventStreaming
from ..workflow import Workflow

STREAM = "pmk-flow"


class PmkStarted(Event):
    n: int


class PmkFollowedUp(Event):
    n: int


class PmkStart(msgspec.Struct):
    n: int


class PmkFollowUp(msgspec.Struct):
    n: int


class PmkFlowWorkflow(Workflow):
    pass


def streaming(store: str, options: dict[str, Any], with_manager: bool) -> EventStreaming:
    app = EventStreaming(store=store, store_options=options)
    app.add_stream(PmkFlowWorkflow, type="persistent", partitions=4)

    @app.command_handler(PmkStart, workflow=PmkFlowWorkflow)
    def start(command: PmkStart, workflow: PmkFlowWorkflow) -> None:
        workflow.emit(PmkStarted(n=command.n))

    @app.command_handler(PmkFollowUp, workflow=PmkFlowWorkflow)
    def follow_up(command: PmkFollowUp, workflow: PmkFlowWorkflow) -> None:
        workflow.emit(PmkFollowedUp(n=command.n))

    if with_manager:
        @app.process_manager("pmk", streams=[PmkFlowWorkflow], event_types=[PmkStarted],
                             visibility_timeout=2.0, max_delivery_attempts=0)
        async def on_started(event: PmkStarted, pm: Any) -> None:
            await pm.send(PmkFollowUp(n=event.n))

    return app


@dataclass
class Outcome:
    kills: int
    #: handler runs the killed hosts reported (a lower bound: a host reports every 50 ms)
    runs: int
    seconds: float
    #: correlation ids of the PmkStarted events, and how many PmkFollowedUp each has
    started: set[str]
    sent: Counter[str]
    numbers: list[int]

    def check_every_follow_up_sent_once(self, store: str, workflows: int) -> None:
        """Assert every one of ``workflows`` got its follow-up exactly once, across at least
        three SIGKILLs, and print the figures."""
        assert len(self.started) == workflows
        assert set(self.sent) == self.started  # none lost
        assert set(self.sent.values()) == {1}  # none twice
        assert self.numbers == list(range(workflows))
        assert self.kills >= 3, "the host was hardly interrupted; the test proves little"
        print(f"{store}: {self.kills} SIGKILLs, {self.runs}+ handler runs, "
              f"{self.seconds:.1f} s for {workflows} workflows")


async def sigkill_rounds(store: str, options: dict[str, Any], workflows: int, log_dir: Path,
                         *, seed: int = 20261202, kill_after: tuple[float, float] = (0.0, 0.25),
                         time_limit: float = 150.0) -> Outcome:
    """Seed ``workflows`` workflows, then run the process-manager host and SIGKILL it after a
    random time (``kill_after`` seconds after it is ready) again and again until it reports
    every follow-up; then read what the store holds."""
    base = [sys.executable, "-m", __name__, "--store", store, "--store-options",
            json.dumps(options)]
    subprocess.run([*base, "seed", str(workflows)], check=True, timeout=120,
                   capture_output=True)
    rng = random.Random(seed)
    kills = runs = 0
    started = time.monotonic()
    with open(log_dir / "pm-hosts.stderr", "wb") as log:
        while True:
            done, last_runs = await _round(base, workflows, rng, kill_after, log)
            runs += last_runs
            if done:
                break
            kills += 1
            if time.monotonic() - started > time_limit:
                raise TimeoutError(f"not done after {kills} kills in {time_limit} s")
    seconds = time.monotonic() - started
    async with streaming(store, options, with_manager=False).run() as host:
        begun = await host.read(STREAM, event_types=["PmkStarted"])
        follow_ups = await host.read(STREAM, event_types=["PmkFollowedUp"])
    return Outcome(kills, runs, seconds, {e.correlation_id for e in begun},
                   Counter(e.correlation_id for e in follow_ups),
                   sorted(e.decode().n for e in follow_ups))


async def _round(base: list[str], workflows: int, rng: random.Random,
                 kill_after: tuple[float, float], log: Any) -> tuple[bool, int]:
    proc = await asyncio.create_subprocess_exec(*base, "run", str(workflows),
                                                stdout=asyncio.subprocess.PIPE, stderr=log)
    assert proc.stdout is not None
    runs = 0
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"ready", line
        deadline = time.monotonic() + rng.uniform(*kill_after)
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), left)
            except (TimeoutError, asyncio.TimeoutError):
                break
            words = line.split()
            if not words:
                break  # the host died on its own: the round counts as a kill
            if words[0] == b"done":
                return True, runs
            runs = int(words[2])
        return False, runs
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--store-options", required=True, help="a JSON object")
    parser.add_argument("mode", choices=["seed", "run"])
    parser.add_argument("count", type=int)
    args = parser.parse_args()
    app = streaming(args.store, json.loads(args.store_options), with_manager=args.mode == "run")
    async with app.run() as host:
        if args.mode == "seed":
            for n in range(args.count):
                await host.send(PmkStart(n=n))
            return
        print("ready", flush=True)
        while True:
            followed = len(await host.read(STREAM, event_types=["PmkFollowedUp"]))
            print("progress", followed, host.process_managers.runs, flush=True)
            if followed >= args.count:
                print("done", flush=True)
                return
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main())
