#!/usr/bin/env bash
# Create .venv (if missing) and install every distribution of the checkout into it, editable:
# the kernel (.), each provider (providers/*/) and the sample host (sample/) when present, each
# with its [test] extra when it declares one, plus the test tools.
#
#   bash scripts/bootstrap.sh            # PYTHON=python3.12 bash scripts/bootstrap.sh
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
py=.venv/bin/python
"$py" -m pip install --quiet --upgrade pip

# "DIR" or "DIR[test]": the [test] extra only where the distribution declares it
requirement() {
    "$py" - "$1" <<'PY'
import sys, tomllib
folder = sys.argv[1]
with open(f"{folder}/pyproject.toml", "rb") as f:
    extras = tomllib.load(f).get("project", {}).get("optional-dependencies", {})
print(f"{folder}[test]" if "test" in extras else folder)
PY
}

args=()
for dir in . providers/*/ sample/ examples/*/; do
    dir=${dir%/}
    if [ -f "$dir/pyproject.toml" ]; then
        args+=(--editable "$(requirement "$dir")")
    fi
done

# one resolver run, so each plugin's dependency on svrnty-events is met by the checkout
echo "bootstrap: installing ${args[*]}"
"$py" -m pip install --quiet "${args[@]}" pytest pytest-asyncio hypothesis
