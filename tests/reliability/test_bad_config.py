"""Broken configuration: each bad file is a clear error naming the file and the field, a
non-zero exit, and nothing started (no banner, no listener)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GOOD_STREAM = """
[[streams]]
name = "users"
"""

CORPUS: dict[str, tuple[str, str]] = {
    "wrong-type": (GOOD_STREAM + """
[[subscriptions]]
name = "a"
stream = "users"
visibility_timeout = "fast"
""", "subscriptions[0].visibility_timeout: expected float, got str"),
    "unknown-store": ('[store]\nplugin = "nope"\n' + GOOD_STREAM,
                      'store.plugin: unknown event store "nope"; available: memory'),
    "unknown-mode": (GOOD_STREAM + """
[[subscriptions]]
name = "a"
stream = "users"
mode = "fanout"
""", 'subscriptions[0].mode: unknown subscription mode "fanout"; available: broadcast, '
     "consumer_group, exclusive, read_receipt"),
    "unknown-stream": (GOOD_STREAM + """
[[subscriptions]]
name = "a"
stream = "orders"
""", 'subscriptions[0].stream: unknown stream "orders"; streams: users'),
    "duplicate-stream": (GOOD_STREAM + GOOD_STREAM, 'streams[1].name: duplicate stream name "users"'),
    "duplicate-subscription": (GOOD_STREAM + """
[[subscriptions]]
name = "a"
stream = "users"

[[subscriptions]]
name = "a"
stream = "users"
""", 'subscriptions[1].name: duplicate subscription name "a"'),
    "unknown-provider": (GOOD_STREAM + "\n[delivery.carrier-pigeon]\n",
                         'delivery.carrier-pigeon: unknown delivery provider "carrier-pigeon"'),
    "unknown-field": (GOOD_STREAM + 'colour = "blue"\n', "streams[0].colour: unknown field"),
    "bad-enum": ('[[streams]]\nname = "users"\ntype = "forever"\n',
                 "streams[0].type: invalid enum value 'forever'"),
    "exactly-once-ephemeral": ('[[streams]]\nname = "users"\ndelivery_semantics = '
                               '"exactly_once"\n',
                               "streams[0].delivery_semantics: exactly_once needs a persistent "
                               "stream"),
    "bad-window": (GOOD_STREAM + '\n[[subscriptions]]\nname = "a"\nstream = "users"\nwindow = 0\n',
                   "subscriptions[0].window: must be >= 1"),
    "bad-store-option": ('[store]\nplugin = "memory"\nmax_events_per_stream = "lots"\n'
                         + GOOD_STREAM, "store.max_events_per_stream: expected int, got str"),
    "streams-not-a-list": ('streams = "users"\n', "streams: expected array, got str"),
    "invalid-toml": ("[[streams]\nname = 1\n", "invalid TOML"),
}


def serve(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "svrnty_events.cli", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=30, env={"SVRNTY_EVENTS_PLUGINS": "memory",
                                                         "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_bad_file_is_refused_naming_the_path(case: str, tmp_path: Path) -> None:
    text, expected = CORPUS[case]
    config = tmp_path / f"{case}.toml"
    config.write_text(text)
    result = serve(config)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
    assert str(config) in result.stderr  # the file is named
    assert "host started" not in result.stdout  # nothing started


def test_unreadable_files(tmp_path: Path) -> None:
    missing = serve(tmp_path / "missing.toml")
    assert missing.returncode != 0 and "file not found" in missing.stderr
    directory = serve(tmp_path)
    assert directory.returncode != 0 and "cannot read file" in directory.stderr
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = serve(binary)
    assert result.returncode != 0 and "cannot read file" in result.stderr
