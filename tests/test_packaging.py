"""The wheel holds only the `gen` namespace, and the base install pulls no torch."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def package_roots() -> dict[str, str]:
    """setup.py's ROOTS (top folder -> package), read without running setup.py."""
    import ast

    tree = ast.parse((ROOT / "setup.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "ROOTS")
    return ast.literal_eval(node.value)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in package_roots():
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
                   check=True, capture_output=True)
    return next(out.glob("gen-*.whl"))


def test_wheel_contains_only_gen_packages(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"gen", wheel.name.split("-py3")[0] + ".dist-info"}
    packages = {str(Path(n).parent) for n in names if n.endswith(".py")}
    # every package folder of the source tree is in the wheel, found without a hand-kept list
    roots = {folder: name.replace(".", "/") for folder, name in package_roots().items()}
    assert set(roots) >= {"trainer", "exporters", "runtime", "cli", "pipelines", "serving"}
    source = {str(Path(roots[p.relative_to(ROOT).parts[0]], *p.relative_to(ROOT).parts[1:-1]))
              for root in roots for p in (ROOT / root).rglob("__init__.py")}
    assert packages == source and {"gen/runtime/samplers", "gen/trainer/protocols"} <= packages
    assert "gen/runtime/model.py" in names and not any("tests" in n for n in names)
    assert "gen/runtime/templates/report.html.j2" in names  # package data the report reads


def test_base_install_has_no_torch_or_onnxruntime(wheel):
    metadata = zipfile.ZipFile(wheel).read(next(n for n in zipfile.ZipFile(wheel).namelist()
                                                if n.endswith("METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    base = [r for r in requires if "extra ==" not in r]
    assert sorted(re.match(r"[A-Za-z0-9_.-]+", r).group() for r in base) == ["numpy", "pyyaml", "rich", "typer"]
    extras = {r.split("extra ==")[1].strip().strip("'\"") for r in requires if "extra ==" in r}
    assert {"train", "cpu", "gpu", "test", "ray", "serve"} <= extras
    assert any(r.startswith("torch") and "train" in r for r in requires)
    assert any(r.startswith("onnxruntime-gpu") and "gpu" in r for r in requires)
    assert "gen = gen.cli.entry:main" in zipfile.ZipFile(wheel).read(
        next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("entry_points.txt"))).decode()
