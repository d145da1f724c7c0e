"""Fixtures of the kernel tests.

In-process tests never depend on whatever happens to be installed: SVRNTY_EVENTS_PLUGINS is set
to ``memory`` for each test (a test that wants another selection sets it itself).

The install tests build real environments: the kernel, the in-memory store and a throw-away
plugin package written by the tests are built into wheels once per session, then installed into
temporary virtual environments (one with the kernel only, one with the plugins).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from .support import ROOT, SUBPROCESS_TIMEOUT


@pytest.fixture(autouse=True)
def only_memory_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "memory")


# --- temporary environments ----------------------------------------------------------------------

SCRATCH_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "svrnty-events-scratch"
version = "1.2.3"
description = "A throw-away svrnty-events plugin written by the kernel tests."
requires-python = ">=3.11"
dependencies = ["svrnty-events"]

[project.entry-points.svrnty_events]
scratch = "svrnty_events_scratch"
"""

SCRATCH_MODULE = '''\
"""A throw-away svrnty-events plugin: a delivery provider, a subscription mode, a command."""

import asyncio
from pathlib import Path

import msgspec

from svrnty_events import hookimpl
from svrnty_events.modes import Exclusive


class EchoOptions(msgspec.Struct, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 0
    #: file the provider writes "started" / "stopped" to
    marker: str = ""


class EchoProvider:
    """Answers each client line with the host's stream names and the line."""

    def __init__(self, host, options):
        self.host = host
        self.options = options
        self.server = None

    async def start(self):
        self.server = await asyncio.start_server(self._client, self.options.host,
                                                 self.options.port)
        if self.options.marker:
            Path(self.options.marker).write_text("started")

    async def _client(self, reader, writer):
        line = await reader.readline()
        streams = ",".join(sorted(self.host.streams))
        writer.write(f"streams={streams} ".encode() + line)
        await writer.drain()
        writer.close()

    async def stop(self, grace):
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        if self.options.marker:
            Path(self.options.marker).write_text("stopped")

    def endpoints(self):
        port = self.server.sockets[0].getsockname()[1]
        return [f"echo://{self.options.host}:{port}"]


class FirstCome(Exclusive):
    """Competing consumers, from a third-party plugin."""


def hello(args):
    print(f"hello from scratch, {args.who}")
    return 0


@hookimpl
def register_delivery_providers(register):
    register("echo", EchoProvider, options=EchoOptions)


@hookimpl
def register_subscription_modes(register):
    register("first_come", FirstCome)


@hookimpl
def register_commands(subparsers):
    parser = subparsers.add_parser("scratch-hello", help="say hello")
    parser.add_argument("who")
    parser.set_defaults(func=hello)
'''


def pip(*args: str, python: Path | None = None) -> None:
    """Run the pip of the test environment, optionally against another interpreter."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    if python is not None:
        cmd += ["--python", str(python)]
    subprocess.run([*cmd, *args], check=True, timeout=SUBPROCESS_TIMEOUT * 3,
                   capture_output=True, text=True)


def new_venv(path: Path) -> Path:
    # no pip inside: the test environment's pip installs into it with --python, which is faster
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=SUBPROCESS_TIMEOUT)
    return path / "bin" / "python"


@dataclass
class Venv:
    python: Path

    @property
    def bin(self) -> Path:
        return self.python.parent

    def cli(self) -> str:
        return str(self.bin / "svrnty-events")

    def run(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """Run ``svrnty-events ARGS`` from this environment."""
        return subprocess.run([self.cli(), *args], env=env, capture_output=True, text=True,
                              timeout=SUBPROCESS_TIMEOUT)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of the kernel, the in-memory store and the scratch plugin, plus pluggy and msgspec,
    so the temporary environments install without a package index."""
    base = tmp_path_factory.mktemp("build")
    source = base / "scratch"
    (source / "svrnty_events_scratch").mkdir(parents=True)
    (source / "pyproject.toml").write_text(SCRATCH_PYPROJECT)
    (source / "svrnty_events_scratch" / "__init__.py").write_text(textwrap.dedent(SCRATCH_MODULE))
    wheels = base / "wheels"
    builder = new_venv(base / "builder")
    try:
        pip("install", "hatchling", python=builder)
        pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels),
            str(ROOT), str(ROOT / "providers" / "memory_store"), str(source), python=builder)
        pip("wheel", "-w", str(wheels), "pluggy", "msgspec")
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"building the wheelhouse failed: {exc.stderr}")
    return wheels


def _install(venv_dir: Path, wheels: Path, *requirements: str) -> Venv:
    python = new_venv(venv_dir)
    try:
        pip("install", "--no-index", "--find-links", str(wheels), *requirements, python=python)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"installing {requirements} failed: {exc.stderr}")
    return Venv(python)


@pytest.fixture(scope="session")
def kernel_venv(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Venv:
    """An environment where only the kernel (and its dependencies) is installed."""
    return _install(tmp_path_factory.mktemp("kernel-venv"), wheelhouse, "svrnty-events")


@pytest.fixture(scope="session")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Venv:
    """The kernel, the in-memory store and the scratch plugin, installed from wheels."""
    return _install(tmp_path_factory.mktemp("plugin-venv"), wheelhouse,
                    "svrnty-events-scratch", "svrnty-events-memory")
