"""Fixtures: a real RabbitMQ broker (started here on free loopback ports, its own folder)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from svrnty_events_rabbitmq.server import running_rabbitmq  # noqa: E402


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory):
    """One broker for the session (also listening on TLS when openssl can make a test
    certificate); each test uses exchanges and queues of its own."""
    import shutil

    folder = tmp_path_factory.mktemp("rabbitmq")
    tls = None
    if shutil.which("openssl") is not None:
        from svrnty_events.testing import self_signed_certificate

        tls = self_signed_certificate(folder, "broker")
    with running_rabbitmq(folder / "node", tls=tls) as server:
        yield server


@pytest.fixture
def own_rabbitmq(tmp_path: Path):
    """A broker of the test's own, for tests that stop and restart it."""
    with running_rabbitmq(tmp_path / "rabbitmq") as server:
        yield server


@pytest.fixture
def names() -> dict[str, str]:
    """Exchange and queue names of the test's own."""
    tag = uuid.uuid4().hex[:10]
    return {"exchange": f"test-{tag}", "queue": f"test-{tag}.in"}
