"""Packaging as a user meets it: real environments with only what they installed.

``kernel_venv`` holds the kernel alone; ``plugin_venv`` holds the kernel, the in-memory store and
a throw-away plugin package (``svrnty-events-scratch``, entry point ``scratch``) written by the
tests. See conftest.py.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import signal
import subprocess
from pathlib import Path

import pytest

from .conftest import Venv
from .support import SUBPROCESS_TIMEOUT, ServeProcess, subprocess_env, within

CONFIG = """\
[store]
plugin = "memory"

[[streams]]
name = "users"

[[subscriptions]]
name = "analytics"
stream = "users"
"""


def plugins_json(venv: Venv, selection: str | None) -> dict[str, dict]:
    result = venv.run("plugins", "--json", env=subprocess_env(SVRNTY_EVENTS_PLUGINS=selection))
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)}


# --- kernel only ------------------------------------------------------------------------------


def test_kernel_only_install_has_no_store_and_no_grpc(kernel_venv: Venv) -> None:
    code = (
        "import importlib.metadata as m, sys, svrnty_events, svrnty_events.cli\n"
        "print(sorted(d.metadata['Name'].lower() for d in m.distributions()))\n"
        "print(m.requires('svrnty-events'))\n"
        "print('grpc' in sys.modules)\n"
    )
    out = subprocess.run([str(kernel_venv.python), "-c", code], capture_output=True, text=True,
                         timeout=SUBPROCESS_TIMEOUT, env=subprocess_env()).stdout.splitlines()
    assert out[0] == "['msgspec', 'pluggy', 'svrnty-events']"
    requires = " ".join(ast.literal_eval(out[1]))
    assert "pluggy" in requires and "msgspec" in requires and "grpc" not in requires
    assert out[2] == "False"


def test_kernel_only_plugins_lists_no_store(kernel_venv: Venv) -> None:
    result = kernel_venv.run("plugins", env=subprocess_env(SVRNTY_EVENTS_PLUGINS=None))
    assert result.returncode == 0
    assert "svrnty_events.modes  [svrnty-events 0.1.0]" in result.stdout
    assert "subscription modes: broadcast, consumer_group, exclusive, read_receipt" \
        in result.stdout
    assert "event store" not in result.stdout
    assert "pip install svrnty-events-memory" in result.stderr

    listed = plugins_json(kernel_venv, None)
    assert list(listed) == ["svrnty_events.modes"]
    assert all("event store" not in p["registered"] for p in listed.values())


def test_kernel_only_serve_names_the_package_to_install(kernel_venv: Venv,
                                                        tmp_path: Path) -> None:
    config = tmp_path / "host.toml"
    config.write_text(CONFIG)
    result = kernel_venv.run("serve", "--config", str(config),
                             env=subprocess_env(SVRNTY_EVENTS_PLUGINS=None))
    assert result.returncode == 2
    assert "no event store plugin is installed" in result.stderr
    assert "pip install svrnty-events-memory" in result.stderr
    assert "host started" not in result.stdout


# --- a third-party plugin package, discovered through its entry point ---------------------------


def test_installed_plugin_is_discovered_and_listed(plugin_venv: Venv) -> None:
    listed = plugins_json(plugin_venv, None)
    assert set(listed) == {"memory", "scratch", "svrnty_events.modes"}
    assert listed["scratch"] == {
        "name": "scratch",
        "distribution": "svrnty-events-scratch",
        "version": "1.2.3",
        "hooks": ["register_commands", "register_delivery_providers",
                  "register_subscription_modes"],
        "registered": {"delivery provider": ["echo"], "subscription mode": ["first_come"]},
    }
    assert listed["memory"]["distribution"] == "svrnty-events-memory"
    assert listed["memory"]["registered"] == {"event store": ["memory"]}
    assert listed["svrnty_events.modes"]["distribution"] == "svrnty-events"


def test_installed_plugin_human_listing(plugin_venv: Venv) -> None:
    result = plugin_venv.run("plugins", env=subprocess_env(SVRNTY_EVENTS_PLUGINS=None))
    assert result.returncode == 0
    assert "scratch  [svrnty-events-scratch 1.2.3]" in result.stdout
    assert "delivery providers: echo" in result.stdout
    assert "subscription modes: first_come" in result.stdout
    assert result.stderr == ""  # a store is installed: no hint


@pytest.mark.parametrize(("selection", "expected"), [
    (None, {"memory", "scratch"}),
    ("", set()),
    ("memory", {"memory"}),
    ("scratch", {"scratch"}),
    (" scratch , memory ", {"memory", "scratch"}),
    ("not-installed", set()),
])
def test_plugins_env_var_selects_entry_points(plugin_venv: Venv, selection: str | None,
                                              expected: set[str]) -> None:
    listed = plugins_json(plugin_venv, selection)
    # the built-in modes are a default plugin of the kernel: never filtered out
    assert set(listed) == expected | {"svrnty_events.modes"}


def test_plugin_adds_a_subcommand(plugin_venv: Venv) -> None:
    result = plugin_venv.run("scratch-hello", "ada", env=subprocess_env(SVRNTY_EVENTS_PLUGINS=None))
    assert (result.returncode, result.stdout) == (0, "hello from scratch, ada\n")

    hidden = plugin_venv.run("scratch-hello", "ada",
                             env=subprocess_env(SVRNTY_EVENTS_PLUGINS="memory"))
    assert hidden.returncode == 2
    assert "invalid choice: 'scratch-hello'" in hidden.stderr


async def test_serve_starts_the_installed_provider_and_mode(plugin_venv: Venv,
                                                            tmp_path: Path) -> None:
    marker = tmp_path / "echo-state"
    config = tmp_path / "host.toml"
    config.write_text(CONFIG + f"""
