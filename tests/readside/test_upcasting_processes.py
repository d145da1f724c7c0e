"""Event versions across processes: a SQLite file written by one process with ``UserAdded``
version 1 is read by a second process whose ``UserAdded`` is version 2 with an upcaster. Every
path hands over version-2 objects: an in-process consumer, catch-up from the beginning, replay
(``iter_events``), a workflow rebuilt from a snapshot, dead-letter replay and a remote gRPC
consumer; an event with no upcaster path, or newer than the code knows, is dead-lettered with
the reason.

The two programs are written to the test's temporary folder (each defines its own
``UserAdded``, so they never share a process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

WRITER = textwrap.dedent('''
    import asyncio, json, sys
    import msgspec
    from svrnty_events import Event, EventStreaming, Workflow
    from svrnty_events.replay import rebuild

    class UserAdded(Event):
        name: str

    class UpcOrphanNoted(Event):            # the reader is version 3 with no 1 -> 2 step
        note: str

    class UpcFromTheFuture(Event, version=4):  # the reader knows only version 1
        what: str

    class AddUser(msgspec.Struct):
        name: str

    class UpcUserWorkflow(Workflow):
        pass

    streaming = EventStreaming(store="sqlite", store_options={"path": sys.argv[1]})
    streaming.add_stream(UpcUserWorkflow, name="users", type="persistent")
    for name in ("live", "catchup", "audit", "remote", "strict"):
        streaming.add_subscription("users", name, mode="broadcast")

    @streaming.command_handler(AddUser, workflow=UpcUserWorkflow)
    def add_user(command, workflow):
        workflow.emit(UserAdded(name=command.name))

    def fold(state, event):
        return [*state, event.decode().name]

    async def main():
        async with streaming.run() as host:
            first = await host.send(AddUser(name="ada"))
            for name in ("bob", "cy"):
                await host.send(AddUser(name=name), workflow_id=first.workflow_id)
            # a snapshot of the first three events, taken by version 1 code
            snap = await rebuild(host.store, "users", first.workflow_id, fold, [],
                                 snapshot_every=1)
            assert snap.state == ["ada", "bob", "cy"], snap
            for name in ("dee", "eve"):
                await host.send(AddUser(name=name), workflow_id=first.workflow_id)
            # the audit consumer dead-letters every event (a bug of the time, say)
            async with host.subscribe("audit", "auditor", auto_ack=False) as deliveries:
                for _ in range(5):
                    d = await deliveries.next(timeout=30)
                    await d.dead_letter("audit was broken")
            from svrnty_events.events import record
            await host.publish("users", [
                record(UpcOrphanNoted(note="n"), stream="users", correlation_id="o"),
                record(UpcFromTheFuture(what="w"), stream="users", correlation_id="f")],
                external=False)
        print(json.dumps({"workflow_id": first.workflow_id}))

    asyncio.run(main())
''')

READER = textwrap.dedent('''
    import asyncio, json, sys
    import msgspec
    from svrnty_events import Event, EventStreaming
    from svrnty_events.replay import iter_events, rebuild
    from svrnty_events_grpc.client import EventClient

    class UserAdded(Event, version=2):
        full_name: str
        email: str = ""

    class UpcOrphanNoted(Event, version=3):
        note: str
        level: int

    class UpcFromTheFuture(Event):
        what: str

    streaming = EventStreaming(store="sqlite", store_options={"path": sys.argv[1]})
    streaming.add_stream("users", type="persistent")
    for name in ("live", "catchup", "audit", "remote", "strict"):
        streaming.add_subscription("users", name, mode="broadcast")
    streaming.add_delivery("grpc", host="127.0.0.1", port=0)
    streaming.register_event_types(UserAdded, UpcOrphanNoted, UpcFromTheFuture)

    @streaming.upcaster("UserAdded", from_version=1)
    def user_added_1_to_2(payload):
        return {"full_name": payload.pop("name"), **payload}

    @streaming.upcaster("UpcOrphanNoted", from_version=2)   # 1 -> 2 is missing
    def orphan_2_to_3(payload):
        return {**payload, "level": 0}

    def describe(event):
        return [type(event).__name__, event.full_name]

    async def take(deliveries, n, ack=True):
        got = []
        for _ in range(n):
            d = await deliveries.next(timeout=30)
            assert d is not None, got
            got.append([*describe(d.event), d.record.version])
            if ack:
                await d.ack()
        return got

    async def main():
        out = {}
        async with streaming.run() as host:
            async with host.subscribe("live", "c1") as deliveries:
                out["in_process"] = await take(deliveries, 5)
            async with host.subscribe("catchup", "late", start=0) as deliveries:
                out["catch_up"] = await take(deliveries, 5)
            out["iter_events"] = [
                [*describe(e.decode()), e.version]
                async for e in iter_events(host.store, "users", event_types=["UserAdded"],
                                           upcast=host.streaming.event_types)]
            rebuilt = await rebuild(
                host.store, "users", sys.argv[2],
                lambda state, e: [*state, e.decode().full_name], [], snapshot_every=None,
                upcast=host.streaming.event_types)
            out["rebuild"] = {"state": rebuilt.state, "from_snapshot": rebuilt.from_snapshot,
                              "replayed": rebuilt.replayed}
            out["replayed_dead_letters"] = await host.replay_dead_letters("audit")
            async with host.subscribe("audit", "auditor") as deliveries:
                out["dead_letter_replay"] = await take(deliveries, 5)
            port = host.providers["grpc"].port
            async with EventClient(f"127.0.0.1:{port}") as client:
                async with client.subscribe("remote", "r1", auto_ack=False) as remote:
                    got = []
                    for _ in range(5):
                        d = await remote.next(timeout=30)
                        got.append([*describe(d.event), d.message.version,
                                    json.loads(d.data)["full_name"]])
                        await d.ack()
                    out["grpc"] = got
            # the strict consumer: five readable events, the two others dead-lettered
            async with host.subscribe("strict", "s1") as deliveries:
                out["strict"] = await take(deliveries, 5)
                async def dead():
                    while len(await host.dead_letters("strict")) < 2:
                        await asyncio.sleep(0.02)
                await asyncio.wait_for(dead(), 30)
                out["nothing_more"] = await deliveries.next(timeout=0.5) is None
            out["dead_letters"] = [
                {"type": dl.event.type, "reason": dl.reason, "error": dl.error,
                 "id": dl.event.id, "version": dl.event.version}
                for dl in await host.dead_letters("strict")]
        print(json.dumps(out))

    asyncio.run(main())
''')


def _run(script: Path, *args: str) -> dict:
    env = {**os.environ, "SVRNTY_EVENTS_PLUGINS": "sqlite,grpc"}
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_file_written_with_version_1_reads_as_version_2_on_every_path(tmp_path: Path) -> None:
    writer, reader = tmp_path / "writer.py", tmp_path / "reader.py"
    writer.write_text(WRITER)
    reader.write_text(READER)
    db = str(tmp_path / "events.db")
    workflow_id = _run(writer, db)["workflow_id"]
    out = _run(reader, db, workflow_id)

    names = ["ada", "bob", "cy", "dee", "eve"]
    v2 = [["UserAdded", n, 2] for n in names]
    assert out["in_process"] == v2
    assert out["catch_up"] == v2
    assert out["iter_events"] == v2
    # the snapshot (taken by version-1 code) holds the first three; the two later version-1
    # events are upcast as they are folded in
    assert out["rebuild"] == {"state": names, "from_snapshot": 3, "replayed": 2}
    assert out["replayed_dead_letters"] == 5
    assert out["dead_letter_replay"] == v2
    assert out["grpc"] == [["UserAdded", n, 2, n] for n in names]
    assert out["strict"] == v2 and out["nothing_more"]

    letters = {dl["type"]: dl for dl in out["dead_letters"]}
    assert set(letters) == {"UpcOrphanNoted", "UpcFromTheFuture"}
    orphan, future = letters["UpcOrphanNoted"], letters["UpcFromTheFuture"]
    assert orphan["error"] == future["error"] == "EventVersionError"
    assert orphan["id"] in orphan["reason"] and "UpcOrphanNoted" in orphan["reason"]
    assert "no upcaster from version 1" in orphan["reason"]
    assert "the class is version 3" in orphan["reason"]
    assert future["version"] == 4
    assert future["id"] in future["reason"]
    assert "stored version 4 is newer than version 1" in future["reason"]
