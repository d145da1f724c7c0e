"""The instruments of one host, fed by the kernel's observation hooks."""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from svrnty_events import hookimpl

if TYPE_CHECKING:
    from svrnty_events import Delivery, EventStreamingHost, RecordedEvent

METER_NAME = "svrnty_events"
#: seconds: sub-millisecond in-process hand-overs up to a backlog of minutes
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0, 60.0, 300.0)


class LatencyHistogram:
    """A histogram kept in plain counters (one bisect and an increment per sample, where an
    OpenTelemetry SDK ``record`` costs tens of microseconds), collected for Prometheus."""

    def __init__(self, name: str, documentation: str, label: str,
                 buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.buckets = list(buckets)
        #: label value -> ([count per bucket, the last one +Inf], sum)
        self.series: dict[str, tuple[list[int], list[float]]] = {}

    def series_for(self, label_value: str) -> tuple[list[int], list[float]]:
        series = self.series.get(label_value)
        if series is None:
            series = self.series[label_value] = ([0] * (len(self.buckets) + 1), [0.0])
        return series

    def record_span(self, label_value: str, values: Iterable[float], count: int,
                    first: float, last: float) -> None:
        """Record ``count`` samples of a batch whose values run from ``first`` to ``last``
        (monotonically, as latencies of events in stream order, or durations of deliveries in
        hand-over order). When both ends fall in one bucket, so does every sample between
        them: the bucket gets ``count`` and the sum ``count * (first + last) / 2`` without a
        look at each sample. Otherwise each of ``values`` is bisected."""
        counts, total = self.series_for(label_value)
        buckets = self.buckets
        if first < 0.0:
            first = 0.0
        if last < 0.0:
            last = 0.0
        low, high = (first, last) if first <= last else (last, first)
        index = bisect_left(buckets, low)
        if index == len(buckets) or high <= buckets[index]:
            counts[index] += count
            total[0] += count * (first + last) / 2.0
            return
        summed = 0.0
        for value in values:
            if value < 0.0:
                value = 0.0
            counts[bisect_left(buckets, value)] += 1
            summed += value
        total[0] += summed

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        for label_value, (counts, total) in self.series.items():
            cumulative, buckets = 0, []
            for bound, count in zip([*map(str, self.buckets), "+Inf"], counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric([label_value], buckets, total[0])
        yield family


class HostMetrics:
    """Counters, a histogram and gauges of one host.

    Registered on the host's plugin manager, so its hook implementations hear only that host.
    The hooks add to plain counters (cheap on the delivery path); OpenTelemetry's observable
    instruments read them when a reader collects. In-flight and consumer gauges are read from
    the subscription engine; dead-letter gauges come from the store, refreshed by
    :meth:`refresh_store_gauges` at most every ``store_gauge_interval`` seconds.
    """

    def __init__(self, host: EventStreamingHost, readers: Sequence[MetricReader], *,
                 store_gauge_interval: float = 2.0) -> None:
        self.host = host
        self.provider = MeterProvider(metric_readers=list(readers))
        self.store_gauge_interval = store_gauge_interval
        #: subscription -> (dead letters, oldest dead-letter time, epoch seconds)
        self._dead_letters: dict[str, tuple[int, float]] = {}
        #: (subscription, group) -> events not settled by the group (from store.group_lags)
        self._lags: dict[tuple[str, str], int] = {}
        self._refreshed_at: float | None = None
        self._refreshing: asyncio.Future[None] | None = None
        self.appended: dict[str, int] = {}
        #: (subscription, attempt class) -> deliveries
        self.delivered: dict[tuple[str, str], int] = {}
        self.acked: dict[str, int] = {}
        self.nacked: dict[str, int] = {}
        self.dead_lettered: dict[str, int] = {}
        #: append to hand-over; served by the Prometheus collector (see LatencyHistogram)
        self.delivery_latency = LatencyHistogram(
            "svrnty_events_delivery_latency_seconds",
            "Time from append to hand-over to a consumer's code", "subscription")
        #: hand-over to ack or nack
        self.handler_duration = LatencyHistogram(
            "svrnty_events_handler_duration_seconds",
            "Time from hand-over to a consumer's code to its ack or nack", "subscription")
        meter = self.provider.get_meter(METER_NAME)
        for name, description, values, label in (
                ("svrnty_events_appended", "Events appended, by stream", self.appended,
                 "stream"),
                ("svrnty_events_acked", "Deliveries acked", self.acked, "subscription"),
                ("svrnty_events_nacked", "Deliveries nacked and given back for redelivery",
                 self.nacked, "subscription"),
                ("svrnty_events_dead_lettered", "Events moved to the dead-letter queue",
                 self.dead_lettered, "subscription")):
            meter.create_observable_counter(
                name, callbacks=[self._counter_callback(values, label)],
                description=description)
        meter.create_observable_counter(
            "svrnty_events_delivered", callbacks=[self._observe_delivered],
            description="Deliveries handed to consumers' code, by attempt class (first or "
                        "redelivery)")
        meter.create_observable_gauge(
            "svrnty_events_in_flight", callbacks=[self._observe_in_flight],
            description="Events held by this host's consumers and not settled yet")
        meter.create_observable_gauge(
            "svrnty_events_consumers", callbacks=[self._observe_consumers],
            description="Consumers connected to this host")
        meter.create_observable_gauge(
            "svrnty_events_subscription_lag", callbacks=[self._observe_lag],
            description="Events appended and not yet settled by the delivery group (the "
                        "shared group of exclusive and consumer_group partition 0 is \"shared\")")
        meter.create_observable_gauge(
            "svrnty_events_dead_letters", callbacks=[self._observe_dead_letters],
            description="Events in the dead-letter queue")
        meter.create_observable_gauge(
            "svrnty_events_oldest_dead_letter_age", unit="s",
            callbacks=[self._observe_oldest_dead_letter],
            description="Age of the oldest event in the dead-letter queue (0 when empty)")

    # --- observation hooks -------------------------------------------------------------------

    @hookimpl
    def events_appended(self, stream: str, events: Sequence[RecordedEvent]) -> None:
        self.appended[stream] = self.appended.get(stream, 0) + len(events)

    @hookimpl
    def events_delivered(self, subscription: str, deliveries: Sequence[Delivery]) -> None:
        # the delivery path pays this: the latency of the batch's two ends (its events are in
        # stream order), one look at each event only when they straddle a bucket bound
        if not deliveries:
            return
        now = time.time()
        count = len(deliveries)
        self.delivery_latency.record_span(
            subscription, (now - d.record.timestamp.timestamp() for d in deliveries), count,
            now - deliveries[0].record.timestamp.timestamp(),
            now - deliveries[-1].record.timestamp.timestamp())
        redelivered = len([d for d in deliveries if d.attempt > 1])
        delivered = self.delivered
        if redelivered < count:
            key = (subscription, "first")
            delivered[key] = delivered.get(key, 0) + count - redelivered
        if redelivered:
            key = (subscription, "redelivery")
            delivered[key] = delivered.get(key, 0) + redelivered

    @hookimpl
    def events_acked(self, subscription: str, deliveries: Sequence[Delivery]) -> None:
        self.acked[subscription] = self.acked.get(subscription, 0) + len(deliveries)
        self._handled(subscription, deliveries)

    @hookimpl
    def events_nacked(self, subscription: str, deliveries: Sequence[Delivery]) -> None:
        self.nacked[subscription] = self.nacked.get(subscription, 0) + len(deliveries)
        self._handled(subscription, deliveries)

    def _handled(self, subscription: str, deliveries: Sequence[Delivery]) -> None:
        # settled in hand-over order, as the in-process iterator does: measured from both ends
        if not deliveries:
            return
        now = time.time()
        if not (deliveries[0].handed_at and deliveries[-1].handed_at):
            # 0.0: handed over before this host was observed; those are not measured
            deliveries = [d for d in deliveries if d.handed_at]
            if not deliveries:
                return
        self.handler_duration.record_span(
            subscription, (now - d.handed_at for d in deliveries if d.handed_at),
            len(deliveries), now - deliveries[0].handed_at, now - deliveries[-1].handed_at)

    @hookimpl
    def events_dead_lettered(self, subscription: str, events: Sequence[RecordedEvent]) -> None:
        self.dead_lettered[subscription] = self.dead_lettered.get(subscription, 0) + len(events)
        self._refreshed_at = None  # the queue changed: the next scrape asks the store

    # --- collection ----------------------------------------------------------------------------

    @staticmethod
    def _counter_callback(values: dict[str, int], label: str
                          ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(v, {label: k}) for k, v in list(values.items())]
        return observe

    def _observe_delivered(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v, {"subscription": sub, "attempt_class": cls})
                for (sub, cls), v in list(self.delivered.items())]

    # --- gauges --------------------------------------------------------------------------------

    def _observe_in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, runtime in self.host.engine.subscriptions.items():
            held = sum(len(c.held) for c in runtime.consumers.values())
            yield Observation(held, {"subscription": name})

    def _observe_consumers(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, runtime in self.host.engine.subscriptions.items():
            yield Observation(len(runtime.consumers), {"subscription": name})

    def _observe_lag(self, options: CallbackOptions) -> Iterable[Observation]:
        for (name, group), lag in self._lags.items():
            yield Observation(lag, {"subscription": name, "group": group or "shared"})

    def _observe_dead_letters(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, (count, _) in self._dead_letters.items():
            yield Observation(count, {"subscription": name})

    def _observe_oldest_dead_letter(self, options: CallbackOptions) -> Iterable[Observation]:
        now = time.time()
        for name, (count, oldest) in self._dead_letters.items():
            yield Observation(max(now - oldest, 0.0) if count else 0.0,
                              {"subscription": name})

    async def refresh_store_gauges(self, *, force: bool = False) -> None:
        """Read the dead-letter queues from the store, unless they were read less than
        ``store_gauge_interval`` seconds ago (concurrent callers share one read)."""
        now = time.monotonic()
        if not force and self._refreshed_at is not None \
                and now - self._refreshed_at < self.store_gauge_interval:
            return
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._read_store())
        job = self._refreshing
        try:
            await asyncio.shield(job)
        finally:
            if job.done() and self._refreshing is job:
                self._refreshing = None

    async def _read_store(self) -> None:
        started = time.monotonic()
        out: dict[str, tuple[int, float]] = {}
        lags: dict[tuple[str, str], int] = {}
        store = self.host.store
        for name in list(self.host.engine.subscriptions):
            letters = await store.list_dead_letters(name)
            oldest = min((_epoch(d.dead_lettered_at) for d in letters), default=0.0)
            out[name] = (len(letters), oldest)
            try:
                for group, lag in (await store.group_lags(name)).items():
                    lags[(name, group)] = lag
            except NotImplementedError:  # a store that cannot tell: no lag gauge
                pass
        self._dead_letters = out
        self._lags = lags
        self._refreshed_at = started

    def shutdown(self) -> None:
        self.provider.shutdown()


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:  # a store that keeps naive UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
