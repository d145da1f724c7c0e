"""``svrnty-events subscribe`` and ``svrnty-events dlq`` as real processes against a host run by
``svrnty-events serve`` in another process."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import pty
import signal
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import OrderPlaced, within

from svrnty_events.events import record

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

[[streams]]
name = "journal"
type = "persistent"
scope = "cross_service"

[[subscriptions]]
name = "feed"                # a broadcast on a persistent stream: each consumer's cursor is kept
stream = "journal"
mode = "broadcast"

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
    # stdin is no terminal, as in a script or CI, whatever runs the tests
    proc = await asyncio.create_subprocess_exec(
        *_command(), *args, env=_env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
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
        seen: list[str] = []
        while endpoint is None:
            line = (await within(proc.stdout.readline(), 20)).decode()
            assert line, "serve exited before printing its endpoint:\n" + "".join(seen)
            seen.append(line)
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
    for dl in letters:
        # the attempt count once, the group and the consumer it was dead-lettered from
        assert "attempt" not in dl and dl["attempts"] == 1
        assert dl["group"] == "" and dl["consumer_id"] == "f" and dl["subscription"] == "fragile"
        assert dl["data"]["amount"] == 1.0 and dl["dead_lettered_at"]
    code, out, err = await _run("dlq", "list", "--target", served, "fragile")
    assert code == 0, err
    for p in published:
        assert f"{p.id} OrderPlaced #{p.sequence} group=(shared) consumer=f attempts=1 " \
               "reason='broken'" in out.splitlines()
    code, out, err = await _run("dlq", "replay", "--target", served, "fragile", "--event-id",
                                published[0].id)
    assert (code, out.strip()) == (0, "replayed 1 dead letter(s) of fragile"), err
    # purge asks first; with no terminal to ask on, it refuses without --yes and deletes nothing
    code, out, err = await _run("dlq", "purge", "--target", served, "fragile")
    assert (code, out) == (2, "")
    assert "refusing to delete every dead letter of fragile without --yes" in err
    code, out, err = await _run("dlq", "list", "--target", served, "fragile")
    assert code == 0 and "1 dead letter(s)" in out
    code, out, err = await _run("dlq", "purge", "--target", served, "fragile", "--yes")
    assert (code, out.strip()) == (0, "purged 1 dead letter(s) of fragile"), err
    code, out, err = await _run("dlq", "list", "--target", served, "fragile")
    assert code == 0 and "0 dead letter(s)" in out


async def _dead_letters(served: str, count: int) -> list[Any]:
    async with EventClient(served) as client:
        await within(client.publish("inbox", [
            OrderPlaced(order_id=i, amount=1.0) for i in range(count)]))
        async with client.subscribe("fragile", "f", auto_ack=False) as deliveries:
            for _ in range(count):
                await (await within(deliveries.__anext__())).nack(reason="broken")

        async def settled() -> list[Any]:
            while len(letters := await client.dead_letters("fragile")) < count:
                await asyncio.sleep(0.02)
            return letters

        return await within(settled(), 20)


@pytest.mark.parametrize(("answer", "code", "left"), [("y\n", 0, 0), ("n\n", 1, 1),
                                                      ("\n", 1, 1)])
async def test_dlq_purge_asks_on_a_terminal(served, answer: str, code: int, left: int):
    await _dead_letters(served, 1)
    leader, follower = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            *_command(), "dlq", "purge", "--target", served, "fragile", env=_env(),
            stdin=follower, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        os.close(follower)
        follower = -1
        os.write(leader, answer.encode())
        out, err = await within(proc.communicate(), 20)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == code, err
    if code == 0:
        assert out.decode().strip() == "purged 1 dead letter(s) of fragile"
    else:
        assert out == b"" and b"nothing deleted" in err
    async with EventClient(served) as client:
        assert len(await within(client.dead_letters("fragile"))) == left


async def _subscriber(served: str, consumer: str, *args: str,
                      consumer_env: bool = False) -> asyncio.subprocess.Process:
    """``subscribe --json`` to ``feed`` as a process, returned once the server has its
    consumer. With ``consumer_env`` the id comes from $SVRNTY_EVENTS_CONSUMER."""
    named = [] if consumer_env else ["--consumer", consumer]
    env = {**_env(), "SVRNTY_EVENTS_CONSUMER": consumer} if consumer_env else _env()
    proc = await asyncio.create_subprocess_exec(
        *_command(), "subscribe", "--target", served, "feed", *named, "--json", *args,
        env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    async with EventClient(served) as client:
        async def connected() -> None:
            while consumer not in {c["consumer_id"] for c in await client.consumers("feed")}:
                if proc.returncode is not None:
                    return
                await asyncio.sleep(0.02)
        await within(connected(), 20)
    return proc


async def _printed(proc: asyncio.subprocess.Process) -> list[dict[str, Any]]:
    out, err = await within(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


async def _publish(served: str, *order_ids: int, timestamps: list[datetime] | None = None
                   ) -> list[Any]:
    events = [record(OrderPlaced(order_id=i, amount=1.0), stream="journal",
                     correlation_id="wf") for i in order_ids]
    if timestamps:
        events = [msgspec.structs.replace(e, timestamp=t) for e, t in zip(events, timestamps)]
    async with EventClient(served) as client:
        return await within(client.publish("journal", events))


async def test_subscribe_new_only_skips_the_history_of_a_broadcast(served):
    await _publish(served, 0, 1, 2)
    proc = await _subscriber(served, "late", "--new-only", "--max-events", "1")
    [fresh] = await _publish(served, 3)
    [printed] = await _printed(proc)
    assert printed["id"] == fresh.id and printed["sequence"] == 3


async def test_subscribe_from_a_sequence_or_a_time(served):
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    published = await _publish(served, 0, 1, 2, 3,
                               timestamps=[base + timedelta(minutes=i) for i in range(4)])
    code, out, err = await _run("subscribe", "--target", served, "feed", "--from-sequence", "2",
                                "--max-events", "2", "--json")
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == [p.id for p in published[2:]]
    # an ISO 8601 time, with an offset or (UTC) without
    for when in ("2026-01-01T00:00:30Z", "2026-01-01T01:00:30+01:00", "2026-01-01T00:00:30"):
        code, out, err = await _run("subscribe", "--target", served, "feed", "--from-time",
                                    when, "--max-events", "1", "--json")
        assert code == 0, err
        assert [json.loads(line)["id"] for line in out.splitlines()] == [published[1].id], when


async def test_subscribe_with_one_consumer_id_resumes_instead_of_replaying(served):
    published = await _publish(served, 0, 1, 2)
    code, out, err = await _run("subscribe", "--target", served, "feed", "--consumer-id",
                                "durable", "--max-events", "2", "--json")
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == [p.id for p in published[:2]]
    # the same id again: on from the last acked event, not the whole history again
    code, out, err = await _run("subscribe", "--target", served, "feed", "--consumer",
                                "durable", "--max-events", "1", "--json")
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == [published[2].id]
    # the id from the environment does the same
    env_proc = await _subscriber(served, "durable", "--max-events", "1", consumer_env=True)
    [later] = await _publish(served, 3)
    assert [e["id"] for e in await _printed(env_proc)] == [later.id]
    # a start position applies to a new consumer only: "durable" goes on where it was
    proc = await _subscriber(served, "durable", "--from-beginning", "--max-events", "1")
    [latest] = await _publish(served, 4)
    assert [e["id"] for e in await _printed(proc)] == [latest.id]
    # while a new consumer id replays from the beginning
    code, out, err = await _run("subscribe", "--target", served, "feed", "--consumer", "fresh",
                                "--from-beginning", "--max-events", "1", "--json")
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == [published[0].id]


@pytest.mark.parametrize(("args", "message"), [
    (["--max-events", "0"], "argument --max-events: must be >= 1, got 0"),
    (["--max-events", "x"], "argument --max-events: expected an integer"),
    (["--from-sequence", "-1"], "argument --from-sequence: must be >= 0"),
    (["--from-time", "yesterday"], "argument --from-time: expected an ISO 8601 time"),
    (["--new-only", "--from-sequence", "3"], "not allowed with argument"),
    (["--from-beginning", "--from-time", "2026-01-01T00:00:00Z"], "not allowed with argument"),
])
async def test_subscribe_usage_errors_exit_2(args: list[str], message: str):
    # no host needed: argparse refuses before connecting
    code, out, err = await _run("subscribe", "--target", "127.0.0.1:9", "feed", *args)
    assert (code, out) == (2, "")
    assert err.startswith("usage: svrnty-events subscribe") and message in err


async def test_other_usage_errors_exit_2(tmp_path):
    for args, message in ((["dlq", "list", "feed", "--limit", "0"], "--limit: must be >= 1"),
                          (["dlq", "purge"], "required: SUBSCRIPTION"),
                          (["subscribe", "feed", "--ca", str(tmp_path / "absent.pem")],
                           "--ca: No such file or directory")):
        code, out, err = await _run(*args)
        assert (code, out) == (2, ""), (args, err)
        assert message in err and "Traceback" not in err


async def test_stats_prints_lag_in_flight_consumers_and_dead_letters(served):
    async with EventClient(served) as client:
        await within(client.publish("inbox", [OrderPlaced(order_id=n, amount=1.0)
                                              for n in range(5)]))
        # fragile: 2 dead-lettered (one attempt each), the rest never claimed
        async with client.subscribe("fragile", "f", auto_ack=False, window=2) as deliveries:
            for _ in range(2):
                await (await within(deliveries.__anext__())).nack(reason="broken")
        for _ in range(200):
            if len(await within(client.dead_letters("fragile"))) == 2:
                break
            await asyncio.sleep(0.02)
        # readers: one held (in flight) by a connected consumer, one acked
        async with client.subscribe("readers", "r", auto_ack=False, window=1) as deliveries:
            first = await within(deliveries.__anext__())
            await first.ack()
            held = await within(deliveries.__anext__())
            assert held.id != first.id
            code, out, err = await _run("stats", "--target", served, "--json")
            assert code == 0, err
            stats = {s["subscription"]: s for s in json.loads(out)}
            code, text, err = await _run("stats", "--target", served)
            assert code == 0, err
    assert set(stats) == {"readers", "feed", "fragile"}
    readers, fragile = stats["readers"], stats["fragile"]
    # 5 appended; readers acked 1, holds 1 in flight: 4 not settled
    assert (readers["lag"], readers["groups"], readers["in_flight"], readers["consumers"],
            readers["dead_letters"]) == (4, {"": 4}, 1, 1, 0)
    # fragile settled 2 by dead-lettering them; nobody is connected
    assert (fragile["lag"], fragile["in_flight"], fragile["consumers"],
            fragile["dead_letters"]) == (3, 0, 0, 2)
    assert 0 <= fragile["oldest_dead_letter_age"] < 60
    lines = text.splitlines()
    assert lines[0].split() == ["subscription", "mode", "lag", "in", "flight", "consumers",
                                "dead", "letters", "oldest", "dead", "letter"]
    row = next(line.split() for line in lines if line.startswith("readers "))
    assert row[:6] == ["readers", "exclusive", "4", "1", "1", "0"]
    row = next(line.split() for line in lines if line.startswith("fragile "))
    assert row[:6] == ["fragile", "exclusive", "3", "0", "0", "2"]


async def test_stats_watch_refreshes_until_interrupted(served):
    proc = await asyncio.create_subprocess_exec(
        *_command(), "stats", "--target", served, "--watch", "--interval", "0.2", env=_env(),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        tables = 0
        while tables < 2:  # two refreshes: two tables, each under a time-and-target line
            line = (await within(proc.stdout.readline(), 20)).decode()
            assert line, "stats --watch exited early"
            assert "\x1b[" not in line  # stdout is not a terminal: no escapes
            if line.split()[:1] == ["subscription"]:
                tables += 1
        proc.send_signal(signal.SIGINT)
        assert await within(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_stats_of_an_unreachable_host_is_one_clear_error():
    code, out, err = await _run("stats", "--target", "127.0.0.1:1", "--timeout", "5")
    assert code == 2 and out == ""
    assert err.startswith("svrnty-events: error: UNAVAILABLE") and len(err.splitlines()) == 1
