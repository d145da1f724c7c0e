"""The sample host as a process: clean shutdown on signals, and startup errors that say what to
fix."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import SampleProcess

    StartSample = Callable[..., SampleProcess]

FREE_PORTS = ("--grpc-port", "0", "--http-port", "0")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_host_cleanly(start_sample: StartSample, sig: signal.Signals):
    process = start_sample(*FREE_PORTS).wait_started()
    started = time.monotonic()
    process.proc.send_signal(sig)
    code = process.proc.wait(10)
    elapsed = time.monotonic() - started
    process.kill()  # joins the output reader
    assert code == 0, process.output
    assert elapsed < 5.0
    process.wait_for(r"^svrnty-events host stopping")
    assert "Traceback" not in process.output


def test_a_bad_configuration_names_the_file_and_field(start_sample: StartSample,
                                                      tmp_path: Path):
    config = tmp_path / "broken.toml"
    config.write_text('[store]\nplugin = "memory"\n\n[[streams]]\nname = "users"\n\n'
                      '[[streams]]\nname = "invitations"\n\n'
                      '[[subscriptions]]\nname = "user-analytics"\nstream = "userz"\n')
    process = start_sample("--config", str(config), *FREE_PORTS)
    assert process.proc.wait(20) == 2
    process.kill()  # joins the output reader
    process.wait_for(r"^svrnty-sample: error: .*subscriptions\[0\]\.stream: .*userz")
    assert str(config) in process.output


def test_a_port_in_use_is_reported_without_traceback(start_sample: StartSample):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = start_sample("--grpc-port", "0", "--http-port", str(port))
        assert process.proc.wait(20) != 0
    process.kill()  # joins the output reader
    process.wait_for(rf"^svrnty-sample: error: .*{port}")
    assert "Traceback" not in process.output
