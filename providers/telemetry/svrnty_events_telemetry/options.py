"""The ``[telemetry]`` configuration section."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta


class PrometheusOptions(msgspec.Struct, forbid_unknown_fields=True):
    """``[telemetry.prometheus]``: where to serve ``GET /metrics``."""

    host: str = "127.0.0.1"
    #: 0 picks a free port (see HostTelemetry.prometheus_port)
    port: Annotated[int, Meta(ge=0, le=65535)] = 9464


class TelemetryOptions(msgspec.Struct, forbid_unknown_fields=True):
    """``[telemetry]``."""

    #: serve a Prometheus endpoint; None = none (metrics still go to other OpenTelemetry readers)
    prometheus: PrometheusOptions | None = None
    #: trace commands, appends and deliveries when a tracer provider is configured (the
    #: application's global one, or OTEL_TRACES_EXPORTER); False = never
    tracing: bool = True
    #: gauges that need a store call (lag, dead letters) are computed at most this often
    store_gauge_interval: Annotated[float, Meta(gt=0)] = 2.0
