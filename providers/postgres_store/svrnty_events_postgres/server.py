"""A throw-away PostgreSQL server for tests and benchmarks: ``initdb`` into a temporary
folder, ``postgres`` on a free loopback port with its socket in that folder, no system
service. :func:`running_postgres` starts one and stops it afterwards.

PostgreSQL refuses to run as root: when this process is root, the server runs as the
``postgres`` user (or ``nobody``) through ``runuser``, in a folder owned by that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: the superuser's password of every server started here (the tests also check refusals)
PASSWORD = "svrnty-test-pw"
SUPERUSER = "postgres"


def find_binaries() -> Path | None:
    """The folder with ``initdb``, ``pg_ctl`` and ``postgres``: on PATH, else Debian's
    ``/usr/lib/postgresql/<version>/bin`` (the newest). None when PostgreSQL is absent."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(os.path.realpath(found)).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                         else 0, reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "postgres").exists():
            return Path(folder)
    return None


MISSING = ("PostgreSQL server binaries (initdb, postgres) are not installed: install them "
           "(Debian/Ubuntu: apt-get install postgresql; the binaries are then in "
           "/usr/lib/postgresql/<version>/bin) to run the PostgreSQL store tests")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> str | None:
    """The user the server runs as when this process is root (None: this process's user)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and there is neither a postgres nor a nobody user to "
                       "run PostgreSQL as")


def _scratch(fsync: bool) -> str | None:
    """Where a server's folder goes: a server without fsync (tests) in memory when there is
    room (/dev/shm), which makes its start and removal several times faster; else the
    default temporary folder."""
    if not fsync and os.path.isdir("/dev/shm"):
        try:
            if shutil.disk_usage("/dev/shm").free > 2 << 30:
                return "/dev/shm"
        except OSError:
            pass
    return None


class PostgresServer:
    """One PostgreSQL cluster in its own folder. ``start()`` / ``stop()`` / ``restart()`` keep
    the folder and port, so a restart keeps the data and clients reconnect to the same address.

    ``fsync=False`` (the default for tests) skips flushes to disk: a clean stop still keeps
    every commit; only an OS crash could lose some."""

    def __init__(self, port: int | None = None, *, fsync: bool = False,
                 settings: dict[str, str] | None = None) -> None:
        binaries = find_binaries()
        if binaries is None:
            raise FileNotFoundError(MISSING)
        self.bin = binaries
        self.port = port or free_port()
        self.user = _run_as()
        self.folder = Path(tempfile.mkdtemp(prefix="svrnty-pg-", dir=_scratch(fsync)))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.settings = {"fsync": "on" if fsync else "off", "max_connections": "200",
                         "shared_buffers": "64MB", **(settings or {})}
        if self.user is not None:
            info = pwd.getpwnam(self.user)
            os.chown(self.folder, info.pw_uid, info.pw_gid)
        self._initdb()

    def url(self, database: str = "postgres", *, user: str = SUPERUSER,
            password: str | None = PASSWORD) -> str:
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        return cmd if self.user is None else ["runuser", "-u", self.user, "--", *cmd]

    def _initdb(self) -> None:
        pwfile = self.folder / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.user is not None:
            info = pwd.getpwnam(self.user)
            os.chown(pwfile, info.pw_uid, info.pw_gid)
        result = subprocess.run(
            self._cmd("initdb", "-D", str(self.data), "-U", SUPERUSER, "--pwfile", str(pwfile),
                      "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                      "--no-instructions", "--locale=C"),
            capture_output=True, text=True, timeout=120)
        pwfile.unlink()
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr.strip()}")

    def start(self, timeout: float = 30.0) -> None:
        options = " ".join(["-c listen_addresses=127.0.0.1", f"-p {self.port}",
                            f"-k {self.folder}",
                            *(f"-c {k}={v}" for k, v in self.settings.items())])
        result = subprocess.run(
            self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                      "-w", "-t", str(int(timeout)), "start"),
            capture_output=True, text=True, timeout=timeout + 10)
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start ({result.stderr.strip()}): {tail}")

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop the server: ``fast`` rolls back open transactions and shuts down cleanly,
        ``immediate`` is a crash (recovery from the WAL at the next start)."""
        if not (self.data / "postmaster.pid").exists():
            return
        subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t",
                                 str(int(timeout)), "stop"),
                       capture_output=True, text=True, timeout=timeout + 10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through psql over the server's socket (for test setup)."""
        psql = self.bin / "psql"
        binary = str(psql) if psql.exists() else (shutil.which("psql") or "psql")
        cmd = [binary, "-h", str(self.folder), "-p", str(self.port), "-U", SUPERUSER, "-d",
               database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def running_postgres(**options: object) -> Iterator[PostgresServer]:
    """A started :class:`PostgresServer` (see its options), stopped and removed afterwards.
    Raises FileNotFoundError (its message says what to install) when PostgreSQL is absent."""
    server = PostgresServer(**options)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.remove()
