"""Fixtures of the sample's end-to-end tests: ``svrnty-sample`` as a real subprocess on free
ports, its stdout read line by line in a thread so tests can wait (with a timeout) for a log
line."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

START_TIMEOUT = 20.0
WAIT_TIMEOUT = 10.0


def sample_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m svrnty_sample``."""
    script = Path(sys.executable).with_name("svrnty-sample")
    if script.exists():
        return [str(script)]
    found = shutil.which("svrnty-sample")
    return [found] if found else [sys.executable, "-m", "svrnty_sample"]


class SampleProcess:
    """A running ``svrnty-sample``. ``http_url`` and ``grpc_target`` come from its banner."""

    def __init__(self, args: Sequence[str] = (), plugins: str = "memory,grpc") -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   # only the plugins the sample needs, whatever else is installed
                   SVRNTY_EVENTS_PLUGINS=plugins)
        self.proc = subprocess.Popen(
            [*sample_command(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, bufsize=1, env=env,
            # anywhere: the default configuration ships with the package
            cwd=tempfile.gettempdir())
        self.lines: list[str] = []
        self.eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.http_url = ""
        self.grpc_target = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = WAIT_TIMEOUT, start: int = 0) -> re.Match:
        """The first output line from line ``start`` on that matches ``pattern``; fails after
        ``timeout`` seconds or when the process ends without printing it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = start
            while True:
                for line in self.lines[seen:]:
                    m = regex.search(line)
                    if m:
                        return m
                seen = max(seen, len(self.lines))
                remaining = deadline - time.monotonic()
                if self.eof or remaining <= 0:
                    why = "exited" if self.eof else f"printed nothing like it in {timeout}s"
                    pytest.fail(f"svrnty-sample {why} (waiting for /{pattern}/); output:\n"
                                + "\n".join(self.lines))
                self._cond.wait(remaining)

    async def expect(self, pattern: str, timeout: float = WAIT_TIMEOUT,
                     start: int = 0) -> re.Match:
        """``wait_for`` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, pattern, timeout, start)

    def mark(self) -> int:
        """The number of lines printed so far: pass as ``start`` to see only newer lines."""
        with self._cond:
            return len(self.lines)

    def wait_started(self) -> SampleProcess:
        self.wait_for(r"^svrnty-events host started", START_TIMEOUT)
        self.grpc_target = self.wait_for(r"endpoint:\s+grpc://(127\.0\.0\.1:\d+)").group(1)
        # the docs endpoint is the banner's last line
        self.http_url = self.wait_for(r"endpoint:\s+(http://127\.0\.0\.1:\d+)/docs\s").group(1)
        return self

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit code (killed if it does not exit within ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)


@pytest.fixture(scope="module")
def sample() -> Iterator[SampleProcess]:
    """One sample host for the module, on free ports (port 0; the banner tells which)."""
    process = SampleProcess(["--grpc-port", "0", "--http-port", "0"])
    try:
        yield process.wait_started()
    finally:
        process.kill()


#: the invitation time-to-accept of ``expiring_sample``
EXPIRING_TTL = 1.0


@pytest.fixture(scope="module")
def expiring_sample() -> Iterator[SampleProcess]:
    """A sample host whose invitations expire after EXPIRING_TTL seconds."""
    process = SampleProcess(["--grpc-port", "0", "--http-port", "0",
                             "--invitation-ttl", str(EXPIRING_TTL)])
    try:
        yield process.wait_started()
    finally:
        process.kill()


@pytest.fixture
def start_sample() -> Iterator[Callable[..., SampleProcess]]:
    """Start sample processes of the test's own (killed at the end of the test)."""
    started: list[SampleProcess] = []

    def start(*args: str, plugins: str = "memory,grpc") -> SampleProcess:
        process = SampleProcess(args, plugins)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.kill()
