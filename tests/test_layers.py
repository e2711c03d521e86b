"""Imports flow one way, cli -> api (gen itself) -> exporters -> trainer -> runtime, never back (DESIGN.md), read
from the source with `ast` so a violation fails here before it becomes a cycle."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"api": "gen", "runtime": "gen.runtime", "trainer": "gen.trainer", "exporters": "gen.exporters", "cli": "gen.cli",
            "pipelines": "gen.pipelines", "serving": "gen.serving"}
FORBIDDEN = {
    "api": ("gen.cli", "gen.pipelines", "gen.serving"),  # the library's top: training, export, runtime
    "runtime": ("gen.trainer", "gen.exporters", "gen.cli", "torch"),
    "trainer": ("gen.exporters", "gen.cli"),
    "exporters": ("gen.cli",),
    "pipelines": ("gen.trainer", "gen.exporters", "gen.cli", "torch"),  # serving: the runtime only
    "serving": ("gen.trainer", "gen.exporters", "gen.cli", "torch"),
}


def imports(path: Path, package: str) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    parts = package.split(".") + list(path.relative_to(ROOT / path.relative_to(ROOT).parts[0]).parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[:len(parts) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module)
    return names


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_import_goes_back_up_the_chain(folder):
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if path.relative_to(ROOT).as_posix() == "api/__main__.py":  # `python -m gen` is the console script
            continue
        for name in imports(path, PACKAGES[folder]):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[folder]):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, bad


def test_the_check_sees_relative_imports():
    found = imports(ROOT / "trainer" / "models" / "vae.py", "gen.trainer")
    assert {"gen.trainer.graphs", "gen.trainer.models.base", "gen.runtime.manifest", "torch"} <= found
