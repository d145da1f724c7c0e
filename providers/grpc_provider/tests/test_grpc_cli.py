"""``svrnty-events subscribe`` and ``svrnty-events dlq`` as real processes against a host run by
``svrnty-events serve`` in another process."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import OrderPlaced, within

from svrnty_events_grpc import EventClient

CONFIG = """
[store]
plugin = "memory"

[[streams]]
name = "inbox"
type = "ephemeral"
scope = "cross_service"

[[subscriptions]]
name = "readers"
stream = "inbox"
mode = "exclusive"

[[subscriptions]]
name = "fragile"
stream = "inbox"
mode = "exclusive"
max_delivery_attempts = 1

[delivery.grpc]
host = "127.0.0.1"
port = 0
"""


def _command() -> list[str]:
    exe = shutil.which("svrnty-events", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "svrnty_events.cli"]


def _env() -> dict[str, str]:
    return {**os.environ, "SVRNTY_EVENTS_PLUGINS": "memory,grpc"}


async def _run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *_command(), *args, env=_env(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await within(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await within(proc.wait())
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def served(tmp_path) -> AsyncIterator[str]:
    """A host in a ``svrnty-events serve`` process; yields its endpoint from the banner."""
    config = tmp_path / "svrnty-events.toml"
    config.write_text(CONFIG)
    proc = await asyncio.create_subprocess_exec(
        *_command(), "serve", "--config", str(config), env=_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        endpoint = None
        while endpoint is None:
            line = (await within(proc.stdout.readline(), 20)).decode()
            assert line, "serve exited before printing its endpoint"
            if "endpoint:" in line:
                endpoint = line.split("endpoint:")[1].strip()
        assert endpoint.startswith("grpc://127.0.0.1:")
        yield endpoint
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await within(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await within(proc.wait())


async def test_subscribe_prints_json_and_acks(served):
    async with EventClient(served) as client:
        published = await within(client.publish("inbox", [
            OrderPlaced(order_id=i, amount=1.5) for i in range(3)], correlation_id="wf-cli"))
    target = served.removeprefix("grpc://")
    code, out, err = await _run("subscribe", "--target", target, "readers", "--consumer", "cli",
                                "--max-events", "2", "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["id"] for e in lines] == [p.id for p in published[:2]]
    assert lines[0] == {"id": published[0].id, "type": "OrderPlaced",
                        "correlation_id": "wf-cli", "stream": "inbox", "sequence": 0,
                        "attempt": 1, "data": {"order_id": 0, "amount": 1.5, "items": []}}
    # the two printed events were acked; the third was never taken
    code, out, err = await _run("subscribe", "--target", target, "readers", "--max-events",
                                "1", "--json")
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == [published[2].id]


async def test_subscribe_to_an_unknown_subscription_fails_naming_it(served):
    code, out, err = await _run("subscribe", "--target", served, "nope", "--max-events", "1")
    assert code != 0 and "NOT_FOUND" in err and "nope" in err


async def test_dlq_list_replay_purge(served):
    async with EventClient(served) as client:
        published = await within(client.publish("inbox", [
            OrderPlaced(order_id=1, amount=1.0), OrderPlaced(order_id=2, amount=1.0)]))
        async with client.subscribe("fragile", "f", auto_ack=False) as deliveries:
            for _ in range(2):
                await (await within(deliveries.__anext__())).nack(reason="broken")
        for _ in range(100):
            if len(await within(client.dead_letters("fragile"))) == 2:
                break
            await asyncio.sleep(0.02)
    code, out, err = await _run("dlq", "list", "--target", served, "fragile", "--json")
    assert code == 0, err
    letters = json.loads(out)
    assert sorted(dl["id"] for dl in letters) == sorted(p.id for p in published)
    assert {dl["reason"] for dl in letters} == {"broken"}
    code, out, err = await _run("dlq", "replay", "--target", served, "fragile", "--event-id",
                                published[0].id)
    assert (code, out.strip()) == (0, "replayed 1 dead letter(s) of fragile"), err
    code, out, err = await _run("dlq", "purge", "--target", served, "fragile")
    assert (code, out.strip()) == (0, "purged 1 dead letter(s) of fragile"), err
    code, out, err = await _run("dlq", "list", "--target", served, "fragile")
    assert code == 0 and "0 dead letter(s)" in out
