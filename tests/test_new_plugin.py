"""`svrnty-events new-plugin NAME` writes a complete delivery plugin package whose own test
passes in a real host."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from .support import SUBPROCESS_TIMEOUT


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "svrnty_events.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)


def test_scaffolded_plugin_is_complete_and_its_test_passes(tmp_path: Path) -> None:
    result = cli("new-plugin", "my-sink", "--directory", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    package = tmp_path / "svrnty-events-my-sink"
    assert f"created {package}" in result.stdout
    project = tomllib.loads((package / "pyproject.toml").read_text())
    assert project["project"]["name"] == "svrnty-events-my-sink"
    assert project["project"]["entry-points"]["svrnty_events"] == {
        "my_sink": "svrnty_events_my_sink.plugin"}
    assert (package / "svrnty_events_my_sink" / "py.typed").exists()
    assert "{{" not in "".join(p.read_text() for p in package.rglob("*") if p.is_file())
    env = {**os.environ, "PYTHONPATH": str(package)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(package / "tests")], cwd=package, env=env, capture_output=True,
                         text=True, timeout=SUBPROCESS_TIMEOUT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def test_bad_names_and_existing_folders_are_refused(tmp_path: Path) -> None:
    bad = cli("new-plugin", "My Sink!", "--directory", str(tmp_path), cwd=tmp_path)
    assert bad.returncode == 2 and 'plugin name "My Sink!"' in bad.stderr
    assert cli("new-plugin", "dup", "--directory", str(tmp_path), cwd=tmp_path).returncode == 0
    again = cli("new-plugin", "dup", "--directory", str(tmp_path), cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
