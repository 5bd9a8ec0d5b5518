"""Layers import only downward: the core knows nothing of SIP, HTTP, MQTT or the web app,
and the composition (``commands/``) sits above everything."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> the packages it must never import (directly or lazily, at any depth)
# Libraries of the edges: web, MQTT, SIP, WebRTC and the records' database.
EDGE_LIBRARIES = {
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "aiohttp",
    "aiomqtt",
    "paho",
    "pjsua2",
    "aiortc",
    "sqlalchemy",
}
FORBIDDEN = {
    "voicebot": {"telephony", "dashboards", "privacy", "commands"} | EDGE_LIBRARIES,
    "faq": {"voicebot", "telephony", "dashboards", "privacy", "commands"} | EDGE_LIBRARIES,
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


# The call path: what a caller's frame and the bot's reply pass through, and the wiring.
CALL_PATH = ("voicebot", "telephony", "commands/service.py")
MAX_FUNCTION_LINES = 60


def test_no_function_in_the_call_path_is_longer_than_a_screen():
    """A reader follows a frame through the call path one short function at a time."""
    paths = []
    for part in CALL_PATH:
        root = ROOT / part
        paths += sorted(root.rglob("*.py")) if root.is_dir() else [root]
    too_long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)"
        for path in paths
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES
    ]
    assert too_long == []


def test_the_call_session_fits_on_a_screen():
    """The session orchestrates; the work is in the parts it calls."""
    tree = ast.parse((ROOT / "voicebot" / "call.py").read_text(encoding="utf-8"))
    session = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CallSession")
    assert session.end_lineno - session.lineno + 1 < 150
