"""The ``telemetry`` plugin: a host configured with ``[telemetry]`` gets its metrics (see
HostTelemetry); a host without it pays nothing."""

from __future__ import annotations

from svrnty_events import EventStreamingHost, hookimpl

from .telemetry import HostTelemetry, telemetry_of
from .tracing import HostTracing


@hookimpl
async def host_started(host: EventStreamingHost) -> None:
    if host.config.telemetry is None:
        return
    telemetry = HostTelemetry.from_config(host)
    await telemetry.start()
    # registered per host: its observation hooks hear this host only
    host.pm.register(telemetry, name=HostTelemetry.PLUGIN_NAME)
    if telemetry.tracing is not None:
        host.pm.register(telemetry.tracing, name=HostTracing.PLUGIN_NAME)


@hookimpl
async def host_stopping(host: EventStreamingHost) -> None:
    telemetry = telemetry_of(host)
    if telemetry is not None:
        host.pm.unregister(telemetry)
        if telemetry.tracing is not None:
            host.pm.unregister(telemetry.tracing)
        await telemetry.stop()
