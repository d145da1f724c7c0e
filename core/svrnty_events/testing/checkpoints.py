"""The conformance of projection checkpoints (part of :class:`StoreConformance`): the store's
checkpoint primitives, and a projection run through the host on the store."""

from __future__ import annotations

import asyncio

import pytest

from ..projections import ProjectionContext
from ..store import EventStore
from .conformance import ConformanceOther, ConformanceTick, _Kit, ticks


class CheckpointConformance(_Kit):
    """Projection checkpoints: ``load_checkpoint``, ``save_checkpoint`` (compare-and-set),
    ``project_in_transaction`` where the store has transactions, and a projection through
    the host (stream order, filters, status and lag, reset, rebuild)."""

    async def test_checkpoints_are_saved_by_compare_and_set(self, make):
        async with make().run() as host:
            store = host.store
            assert await store.load_checkpoint("conf-proj") == 0
            assert await store.save_checkpoint("conf-proj", 5, expected=0)
            assert not await store.save_checkpoint("conf-proj", 9, expected=0)
            assert await store.load_checkpoint("conf-proj") == 5
            assert await store.save_checkpoint("conf-proj", 7, expected=5)
            assert await store.save_checkpoint("conf-proj", 2)  # no expectation: set
            assert await store.load_checkpoint("conf-proj") == 2
            assert await store.load_checkpoint("conf-other") == 0  # one per projection

    async def test_project_in_transaction_runs_the_effect_with_the_checkpoint(self, make):
        async with make().run() as host:
            store = host.store
            if type(store).project_in_transaction is EventStore.project_in_transaction:
                pytest.skip(f"{type(store).__name__} has no transactions")
            ran: list[int] = []
            assert await store.project_in_transaction("conf-tx", 0, 3, lambda tx: ran.append(3))
            assert ran == [3] and await store.load_checkpoint("conf-tx") == 3
            # moved meanwhile: nothing runs
            assert not await store.project_in_transaction("conf-tx", 0, 6,
                                                          lambda tx: ran.append(6))
            assert ran == [3] and await store.load_checkpoint("conf-tx") == 3

            def fails(tx: object) -> None:
                raise RuntimeError("view write failed")
            with pytest.raises(RuntimeError, match="view write failed"):
                await store.project_in_transaction("conf-tx", 3, 9, fails)
            assert await store.load_checkpoint("conf-tx") == 3  # rolled back

    async def test_a_projection_follows_the_stream_with_status_reset_and_rebuild(self, make):
        streaming = make()
        seen: list[int] = []

        @streaming.projection("conf-view", stream="s", event_types=[ConformanceTick],
                              batch_size=32)
        async def view(event: ConformanceTick, ctx: ProjectionContext) -> None:
            seen.append(event.n)

        @view.on_reset
        def clear(_: object) -> None:
            seen.clear()

        async with streaming.run() as host:
            await host.publish("s", ticks("s", 200), external=False)
            await host.publish("s", ticks("s", 20, start=200, type=ConformanceOther),
                               external=False)
            await host.publish("s", ticks("s", 50, start=220), external=False)
            status = await host.projections.wait_caught_up("conf-view", timeout=60)
            assert (status.position, status.lag) == (270, 0)
            expected = [*range(200), *range(220, 270)]
            assert seen == expected  # each once, in stream order, filtered
            runner = host.projections._runner("conf-view")
            async with runner.lock:  # held still: the lag is the events appended meanwhile
                await host.publish("s", ticks("s", 30, start=270), external=False)
                (status,) = await host.projections.status("conf-view")
                assert (status.position, status.lag) == (270, 30)
            await host.projections.wait_caught_up("conf-view", timeout=60)
            await host.projections.reset("conf-view", 290)  # again from 290 on
            await host.projections.wait_caught_up("conf-view", timeout=60)
            assert seen == [*expected, *range(270, 300), *range(290, 300)]
            steps: list[tuple[int, int]] = []
            status = await host.projections.rebuild(
                "conf-view", progress=lambda p, t: steps.append((p, t)), timeout=60)
            assert seen == [*expected, *range(270, 300)] and status.lag == 0
            assert steps[0] == (0, 300) and steps[-1] == (300, 300)
            await asyncio.sleep(0)
