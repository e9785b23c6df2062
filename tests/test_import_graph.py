"""Dependencies point one way: imfuse (library) <- components <- pipelines; the CLI on top.

Every import counts, the ones inside functions too (that is where this project keeps its
heavy ones), so a cycle cannot hide behind a lazy import.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def violations(folder: str, forbidden: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(skip):
            continue
        for name in sorted(imported_modules(path)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{rel} imports {name}")
    return found


@pytest.mark.parametrize(
    "folder, forbidden, skip",
    [
        ("imfuse", ("components", "pipelines", "imfuse.cli"), ("imfuse/cli/", "imfuse/__main__.py")),
        ("components", ("pipelines", "imfuse.cli"), ()),
        ("pipelines", ("imfuse.cli",), ()),
    ],
)
def test_no_upward_imports(folder, forbidden, skip):
    assert violations(folder, forbidden, skip) == []


def test_the_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from components.steps import train\n    import pipelines.runner\n")
    assert imported_modules(module) == {"components.steps", "pipelines.runner"}
