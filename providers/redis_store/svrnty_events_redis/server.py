"""A throw-away redis-server for tests: own folder, free loopback port, append-only file
(``running_redis``; the Redis store's tests and other plugins' tests use it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as c:
            c.settimeout(0.5)
            c.sendall(b"PING\r\n")
            return c.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class RedisServer:
    """``start()`` / ``stop()`` / ``restart()`` one redis-server on a fixed port and folder, so a
    restart keeps its data (appendonly yes) and clients reconnect to the same address."""

    def __init__(self, folder: Path, port: int | None = None,
                 extra_args: list[str] | None = None, tls: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server")
        self.binary = binary
        self.folder = folder
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        #: more redis-server arguments (e.g. --requirepass); with tls=True the port is the
        #: TLS port (the arguments must configure it) and readiness is a TCP connect
        self.extra_args = extra_args or []
        self.tls = tls

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, *(["--port", "0", "--tls-port", str(self.port)] if self.tls
                            else ["--port", str(self.port)]),
             "--bind", "127.0.0.1", "--dir", str(self.folder), "--appendonly", "yes",
             "--save", "", "--logfile", str(self.folder / "redis.log"), *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not (_listening(self.port) if self.tls or self.extra_args else _ping(self.port)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see "
                                   f"{self.folder / 'redis.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING in {timeout}s")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: Redis flushes its append-only file and exits."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def running_redis(folder: Path, **options) -> Iterator[RedisServer]:
    """A started RedisServer (see its options), stopped afterwards; the test is skipped when
    redis-server is not installed."""
    if shutil.which("redis-server") is None:
        import pytest

        pytest.skip("redis-server is not on PATH: install Redis >= 7 (Debian/Ubuntu: "
                    "apt-get install redis-server) to run the Redis store tests")
    server = RedisServer(folder, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
