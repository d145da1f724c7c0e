"""The minimal plugin, in a real host."""

import asyncio
import json
from pathlib import Path

import pytest

import svrnty_events_jsonl.plugin
from svrnty_events import Event, EventStreaming
from svrnty_events.events import record
from svrnty_events.testing import within

EXAMPLE = Path(__file__).resolve().parents[1] / "example.toml"


class JsonlOrderPlaced(Event):
    order_id: int


def orders(count: int) -> list:
    return [record(JsonlOrderPlaced(order_id=n), stream="orders", correlation_id="wf-1")
            for n in range(count)]


async def read_lines(path: Path, count: int) -> list[dict]:
    while not path.exists() or len(path.read_text().splitlines()) < count:
        await asyncio.sleep(0.01)
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_each_event_is_written_then_acked(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "memory")  # the store; the plugin comes below
    path = tmp_path / "audit.jsonl"
    streaming = EventStreaming(plugins=[svrnty_events_jsonl.plugin])
    streaming.add_stream("orders")
    streaming.add_subscription("orders", "audit")
    streaming.add_delivery("jsonl", path=str(path), subscriptions=["audit"])
    async with streaming.run() as host:
        await host.publish("orders", orders(3), external=False)
        lines = await within(read_lines(path, 3))
        assert [line["data"] for line in lines] == [{"order_id": n} for n in range(3)]
        assert [line["attempt"] for line in lines] == [1, 1, 1]
        assert host.endpoints() == [f"jsonl: {path}"]
        consumers = host.consumers("audit")
        assert [c["in_flight"] for c in consumers] == [0]


async def test_installed_plugin_runs_from_the_toml_example(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "memory,jsonl")  # found by its entry point
    monkeypatch.chdir(tmp_path)
    async with EventStreaming.from_toml(EXAMPLE).run() as host:
        await host.publish("orders", orders(2), external=False)
        lines = await within(read_lines(tmp_path / "audit.jsonl", 2))
    assert [line["subscription"] for line in lines] == ["audit", "audit"]


async def test_a_failed_write_is_nacked_and_retried(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "memory")
    path = tmp_path / "missing-dir" / "audit.jsonl"  # cannot be written until the dir exists
    streaming = EventStreaming(plugins=[svrnty_events_jsonl.plugin])
    streaming.add_stream("orders")
    streaming.add_subscription("orders", "audit", redelivery_delay=0.05)
    streaming.add_delivery("jsonl", path=str(path), subscriptions=["audit"])
    async with streaming.run() as host:
        await host.publish("orders", orders(1), external=False)
        await asyncio.sleep(0.2)
        path.parent.mkdir()
        [line] = await within(read_lines(path, 1))
    assert line["attempt"] > 1
