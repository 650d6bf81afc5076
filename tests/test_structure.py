"""The project's shape, held by tests: graders use the public harness API only, and an
exercise's scenario never imports its hidden scenes (those register themselves)."""

from __future__ import annotations

import ast
from pathlib import Path

import harness

GRADERS = Path(__file__).resolve().parent.parent / "graders"


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.Attribute) and getattr(node.value, "id", "") == "harness":
            names.append(f"harness.{node.attr}")
    return names


def test_graders_use_the_public_harness_api_only() -> None:
    private = {
        f"{f.relative_to(GRADERS)}: {name}"
        for f in GRADERS.rglob("*.py")
        for name in _imports(f)
        if name.startswith("harness._")
    }
    assert private == set()


def test_every_name_a_grader_takes_from_harness_is_exported() -> None:
    for f in GRADERS.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "harness":
                for a in node.names:
                    assert a.name in harness.__all__, f"{f.relative_to(GRADERS)}: {a.name}"


def test_a_scenario_never_imports_its_hidden_scenes() -> None:
    for scenario in GRADERS.glob("*/scenario.py"):
        assert "hidden_scenes" not in _imports(scenario), scenario
