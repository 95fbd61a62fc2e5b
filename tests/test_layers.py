"""Imports point one way: edges call services, services use models and db, db uses nothing of ours.

Read from the source with ast, so a new wrong-way import fails here before anyone has to notice it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"api", "ui", "cli", "server", "labeling", "training", "models", "db", "errors", "settings", "context", "limits"}
EDGES = {"api", "ui", "cli", "server"}
ALLOWED = {
    "db": {"db", "errors", "settings"},
    "models": OURS - EDGES - {"labeling", "training"},
    "labeling": OURS - EDGES - {"training"},
    "training": OURS - EDGES,
}


def imported_roots(path: Path) -> set[str]:
    """The top-level names of Loupe's modules that path imports (anywhere in the file)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots & OURS


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_no_module_imports_against_the_direction_of_the_layers(layer):
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) - ALLOWED[layer])
        for path in (ROOT / layer).rglob("*.py")
        if "migrations" not in path.parts
    }
    assert {name: roots for name, roots in wrong.items() if roots} == {}


def test_context_sits_below_the_services():
    assert imported_roots(ROOT / "context.py") <= {"db", "settings", "errors"}


def test_no_edge_calls_the_decision_log_directly():
    """Every edge decides through labeling/review.py, which holds the rules."""
    for edge in ("api", "ui"):
        for path in (ROOT / edge).rglob("*.py"):
            assert "decision_db." not in path.read_text(), path
