"""Dependencies point one way: imfuse (library) <- components <- pipelines; the CLI on top.

Every import counts, the ones inside functions too (that is where this project keeps its
heavy ones), so a cycle cannot hide behind a lazy import.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module a file imports: `import a.b`, `from a import b` (as a and a.b, since b
    may be a module), relative imports resolved, and importlib.import_module("literal")."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = list(path.relative_to(root).with_suffix("").parts)[:-1]  # a module's package; __init__'s own
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
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
        # model code speaks to MLflow and KFP only through imfuse.tracking (and the CLI)
        ("imfuse", ("mlflow", "kfp"), ("imfuse/cli/", "imfuse/tracking/", "imfuse/__main__.py")),
    ],
)
def test_no_upward_imports(folder, forbidden, skip):
    assert violations(folder, forbidden, skip) == []


def test_the_check_sees_lazy_relative_and_dynamic_imports(tmp_path):
    package = tmp_path / "imfuse" / "training"
    package.mkdir(parents=True)
    module = package / "m.py"
    module.write_text(
        "import importlib\n"
        "def f():\n    from components.steps import train\n    import pipelines.runner\n"
        "    from imfuse import cli\n    from ..cli import train\n    from . import config\n"
        "    importlib.import_module('imfuse.cli.export')\n"
    )
    found = imported_modules(module, root=tmp_path)
    assert {"components.steps.train", "pipelines.runner", "imfuse.cli", "imfuse.cli.train",
            "imfuse.training.config", "imfuse.cli.export"} <= found
