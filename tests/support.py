"""Helpers shared by the kernel tests: in-process plugin objects and subprocess helpers."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from svrnty_events import hookimpl
from svrnty_events.store import Capabilities
from svrnty_events_memory import MemoryStore, MemoryStoreOptions

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]

#: bound of every wait on the system under test (in-process)
TIMEOUT = 10.0
#: bound of every subprocess the tests run
SUBPROCESS_TIMEOUT = 60.0

#: the console script of the environment running the tests
CLI = str(Path(sys.executable).with_name("svrnty-events"))


async def within(aw: Awaitable[T], timeout: float = TIMEOUT) -> T:
    """Await with a timeout, so a hung test fails instead of hanging."""
    return await asyncio.wait_for(aw, timeout)


class InProcessPlugin:
    """A plugin object (hashable, as pluggy needs) whose hook implementations are attributes."""

    def __init__(self, name: str, hooks: dict[str, Callable[..., Any]]) -> None:
        # pluggy names a plugin by its __name__
        self.__name__ = name
        for hook, function in hooks.items():
            setattr(self, hook, hookimpl(function))

    def __repr__(self) -> str:
        return f"<plugin {self.__name__}>"


def plugin(name: str, **hooks: Callable[..., Any]) -> InProcessPlugin:
    """An in-process plugin named ``name`` implementing ``hooks``. The functions' argument names
    are what pluggy validates against the hookspecs, exactly as for a module plugin."""
    return InProcessPlugin(name, hooks)


def store_plugin(store_name: str = "memory", factory: Any = MemoryStore, *,
                 options: type | None = MemoryStoreOptions,
                 name: str = "test-stores") -> InProcessPlugin:
    """A plugin registering one event store (the in-memory store unless told otherwise)."""

    def register_event_stores(register):  # type: ignore[no-untyped-def]
        register(store_name, factory, options=options)

    return plugin(name, register_event_stores=register_event_stores)


class NoDedupStore(MemoryStore):
    """A store that declares it cannot deduplicate appends (so cannot give exactly_once)."""

    capabilities = Capabilities(durable=False, idempotent_append=False, shared=False)


class RecordingStore(MemoryStore):
    """The in-memory store, noting when it is started and closed."""

    started: list[RecordingStore] = []

    async def start(self) -> None:
        RecordingStore.started.append(self)
        self.closed = False
        await super().start()

    async def close(self) -> None:
        self.closed = True
        await super().close()


def subprocess_env(**overrides: str | None) -> dict[str, str]:
    """The environment of a child process: ours, with ``overrides`` (None removes a key)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


class ServeProcess:
    """``svrnty-events serve`` as a child process, read until its banner is printed."""

    BANNER = b"svrnty-events host started\n"

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.head = ""

    @classmethod
    async def start(cls, cli: str, config: Path, env: dict[str, str]) -> ServeProcess:
        proc = await asyncio.create_subprocess_exec(
            cli, "serve", "--config", str(config), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return cls(proc)

    async def wait_for_banner(self, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        try:
            data = await within(self.proc.stdout.readuntil(self.BANNER), timeout)
        except asyncio.IncompleteReadError as exc:  # the process ended before the banner
            _, err = await within(self.proc.communicate(), timeout)
            raise AssertionError(f"serve exited ({self.proc.returncode}) before the banner; "
                                 f"stdout: {exc.partial!r}, stderr: {err.decode()}") from None
        self.head = data.decode()

    async def finish(self, timeout: float = 15.0) -> tuple[int, str, str]:
        """Wait for the process to exit; return (exit code, all of stdout, stderr)."""
        out, err = await within(self.proc.communicate(), timeout)
        assert self.proc.returncode is not None
        return self.proc.returncode, self.head + out.decode(), err.decode()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await within(self.proc.wait(), 10)
