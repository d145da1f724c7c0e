"""``svrnty-events projection status|rebuild|reset`` as real processes against a host process
with a projection, over the gRPC admin API: the lag is the true count of unread events, reset
projects again from a position, rebuild clears the view and prints a progress line."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from svrnty_events.testing.helpers import within

EVENTS = 2000
GATE = 1500

HOST = textwrap.dedent(f'''
    import asyncio, json, os, sys
    from pathlib import Path
    from svrnty_events import Event, EventStreaming
    from svrnty_events.events import record

    class ProjCliCounted(Event):
        n: int

    folder = Path(sys.argv[1])
    streaming = EventStreaming(store="memory")
    streaming.add_stream("cli-users", type="persistent")
    streaming.add_delivery("grpc", host="127.0.0.1", port=0)
    view = {{"count": 0}}

    def save():
        tmp = folder / "view.tmp"
        tmp.write_text(json.dumps(view))
        os.replace(tmp, folder / "view.json")

    @streaming.projection("cli-counts", stream="cli-users", batch_size=100)
    async def counts(event, ctx):
        # held at event {GATE} until the test lets it go: the status then shows a known lag
        while ctx.position == {GATE} and not (folder / "release").exists():
            await asyncio.sleep(0.01)
        view["count"] += 1
        save()

    @counts.on_reset
    def clear(_):
        view["count"] = 0
        save()

    async def main():
        async with streaming.run() as host:
            await host.publish("cli-users", [
                record(ProjCliCounted(n=i), stream="cli-users", correlation_id=f"c{{i}}")
                for i in range({EVENTS})], external=False)
            print("endpoint:", host.endpoints()[0], flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())
''')


def _command() -> list[str]:
    exe = shutil.which("svrnty-events", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "svrnty_events.cli"]


def _env() -> dict[str, str]:
    return {**os.environ, "SVRNTY_EVENTS_PLUGINS": "memory,grpc"}


async def _cli(target: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *_command(), "projection", *args, "--target", target, env=_env(),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await within(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await within(proc.wait())
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    script = tmp_path / "host.py"
    script.write_text(HOST)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(tmp_path), env=_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        line = (await within(proc.stdout.readline(), 30)).decode()
        assert "endpoint:" in line, line
        yield line.split("endpoint:")[1].strip().removeprefix("grpc://"), tmp_path
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await within(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await within(proc.wait())


async def _status(target: str) -> dict:
    code, out, err = await _cli(target, "status", "cli-counts", "--json")
    assert code == 0, err
    [status] = json.loads(out)
    return status


async def _until(target: str, check, timeout: float = 60) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await _status(target)
        if check(status):
            return status
        assert loop.time() < deadline, status
        await asyncio.sleep(0.05)


def _view(folder: Path) -> int:
    return json.loads((folder / "view.json").read_text())["count"]


async def test_projection_status_reset_and_rebuild_through_the_cli(served) -> None:
    target, folder = served
    # held at GATE: exactly the events from GATE on are unread
    status = await _until(target, lambda s: s["position"] == GATE and _view(folder) == GATE)
    assert status["lag"] == EVENTS - GATE and status["state"] in ("running", "caught_up")
    code, out, _ = await _cli(target, "status")
    assert code == 0 and f"cli-counts stream=cli-users position={GATE} lag={EVENTS - GATE}" in out

    (folder / "release").touch()
    status = await _until(target, lambda s: s["lag"] == 0)
    assert status["position"] == EVENTS and _view(folder) == EVENTS

    code, out, err = await _cli(target, "reset", "cli-counts", "--position", str(EVENTS - 10))
    assert code == 0, err
    assert out.startswith("reset cli-counts")
    await _until(target, lambda s: s["position"] == EVENTS and _view(folder) == EVENTS + 10)

    code, out, err = await _cli(target, "rebuild", "cli-counts")
    assert code == 0, err
    progress = [line for line in err.splitlines() if line.startswith("rebuilding cli-counts: ")]
    assert progress and progress[0].startswith(f"rebuilding cli-counts: 0/{EVENTS} events")
    assert progress[-1] == f"rebuilding cli-counts: {EVENTS}/{EVENTS} events (100%)"
    assert f"rebuilt cli-counts stream=cli-users position={EVENTS} lag=0" in out
    assert _view(folder) == EVENTS  # cleared, then every event once


async def test_unknown_projection_and_bad_position_are_clear_errors(served) -> None:
    target, _ = served
    code, _, err = await _cli(target, "status", "nope")
    assert code == 2 and 'NOT_FOUND: name: unknown projection "nope"; projections: cli-counts' in err
    code, _, err = await _cli(target, "rebuild", "nope")
    assert code == 2 and 'unknown projection "nope"' in err
    code, _, err = await _cli(target, "reset", "cli-counts", "--position", "-3")
    assert code == 2 and "--position" in err
