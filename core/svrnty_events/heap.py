"""Keep the garbage collector's full passes short in a long-running process.

CPython's collector walks every tracked object in a full (generation 2) pass. A host process
holds tens of thousands of them from its start alone (modules, classes, functions, the plugins
and their libraries: about 70,000 with the gRPC provider loaded), and a full pass over those
took 25-40 ms on a 2-vCPU machine: every delivery in flight waits that long, once every few
seconds under load, which is what a p99 latency measures. Nearly all of these objects live as
long as the process, so :func:`freeze_startup_heap` moves them out of the collector's reach
once (``gc.freeze()``, after one full collection so that no garbage is frozen with them).
Objects created afterwards are collected as before.

A host does this once it has started, unless ``HostConfig.gc_freeze`` is false. A client
process (one that only consumes through the gRPC client, say) may call it itself once it has
imported and connected what it needs.
"""

from __future__ import annotations

import gc

_frozen = False


def freeze_startup_heap() -> bool:
    """Collect once, then freeze everything alive (``gc.freeze()``); once per process, and not
    when the collector is disabled. Returns whether it froze now."""
    global _frozen
    if _frozen or not gc.isenabled():
        return False
    _frozen = True
    gc.collect()
    gc.freeze()
    return True
