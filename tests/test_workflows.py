"""Workflows, commands and queries: correlation ids, continuation, all-or-nothing appends,
queries without events, and payload validation that names the field."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from svrnty_events import Event, EventStreaming, EventStreamingHost, Workflow
from svrnty_events.commands import operation_name
from svrnty_events.errors import (
    ConcurrencyError,
    UnknownCommandError,
    UnknownWorkflowError,
    ValidationError,
)

from .support import TIMEOUT, store_plugin, within

# event type names are global (they decode deliveries back to their class): keep them unique


class AccountOpened(Event):
    owner: str


class AccountCredited(Event):
    amount: int


class AccountClosed(Event):
    reason: str


class Address(msgspec.Struct):
    city: str
    zip: int


class OpenAccount(msgspec.Struct):
    owner: str
    address: Address | None = None


class CreditAccountCommand(msgspec.Struct):
    amount: int
    fail_after_emit: bool = False


class CloseAccount(msgspec.Struct):
    reason: str


class GetBalanceQuery(msgspec.Struct):
    account: str


class AccountWorkflow(Workflow):
    pass


class Seen(msgspec.Struct):
    """What a handler saw of its workflow."""

    id: str
    is_new: bool
    version: int


class Bank:
    """The application under test: an account workflow with three commands and a query."""

    def __init__(self) -> None:
        self.streaming = EventStreaming(load_entrypoints=False, plugins=[store_plugin()])
        self.streaming.add_stream(AccountWorkflow, type="persistent")
        self.streaming.add_subscription(AccountWorkflow, "audit")
        self.seen: list[Seen] = []
        self.balances: dict[str, int] = {}
        self.gate: asyncio.Event | None = None
        s = self.streaming

        @s.command_handler(OpenAccount, workflow=AccountWorkflow)
        async def open_account(command: OpenAccount, workflow: AccountWorkflow) -> str:
            self.seen.append(Seen(workflow.id, workflow.is_new, workflow.version))
            workflow.emit(AccountOpened(owner=command.owner))
            workflow.emit(AccountCredited(amount=0), headers={"source": "opening"})
            return f"opened for {command.owner}"

        @s.command_handler(CreditAccountCommand, workflow=AccountWorkflow)
        async def credit(command: CreditAccountCommand, workflow: AccountWorkflow) -> int:
            self.seen.append(Seen(workflow.id, workflow.is_new, workflow.version))
            workflow.emit(AccountCredited(amount=command.amount))
            if self.gate is not None:
                await within(self.gate.wait())
            if command.fail_after_emit:
                raise RuntimeError("card declined")
            self.balances[workflow.id] = self.balances.get(workflow.id, 0) + command.amount
            return self.balances[workflow.id]

        @s.command_handler(CloseAccount, workflow=AccountWorkflow)
        def close(command: CloseAccount, workflow: AccountWorkflow) -> None:  # sync handler
            if command.reason == "noop":
                return
            workflow.emit(AccountClosed(reason=command.reason))

        @s.query_handler(GetBalanceQuery)
        async def balance(query: GetBalanceQuery) -> int:
            return self.balances.get(query.account, 0)


@pytest.fixture
def bank() -> Bank:
    return Bank()


@pytest.fixture
async def host(bank: Bank) -> AsyncIterator[EventStreamingHost]:
    async with bank.streaming.run() as host:
        yield host


async def length(host: EventStreamingHost) -> int:
    return (await host.stream_info("account")).length


# --- new workflows and continuation ---------------------------------------------------------


async def test_new_workflow_assigns_ids_and_envelope(bank: Bank,
                                                     host: EventStreamingHost) -> None:
    before = datetime.now(timezone.utc)
    result = await host.send(OpenAccount(owner="ada"))
    assert result.value == "opened for ada"
    assert uuid.UUID(result.workflow_id).version == 4
    assert bank.seen == [Seen(result.workflow_id, True, 0)]

    events = await host.read("account")
    assert events == result.events
    assert [e.type for e in events] == ["AccountOpened", "AccountCredited"]
    assert [e.sequence for e in events] == [0, 1]
    assert {e.correlation_id for e in events} == {result.workflow_id}
    assert {e.stream for e in events} == {"account"}
    assert len({e.id for e in events}) == 2 and all(uuid.UUID(e.id) for e in events)
    for e in events:
        assert before <= e.timestamp <= datetime.now(timezone.utc) + timedelta(seconds=1)
    assert events[0].decode() == AccountOpened(owner="ada")
    assert events[1].headers == {"source": "opening"}


async def test_correlation_id_is_the_workflow_id_across_a_continuation(
        bank: Bank, host: EventStreamingHost) -> None:
    first = await host.send(OpenAccount(owner="ada"))
    other = await host.send(OpenAccount(owner="bob"))
    second = await host.send(CreditAccountCommand(amount=30), workflow_id=first.workflow_id)
    third = await host.send(CreditAccountCommand(amount=12), workflow_id=first.workflow_id)

    assert second.workflow_id == third.workflow_id == first.workflow_id != other.workflow_id
    assert (second.value, third.value) == (30, 42)
    assert bank.seen[2:] == [Seen(first.workflow_id, False, 2), Seen(first.workflow_id, False, 3)]

    mine = await host.read("account", correlation_id=first.workflow_id)
    assert [e.type for e in mine] == ["AccountOpened", "AccountCredited", "AccountCredited",
                                      "AccountCredited"]
    assert [e.decode().amount for e in mine[1:]] == [0, 30, 12]
    assert len(await host.read("account", correlation_id=other.workflow_id)) == 2

    # and the consumer sees the same correlation id on every delivery of the workflow
    async with host.subscribe("audit", consumer_id="auditor",
                              correlation_id=first.workflow_id) as deliveries:
        got = [await deliveries.next(timeout=TIMEOUT) for _ in range(4)]
    assert all(d is not None for d in got)
    assert {d.correlation_id for d in got} == {first.workflow_id}
    assert [d.event for d in got][2] == AccountCredited(amount=30)


async def test_continuing_an_unknown_workflow_is_an_error(bank: Bank,
                                                          host: EventStreamingHost) -> None:
    await host.send(OpenAccount(owner="ada"))
    with pytest.raises(UnknownWorkflowError) as info:
        await host.send(CreditAccountCommand(amount=5), workflow_id="no-such-workflow")
    assert str(info.value) == ('cannot continue workflow "no-such-workflow": no event of it '
                               'exists in stream "account"')
    assert info.value.workflow_id == "no-such-workflow"
    assert len(bank.seen) == 1  # the handler never ran
    assert await length(host) == 2


async def test_handler_that_emits_nothing(host: EventStreamingHost) -> None:
    result = await host.send(CloseAccount(reason="noop"))
    assert (result.value, result.workflow_id, result.events) == (None, None, [])
    assert await length(host) == 0

    opened = await host.send(OpenAccount(owner="ada"))
    again = await host.send(CloseAccount(reason="noop"), workflow_id=opened.workflow_id)
    assert (again.workflow_id, again.events) == (opened.workflow_id, [])
    closed = await host.send(CloseAccount(reason="moved"), workflow_id=opened.workflow_id)
    assert [e.type for e in closed.events] == ["AccountClosed"]


async def test_headers_of_the_command_reach_every_event(host: EventStreamingHost) -> None:
    result = await host.send(OpenAccount(owner="ada"), headers={"tenant": "t1"})
    assert [e.headers for e in await host.read("account")] == [
        {"tenant": "t1"}, {"tenant": "t1", "source": "opening"}]
    assert result.events[0].headers == {"tenant": "t1"}


# --- all or nothing ----------------------------------------------------------------------------


async def test_handler_that_raises_appends_nothing(bank: Bank,
                                                   host: EventStreamingHost) -> None:
    opened = await host.send(OpenAccount(owner="ada"))
    info_before = await host.stream_info("account")

    with pytest.raises(RuntimeError, match="card declined"):
        await host.send(CreditAccountCommand(amount=99, fail_after_emit=True),
                        workflow_id=opened.workflow_id)

    info_after = await host.stream_info("account")
    assert (info_after.length, info_after.next_sequence) == (2, 2) == \
        (info_before.length, info_before.next_sequence)
    assert [e.type for e in await host.read("account")] == ["AccountOpened", "AccountCredited"]
    # the failed command did not use up a version: the next continuation sees version 2
    ok = await host.send(CreditAccountCommand(amount=1), workflow_id=opened.workflow_id)
    assert bank.seen[-1] == Seen(opened.workflow_id, False, 2)
    assert [e.sequence for e in ok.events] == [2]


async def test_new_workflow_whose_handler_raises_leaves_nothing(host: EventStreamingHost) -> None:
    with pytest.raises(RuntimeError):
        await host.send(CreditAccountCommand(amount=1, fail_after_emit=True))
    assert await length(host) == 0
    async with host.subscribe("audit", consumer_id="auditor") as deliveries:
        assert await deliveries.next(timeout=0.2) is None


async def test_concurrent_continuations_conflict(bank: Bank, host: EventStreamingHost) -> None:
    opened = await host.send(OpenAccount(owner="ada"))
    gate = bank.gate = asyncio.Event()
    slow = asyncio.ensure_future(host.send(CreditAccountCommand(amount=1),
                                           workflow_id=opened.workflow_id))
    try:
        await within(_until(lambda: len(bank.seen) == 2))  # the slow handler is waiting
        bank.gate = None
        fast = await within(host.send(CreditAccountCommand(amount=2),
                                      workflow_id=opened.workflow_id))
        gate.set()
        assert bank.seen[1].version == bank.seen[2].version == 2
        with pytest.raises(ConcurrencyError) as info:
            await within(slow)
    finally:
        slow.cancel()
    assert (info.value.expected, info.value.actual) == (2, 3)
    events = await host.read("account")
    assert [e.id for e in events[2:]] == [fast.events[0].id]


async def _until(condition) -> None:  # type: ignore[no-untyped-def]
    while not condition():
        await asyncio.sleep(0.001)


# --- queries -----------------------------------------------------------------------------------


async def test_query_returns_a_value_and_emits_nothing(host: EventStreamingHost) -> None:
    opened = await host.send(OpenAccount(owner="ada"))
    await host.send(CreditAccountCommand(amount=40), workflow_id=opened.workflow_id)
    before = await host.stream_info("account")

    assert await host.query(GetBalanceQuery(account=opened.workflow_id)) == 40
    assert await host.query_named("getBalance", {"account": opened.workflow_id}) == 40
    assert await host.query_named("getBalance", b'{"account": "unknown"}') == 0
    assert await host.stream_info("account") == before


async def test_query_and_command_tables_are_separate(host: EventStreamingHost) -> None:
    with pytest.raises(UnknownCommandError, match=r'unknown query "OpenAccount"; '
                                                  "available: GetBalanceQuery"):
        await host.query(OpenAccount(owner="ada"))
    with pytest.raises(UnknownCommandError) as info:
        await host.send(GetBalanceQuery(account="x"))
    assert str(info.value) == ('unknown command "GetBalanceQuery"; available: CloseAccount, '
                               "CreditAccountCommand, OpenAccount")


# --- payload validation ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "payload", "field", "message"), [
    ("openAccount", {"owner": 5}, "owner", "expected str, got int"),
    ("openAccount", {}, "owner", "required field is missing"),
    ("openAccount", {"owner": "ada", "address": {"city": "Paris", "zip": "seventy-five"}},
     "address.zip", "expected int, got str"),
    ("openAccount", {"owner": "ada", "address": {"zip": 75000}}, "address.city",
     "required field is missing"),
    ("openAccount", '{"owner": ["ada"]}', "owner", "expected str, got array"),
    ("creditAccount", b'{"amount": 1.5}', "amount", "expected int, got float"),
    ("creditAccount", "{not json", "", "malformed JSON"),
])
async def test_payload_decode_errors_name_the_field(host: EventStreamingHost, name: str,
                                                    payload: object, field: str,
                                                    message: str) -> None:
    with pytest.raises(ValidationError) as info:
        await host.send_named(name, payload)
    assert info.value.field == field
    assert info.value.message.startswith(message)
    assert str(info.value).startswith(f"{field}: {message}" if field else message)
    assert await length(host) == 0


async def test_named_payloads_are_decoded_and_sent(host: EventStreamingHost) -> None:
    opened = await host.send_named("openAccount", {"owner": "ada",
                                                   "address": {"city": "Paris", "zip": "75000"}})
    credited = await host.send_named("creditAccount", '{"amount": 7}',
                                     workflow_id=opened.workflow_id)
    assert credited.value == 7 and credited.workflow_id == opened.workflow_id
    with pytest.raises(UnknownCommandError) as info:
        await host.send_named("deleteAccount", {})
    assert str(info.value) == ('unknown command "deleteAccount"; available: closeAccount, '
                               "creditAccount, openAccount")


def test_operation_names() -> None:
    assert [operation_name(c) for c in (OpenAccount, CreditAccountCommand, GetBalanceQuery)] == \
        ["openAccount", "creditAccount", "getBalance"]


def test_default_stream_names() -> None:
    class InvitationWorkflow(Workflow):
        pass

    class OrderLineWorkflow(Workflow):
        pass

    class Signup(Workflow):
        pass

    assert [w.default_stream_name() for w in (AccountWorkflow, InvitationWorkflow,
                                              OrderLineWorkflow, Signup)] == \
        ["account", "invitation", "order-line", "signup"]


def test_one_handler_per_command() -> None:
    streaming = EventStreaming()

    @streaming.command_handler(OpenAccount, workflow=AccountWorkflow)
    def first(command: OpenAccount, workflow: AccountWorkflow) -> None:
        pass

    with pytest.raises(ValueError, match='command "openAccount" already has a handler'):
        @streaming.command_handler(OpenAccount, workflow=AccountWorkflow)
        def second(command: OpenAccount, workflow: AccountWorkflow) -> None:
            pass
