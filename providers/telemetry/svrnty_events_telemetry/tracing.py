"""Traces after OpenTelemetry's messaging semantic conventions.

- ``send {command}``: a span around each command (its handler and the append);
- ``publish {stream}``: a producer span around each append. The event's creation context is
  written into its headers as W3C ``traceparent`` / ``tracestate``, so it travels with the event
  through the store, the gRPC stream, the webhook POST and the browser: the publish span itself
  for a single event, a ``create {stream}`` span per event for a batch;
- ``process {subscription}``: a consumer span per delivery, from hand-over to ack, nack or
  dead-letter, whose parent is the event's creation context. In-process it is opened by the
  host (:class:`HostTracing`); on the remote side by the Python gRPC client
  (:func:`delivery_spans`), in the consumer's process.

Tracing runs only where a tracer provider is configured: the application's global one
(``opentelemetry.trace.set_tracer_provider``), or one built from the standard
``OTEL_TRACES_EXPORTER`` environment variable (:func:`configured_tracer_provider`). Otherwise
nothing is registered and nothing is paid.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from svrnty_events import hookimpl
from svrnty_events.errors import ConfigError

if TYPE_CHECKING:
    from svrnty_events import Delivery, RecordedEvent

TRACER_NAME = "svrnty_events"
SYSTEM = "svrnty_events"
#: open process spans kept at most (the oldest end first): a consumer that never settles
#: cannot grow them without bound
MAX_OPEN_SPANS = 100_000


class DeliveryLike(Protocol):
    id: Any
    type: Any
    correlation_id: Any
    stream: Any
    attempt: Any
    headers: Any


def _exporter_entry_points(group: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=group)}


def load_exporters(variable: str, group: str, ignore: Sequence[str] = ()) -> list[Any]:
    """The exporters named by an ``OTEL_*_EXPORTER`` variable (comma-separated; ``none`` or
    unset = none), built from their entry points; names in ``ignore`` are skipped. Raises
    ConfigError naming the variable."""
    names = [n.strip() for n in os.environ.get(variable, "").split(",") if n.strip()]
    if not names or names == ["none"]:
        return []
    installed = _exporter_entry_points(group)
    exporters = []
    for name in names:
        if name == "none" or name in ignore:
            continue
        ep = installed.get(name)
        if ep is None:
            raise ConfigError(variable, f'no OpenTelemetry exporter "{name}" is installed '
                              f'(installed: {", ".join(sorted(installed)) or "none"}); for '
                              f'"otlp", pip install opentelemetry-exporter-otlp')
        exporters.append(ep.load()())
    return exporters


def configured_tracer_provider() -> Any | None:
    """The tracer provider to trace with: the global one when the application set it, else
    one built from ``OTEL_TRACES_EXPORTER`` (made global, with the resource the ``OTEL_*``
    variables describe), else None: tracing is off."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return provider
    exporters = load_exporters("OTEL_TRACES_EXPORTER", "opentelemetry_traces_exporter")
    if not exporters:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    sdk_provider = TracerProvider(resource=Resource.create())
    for exporter in exporters:
        sdk_provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(sdk_provider)
    return trace.get_tracer_provider()


def _parent(headers: Mapping[str, str]) -> Any:
    if "traceparent" not in headers:
        return None
    return propagate.extract(dict(headers))


