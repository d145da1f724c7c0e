"""Modes that agree across hosts: the task that syncs a mode with the store's leases."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import TYPE_CHECKING

from ..modes import Leases
from ..store import SHARED_GROUP

if TYPE_CHECKING:
    from .engine import SubscriptionEngine, SubscriptionRuntime

log = logging.getLogger("svrnty_events.subscriptions")


async def sync_loop(engine: SubscriptionEngine, runtime: SubscriptionRuntime) -> None:
    """Sync the mode every ``sync_interval`` (or when poked) while this host has consumers in
    the shared group or the mode is ``lingering``; a last time after that, then stop."""
    mode = runtime.mode
    interval = mode.sync_interval or 1.0
    leases = Leases(engine.store, runtime.name, SHARED_GROUP)
    failures = 0
    loop = asyncio.get_running_loop()
    while True:
        runtime.sync_poke.clear()
        begun = loop.time()
        try:
            if await mode.sync(leases):
                runtime.changes.bump()
                engine.store.notify(runtime.name)
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the store is away, or a mode bug: retry
            failures += 1
            log.warning("could not sync the %s mode of %s with the store (%s: %s); retrying",
                        type(mode).__name__, runtime.name, type(exc).__name__, exc)
        if failures == 0 and not mode.lingering and \
                not any(not c.private for c in runtime.consumers.values()):
            return
        # at a fixed rate: leases are renewed every interval whatever a sync takes
        delay = max(interval - (loop.time() - begun), 0.0) if failures == 0 \
            else min(interval, 0.05 * 2 ** failures)
        with suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await runtime.sync_poke.wait()
