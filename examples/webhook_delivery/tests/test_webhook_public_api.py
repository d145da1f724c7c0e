"""The plugin uses the kernel's public API only, as any third-party plugin must.

Public means: the names ``svrnty_events`` exports (``__all__``), and the documented modules
below with their names that do not start with an underscore. The scan reads the plugin's source
with ``ast`` and fails on an import of anything else from ``svrnty_events``, and on any
``obj._private`` attribute access other than on ``self`` / ``cls`` (a private attribute of a
kernel object, such as ``host._store``, would show up there).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import svrnty_events

PUBLIC_MODULES = frozenset({"config", "errors", "events", "hookspecs", "store", "subscriptions",
                            "host", "testing"})
KERNEL = "svrnty_events"
PACKAGE = Path(__file__).resolve().parents[1] / "svrnty_events_webhook"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Every use of a non-public kernel name in ``source``, as ``file:line: what``."""
    out: list[str] = []
    exported = set(svrnty_events.__all__)

    def bad(node: ast.AST, what: str) -> None:
        out.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    def check_module(node: ast.AST, module: str) -> bool:
        parts = module.split(".")
        if parts[0] != KERNEL:
            return False
        if len(parts) > 1 and (parts[1] not in PUBLIC_MODULES or any(map(_private, parts))):
            bad(node, f"imports non-public module {module}")
        return True

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check_module(node, alias.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not check_module(node, node.module):
                continue
            parts = node.module.split(".")
            for alias in node.names:
                if alias.name == "*":
                    bad(node, f"star import from {node.module}")
                elif len(parts) == 1:
                    if alias.name not in exported and alias.name not in PUBLIC_MODULES:
                        bad(node, f"imports {alias.name}, which svrnty_events does not export")
                elif _private(alias.name):
                    bad(node, f"imports private name {node.module}.{alias.name}")
                elif parts[1] in PUBLIC_MODULES and not hasattr(
                        importlib.import_module(node.module), alias.name):
                    bad(node, f"imports {node.module}.{alias.name}, which does not exist")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                bad(node, f"reads private attribute .{node.attr}")
    return out


def plugin_sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_scan_sees_the_plugin() -> None:
    names = {p.name for p in plugin_sources()}
    assert {"plugin.py", "provider.py", "options.py", "signature.py", "payload.py"} <= names


@pytest.mark.parametrize("path", plugin_sources(), ids=lambda p: p.name)
def test_plugin_imports_only_public_kernel_api(path: Path) -> None:
    assert violations(path.read_text(), path.name) == []


@pytest.mark.parametrize(("source", "found"), [
    ("from svrnty_events.subscriptions import SubscriptionEngine", []),
    ("from svrnty_events.subscriptions import _wait", ["private name"]),
    ("from svrnty_events.plugins import collect_registry", ["non-public module"]),
    ("import svrnty_events.modes", ["non-public module"]),
    ("from svrnty_events import Consumer, errors", []),
    ("from svrnty_events import type_names", ["does not export"]),
    ("from svrnty_events.events import no_such_name", ["does not exist"]),
    ("from svrnty_events.host import *", ["star import"]),
    ("host._store.claim()", ["private attribute ._store"]),
    ("self._stopping = True", []),
])
def test_the_scan_catches_private_use(source: str, found: list[str]) -> None:
    got = violations(source)
    assert len(got) == len(found)
    for line, expected in zip(got, found):
        assert expected in line
