"""The docs keep up with the code: every hookspec documented with its exact signature, every
configuration key documented with its default, every kernel module on the map."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from svrnty_events import hookspecs
from svrnty_events.config import HostConfig, StoreConfig, StreamConfig, SubscriptionConfig

from .support import ROOT

DOCS = ROOT / "docs"
SPEC_MARK = f"{hookspecs.PROJECT_NAME}_spec"


def hookspec_functions() -> dict[str, Callable[..., Any]]:
    return {name: fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(fn, SPEC_MARK)}


def _annotation(annotation: Any) -> str:
    # hookspecs.py uses postponed annotations: they are the source text already
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def signature(fn: Callable[..., Any]) -> str:
    sig = inspect.signature(fn)
    params = ", ".join(
        p.name if p.annotation is inspect.Parameter.empty
        else f"{p.name}: {_annotation(p.annotation)}" for p in sig.parameters.values())
    ret = "" if sig.return_annotation is inspect.Signature.empty \
        else f" -> {_annotation(sig.return_annotation)}"
    return f"{fn.__name__}({params}){ret}"


def hook_sections() -> dict[str, str]:
    """``### name`` sections under ``## Plugin hooks`` in docs/plugins.md, by name."""
    text = (DOCS / "plugins.md").read_text()
    hooks = text.split("\n## Plugin hooks\n", 1)[1].split("\n## ", 1)[0]
    sections = re.split(r"^### ", hooks, flags=re.M)[1:]
    return {s.split("\n", 1)[0].strip(): s for s in sections}


def test_hookspecs_are_found() -> None:
    # guards the introspection below: these hooks must be seen as hookspecs
    assert {"register_event_stores", "register_delivery_providers",
            "register_subscription_modes", "register_commands"} <= set(hookspec_functions())
    assert signature(hookspecs.register_event_stores) == \
        "register_event_stores(register: Register) -> None"


@pytest.mark.parametrize("hook", sorted(hookspec_functions()))
def test_plugin_hooks_are_documented(hook: str) -> None:
    sections = hook_sections()
    assert hook in sections, f"docs/plugins.md has no '### {hook}' section under Plugin hooks"
    expected = signature(hookspec_functions()[hook])
    assert f"```python\n{expected}\n```" in sections[hook], \
        f"docs/plugins.md does not show the exact signature of {hook}: {expected}"


def test_documented_hooks_exist() -> None:
    assert set(hook_sections()) == set(hookspec_functions())


def test_hookspecs_module_holds_only_markers_and_hookspecs() -> None:
    functions = {name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
                 if fn.__module__ == hookspecs.__name__}
    assert functions == set(hookspec_functions())
    for fn in hookspec_functions().values():
        assert inspect.getdoc(fn), f"hookspec {fn.__name__} has no docstring"


def table_rows(section: str) -> dict[str, str]:
    """``| `key` | ... |`` rows of a markdown section: key -> the whole row."""
    return {m.group(1): m.group(0)
            for m in re.finditer(r"^\| `([a-z_]+)` \|.*$", section, flags=re.M)}


def config_section(title: str) -> str:
    text = (DOCS / "configuration.md").read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _default(field: msgspec.structs.FieldInfo) -> Any:
    if field.default is not msgspec.NODEFAULT:
        return field.default
    if field.default_factory is not msgspec.NODEFAULT:
        return field.default_factory()
    return msgspec.NODEFAULT


@pytest.mark.parametrize(("title", "struct"), [
    ("Top level (`HostConfig`)", HostConfig), ("store", StoreConfig),
    ("streams", StreamConfig), ("subscriptions", SubscriptionConfig)])
def test_every_config_key_is_documented_with_its_default(title: str, struct: type) -> None:
    rows = table_rows(config_section(title))
    fields = msgspec.structs.fields(struct)
    assert set(rows) == {f.name for f in fields}
    for f in fields:
        default = _default(f)
        cell = re.split(r"(?<!\\)\|", rows[f.name])[3].strip()  # cells may hold `\|`
        if default is msgspec.NODEFAULT:
            expected = "required"
        elif default is None:
            expected = "none"
        elif isinstance(default, str):
            expected = f'`"{default}"`'
        elif isinstance(default, (list, dict)) and not default:
            expected = "`[]`" if isinstance(default, list) else "`{}`"
        elif isinstance(default, msgspec.Struct):
            expected = "`{ plugin = \"memory\" }`"
            assert default == StoreConfig()
        else:
            expected = f"`{default!r}`"
        assert cell == expected, f"{title}: {f.name} documented as {cell}, default {default!r}"


def test_architecture_maps_every_kernel_module() -> None:
    text = (DOCS / "architecture.md").read_text()
    modules = sorted(p.name for p in (ROOT / "core" / "svrnty_events").glob("*.py")
                     if p.name != "__init__.py")
    missing = [m for m in modules if f"core/svrnty_events/{m}" not in text]
    assert not missing, f"docs/architecture.md does not mention {missing}"
    for path in re.findall(r"`(core/svrnty_events/[a-z_]+\.py)`", text):
        assert (ROOT / path).exists(), f"docs/architecture.md mentions missing {path}"


def test_docs_link_to_each_other() -> None:
    for name in ("plugins.md", "configuration.md"):
        assert f"]({name})" in (DOCS / "architecture.md").read_text()
