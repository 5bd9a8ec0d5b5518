"""Layers import only downward: the core knows nothing of SIP, HTTP, MQTT or the web app,
and the composition (``commands/``) sits above everything."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> the packages it must never import (directly or lazily, at any depth)
FORBIDDEN = {
    "voicebot": {"telephony", "dashboards", "privacy", "commands"},
    "faq": {"voicebot", "telephony", "dashboards", "privacy", "commands"},
    "privacy": {"telephony", "dashboards", "commands"},  # masks the core's events
    "telephony": {"dashboards", "commands"},
    "dashboards": {"commands"},
}


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_from_a_layer_above_it(package):
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, name in imported(path)
        if name in FORBIDDEN[package]
    ]
    assert offending == []
