"""A throw-away RabbitMQ broker for tests: its own data folder, free loopback ports (AMQP,
Erlang distribution, epmd), no system service (``running_rabbitmq``; the plugin's tests and
other plugins' tests use it). ``stop()`` / ``start()`` keep the data folder and ports, so a
restarted broker has its durable queues and persistent messages back at the same address."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: where Debian's rabbitmq-server package keeps the scripts (the /usr/sbin wrappers switch to
#: the rabbitmq user, which a test does not want)
_SCRIPT_GLOBS = ("/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server",
                 "/usr/local/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server")


def find_rabbitmq_server() -> str | None:
    """The rabbitmq-server script to run directly, or None when RabbitMQ is not installed."""
    for pattern in _SCRIPT_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[-1]
    return shutil.which("rabbitmq-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _amqp_ready(port: int) -> bool:
    """True once the broker answers the AMQP protocol header with Connection.Start."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
            c.settimeout(2.0)
            c.sendall(b"AMQP\x00\x00\x09\x01")
            # method frame (type 1) on channel 0, class 10 (connection), method 10 (start)
            head = c.recv(11)
            return len(head) >= 11 and head[0] == 1 and head[7:11] == b"\x00\x0a\x00\x0a"
    except OSError:
        return False


class RabbitMQServer:
    """One RabbitMQ node on fixed loopback ports and a fixed folder."""

    def __init__(self, folder: Path, port: int | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        script = find_rabbitmq_server()
        if script is None:
            raise FileNotFoundError("rabbitmq-server")
        self.script = script
        self.folder = folder
        self.port = port or free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"svrnty-{uuid.uuid4().hex[:8]}@localhost"
        #: (certificate, key): also listen for AMQP over TLS on ``tls_port``
        self.tls = tls
        self.tls_port = free_port() if tls else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def tls_url(self) -> str:
        """``amqps://`` to the TLS listener, trusting the test certificate (aiormq's
        ``cafile`` URL parameter)."""
        assert self.tls is not None, "started without tls"
        return f"amqps://guest:guest@127.0.0.1:{self.tls_port}/?cafile={self.tls[0]}"

    @property
    def log_file(self) -> Path:
        return self.folder / "server.out"

    def _env(self) -> dict[str, str]:
        f = self.folder
        return {
            **os.environ,
            "HOME": str(f),  # the Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(f / "mnesia"),
            "RABBITMQ_LOG_BASE": str(f / "log"),
            "RABBITMQ_PID_FILE": str(f / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(f / "rabbitmq"),  # rabbitmq.conf below
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(f / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(f / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(f / "rabbitmq-env.conf"),
        }

    def start(self, timeout: float = 120.0) -> None:
        """Start the node and wait until it speaks AMQP (RabbitMQ takes some seconds to boot,
        more on a busy machine)."""
        f = self.folder
        f.mkdir(parents=True, exist_ok=True)
        (f / "enabled_plugins").write_text("[].\n")
        (f / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users.guest = true\n"
            # tests fill queues quickly; the default 50 MB free-disk alarm would block them on a
            # small disk
            "disk_free_limit.absolute = 1MB\n"
            + (f"listeners.ssl.default = 127.0.0.1:{self.tls_port}\n"
               f"ssl_options.cacertfile = {self.tls[0]}\n"
               f"ssl_options.certfile = {self.tls[0]}\n"
               f"ssl_options.keyfile = {self.tls[1]}\n"
               "ssl_options.verify = verify_none\n"
               "ssl_options.fail_if_no_peer_cert = false\n" if self.tls else ""))
        out = open(self.log_file, "ab")
        try:
            self.proc = subprocess.Popen([self.script], env=self._env(), stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        while not _amqp_ready(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited with {self.proc.returncode}; see "
                                   f"{self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rabbitmq-server did not accept AMQP connections in "
                                   f"{timeout}s; see {self.log_file}")
            time.sleep(0.1)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM: the node shuts down cleanly (durable queues and persistent messages are on
        disk). SIGKILL if it does not exit within ``timeout``."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the node and the epmd daemon it started on its own port."""
        self.stop()
        epmd = shutil.which("epmd") or next(iter(sorted(glob.glob(
            "/usr/lib/erlang/erts-*/bin/epmd"))), None)
        if epmd is not None:
            subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
                           check=False)


@contextmanager
def running_rabbitmq(folder: Path, **options) -> Iterator[RabbitMQServer]:
    """A started RabbitMQServer, stopped afterwards; the test is skipped when RabbitMQ is not
    installed."""
    if find_rabbitmq_server() is None:
        import pytest

        pytest.skip("rabbitmq-server is not installed: install RabbitMQ >= 3.9 (Debian/Ubuntu: "
                    "apt-get install rabbitmq-server) to run the RabbitMQ provider tests")
    server = RabbitMQServer(folder, **options)
    try:
        server.start()
        yield server
    finally:
        server.close()
