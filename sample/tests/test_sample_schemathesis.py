"""Schemathesis, run as a client would run it, against a real sample host: every check
(``--checks all``), every phase (examples, coverage, fuzzing, stateful), positive and negative
data, a bounded and seeded number of examples per operation. It must find nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import SampleProcess

HERE = Path(__file__).resolve().parent
MAX_EXAMPLES = 25
SEED = 19


def schemathesis_command() -> list[str]:
    script = Path(sys.executable).with_name("schemathesis")
    if script.exists():
        return [str(script)]
    found = shutil.which("schemathesis")
    return [found] if found else [sys.executable, "-m", "schemathesis.cli"]


def test_schemathesis_finds_nothing(sample: SampleProcess, tmp_path: Path) -> None:
    env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks",
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run(
        [*schemathesis_command(), "run", f"{sample.http_url}/openapi.json", "--checks", "all",
         "--mode", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
         "--generation-database", "none", "--workers", "1", "--no-color",
         "--request-timeout", "10"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "Tested: 10" in out, out  # every operation of the document
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in out, out
    assert " passed" in out and "failures" not in out.lower(), out
