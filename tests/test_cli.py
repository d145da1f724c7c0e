"""The ``svrnty-events`` command line: ``plugins [--json]`` and ``serve --config FILE``."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from svrnty_events.cli import main

from .support import CLI, SUBPROCESS_TIMEOUT, ServeProcess, subprocess_env

CONFIG = """\
[store]
plugin = "memory"

[[streams]]
name = "users"
type = "ephemeral"
delivery_semantics = "at_least_once"

[[streams]]
name = "ledger"
type = "persistent"
delivery_semantics = "exactly_once"
scope = "cross_service"
partitions = 4

[[subscriptions]]
name = "analytics"
stream = "users"
mode = "broadcast"

[[subscriptions]]
name = "billing"
stream = "ledger"
mode = "consumer_group"
"""


# --- plugins -----------------------------------------------------------------------------------


def test_plugins_lists_each_plugin_with_what_it_registered(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out, err = capsys.readouterr()
    assert out == (
        "memory  [svrnty-events-memory 0.1.0]\n"
        "    hooks: register_event_stores\n"
        "    event stores: memory\n"
        "svrnty_events.modes  [svrnty-events 0.1.0]\n"
        "    hooks: register_subscription_modes\n"
        "    subscription modes: broadcast, consumer_group, exclusive, read_receipt\n")
    assert err == ""


def test_plugins_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"name": "memory", "distribution": "svrnty-events-memory", "version": "0.1.0",
         "hooks": ["register_event_stores"], "registered": {"event store": ["memory"]}},
        {"name": "svrnty_events.modes", "distribution": "svrnty-events", "version": "0.1.0",
         "hooks": ["register_subscription_modes"],
         "registered": {"subscription mode": ["broadcast", "consumer_group", "exclusive",
                                              "read_receipt"]}},
    ]


def test_plugins_without_a_store_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "")
    assert main(["plugins"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("svrnty_events.modes  [svrnty-events 0.1.0]\n")
    assert "event store" not in out
    assert err == "no event store installed: pip install svrnty-events-memory\n"

    assert main(["plugins", "--json"]) == 0
    out, err = capsys.readouterr()
    assert [p["name"] for p in json.loads(out)] == ["svrnty_events.modes"]


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve"])
    assert "--config" in capsys.readouterr().err


# --- serve ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_serve_prints_the_banner_and_stops_on_signal(tmp_path: Path,
                                                           sig: signal.Signals) -> None:
    config = tmp_path / "host.toml"
    config.write_text(CONFIG)
    serve = await ServeProcess.start(CLI, config, subprocess_env(SVRNTY_EVENTS_PLUGINS="memory"))
    try:
        await serve.wait_for_banner()
        sent = time.monotonic()
        serve.proc.send_signal(sig)
        code, out, err = await serve.finish()
        elapsed = time.monotonic() - sent
    finally:
        await serve.kill()
    assert code == 0, err
    assert elapsed < 5.0
    assert out == (
        "svrnty-events host started\n"
        "  plugins:       memory (svrnty-events-memory 0.1.0), "
        "svrnty_events.modes (svrnty-events 0.1.0)\n"
        "  store:         memory\n"
        "  stream:        users (ephemeral, at_least_once, internal)\n"
        "  stream:        ledger (persistent, exactly_once, cross_service)\n"
        "  subscription:  analytics -> users (broadcast)\n"
        "  subscription:  billing -> ledger (consumer_group)\n"
        "svrnty-events host stopping\n")
    assert "Traceback" not in err


BAD_CONFIGS = {
    "type": (CONFIG.replace('mode = "broadcast"', 'mode = "broadcast"\nvisibility_timeout = "x"'),
             "subscriptions[0].visibility_timeout: expected float, got str"),
    "syntax": (CONFIG + "[[streams]\n", "invalid TOML"),
    "unknown stream": (CONFIG.replace('stream = "ledger"', 'stream = "ledgers"'),
                       'subscriptions[1].stream: unknown stream "ledgers"; streams: ledger, users'),
    "unknown mode": (CONFIG.replace('"consumer_group"', '"round_robin"'),
                     'subscriptions[1].mode: unknown subscription mode "round_robin"; '
                     "available: broadcast, consumer_group, exclusive, read_receipt"),
    "unknown store": (CONFIG.replace('plugin = "memory"', 'plugin = "redis"'),
                      'store.plugin: unknown event store "redis"; available: memory'),
    "unknown provider": (CONFIG + "[delivery.grpc]\nport = 6000\n",
                         'delivery.grpc: unknown delivery provider "grpc"; '
                         "available: none installed"),
    "exactly once": (CONFIG.replace('type = "persistent"', 'type = "ephemeral"'),
                     "streams[1].delivery_semantics: exactly_once needs a persistent stream"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_serve_with_a_wrong_file_starts_nothing(tmp_path: Path, case: str) -> None:
    text, message = BAD_CONFIGS[case]
    config = tmp_path / "host.toml"
    config.write_text(text)
    result = subprocess.run([CLI, "serve", "--config", str(config)], capture_output=True,
                            text=True, timeout=SUBPROCESS_TIMEOUT,
                            env=subprocess_env(SVRNTY_EVENTS_PLUGINS="memory"))
    assert result.returncode == 2
    assert result.stdout == ""  # no banner: nothing started
    assert result.stderr.startswith(f"svrnty-events: error: {config}: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_a_missing_file(tmp_path: Path) -> None:
    result = subprocess.run([CLI, "serve", "--config", str(tmp_path / "absent.toml")],
                            capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
                            env=subprocess_env(SVRNTY_EVENTS_PLUGINS="memory"))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"svrnty-events: error: {tmp_path / 'absent.toml'}: file not found\n"
