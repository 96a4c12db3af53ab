"""The package layout is the architecture: these rules fail when an import crosses a boundary.

Every import counts, also the ones inside functions (a lazy import still ties two modules together):
``inference`` never imports ``bot``, runtime code never imports ``training``, ``inference.text`` needs no
models and no serving, ``inference.models`` knows nothing of how jobs travel, and no two modules import
each other, directly or round a longer circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "inference", "training")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, known: set[str]) -> Iterator[str]:
    """Project modules ``path`` imports anywhere in its body; ``from a import b`` counts as ``a.b`` when
    ``a.b`` is a module, else as ``a``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                yield name


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (REPO_ROOT / pkg).rglob("*.py")}
    known = set(files)
    return {name: set(imported_modules(path, known)) - {name} for name, path in files.items()}


GRAPH = import_graph()


def edges(source_prefix: str, target_prefix: str) -> list[tuple[str, str]]:
    return sorted(
        (source, target)
        for source, targets in GRAPH.items()
        if source == source_prefix or source.startswith(source_prefix + ".")
        for target in targets
        if target == target_prefix or target.startswith(target_prefix + ".")
    )


def test_the_graph_sees_the_packages() -> None:
    assert "inference.serving.client" in GRAPH
    assert "inference.serving.jobs" in GRAPH["inference.serving.client"]


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("inference", "bot"),
        ("inference", "training"),
        ("bot", "training"),
        ("inference.text", "inference.models"),
        ("inference.text", "inference.serving"),
        ("inference.models", "inference.serving"),
    ],
)
def test_forbidden_imports(source: str, target: str) -> None:
    assert edges(source, target) == []


def test_bot_reads_only_the_model_registry() -> None:
    """The bot process never imports torch: of ``inference.models`` it may only read the registry."""
    assert {target for _, target in edges("bot", "inference.models")} <= {
        "inference.models",
        "inference.models.registry",
    }


def test_no_import_circles() -> None:
    circles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            circles.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        for target in sorted(GRAPH.get(module, ())):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])
    assert circles == []
