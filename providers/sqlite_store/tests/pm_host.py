"""A host with a process manager on a SQLite file, for test_sqlite_process_manager.py.

``python pm_host.py DB seed COUNT`` starts COUNT workflows (PmkStarted each) and exits;
``python pm_host.py DB run COUNT`` runs the process manager, which answers each PmkStarted with
a PmkFollowUp command continuing its workflow (a PmkFollowedUp event), and prints
``ready``, then ``progress FOLLOWED_UP RUNS`` lines, then ``done`` once COUNT follow-ups are in
the stream. The test SIGKILLs it at random points and starts it again."""

from __future__ import annotations

import asyncio
import sys

import msgspec

from svrnty_events import Event, EventStreaming, Workflow


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


def streaming(db: str, with_manager: bool) -> EventStreaming:
    app = EventStreaming(store="sqlite", store_options={"path": db, "synchronous": "normal"})
    app.add_stream(PmkFlowWorkflow, type="persistent")

    @app.command_handler(PmkStart, workflow=PmkFlowWorkflow)
    def start(command: PmkStart, workflow: PmkFlowWorkflow) -> None:
        workflow.emit(PmkStarted(n=command.n))

    @app.command_handler(PmkFollowUp, workflow=PmkFlowWorkflow)
    def follow_up(command: PmkFollowUp, workflow: PmkFlowWorkflow) -> None:
        workflow.emit(PmkFollowedUp(n=command.n))

    if with_manager:
        @app.process_manager("pmk", streams=[PmkFlowWorkflow], event_types=[PmkStarted],
                             visibility_timeout=5.0)
        async def on_started(event: PmkStarted, pm) -> None:
            await pm.send(PmkFollowUp(n=event.n))

    return app


async def main(db: str, mode: str, count: int) -> None:
    app = streaming(db, with_manager=mode == "run")
    async with app.run() as host:
        if mode == "seed":
            for n in range(count):
                await host.send(PmkStart(n=n))
            print("seeded", flush=True)
            return
        print("ready", flush=True)
        while True:
            followed = len(await host.read("pmk-flow", event_types=["PmkFollowedUp"]))
            print("progress", followed, host.process_managers.runs, flush=True)
            if followed >= count:
                print("done", flush=True)
                return
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
