"""What the telemetry plugin runs for one host: its metrics and their Prometheus endpoint."""

from __future__ import annotations

from contextlib import suppress

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry

from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader

from svrnty_events import EventStreamingHost
from svrnty_events.config import convert

from .metrics import HostMetrics
from .options import TelemetryOptions
from .prometheus import MetricsServer
from .tracing import HostTracing, configured_tracer_provider, load_exporters


class HostTelemetry(HostMetrics):
    """The metrics of one host and, with ``[telemetry.prometheus]``, the ``/metrics`` endpoint
    that serves them. Find it with :func:`telemetry_of`."""

    PLUGIN_NAME = "telemetry.host"

    def __init__(self, host: EventStreamingHost, options: TelemetryOptions) -> None:
        self.options = options
        #: the Prometheus registry of this host's metrics (one per host, not the global one)
        self.registry = CollectorRegistry(auto_describe=True)
        readers: list[MetricReader] = [
            PrometheusMetricReader(disable_target_info=True, registry=self.registry)]
        # OTEL_METRICS_EXPORTER (e.g. otlp, console) exports the same instruments; the
        # Prometheus endpoint is [telemetry.prometheus]
        readers += [PeriodicExportingMetricReader(exporter) for exporter in load_exporters(
            "OTEL_METRICS_EXPORTER", "opentelemetry_metrics_exporter", ignore=("prometheus",))]
        super().__init__(host, readers, store_gauge_interval=options.store_gauge_interval)
        self.registry.register(self.delivery_latency)
        self.registry.register(self.handler_duration)
        #: the host's spans, when tracing is on (see tracing.configured_tracer_provider)
        self.tracing: HostTracing | None = None
        if options.tracing and (provider := configured_tracer_provider()) is not None:
            self.tracing = HostTracing(provider)
        self.server: MetricsServer | None = None
        if options.prometheus is not None:
            self.server = MetricsServer(self.registry, options.prometheus.host,
                                        options.prometheus.port, self.refresh_store_gauges)

    @classmethod
    def from_config(cls, host: EventStreamingHost) -> HostTelemetry:
        """Validate ``[telemetry]``; raises ConfigError naming the field."""
        options = convert(host.config.telemetry, TelemetryOptions, prefix="telemetry",
                          source=host.streaming.source)
        return cls(host, options)

    @property
    def prometheus_port(self) -> int | None:
        """The port ``/metrics`` is served on (None without ``[telemetry.prometheus]``)."""
        return self.server.port if self.server is not None else None

    @property
    def metrics_url(self) -> str | None:
        return self.server.url if self.server is not None else None

    async def start(self) -> None:
        if self.server is not None:
            try:
                await self.server.start()
            except BaseException:
                self.shutdown()
                raise
            self.host.extra_endpoints.append(f"metrics {self.server.url}")

    async def stop(self) -> None:
        """Stop serving and shut the meter provider down. May be called twice."""
        if self.server is not None:
            await self.server.stop()
            with suppress(ValueError):
                self.host.extra_endpoints.remove(f"metrics {self.server.url}")
        self.shutdown()


def telemetry_of(host: EventStreamingHost) -> HostTelemetry | None:
    """The telemetry of a started host, or None when it has no ``[telemetry]`` section."""
    plugin = host.pm.get_plugin(HostTelemetry.PLUGIN_NAME)
    return plugin if isinstance(plugin, HostTelemetry) else None