[[subscriptions]]
name = "work"
stream = "users"
mode = "first_come"

[delivery.echo]
port = 0
marker = "{marker}"
""")
    serve = await ServeProcess.start(plugin_venv.cli(), config,
                                     subprocess_env(SVRNTY_EVENTS_PLUGINS=None))
    try:
        await serve.wait_for_banner()
        # the banner is written at once: read up to its endpoint line
        assert serve.proc.stdout is not None
        rest = await within(serve.proc.stdout.readuntil(b"\n  endpoint:"), 10)
        rest += await within(serve.proc.stdout.readline(), 10)
        banner = serve.head + rest.decode()
        assert "scratch (svrnty-events-scratch 1.2.3)" in banner
        assert "subscription:  work -> users (first_come)" in banner
        port = int(re.search(r"endpoint: +echo://127\.0\.0\.1:(\d+)", banner).group(1))
        assert marker.read_text() == "started"

        reader, writer = await within(asyncio.open_connection("127.0.0.1", port))
        writer.write(b"ping\n")
        assert await within(reader.readline()) == b"streams=users ping\n"
        writer.close()

        serve.proc.send_signal(signal.SIGTERM)
        code, _, err = await serve.finish()
        assert code == 0, err
        assert marker.read_text() == "stopped"
    finally:
        await serve.kill()


def test_wrong_config_starts_nothing(plugin_venv: Venv, tmp_path: Path) -> None:
    marker = tmp_path / "echo-state"
    config = tmp_path / "host.toml"
    config.write_text(CONFIG + f"""
[[subscriptions]]
name = "work"
stream = "orders"

[delivery.echo]
marker = "{marker}"
""")
    result = plugin_venv.run("serve", "--config", str(config),
                             env=subprocess_env(SVRNTY_EVENTS_PLUGINS=None))
    assert result.returncode == 2
    assert f'{config}: subscriptions[1].stream: unknown stream "orders"' in result.stderr
    assert "host started" not in result.stdout
    assert not marker.exists()  # the delivery provider was never started


def test_wrong_provider_options_name_the_field(plugin_venv: Venv, tmp_path: Path) -> None:
    config = tmp_path / "host.toml"
    config.write_text(CONFIG + '\n[delivery.echo]\nport = "six thousand"\n')
    result = plugin_venv.run("serve", "--config", str(config),
                             env=subprocess_env(SVRNTY_EVENTS_PLUGINS=None))
    assert result.returncode == 2
    assert "delivery.echo.port: expected int, got str" in result.stderr

    # the provider's plugin not selected: its section names the provider and what is available
    hidden = plugin_venv.run("serve", "--config", str(config),
                             env=subprocess_env(SVRNTY_EVENTS_PLUGINS="memory"))
    assert hidden.returncode == 2
    assert 'delivery.echo: unknown delivery provider "echo"; available: none installed' \
        in hidden.stderr
