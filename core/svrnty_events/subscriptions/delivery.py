"""A delivery: one hand-over of an event to a consumer's code, and how that code settles it."""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from ..errors import UnknownDeliveryError
from ..events import RecordedEvent
from ..store import processed_key

if TYPE_CHECKING:
    from .consumer import Consumer

T = TypeVar("T")


def check_delay(delay: float | None) -> None:
    """A nack delay must be a finite number of seconds >= 0 (or None for the backoff)."""
    if delay is not None and (not isinstance(delay, (int, float)) or isinstance(delay, bool)
                              or not math.isfinite(delay) or delay < 0):
        raise ValueError(f"nack delay: expected a finite number of seconds >= 0 or None, "
                         f"got {delay!r}")


class Delivery(msgspec.Struct, eq=False):
    """One hand-over of an event to a consumer.

    ``Delivery(record, attempt, consumer, group, claimed_at)``. A msgspec Struct for its
    construction cost: one per event handed over. Compared by identity.
    """

    record: RecordedEvent
    attempt: int
    consumer: Consumer
    #: the delivery group the event was claimed from (a partition's, in consumer_group)
    group: str
    #: when (loop time) its visibility deadline was last set: claimed or extended
    claimed_at: float = 0.0
    settled: bool = False
    terminal: bool = False
    #: when (epoch seconds) it was handed to the consumer's code; set only on a host whose
    #: plugins observe deliveries (0.0 otherwise)
    handed_at: float = 0.0
    _event: Any = None

    # envelope
    @property
    def id(self) -> str:
        return self.record.id

    @property
    def type(self) -> str:
        return self.record.type

    @property
    def correlation_id(self) -> str:
        return self.record.correlation_id

    @property
    def stream(self) -> str:
        return self.record.stream

    @property
    def sequence(self) -> int:
        return self.record.sequence

    @property
    def partition(self) -> int:
        return self.record.partition

    @property
    def timestamp(self) -> datetime:
        return self.record.timestamp

    @property
    def headers(self) -> dict[str, str]:
        return self.record.headers

    @property
    def data(self) -> bytes:
        return self.record.data

    @property
    def content_type(self) -> str:
        return self.record.content_type

    @property
    def subscription(self) -> str:
        return self.consumer.subscription

    @property
    def event(self) -> Any:
        """The payload decoded into its registered Event class (plain JSON values if the type
        is not known in this process)."""
        if self._event is None:
            record = self.record
            self._event = self.consumer.engine.event_types.decode(record.type, record.data,
                                                                  record.content_type)
        return self._event

    def _held(self) -> bool:
        """True while this delivery is the one its consumer holds. A delivery that is over
        (settled, released, or superseded by a redelivery of the same event to the same
        consumer) raises UnknownDeliveryError, so it never settles another delivery; at most
        once, where it was settled when handed over, it is False."""
        if not self.settled and self.consumer.held.get(self.record.id) is self:
            return True
        if self.consumer.at_most_once:
            return False
        raise UnknownDeliveryError([self.record.id])

    async def ack(self) -> None:
        """Settle the event: it will not be delivered to this subscription's group again."""
        if self._held():
            await self.consumer.ack((self.record.id,))

    async def nack(self, delay: float | None = None, reason: str | None = None,
                   error: str | None = None) -> None:
        """Give the event back for redelivery after ``delay`` seconds (default: the
        subscription's backoff). Past ``max_delivery_attempts`` it goes to the dead-letter
        queue with ``reason`` and ``error``. Raises ValueError for a delay that is not a
        finite number of seconds >= 0."""
        check_delay(delay)
        if self._held():
            await self.consumer.nack(self.record.id, delay=delay, reason=reason, error=error)

    async def in_progress(self) -> None:
        """Say the consumer is still working on the event: its visibility deadline moves to a
        full ``visibility_timeout`` from now (JetStream's +WPI), so a slow loop body does not
        see it redelivered elsewhere. Raises UnknownDeliveryError if the consumer no longer
        holds it (its deadline had passed and another consumer may have it)."""
        if self._held():
            await self.consumer.extend((self.record.id,))

    async def dead_letter(self, reason: str, error: str | None = None) -> None:
        """Send the event to the dead-letter queue now (a permanent failure: retrying cannot
        help). It can be replayed from there."""
        if self._held():
            await self.consumer.dead_letter(self.record.id, reason=reason, error=error)

    async def mark_read(self) -> None:
        """Record a read receipt (``read_receipt`` mode) without settling the event."""
        await self.consumer.mark_read((self.record.id,))

    @property
    def processed_key(self) -> str:
        """The key of this event's processed mark in its delivery group."""
        return processed_key(self.group, self.record.id)

    async def process_once(self, effect: Callable[[Delivery], Awaitable[T] | T]) -> bool:
        """Apply ``effect`` once per event and delivery group across redeliveries, then ack.

        The processed mark is recorded right after the effect, with the ack (in one
        transaction where the store has transactions). Marks are per delivery group: every
        broadcast consumer applies its own effect once. A crash after the effect and before
        the mark applies the effect again on redelivery (see docs/semantics.md). Returns
        False when the effect had already been applied (the event is then just acked).
        """
        store, sub = self.consumer.engine.store, self.consumer.subscription
        if await store.is_processed(sub, self.processed_key):
            await self.ack()
            return False
        result = effect(self)
        if inspect.isawaitable(result):
            await result
        await self.consumer.ack_processed(self.record.id, self)
        return True

    async def process_once_in_store(self, effect: Callable[[Any], Any]) -> bool:
        """Run ``effect(tx)`` inside the store's own transaction, with the processed mark and
        the ack: they commit together or not at all, so the effect of a write to the store's
        database happens exactly once, even across a crash (SIGKILL) at any point. ``tx`` is
        the store's transaction handle (SQLite: its ``sqlite3.Connection``; the effect runs in
        the store's thread, so it must be a plain function, not a coroutine). Returns False
        when the effect had already been applied (the event is then just acked). Raises
        UnknownDeliveryError if the consumer no longer holds the event (the effect did not
        run), NotImplementedError on a store without transactions."""
        if not self._held():
            raise UnknownDeliveryError([self.record.id])
        return await self.consumer.process_in_store(self.record.id, effect)

    def __repr__(self) -> str:
        return (f"<Delivery {self.record.type} id={self.record.id} seq={self.record.sequence} "
                f"attempt={self.attempt}>")
