"""The runtime and the serving commands must work where torch is not installed."""

import json
import subprocess
import sys

BLOCK_TORCH = (
    "import sys\n"
    "class _Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ImportError('torch is blocked in this test')\n"
    "sys.meta_path.insert(0, _Block())\n"
)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True)


def test_runtime_imports_without_torch():
    code = (
        "import importlib, pkgutil, gen.runtime, gen.pipelines, gen.serving\n"
        "for package in (gen.runtime, gen.pipelines, gen.serving):\n"
        "    for m in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "import gen.cli.main\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_blocker_really_blocks():
    result = run_python("import torch\n")
    assert result.returncode != 0 and "blocked" in result.stderr


def cli(*args: str) -> subprocess.CompletedProcess:
    code = (f"sys.argv = ['gen', *{list(args)!r}]\n"
            "from gen.cli.main import app\n"
            "try:\n    app()\n"
            "finally:\n    assert 'torch' not in sys.modules, 'torch was imported'\n")
    return run_python(code)


def test_sample_score_info_encode_without_torch(bundles, digits_rows, tmp_path):
    import numpy as np

    grid = tmp_path / "grid.png"
    result = cli("sample", str(bundles["vae"]), "--n", "16", "--out", str(grid))
    assert result.returncode == 0, result.stderr
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = tmp_path / "rows.npy"
    np.save(rows, digits_rows[:50])
    scores = tmp_path / "scores.csv"
    result = cli("score", str(bundles["ae"]), str(rows), "--out", str(scores))
    assert result.returncode == 0, result.stderr
    assert len(scores.read_text().splitlines()) == 51

    result = cli("info", str(bundles["gan"]), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["family"] == "gan"

    codes = tmp_path / "codes.npy"
    result = cli("encode", str(bundles["vae"]), str(rows), "--out", str(codes))
    assert result.returncode == 0, result.stderr
    assert np.load(codes).shape == (50, 4)


def test_serving_commands_load_no_heavy_library_they_do_not_use(bundles, digits_rows, tmp_path):
    """Every command pays for what it imports (cold start is benchmarked against `import
    torch`): `gen sample` and `gen score` of an NPY file load numpy, onnxruntime and typer, and
    none of torch, pydantic (typer 0.29 validates options through it: pinned below),
    pyarrow, ray, kserve, sklearn or scipy."""
    import numpy as np

    rows = tmp_path / "rows.npy"
    np.save(rows, digits_rows[:20])
    heavy = ("torch", "pydantic", "pyarrow", "ray", "kserve", "sklearn", "scipy")
    for args in (("sample", str(bundles["vae"]), "--n", "4", "--out", str(tmp_path / "s.npy")),
                 ("score", str(bundles["ae"]), str(rows), "--out", str(tmp_path / "scores.csv"))):
        code = (f"sys.argv = ['gen', *{list(args)!r}]\n"
                "from gen.cli.main import app\n"
                "try:\n    app()\n"
                "finally:\n"
                f"    loaded = sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))\n"
                "    print('loaded', loaded, file=sys.stderr)\n")
        result = run_python(code)
        assert result.returncode == 0 and "loaded []" in result.stderr, (args[0], result.stderr[-500:])
