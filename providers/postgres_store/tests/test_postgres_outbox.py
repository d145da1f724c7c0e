"""The transactional outbox: a command's events and the application's own rows commit
together, or neither does."""

from __future__ import annotations

import msgspec
import pytest

from svrnty_events import Event, EventStreaming, Workflow, hookimpl
from svrnty_events.errors import ConcurrencyError
from svrnty_events.events import record
from svrnty_events.testing import collect, within
from svrnty_events_postgres import outbox_connection


class OutboxOrderPlaced(Event):
    order_id: str


class PlaceOrder(msgspec.Struct):
    order_id: str
    fail: bool = False


class OrderWorkflow(Workflow):
    pass


def shop(url: str, schema: str) -> EventStreaming:
    streaming = EventStreaming(store="postgres", store_options={"url": url, "schema": schema})
    streaming.add_stream(OrderWorkflow, type="persistent")
    streaming.add_subscription(OrderWorkflow, "billing", mode="exclusive")
    table = f'"{schema}".orders'

    @streaming.command_handler(PlaceOrder, workflow=OrderWorkflow)
    async def place_order(command: PlaceOrder, workflow: OrderWorkflow) -> str:
        # the application's own write, in the transaction the events go into
        await outbox_connection().execute(f"INSERT INTO {table} (id) VALUES ($1)",
                                          command.order_id)
        workflow.emit(OutboxOrderPlaced(order_id=command.order_id))
        return command.order_id

    return streaming


async def orders(store, schema: str) -> list[str]:
    async with store.connection() as conn:
        return [r[0] for r in await conn.fetch(f'SELECT id FROM "{schema}".orders ORDER BY id')]


async def placed(host) -> list[str]:
    return [e.decode().order_id for e in await host.read("order")]


async def test_rolled_back_leaves_neither_row_nor_events_committed_leaves_both(pg_url, schema):
    async with shop(pg_url, schema).run() as host:
        store = host.store
        async with store.connection() as conn:
            await conn.execute(f'CREATE TABLE "{schema}".orders (id text PRIMARY KEY)')
        consumer = await host.open_consumer("billing", "b")

        # the block raises after the handler ran: the row and the events are rolled back
        with pytest.raises(RuntimeError, match="payment declined"):
            async with store.transaction():
                await within(host.send(PlaceOrder("o-1")))
                raise RuntimeError("payment declined")
        assert await orders(store, schema) == [] and await placed(host) == []

        # the database refuses a later write of the block: rolled back too
        with pytest.raises(Exception, match="duplicate key"):
            async with store.transaction() as conn:
                await within(host.send(PlaceOrder("o-2")))
                await conn.execute(f'INSERT INTO "{schema}".orders (id) VALUES (\'o-2\')')
        assert await orders(store, schema) == [] and await placed(host) == []
        assert await consumer.fetch(timeout=0.3) == []  # nothing was ever delivered

        # committed: both, and the consumer is woken
        async with store.transaction() as conn:
            result = await within(host.send(PlaceOrder("o-3")))
            await conn.execute(f'INSERT INTO "{schema}".orders (id) VALUES (\'o-3-audit\')')
        assert await orders(store, schema) == ["o-3", "o-3-audit"]
        assert await placed(host) == ["o-3"]
        [d] = await collect(consumer, 1)
        assert d.event.order_id == "o-3" and d.correlation_id == result.workflow_id
        info = await host.stream_info("order")
        assert (info.length, info.next_sequence) == (1, 1)  # the rolled-back ones left no gap

        # outside a transaction block, send appends on its own as usual
        async with store.connection() as conn:
            await conn.execute(f'INSERT INTO "{schema}".orders (id) VALUES (\'o-4\')')
        with pytest.raises(AttributeError):  # the handler has no outbox connection here
            await host.send(PlaceOrder("o-4"))


async def test_append_in_on_a_connection_the_application_manages(pg_url, schema):
    async with shop(pg_url, schema).run() as host:
        store = host.store
        events = [record(OutboxOrderPlaced(order_id="x"), stream="order", correlation_id="wf")]
        async with store.pool.acquire() as conn:
            with pytest.raises(ValueError, match="open transaction"):
                await store.append_in(conn, "order", events)
            tx = conn.transaction()
            await tx.start()
            await store.append_in(conn, "order", events, expected_version=0)
            await tx.rollback()
            assert await placed(host) == []
            async with conn.transaction():
                [e] = await store.append_in(conn, "order", events, expected_version=0)
            assert e.sequence == 0 and await placed(host) == ["x"]
            async with conn.transaction():
                with pytest.raises(ConcurrencyError):
                    await store.append_in(conn, "order", events, expected_version=0)


async def test_process_once_in_store_commits_the_effect_with_the_mark_and_the_ack(
        pg_url, schema):
    streaming = EventStreaming(store="postgres", store_options={"url": pg_url, "schema": schema})
    streaming.add_stream("s", type="persistent", delivery_semantics="exactly_once")
    streaming.add_subscription("s", "sub", mode="exclusive", redelivery_delay=0.0,
                               max_delivery_attempts=0)
    table = f'"{schema}".effects'
    async with streaming.run() as host:
        async with host.store.connection() as conn:
            await conn.execute(f"CREATE TABLE {table} (event_id text PRIMARY KEY)")
        await host.publish("s", [record(OutboxOrderPlaced(order_id="a"), stream="s",
                                        correlation_id="wf")], external=False)
        consumer = await host.open_consumer("sub", "c")
        [d] = await collect(consumer, 1, ack=False)

        async def failing(conn) -> None:
            await conn.execute(f"INSERT INTO {table} VALUES ($1)", d.id)
            raise RuntimeError("effect failed")

        with pytest.raises(RuntimeError):
            await d.process_once_in_store(failing)
        async with host.store.connection() as conn:
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0  # rolled back
        assert not await host.store.is_processed("sub", d.id)
        await d.nack(delay=0.0)
        [again] = await collect(consumer, 1, ack=False)

        async def effect(conn) -> None:
            await conn.execute(f"INSERT INTO {table} VALUES ($1)", again.id)

        assert await again.process_once_in_store(effect) is True
        async with host.store.connection() as conn:
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1
        assert await host.store.is_processed("sub", again.id)
        assert await consumer.fetch(timeout=0.3) == []  # acked with the mark


class AppendObserver:
    """A plugin that records what the host reports as appended (as telemetry does)."""

    def __init__(self) -> None:
        self.appended: list[str] = []

    @hookimpl
    def events_appended(self, stream, events) -> None:  # type: ignore[no-untyped-def]
        self.appended += [e.decode().order_id for e in events]


async def test_observers_hear_of_an_outbox_append_only_once_it_commits(pg_url, schema):
    observer = AppendObserver()
    streaming = shop(pg_url, schema)
    streaming.extra_plugins.append(observer)
    async with streaming.run() as host:
        store = host.store
        async with store.connection() as conn:
            await conn.execute(f'CREATE TABLE "{schema}".orders (id text PRIMARY KEY)')
        with pytest.raises(RuntimeError, match="declined"):
            async with store.transaction():
                await within(host.send(PlaceOrder("r-1")))
                assert observer.appended == []  # not committed yet
                raise RuntimeError("declined")
        assert observer.appended == []  # rolled back: never reported
        async with store.transaction():
            await within(host.send(PlaceOrder("c-1")))
            await within(host.send(PlaceOrder("c-2")))
            assert observer.appended == []
        assert observer.appended == ["c-1", "c-2"]  # on commit, in order
