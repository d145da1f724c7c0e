"""The ``svrnty-events`` command line: ``plugins [--json]``, ``serve --config FILE`` and
``asyncapi --config FILE``."""

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


# --- asyncapi ------------------------------------------------------------------------------------

ASYNCAPI_CONFIG = CONFIG + """
[[subscriptions]]
name = "audit"
stream = "ledger"
mode = "exclusive"
event_types = ["PaymentTaken"]
terminal_event_types = ["PaymentSettled"]
description = "Payments only"

[delivery.grpc]
host = "127.0.0.1"
port = 6100

[delivery.webhook]

[[delivery.webhook.endpoints]]
url = "https://hooks:s3cret@billing.example.com:8443/in?token=abc"
subscriptions = ["audit"]
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
name = "billing"
"""


def run_asyncapi(config: Path, *args: str, plugins: str = "memory,grpc,webhook"
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "asyncapi", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
                          env=subprocess_env(SVRNTY_EVENTS_PLUGINS=plugins))


def test_asyncapi_describes_streams_subscriptions_and_servers(tmp_path: Path) -> None:
    from svrnty_events.testing.asyncapi import validate_asyncapi

    config = tmp_path / "host.toml"
    config.write_text(ASYNCAPI_CONFIG)
    result = run_asyncapi(config, "--title", "payments", "--version", "2.1.0")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    validate_asyncapi(doc)
    assert doc["info"]["title"] == "payments" and doc["info"]["version"] == "2.1.0"
    assert set(doc["channels"]) == {"users", "ledger"}
    assert doc["channels"]["ledger"]["address"] == "ledger"
    assert set(doc["channels"]["ledger"]["messages"]) == {"PaymentTaken", "PaymentSettled"}
    ops = doc["operations"]
    # subscriptions are what the host sends; a cross_service stream also receives
    assert {name: op["action"] for name, op in ops.items()} == {
        "analytics": "send", "billing": "send", "audit": "send", "publish-ledger": "receive"}
    assert ops["audit"]["messages"] == [{"$ref": "#/channels/ledger/messages/PaymentTaken"}]
    assert ops["audit"]["description"].startswith("Payments only. Mode exclusive")
    assert "consumer_group" in ops["billing"]["summary"]
    servers = doc["servers"]
    assert servers["grpc"] == {**servers["grpc"], "host": "127.0.0.1:6100", "protocol": "grpc"}
    hook = servers["webhook-billing"]
    assert (hook["host"], hook["protocol"], hook["pathname"]) == (
        "billing.example.com:8443", "https", "/in")
    assert "s3cret" not in result.stdout and "token=abc" not in result.stdout
    # the webhook only carries the ledger stream's audit subscription (no list: every server)
    assert "servers" not in doc["channels"]["ledger"]
    assert doc["channels"]["users"]["servers"] == [{"$ref": "#/servers/grpc"}]

    out = tmp_path / "asyncapi.json"
    result = run_asyncapi(config, "--output", str(out))
    assert (result.returncode, result.stdout) == (0, "")
    written = json.loads(out.read_text())
    assert written["info"]["title"] == "host.toml" and written["channels"] == doc["channels"]


def test_asyncapi_with_a_wrong_file_or_no_file_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "host.toml"
    config.write_text(BAD_CONFIGS["unknown stream"][0])
    result = run_asyncapi(config, plugins="memory")
    assert (result.returncode, result.stdout) == (2, "")
    assert 'subscriptions[1].stream: unknown stream "ledgers"' in result.stderr
    result = subprocess.run([CLI, "asyncapi"], capture_output=True, text=True,
                            timeout=SUBPROCESS_TIMEOUT, env=subprocess_env())
    assert result.returncode == 2 and "--config" in result.stderr
