"""The in-process consumer API: ``async with host.subscribe(...) as deliveries``."""

from __future__ import annotations

import asyncio
import time
import weakref
from contextlib import suppress
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
        #: automatic acks, at least once, no observers: __anext__'s short step applies
        self._plain = False

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
        last = self._last
        if self.auto_ack and last is not None and not last.settled and self.consumer \
                and not self.consumer.closed:
            if exc is None or isinstance(exc, GeneratorExit):
                await last.ack()
            elif isinstance(exc, Exception):
                await last.nack(reason=f"{type(exc).__name__}: {exc}", error=repr(exc))
        await self.aclose()

    async def aclose(self) -> None:
        if self.consumer is not None:
            await self.consumer.close("unsubscribed")

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> Delivery:
        consumer = self.consumer
        if self._plain and consumer is not None and consumer.prefetched and not consumer.closed:
            # the common step, kept short (it runs once per event): automatic acks, settled
            # after the hand-over, no observers; Consumer.ack_later inlined (a delivery that
            # was settled meanwhile is skipped by the flush)
            last = self._last
            if last is not None:
                deferred = consumer._deferred_acks
                if not deferred:
                    consumer._arm_flush(ACK_FLUSH_INTERVAL)
                deferred.append(last)
            self._last = delivery = consumer.prefetched.popleft()
            return delivery
        if consumer is None:
            consumer = await self.open()
        if consumer.closed:  # what was prefetched was released with the consumer
            raise StopAsyncIteration
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

    async def next(self, timeout: float | None = None) -> Delivery | None:
        """The next delivery, or None after ``timeout`` seconds without one."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except TimeoutError:
            return None
