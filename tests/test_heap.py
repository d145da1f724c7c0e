"""A started host freezes its start-up heap once per process (HostConfig.gc_freeze): what was
alive then leaves the collector's full passes, what is created afterwards is collected as
before. Each case runs in a fresh interpreter (the freeze is once per process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from .support import SUBPROCESS_TIMEOUT, subprocess_env

SCRIPT = textwrap.dedent("""
    import asyncio, gc, json, sys, weakref
    from svrnty_events import EventStreaming
    from svrnty_events.heap import freeze_startup_heap

    class Node:
        pass

    def cycle():
        a, b = Node(), Node()
        a.other, b.other = b, a
        return weakref.ref(a)

    async def main(options):
        if options.get("disable"):
            gc.disable()
        before = cycle()          # cyclic garbage from before the start: collected, not frozen
        streaming = EventStreaming()
        streaming.add_stream("s", type="persistent")
        streaming.add_subscription("s", "sub")
        if "gc_freeze" in options:
            streaming.config.gc_freeze = options["gc_freeze"]
        async with streaming.run() as host:
            frozen = gc.get_freeze_count()
            after = cycle()       # cyclic garbage from after the start: collected as before
            gc.collect()
            again = freeze_startup_heap()
        async with streaming.run():
            second = gc.get_freeze_count()
        print(json.dumps({"frozen": frozen, "second": second, "again": again,
                          "before_freed": before() is None, "after_freed": after() is None}))

    asyncio.run(main(json.loads(sys.argv[1])))
""")


def run(**options: object) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(options)],
                         capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
                         env=subprocess_env(SVRNTY_EVENTS_PLUGINS="memory"))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_a_started_host_freezes_its_start_up_heap_once_and_later_garbage_is_collected():
    r = run()
    # tens of thousands of objects (modules, classes, plugins) leave the full passes
    assert r["frozen"] > 10_000, r
    # once per process: a second start and a second call freeze nothing more (the count may
    # fall: a frozen object without a cycle is still freed by its reference count)
    assert r["second"] <= r["frozen"] and r["again"] is False, r
    # garbage from before the start was collected first, not frozen; later garbage is collected
    assert (r["before_freed"], r["after_freed"]) == (True, True), r


def test_gc_freeze_false_leaves_the_collector_alone():
    r = run(gc_freeze=False)
    # the host froze nothing: the first explicit call is the one that freezes
    assert (r["frozen"], r["again"]) == (0, True), r
    assert r["after_freed"] is True, r


def test_a_process_that_disabled_the_collector_is_left_as_it_is():
    r = run(disable=True)
    assert (r["frozen"], r["again"]) == (0, False), r