class DeliverySpans:
    """``process {subscription}`` spans, one per delivery, from hand-over to settlement."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        #: (subscription, consumer id, event id) -> open span
        self.open: dict[tuple[str, str, str], Span] = {}

    def start(self, delivery: DeliveryLike, subscription: str, consumer_id: str,
              start_time: float | None = None) -> Span:
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": delivery.stream,
            "messaging.destination.subscription.name": subscription,
            "messaging.consumer.group.name": subscription,
            "messaging.client.id": consumer_id,
            "messaging.message.id": delivery.id,
            "messaging.message.conversation_id": delivery.correlation_id,
            "svrnty_events.event.type": delivery.type,
            "svrnty_events.correlation_id": delivery.correlation_id,
            "svrnty_events.delivery.attempt": delivery.attempt,
        }
        span = self.tracer.start_span(
            f"process {subscription}", context=_parent(delivery.headers), kind=SpanKind.CONSUMER,
            attributes=attributes,
            start_time=int(start_time * 1e9) if start_time else None)
        key = (subscription, consumer_id, delivery.id)
        previous = self.open.pop(key, None)
        if previous is not None:  # handed over again (redelivered to the same consumer)
            previous.add_event("superseded by a redelivery")
            previous.end()
        if len(self.open) >= MAX_OPEN_SPANS:
            oldest = next(iter(self.open))
            self.open.pop(oldest).end()
        self.open[key] = span
        return span

    def end(self, subscription: str, consumer_id: str, event_id: str, *,
            outcome: str = "ack", error: str | None = None,
            attributes: Mapping[str, Any] | None = None) -> None:
        span = self.open.pop((subscription, consumer_id, event_id), None)
        if span is None:
            return
        span.set_attribute("svrnty_events.settlement", outcome)
        if outcome != "ack":
            span.add_event(outcome, attributes=dict(attributes or {}))
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def end_consumer(self, subscription: str, consumer_id: str, reason: str) -> None:
        """End the spans of a consumer that left: its unsettled events were released."""
        for key in [k for k in self.open if k[0] == subscription and k[1] == consumer_id]:
            span = self.open.pop(key)
            span.set_attribute("svrnty_events.settlement", "released")
            span.add_event("released", attributes={"reason": reason})
            span.end()


def delivery_spans() -> DeliverySpans | None:
    """Process spans for a consumer outside the host (the Python gRPC client uses this when
    this package is installed), or None when no tracer provider is configured."""
    provider = configured_tracer_provider()
    if provider is None:
        return None
    return DeliverySpans(provider.get_tracer(TRACER_NAME))


class HostTracing:
    """The spans of one host: registered on its plugin manager when tracing is on."""

    PLUGIN_NAME = "telemetry.tracing"

    def __init__(self, tracer_provider: Any) -> None:
        self.tracer = tracer_provider.get_tracer(TRACER_NAME)
        self.deliveries = DeliverySpans(self.tracer)

    # --- producing -----------------------------------------------------------------------------

    @hookimpl
    def command_context(self, command: Any, command_name: str, stream: str,
                        workflow_id: str | None) -> Any:
        attributes = {"svrnty_events.command": command_name,
                      "messaging.system": SYSTEM,
                      "messaging.destination.name": stream}
        if workflow_id is not None:
            attributes["svrnty_events.correlation_id"] = workflow_id
        return self.tracer.start_as_current_span(f"send {command_name}", kind=SpanKind.INTERNAL,
                                                 attributes=attributes)

    @hookimpl
    def publish_context(self, stream: str, events: Sequence[RecordedEvent]) -> Any:
        return self._publish(stream, events)

    @contextmanager
    def _publish(self, stream: str, events: Sequence[RecordedEvent]) -> Iterator[None]:
        # an event that arrives with a creation context (published by another service) keeps
        # it; the publish span links to it
        links = [Link(trace.get_current_span(ctx).get_span_context())
                 for e in events if (ctx := _parent(e.headers)) is not None]
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM, "messaging.operation.type": "send",
            "messaging.operation.name": "publish", "messaging.destination.name": stream,
            "messaging.batch.message_count": len(events)}
        if len(events) == 1:
            e = events[0]
            attributes.update({"messaging.message.id": e.id,
                               "messaging.message.conversation_id": e.correlation_id,
                               "svrnty_events.event.type": e.type})
        with self.tracer.start_as_current_span(f"publish {stream}", kind=SpanKind.PRODUCER,
                                               attributes=attributes, links=links):
            fresh = [e for e in events if "traceparent" not in e.headers]
            if len(events) == 1:
                for e in fresh:
                    propagate.inject(e.headers)
            else:
                for e in fresh:
                    with self.tracer.start_as_current_span(
                            f"create {stream}", kind=SpanKind.PRODUCER, attributes={
                                "messaging.system": SYSTEM,
                                "messaging.operation.type": "create",
                                "messaging.destination.name": stream,
                                "messaging.message.id": e.id,
                                "messaging.message.conversation_id": e.correlation_id,
                                "svrnty_events.event.type": e.type}):
                        propagate.inject(e.headers)
            yield

    # --- consuming -----------------------------------------------------------------------------

    @hookimpl
    def events_delivered(self, subscription: str, consumer_id: str,
                         deliveries: Sequence[Delivery]) -> None:
        spans = self.deliveries
        for d in deliveries:
            spans.start(d, subscription, consumer_id, d.handed_at or None)
            if d.consumer.at_most_once:  # settled as it was handed over
                spans.end(subscription, consumer_id, d.id, outcome="settled at most once")

    @hookimpl
    def events_acked(self, subscription: str, consumer_id: str,
                     deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            self.deliveries.end(subscription, consumer_id, d.id)

    @hookimpl
    def events_nacked(self, subscription: str, consumer_id: str, deliveries: Sequence[Delivery],
                      delay: float) -> None:
        for d in deliveries:
            self.deliveries.end(subscription, consumer_id, d.id, outcome="nack",
                                error="nacked", attributes={"redelivery_delay_seconds": delay})

    @hookimpl
    def events_dead_lettered(self, subscription: str, consumer_id: str,
                             events: Sequence[RecordedEvent], reason: str) -> None:
        for e in events:
            self.deliveries.end(subscription, consumer_id, e.id, outcome="dead_letter",
                                error=f"dead-lettered: {reason}", attributes={"reason": reason})

    @hookimpl
    def consumer_left(self, subscription: str, consumer_id: str, reason: str) -> None:
        self.deliveries.end_consumer(subscription, consumer_id, reason)

