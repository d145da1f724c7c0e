"""Process managers on the memory store: reacting to events of one or more streams, sending
commands that continue the triggering workflow (or start one), per-workflow state, a failing
handler retried with its command sent once, and the configuration errors."""

from __future__ import annotations

import asyncio
from collections import Counter

import msgspec
import pytest

from svrnty_events import Event, EventStreaming, Workflow
from svrnty_events.errors import ConfigError
from svrnty_events.process_managers import NEW

from .support import within


class PmPlaced(Event):
    n: int


class PmConfirmed(Event):
    n: int
    seen: int = 0


class PmShipped(Event):
    n: int


class PmBilled(Event):
    n: int


class PmPlace(msgspec.Struct):
    n: int


class PmConfirm(msgspec.Struct):
    n: int
    seen: int = 0


class PmShip(msgspec.Struct):
    n: int


class PmBill(msgspec.Struct):
    n: int


class PmOrderWorkflow(Workflow):
    pass


class PmShippingWorkflow(Workflow):
    pass


class PmBillingWorkflow(Workflow):
    pass


def app() -> EventStreaming:
    streaming = EventStreaming()
    streaming.add_stream(PmOrderWorkflow, type="persistent")
    streaming.add_stream(PmShippingWorkflow, type="persistent")
    streaming.add_stream(PmBillingWorkflow, type="persistent")

    @streaming.command_handler(PmPlace, workflow=PmOrderWorkflow)
    def place(command: PmPlace, workflow: PmOrderWorkflow) -> None:
        workflow.emit(PmPlaced(n=command.n))

    @streaming.command_handler(PmConfirm, workflow=PmOrderWorkflow)
    def confirm(command: PmConfirm, workflow: PmOrderWorkflow) -> None:
        workflow.emit(PmConfirmed(n=command.n, seen=command.seen))

    @streaming.command_handler(PmShip, workflow=PmShippingWorkflow)
    def ship(command: PmShip, workflow: PmShippingWorkflow) -> None:
        workflow.emit(PmShipped(n=command.n))

    @streaming.command_handler(PmBill, workflow=PmBillingWorkflow)
    def bill(command: PmBill, workflow: PmBillingWorkflow) -> None:
        workflow.emit(PmBilled(n=command.n))

    return streaming


async def until(predicate, timeout: float = 15.0) -> None:
    async def poll() -> None:
        while not await predicate():
            await asyncio.sleep(0.02)
    await within(poll(), timeout)


async def test_follow_up_commands_continue_the_triggering_workflow_once():
    streaming = app()
    failures, done = Counter(), set()

    @streaming.process_manager("confirmer", streams=[PmOrderWorkflow], event_types=[PmPlaced],
                               state=lambda: 0, apply=lambda count, event: count + 1,
                               redelivery_delay=0.05)
    async def confirmer(event: PmPlaced, pm) -> None:
        if event.n % 5 == 0 and failures[event.n] < 2:  # fails twice, then works
            failures[event.n] += 1
            await pm.send(PmConfirm(n=event.n, seen=pm.state))  # sent before the failure
            raise RuntimeError("flaky downstream")
        await pm.send(PmConfirm(n=event.n, seen=pm.state))
        done.add(event.n)
    async with streaming.run() as host:
        results = [await host.send(PmPlace(n=i)) for i in range(40)]

        async def all_done() -> bool:
            return len(done) == 40
        await until(all_done)
        await asyncio.sleep(0.3)
        confirmed = await host.read("pm-order", event_types=["PmConfirmed"])
        assert Counter(e.decode().n for e in confirmed) == Counter(range(40))  # once each
        for result in results:  # in the triggering workflow, after its first event
            [c] = [e for e in confirmed if e.correlation_id == result.workflow_id]
            assert c.decode().seen == 1  # the state folded the workflow's one event
        assert sum(failures.values()) == 16  # the retried ones did fail


async def test_a_manager_over_two_streams_starts_workflows_in_other_streams():
    streaming = app()

    @streaming.process_manager("fulfilment", streams=[PmOrderWorkflow, "pm-shipping"],
                               event_types=[PmPlaced, PmShipped])
    async def fulfilment(event, pm) -> None:
        if isinstance(event, PmPlaced):
            await pm.send(PmShip(n=event.n))  # shipping workflow of the same id
        else:
            await pm.send(PmBill(n=event.n), workflow_id=NEW)

    async with streaming.run() as host:
        placed = [await host.send(PmPlace(n=i)) for i in range(10)]

        async def billed() -> bool:
            return len(await host.read("pm-billing")) >= 10
        await until(billed)
        await asyncio.sleep(0.3)
        shipped = await host.read("pm-shipping")
        assert sorted(e.correlation_id for e in shipped) == \
            sorted(r.workflow_id for r in placed)
        bills = await host.read("pm-billing")
        assert sorted(e.decode().n for e in bills) == list(range(10))
        assert not {e.correlation_id for e in bills} & {r.workflow_id for r in placed}


def test_configuration_errors_name_the_process_manager():
    streaming = app()

    class PmUnknownWorkflow(Workflow):
        pass

    streaming.process_manager("lost", streams=[PmUnknownWorkflow])(lambda e, pm: None)
    with pytest.raises(ConfigError, match="unknown workflow type PmUnknownWorkflow"):
        streaming.build_host()
    streaming = app()
    streaming.process_manager("lost", streams=["no-such-stream"])(lambda e, pm: None)
    with pytest.raises(ConfigError, match='unknown stream "no-such-stream"'):
        streaming.build_host()
    streaming.process_manager("twice", streams=[PmOrderWorkflow])(lambda e, pm: None)
    with pytest.raises(ConfigError, match="defined twice"):
        streaming.process_manager("twice", streams=[PmOrderWorkflow])(lambda e, pm: None)
    with pytest.raises(ConfigError, match="at least one"):
        streaming.process_manager("none", streams=[])(lambda e, pm: None)
    with pytest.raises(ConfigError, match="both state"):
        streaming.process_manager("half", streams=[PmOrderWorkflow], state=dict)(
            lambda e, pm: None)


async def test_a_re_run_after_a_crash_appends_nothing_twice():
    """What a host killed after a handler's sends and before the processed mark does on
    redelivery: the handler runs again and sends again; every event keeps its derived id."""
    streaming = app()
    runs = Counter()

    @streaming.process_manager("rerun", streams=[PmOrderWorkflow], event_types=[PmPlaced],
                               redelivery_delay=0.05)
    async def rerun(event: PmPlaced, pm) -> None:
        await pm.send(PmConfirm(n=event.n))  # continues the triggering workflow
        await pm.send(PmShip(n=event.n))  # starts a shipping workflow of the same id
        await pm.send(PmBill(n=event.n), workflow_id=NEW)  # starts a new workflow
        runs[event.n] += 1
        if runs[event.n] == 1:
            raise RuntimeError("killed before the mark")  # the effect is applied again

    async with streaming.run() as host:
        for i in range(5):
            await host.send(PmPlace(n=i))

        async def twice() -> bool:
            return len(runs) == 5 and all(v == 2 for v in runs.values())
        await until(twice)
        await asyncio.sleep(0.3)
        for stream, type_name in (("pm-order", "PmConfirmed"), ("pm-shipping", "PmShipped"),
                                  ("pm-billing", "PmBilled")):
            events = await host.read(stream, event_types=[type_name])
            assert sorted(e.decode().n for e in events) == list(range(5)), stream
