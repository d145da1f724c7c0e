"""Projections on the memory and SQLite stores: stream order, filters, the checkpoint, the
view in the store's transaction, status and lag, rebuild and reset, faults, typed errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from svrnty_events import Event, EventStreaming
from svrnty_events.errors import ConfigError, UnknownProjectionError
from svrnty_events.events import record
from svrnty_events.projections import ProjectionContext


class ProjCounted(Event):
    key: str
    n: int


class ProjIgnored(Event):
    key: str


def _events(count: int, start: int = 0) -> list:
    out = []
    for i in range(start, start + count):
        out.append(record(ProjCounted(key=f"k{i % 7}", n=i), stream="p", correlation_id=f"c{i}"))
        if i % 5 == 0:
            out.append(record(ProjIgnored(key="x"), stream="p", correlation_id=f"c{i}"))
    return out


def _memory_app(view: dict[str, list[int]]) -> EventStreaming:
    streaming = EventStreaming(store="memory")
    streaming.add_stream("p", type="persistent")

    @streaming.projection("totals", stream="p", event_types=[ProjCounted], batch_size=16)
    def totals(event: ProjCounted, ctx: ProjectionContext) -> None:
        assert ctx.connection is None
        view.setdefault(event.key, []).append(event.n)

    @totals.on_reset
    def clear(_: object) -> None:
        view.clear()

    return streaming


async def test_memory_projection_follows_the_stream_in_order_with_status_and_lag() -> None:
    view: dict[str, list[int]] = {}
    async with _memory_app(view).run() as host:
        await host.publish("p", _events(100), external=False)
        status = await host.projections.wait_caught_up("totals", timeout=30)
        assert status.position == 120 and status.lag == 0 and status.state == "caught_up"
        assert not status.transactional
        assert sorted(n for ns in view.values() for n in ns) == list(range(100))
        assert all(ns == sorted(ns) for ns in view.values())  # stream order
        # appends wake it: no waiting for the poll
        await host.publish("p", _events(10, 100), external=False)
        status = await host.projections.wait_caught_up("totals", timeout=30)
        assert status.position == 132 and sum(map(len, view.values())) == 110

        # reset: the view is left alone, the events after the position are projected again
        await host.projections.reset("totals", 130)
        await host.projections.wait_caught_up("totals", timeout=30)
        assert sum(map(len, view.values())) == 112

        seen: list[tuple[int, int]] = []
        status = await host.projections.rebuild("totals", progress=lambda p, t: seen.append((p, t)),
                                               timeout=30)
        assert status.position == 132 and status.lag == 0
        assert sorted(n for ns in view.values() for n in ns) == list(range(110))
        assert seen[0] == (0, 132) and seen[-1] == (132, 132)


async def test_status_lag_counts_the_unread_events() -> None:
    view: dict[str, list[int]] = {}
    streaming = _memory_app(view)
    async with streaming.run() as host:
        await host.projections.wait_caught_up("totals", timeout=30)
        runner = host.projections._runner("totals")
        async with runner.lock:  # hold the projection still while events are appended
            await host.publish("p", _events(30), external=False)
            (status,) = await host.projections.status("totals")
            assert status.position == 0 and status.lag == 36
        await host.projections.wait_caught_up("totals", timeout=30)
        (status,) = await host.projections.status()
        assert status.lag == 0 and status.position == 36


async def test_a_failing_handler_faults_at_its_event_and_reset_skips_it() -> None:
    streaming = EventStreaming(store="memory")
    streaming.add_stream("p", type="persistent")
    seen: list[int] = []

    @streaming.projection("picky", stream="p", event_types=[ProjCounted], batch_size=8)
    def picky(event: ProjCounted, ctx: ProjectionContext) -> None:
        if event.n == 3:
            raise ValueError("three is not allowed")
        seen.append(event.n)

    async with streaming.run() as host:
        await host.publish("p", [record(ProjCounted(key="k", n=i), stream="p",
                                        correlation_id="c") for i in range(6)], external=False)
        import asyncio
        deadline = asyncio.get_running_loop().time() + 30
        while (await host.projections.status("picky"))[0].state != "faulted" or seen != [0, 1, 2]:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        (status,) = await host.projections.status("picky")
        assert status.position == 3 and "ValueError: three is not allowed" in status.error
        await host.projections.reset("picky", 4)
        await host.projections.wait_caught_up("picky", timeout=30)
        assert seen == [0, 1, 2, 4, 5]


async def test_sqlite_projection_writes_its_view_in_the_store_transaction(tmp_path: Path,
                                                                           monkeypatch) -> None:
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "sqlite")
    path = str(tmp_path / "p.db")

    def app() -> EventStreaming:
        streaming = EventStreaming(store="sqlite", store_options={"path": path})
        streaming.add_stream("p", type="persistent")

        @streaming.projection("totals", stream="p", event_types=["ProjCounted"])
        def totals(event: ProjCounted, ctx: ProjectionContext) -> None:
            ctx.connection.execute("CREATE TABLE IF NOT EXISTS totals (key TEXT PRIMARY KEY, "
                                   "total INTEGER NOT NULL, seen INTEGER NOT NULL)")
            ctx.connection.execute(
                "INSERT INTO totals VALUES (?, ?, 1) ON CONFLICT DO UPDATE SET "
                "total = total + excluded.total, seen = seen + 1", (event.key, event.n))

        @totals.on_reset
        def clear(connection: sqlite3.Connection) -> None:
            connection.execute("DROP TABLE IF EXISTS totals")

        return streaming

    async with app().run() as host:
        await host.publish("p", _events(50), external=False)
        status = await host.projections.wait_caught_up("totals", timeout=30)
        assert status.transactional and status.position == 60
    # a second process of the same file resumes at the checkpoint: nothing projected twice
    async with app().run() as host:
        assert (await host.projections.status("totals"))[0].position == 60
        await host.publish("p", _events(10, 50), external=False)
        await host.projections.wait_caught_up("totals", timeout=30)
        await host.projections.rebuild("totals", timeout=30)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT sum(total), sum(seen) FROM totals").fetchone() == \
        (sum(range(60)), 60)


async def test_projection_errors_are_typed() -> None:
    streaming = EventStreaming(store="memory")
    streaming.add_stream("p", type="persistent")
    streaming.projection("one", stream="p")(lambda e, c: None)
    with pytest.raises(ConfigError, match='duplicate projection name "one"'):
        streaming.projection("one", stream="p")(lambda e, c: None)
    with pytest.raises(ConfigError, match="batch_size"):
        streaming.projection("two", stream="p", batch_size=0)(lambda e, c: None)
    streaming.projection("lost", stream="nowhere")(lambda e, c: None)
    with pytest.raises(ConfigError, match='unknown stream "nowhere"'):
        async with streaming.run():
            pass
    del streaming.projections["lost"]
    streaming.add_stream("brief", type="ephemeral")
    streaming.projection("fleeting", stream="brief")(lambda e, c: None)
    with pytest.raises(ConfigError, match='stream "brief" is ephemeral'):
        async with streaming.run():
            pass
    del streaming.projections["fleeting"]
    async with streaming.run() as host:
        with pytest.raises(UnknownProjectionError, match='unknown projection "nope"; '
                                                         "projections: one"):
            await host.projections.status("nope")
        with pytest.raises(ValueError, match="position must be >= 0"):
            await host.projections.reset("one", -1)
