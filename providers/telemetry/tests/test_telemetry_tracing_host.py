"""Spans of one host, in a subprocess (trace_host_script.py): commands, appends (a creation
context per event of a batch) and in-process deliveries settled by ack, nack and dead-letter;
the OTEL_TRACES_EXPORTER variable; and a host with no tracer provider registers no tracing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import span_files

SCRIPT = Path(__file__).with_name("trace_host_script.py")
TIMEOUT = 60.0


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update(env, SVRNTY_EVENTS_PLUGINS="memory,telemetry")
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=environment)


def test_commands_appends_and_settlements_are_traced(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    done = run(str(path))
    assert done.returncode == 0, done.stderr
    assert "seen [(0, 1), (1, 1), (2, 1), (0, 1), (1, 2)]" in done.stdout
    spans = span_files.read(path)
    by_id = {s["span_id"]: s for s in spans}
    sends = [s for s in spans if s["name"].startswith("send ")]
    publishes = [s for s in spans if s["name"] == "publish trace-probes"]
    creates = [s for s in spans if s["name"] == "create trace-probes"]
    processes = [s for s in spans if s["name"] == "process probe-worker"]
    assert len(sends) == 2 and len(publishes) == 2
    # the batch of three: one creation span per event, children of its publish span
    batch = next(p for p in publishes if p["attributes"]["messaging.batch.message_count"] == 3)
    single = next(p for p in publishes if p["attributes"]["messaging.batch.message_count"] == 1)
    assert len(creates) == 3 and {c["parent_id"] for c in creates} == {batch["span_id"]}
    assert {p["parent_id"] for p in publishes} == {s["span_id"] for s in sends}
    # the second command continued the workflow: its send span names it
    workflow_id = single["attributes"]["messaging.message.conversation_id"]
    assert any(s["attributes"].get("svrnty_events.correlation_id") == workflow_id
               for s in sends)
    # five deliveries, each a child of its event's creation context
    assert len(processes) == 5
    creation_ids = {c["span_id"] for c in creates} | {single["span_id"]}
    assert {p["parent_id"] for p in processes} == creation_ids
    for p in processes:
        parent = by_id[p["parent_id"]]
        assert p["trace_id"] == parent["trace_id"]
        assert p["attributes"]["messaging.message.id"] == parent["attributes"][
            "messaging.message.id"]
        assert p["start"] <= p["end"]
    outcomes = sorted((p["attributes"]["svrnty_events.delivery.attempt"],
                       p["attributes"]["svrnty_events.settlement"], p["status"],
                       tuple(p["events"])) for p in processes)
    assert outcomes == [(1, "ack", "UNSET", ()), (1, "ack", "UNSET", ()),
                        (1, "dead_letter", "ERROR", ("dead_letter",)),
                        (1, "nack", "ERROR", ("nack",)), (2, "ack", "UNSET", ())]


def test_the_standard_environment_variable_picks_an_exporter() -> None:
    done = run(OTEL_TRACES_EXPORTER="console", OTEL_BSP_SCHEDULE_DELAY="50",
               OTEL_SERVICE_NAME="probe-service")
    assert done.returncode == 0, done.stderr
    assert '"name": "publish trace-probes"' in done.stdout
    assert '"name": "process probe-worker"' in done.stdout
    assert '"service.name": "probe-service"' in done.stdout


def test_an_exporter_that_is_not_installed_is_a_clear_error() -> None:
    done = run(OTEL_TRACES_EXPORTER="nosuch")
    assert done.returncode != 0
    assert 'OTEL_TRACES_EXPORTER: no OpenTelemetry exporter "nosuch" is installed' \
        in done.stderr
    assert "done" not in done.stdout


def test_without_a_tracer_provider_nothing_is_traced() -> None:
    done = run()  # no span file: no provider is installed, no OTEL_ variables
    assert done.returncode == 0, done.stderr
    assert "done" in done.stdout and "trace_id" not in done.stdout
