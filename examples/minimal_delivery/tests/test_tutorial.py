"""docs/writing-a-delivery-plugin.md cannot rot: each of its code blocks is the code of this
example. A block preceded by ``<!-- file: PATH -->`` must appear verbatim in PATH (relative to
the repository root); a Python or TOML block without such a marker fails the test."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TUTORIAL = ROOT / "docs" / "writing-a-delivery-plugin.md"
BLOCK = re.compile(r"(?:<!-- file: (?P<path>\S+) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)\n```",
                   re.S)
CHECKED = {"python", "toml"}


def blocks() -> list[tuple[str | None, str, str, int]]:
    text = TUTORIAL.read_text()
    return [(m["path"], m["lang"], m["code"], text.count("\n", 0, m.start()) + 1)
            for m in BLOCK.finditer(text)]


def test_the_tutorial_has_code_from_each_file() -> None:
    paths = {path for path, *_ in blocks() if path}
    package = "examples/minimal_delivery"
    assert {f"{package}/pyproject.toml", f"{package}/example.toml",
            f"{package}/svrnty_events_jsonl/options.py", f"{package}/svrnty_events_jsonl/plugin.py",
            f"{package}/svrnty_events_jsonl/provider.py", f"{package}/tests/test_jsonl.py"} <= paths


@pytest.mark.parametrize(("path", "lang", "code", "line"), blocks(),
                         ids=[f"line {b[3]}" for b in blocks()])
def test_each_code_block_is_code_of_the_example(path: str | None, lang: str, code: str,
                                                line: int) -> None:
    if path is None:
        assert lang not in CHECKED, (
            f"{TUTORIAL.name}:{line}: a {lang} block needs a <!-- file: PATH --> marker")
        return
    source = (ROOT / path).read_text()
    assert code in source, f"{TUTORIAL.name}:{line}: this block is not in {path} verbatim"


def test_every_file_of_the_example_is_covered_by_the_tutorial() -> None:
    """Each source file of the plugin is shown whole in the tutorial (blank lines and the
    module docstring aside), so a change to the plugin shows up in the tutorial."""
    shown: dict[str, str] = {}
    for path, _, code, _ in blocks():
        if path:
            shown[path] = shown.get(path, "") + "\n" + code
    for name in ("options.py", "plugin.py", "provider.py"):
        path = f"examples/minimal_delivery/svrnty_events_jsonl/{name}"
        source = (ROOT / path).read_text()
        body = re.sub(r'^""".*?"""\n', "", source, count=1, flags=re.S)
        missing = [line for line in body.splitlines()
                   if line.strip() and line not in shown[path].splitlines()]
        assert missing == [], f"{path}: lines the tutorial does not show: {missing}"
