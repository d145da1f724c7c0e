"""Start a coroutine at once, as a task only if it has to wait (what Python 3.12's eager task
factory does, for one call). The engine shields claims and acks from the cancellation of their
caller by running them as tasks; most claims and acks of an in-process store never wait, and a
task for each would cost several turns of the event loop."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


def start(coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """Run ``coro`` up to its first wait now. Returns a future: done already when ``coro``
    finished without waiting, else a task that goes on from where it stopped. Either way the
    coroutine runs to its end whatever happens to the caller (shield the future to wait for it)."""
    loop = asyncio.get_running_loop()
    try:
        pending = coro.send(None)
    except StopIteration as stop:
        done: asyncio.Future[T] = loop.create_future()
        done.set_result(stop.value)
        return done
    except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future
        failed: asyncio.Future[T] = loop.create_future()
        if isinstance(exc, asyncio.CancelledError):
            failed.cancel()
        else:
            failed.set_exception(exc)
        return failed
    return asyncio.ensure_future(_go_on(coro, pending))


@types.coroutine
def _go_on(coro: Coroutine[Any, Any, T], pending: Any) -> Generator[Any, Any, T]:
    """Hand the task what ``coro`` waits on, then drive ``coro`` as the task would have."""
    while True:
        try:
            value = yield pending
        except BaseException as exc:  # noqa: BLE001 - thrown into the coroutine, as a task does
            try:
                pending = coro.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            try:
                pending = coro.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
