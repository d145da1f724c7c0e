"""The in-process consumer API: ``async with host.subscribe(...) as deliveries``."""

from __future__ import annotations

import asyncio
import time
import weakref
from contextlib import suppress
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..errors import ConsumerClosedError
from .consumer import ACK_FLUSH_INTERVAL, Consumer
from .delivery import Delivery

if TYPE_CHECKING:
    from .engine import SubscriptionEngine


def _abandon(engine: SubscriptionEngine, consumer: Consumer,
             loop: asyncio.AbstractEventLoop) -> None:
    # finalizer of an abandoned Subscriber: release its events at once
    if consumer.closed or loop.is_closed():
        return
    with suppress(RuntimeError):
        loop.call_soon_threadsafe(engine.spawn, consumer.close("abandoned"))


class Subscriber:
    """The in-process consumer API: an async context manager and async iterator of Deliveries.

    With ``auto_ack=True`` (the default) each delivery is acked once the loop asks for the next
    one (acks of a fast loop go to the store together, at most ``ACK_FLUSH_INTERVAL`` later),
    and nacked (with the exception as reason) if the loop body raised inside ``async with``.
    With ``auto_ack=False`` call ``delivery.ack()`` / ``delivery.nack()``.

    ``async for batch in deliveries.batches(): for d in batch: ...`` hands over what the
    window holds a list at a time (see :meth:`batches`): one step of the async iterator per
    batch instead of per event.

    Cancelling a wait for the next delivery (``next(timeout=...)``, a task cancel) loses
    nothing: what the store handed over meanwhile is returned by the next call.
    """

    def __init__(self, engine: SubscriptionEngine, subscription: str, consumer_id: str, *,
                 auto_ack: bool = True, **options: Any) -> None:
        self._engine = engine
        self._subscription = subscription
        self._consumer_id = consumer_id
        self._options = options
        self.auto_ack = auto_ack
        self.consumer: Consumer | None = None
        self._last: Delivery | None = None
        #: automatic acks, at least once, no observers: async for takes _plain_steps' short step
        self._plain = False
        #: the last list ``batches()`` handed over (acked when the loop asks for the next)
        self._batch: list[Delivery] = []

    async def open(self) -> Consumer:
        if self.consumer is None:
            self.consumer = consumer = await self._engine.open_consumer(
                self._subscription, self._consumer_id, **self._options)
            self._plain = (self.auto_ack and not consumer.at_most_once
                           and consumer.engine.observers is None)
            weakref.finalize(self, _abandon, self._engine, self.consumer,
                             asyncio.get_running_loop())
        return self.consumer

    async def __aenter__(self) -> Subscriber:
        await self.open()
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        consumer = self.consumer
        try:
            if self.auto_ack and consumer is not None and not consumer.closed:
                last = self._last
                open_ = [d for d in self._batch if not d.settled]
                if last is not None and not last.settled:
                    open_.append(last)
                self._batch = []
                if open_ and (exc is None or isinstance(exc, GeneratorExit)):
                    consumer.ack_later(*open_)
                    await consumer.flush_acks()
                elif open_ and isinstance(exc, Exception):
                    # the loop body failed on one of these (which one, the iterator cannot
                    # know with batches): every one not settled is given back
                    reason, error = f"{type(exc).__name__}: {exc}", repr(exc)
                    for d in open_:
                        if not d.settled:
                            await d.nack(reason=reason, error=error)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self.consumer is not None:
            await self.consumer.close("unsubscribed")

    def __aiter__(self) -> AsyncIterator[Delivery]:
        if self._plain:
            return self._plain_steps()
        return self

    async def _plain_steps(self) -> AsyncIterator[Delivery]:
        """``async for`` over an open subscriber with automatic acks at least once and no
        observers: the common step, kept short and without a coroutine per event (it runs once
        per event); the rest goes through __anext__. Consumer.ack_later inlined: a delivery that was settled meanwhile is skipped by
        the flush. The state stays on the subscriber and its consumer, so a loop left with
        ``break`` and a new ``async for`` go on where it stopped."""
        consumer = self.consumer
        assert consumer is not None
        self._ack_batch(consumer)  # left by a loop over batches() before
        while True:
            if consumer.prefetched and not consumer.closed:
                last = self._last
                if last is not None:
                    deferred = consumer._deferred_acks
                    if not deferred:
                        consumer._arm_flush(ACK_FLUSH_INTERVAL)
                    deferred.append(last)
                self._last = delivery = consumer.prefetched.popleft()
                yield delivery
                continue
            try:
                delivery = await self.__anext__()
            except StopAsyncIteration:
                return
            yield delivery

    async def __anext__(self) -> Delivery:
        # (``async for`` with automatic acks takes the short step of _plain_steps instead)
        consumer = self.consumer
        if consumer is None:
            consumer = await self.open()
        if consumer.closed:  # what was prefetched was released with the consumer
            raise StopAsyncIteration
        self._ack_batch(consumer)  # left by a loop over batches() before
        last = self._last
        if last is not None and self.auto_ack and not last.settled:
            self._last = None
            if consumer.prefetched:
                consumer.ack_later(last)
            else:  # wait_ready below flushes it before it waits
                consumer.ack_before_wait(last)
        if not consumer.prefetched:
            try:
                ready = await consumer.wait_ready()
            except ConsumerClosedError:
                raise StopAsyncIteration from None
            if not ready:  # completed at a terminal event
                await consumer.close("completed")
                raise StopAsyncIteration
        if consumer.at_most_once:  # settled in the store as it leaves the buffer
            try:
                taken = await consumer.take(1)
            except ConsumerClosedError:
                raise StopAsyncIteration from None
            if not taken:  # released meanwhile (the consumer is closing): not ours
                return await self.__anext__()
            [self._last] = taken
        else:
            self._last = delivery = consumer.prefetched.popleft()
            if consumer.engine.observers is not None:
                # reported with the rest of its batch (Consumer.report_delivered)
                delivery.handed_at = time.time()
                consumer._unreported.append(delivery)
        return self._last

    async def batches(self, max_events: int | None = None) -> AsyncIterator[list[Delivery]]:
        """``async for batch in deliveries.batches(): for d in batch: ...``: the deliveries
        the consumer's window holds, a list of at least one and at most ``max_events`` (or the
        window) at a time, in stream order. With automatic acks, every delivery of a batch not
        settled by hand is acked once the loop asks for the next batch (those acks go to the
        store together, at most ``ACK_FLUSH_INTERVAL`` later), or when ``async with`` is left;
        if the loop body raises inside ``async with``, each delivery of the last batch not
        settled is nacked with the exception as reason. Ends like ``async for d in
        deliveries`` (the consumer closed, or completed at a terminal event). Raises
        ValueError for ``max_events < 1``."""
        if max_events is not None and (isinstance(max_events, bool)
                                       or not isinstance(max_events, int) or max_events < 1):
            raise ValueError(f"batches(max_events): expected an integer >= 1 or None, got "
                             f"{max_events!r}")
        consumer = await self.open()
        while True:
            self._ack_batch(consumer)
            last = self._last  # left by ``async for d in deliveries`` before
            if last is not None and self.auto_ack and not last.settled:
                self._last = None
                consumer.ack_later(last)
            try:
                batch = await consumer.fetch(max_events)
            except ConsumerClosedError:
                return
            if not batch:  # completed at a terminal event
                await consumer.close("completed")
                return
            self._batch = batch
            yield batch

    def _ack_batch(self, consumer: Consumer) -> None:
        """Automatic acks: the last batch ``batches()`` handed over is done (the loop asks for
        more, by batch or by event)."""
        batch = self._batch
        if batch:
            self._batch = []
            if self.auto_ack and not consumer.at_most_once:
                # (one settled meanwhile is skipped); with nothing prefetched, the next fetch
                # sends them before it waits for more
                if consumer.prefetched:
                    consumer.ack_later(*batch)
                else:
                    consumer.ack_before_wait(*batch)

    async def next(self, timeout: float | None = None) -> Delivery | None:
        """The next delivery, or None after ``timeout`` seconds without one."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except TimeoutError:
            return None
