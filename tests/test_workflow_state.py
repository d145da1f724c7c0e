"""Workflow state: a workflow type that declares ``initial_state`` and ``apply`` gets its state
rebuilt from its events before each continuation, folded further by what the handler emits."""

from __future__ import annotations

import msgspec
import pytest

from svrnty_events import Event, EventStreaming, Workflow


class StCredited(Event):
    amount: int


class StDebited(Event):
    amount: int


class StCredit(msgspec.Struct):
    amount: int


class StDebit(msgspec.Struct):
    amount: int


class StBalance(msgspec.Struct):
    balance: int = 0
    moves: int = 0


class StAccountWorkflow(Workflow):
    snapshot_every = 3

    def initial_state(self) -> StBalance:
        return StBalance()

    def apply(self, state: StBalance, event: object) -> StBalance:
        if isinstance(event, StCredited):
            return StBalance(state.balance + event.amount, state.moves + 1)
        if isinstance(event, StDebited):
            return StBalance(state.balance - event.amount, state.moves + 1)
        return state


class StRefused(Exception):
    pass


def app(store: str = "memory", options: dict | None = None) -> EventStreaming:
    streaming = EventStreaming(store=store, store_options=options or {})
    streaming.add_stream(StAccountWorkflow, type="persistent")

    @streaming.command_handler(StCredit, workflow=StAccountWorkflow)
    def credit(command: StCredit, workflow: StAccountWorkflow) -> int:
        workflow.emit(StCredited(amount=command.amount))
        return workflow.state.balance  # already folded with the event just emitted

    @streaming.command_handler(StDebit, workflow=StAccountWorkflow)
    def debit(command: StDebit, workflow: StAccountWorkflow) -> int:
        if workflow.state.balance < command.amount:
            raise StRefused(f"balance {workflow.state.balance} < {command.amount}")
        workflow.emit(StDebited(amount=command.amount))
        return workflow.state.balance

    return streaming


async def test_continuations_get_the_state_rebuilt_from_the_events():
    async with app().run() as host:
        first = await host.send(StCredit(amount=10))
        assert first.value == 10
        wf = first.workflow_id
        assert (await host.send(StCredit(amount=5), wf)).value == 15
        assert (await host.send(StDebit(amount=12), wf)).value == 3
        with pytest.raises(StRefused, match="balance 3 < 4"):
            await host.send(StDebit(amount=4), wf)
        assert len(await host.read("st-account", correlation_id=wf)) == 3


def test_a_workflow_without_declared_state_has_none():
    class StPlainWorkflow(Workflow):
        pass

    assert StPlainWorkflow().state is None and StAccountWorkflow().state == StBalance()


async def test_state_is_rebuilt_from_snapshots_where_the_store_keeps_them(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "sqlite")
    async with app("sqlite", {"path": str(tmp_path / "st.db")}).run() as host:
        wf = (await host.send(StCredit(amount=1))).workflow_id
        for _ in range(7):
            await host.send(StCredit(amount=1), wf)
        snapshot = await host.store.load_snapshot("st-account", wf,
                                                  "workflow:StAccountWorkflow")
        assert snapshot is not None and snapshot.version >= 3  # saved every 3 events
        assert msgspec.json.decode(snapshot.state, type=StBalance).balance == snapshot.version
        assert (await host.send(StDebit(amount=8), wf)).value == 0
