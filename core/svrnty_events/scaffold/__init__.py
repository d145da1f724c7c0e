"""``svrnty-events new-plugin NAME``: scaffold a delivery provider plugin package.

The package it writes is complete and tested: a pyproject with the entry point, an options
Struct, the hook, a provider that consumes the configured subscriptions through the kernel's
consumer API, a README and a test that runs it in a real host.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from ..errors import SvrntyEventsError

NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


class ScaffoldError(SvrntyEventsError):
    pass


def names(name: str) -> dict[str, str]:
    if not NAME.match(name):
        raise ScaffoldError(f'plugin name "{name}": use lowercase letters, digits, "-" or "_", '
                            "starting with a letter")
    snake = name.replace("-", "_")
    return {
        "name": snake,
        "distribution": f"svrnty-events-{name.replace('_', '-')}",
        "package": f"svrnty_events_{snake}",
        "title": "".join(part.capitalize() for part in re.split(r"[-_]", name)),
    }


def render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def scaffold(name: str, directory: Path) -> Path:
    """Write the package for plugin ``name`` into ``directory / distribution``; returns it."""
    values = names(name)
    target = directory / values["distribution"]
    if target.exists():
        raise ScaffoldError(f"{target} already exists")
    templates = resources.files(__package__) / "templates"
    files = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        f"{values['package']}/__init__.py": "init.py.tmpl",
        f"{values['package']}/plugin.py": "plugin.py.tmpl",
        f"{values['package']}/provider.py": "provider.py.tmpl",
        f"{values['package']}/py.typed": None,
        "tests/test_plugin.py": "test_plugin.py.tmpl",
    }
    for relative, template in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "" if template is None else (templates / template).read_text(encoding="utf-8")
        path.write_text(render(text, values), encoding="utf-8")
    return target
