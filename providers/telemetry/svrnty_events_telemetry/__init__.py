"""Metrics for svrnty-events on OpenTelemetry, served to Prometheus at ``/metrics``."""

from .metrics import HostMetrics
from .options import PrometheusOptions, TelemetryOptions
from .telemetry import HostTelemetry, telemetry_of

__all__ = ["HostMetrics", "HostTelemetry", "PrometheusOptions", "TelemetryOptions",
           "telemetry_of"]
