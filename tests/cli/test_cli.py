"""The `gen` command line: verbs, --json, exit codes, and nothing half-written on errors."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gen.cli.main import app
from gen.runtime import __version__
from gen.runtime.manifest import FORMAT_VERSION

runner = CliRunner()


def gen(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_version_and_help():
    result = gen("--version")
    assert result.exit_code == 0 and result.output.strip() == f"gen {__version__}"
    for verb in ("train", "export", "models", "sample", "score", "encode", "info", "demo"):
        result = gen(verb, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def test_sample_png_and_npy(bundles, tmp_path):
    result = gen("sample", bundles["ae"], "--n", 9, "--seed", 1, "--out", tmp_path / "s.npy", "--json")
    assert result.exit_code == 0, result.output
    import onnxruntime

    summary = json.loads(result.output)
    # `auto` may pick CUDA on a machine that has it: the provider reported is one offered
    assert summary["provider"] in onnxruntime.get_available_providers() and summary["n"] == 9
    assert summary["sampler"] == "ancestral"
    first = np.load(tmp_path / "s.npy")
    assert first.shape == (9, 1, 8, 8)
    gen("sample", bundles["ae"], "--n", 9, "--seed", 1, "--out", tmp_path / "t.npy")
    np.testing.assert_array_equal(first, np.load(tmp_path / "t.npy"))
    assert gen("sample", bundles["ae"], "--out", tmp_path / "g.png").exit_code == 0
    assert (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("method", ["drs", "mh"])
def test_sample_refine(bundles, tmp_path, method):
    out = tmp_path / f"{method}.npy"
    result = gen("sample", bundles["wgan-gp"], "--n", 12, "--seed", 2, "--refine", method, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["refine"] == method and np.load(out).shape == (12, 1, 8, 8)
    from gen.runtime import load

    np.testing.assert_array_equal(np.load(out), load(bundles["wgan-gp"]).sample(12, seed=2, refine=method))


def test_sample_refine_and_code_errors(bundles, tmp_path):
    out = tmp_path / "s.npy"
    for args, message in (
            ((bundles["vae"], "--refine", "drs"), "no calibrated discriminator"),
            ((bundles["gan"], "--refine-steps", 5), "go with refine"),
            ((bundles["gan"], "--refine", "drs", "--refine-steps", 5), "steps is an option of --refine mh"),
            ((bundles["infogan"], "--code", "cat"), "expected NAME=VALUE"),
            ((bundles["infogan"], "--code", "cat=9"), "class index in 0..2"),
            ((bundles["gan"], "--code", "cat=1"), "no latent codes")):
        result = gen("sample", *args, "--out", out)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
        assert not out.exists()


def test_sample_with_codes_and_info_lists_them(bundles, tmp_path):
    result = gen("sample", bundles["infogan"], "--n", 6, "--code", "cat=2", "--code", "c1=-0.5", "--out",
                 tmp_path / "c.npy")
    assert result.exit_code == 0, result.output
    from gen.runtime import load

    want = load(bundles["infogan"]).sample(6, seed=0, codes={"cat": 2, "c1": -0.5})
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), want)
    info = gen("info", bundles["infogan"])
    assert "codes (--code NAME=VALUE): cat (0..2), c1 (uniform -1..1)" in info.output
    assert "--refine drs|mh: discriminator calibrated on" in info.output
    summary = json.loads(gen("info", bundles["infogan"], "--json").output)
    assert [c["name"] for c in summary["latent"]["codes"]] == ["cat", "c1"] and summary["refine"]["n_real"] > 0


def test_score_csv_columns(bundles, digits_rows, tmp_path):
    rows = tmp_path / "rows.csv"
    np.savetxt(rows, digits_rows[:20], delimiter=",", fmt="%g")
    result = gen("score", bundles["vae"], rows, "--out", tmp_path / "s.csv", "--chunk-rows", 7, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == 20
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "index,score,normal_quantile,flag" and len(lines) == 21
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(20))


@pytest.mark.parametrize("content, message", [
    ("1,2,3\n", "line 6: expected 64 values, got 3"),
    (",".join(["1"] * 63 + ["x"]) + "\n", "line 6, column 64: expected a number, got 'x'"),
    (",".join(["1"] * 63 + ["nan"]) + "\n", "line 6, column 64: value is nan"),
    ("", "file is empty"),
])
def test_score_bad_input_exit_2_and_no_output(bundles, tmp_path, content, message):
    rows = tmp_path / "rows.csv"
    # a valid first chunk, then the bad row: the output must still not appear
    good = "\n".join(",".join(["1"] * 64) for _ in range(5)) + "\n" if content else ""
    rows.write_text(good + content)
    out = tmp_path / "scores.csv"
    result = gen("score", bundles["ae"], rows, "--out", out, "--chunk-rows", 2)
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert str(rows) in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


def _tamper(folder):
    data = bytearray((folder / "encoder.onnx").read_bytes())  # same size: the digest, not the size, catches it
    data[-10] ^= 0xFF
    (folder / "encoder.onnx").write_bytes(bytes(data))
    return "encoder.onnx: SHA-256 differs from SHA256SUMS"


def _missing(folder):
    (folder / "score.onnx").unlink()
    return "score.onnx: listed in SHA256SUMS but missing"


def _newer(folder):
    path = folder / "manifest.json"
    path.write_text(path.read_text().replace(f'"format_version": {FORMAT_VERSION}', '"format_version": 99'))
    return "manifest.json: format_version 99 is newer than this gen reads"


@pytest.mark.parametrize("damage", [_tamper, _missing, _newer])
@pytest.mark.parametrize("verb", ["sample", "score", "info"])
def test_bad_bundle_exit_2_and_no_output(bundle_copy, digits_rows, tmp_path, damage, verb):
    folder = bundle_copy()
    message = damage(folder)
    rows = tmp_path / "rows.npy"
    np.save(rows, digits_rows[:3])
    out = tmp_path / ("s.npy" if verb == "sample" else "scores.csv")
    args = {"sample": ["--out", out], "score": [rows, "--out", out], "info": []}[verb]
    result = gen(verb, folder, *args)
    assert result.exit_code == 2
    assert message in result.output and str(folder) in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".*.part"))


def test_unsupported_verb_exit_2(bundles, digits_rows, tmp_path):
    np.save(tmp_path / "rows.npy", digits_rows[:3])
    result = gen("encode", bundles["gan"], tmp_path / "rows.npy", "--out", tmp_path / "c.npy")
    assert result.exit_code == 2 and "does not support 'encode'" in result.output


def test_cuda_requested_without_cuda_exit_2(bundles, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine's onnxruntime offers CUDA")
    result = gen("sample", bundles["ae"], "--device", "cuda", "--out", tmp_path / "s.npy")
    assert result.exit_code == 2 and "CUDAExecutionProvider" in result.output
    assert not (tmp_path / "s.npy").exists()


def test_png_of_tabular_bundle_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "tab.npy", rng.normal(size=(60, 5)).astype(np.float32))
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert gen("train", "--model", "ae", "--data", tmp_path / "tab.npy", "--epochs", 2, "--hidden", "8",
               "--latent-dim", 2, "--out", run, "-q").exit_code == 0
    assert gen("export", run, "--out", bundle).exit_code == 0
    result = gen("sample", bundle, "--out", tmp_path / "s.png")
    assert result.exit_code == 2 and "write .npy or .csv instead" in result.output
    assert gen("sample", bundle, "--out", tmp_path / "s.csv").exit_code == 0
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 65


def test_info_shows_log_z_where_the_bundle_has_one(bundles):
    result = gen("info", bundles["rbm"])
    assert result.exit_code == 0 and "log Z: " in result.output and "(exact; enumeration" in result.output
    assert json.loads(gen("info", bundles["rbm"], "--json").output)["scoring"]["log_partition"]["method"] == "exact"
    assert "log Z" not in gen("info", bundles["vae"]).output


def test_info(bundles):
    result = gen("info", bundles["vae"])
    assert result.exit_code == 0
    assert "vae (bernoulli decoder)" in result.output and "threshold" in result.output
    summary = json.loads(gen("info", bundles["gan"], "--json").output)
    assert summary["capabilities"] == ["sample", "score"]
    assert set(summary["graphs"]) == {"generator", "discriminator", "score", "widen"}


def test_train_config_file_and_flag_override(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: vae\ndata: ring8\nepochs: 1\nhidden: [8]\nlatent-dim: 2\nseed: 3\n")
    result = gen("train", "--config", config, "--epochs", 2, "--out", tmp_path / "run", "-q", "--json")
    assert result.exit_code == 0, result.output
    import yaml

    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert resolved["model"] == "vae" and resolved["epochs"] == 2 and resolved["seed"] == 3
    assert resolved["latent_dim"] == 2 and resolved["decoder"] == "gaussian"  # auto, resolved for 2-D points
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("args, message", [
    (["--model", "nope"], "model='nope': expected one of"),
    (["--data", "missing.csv"], "missing.csv: not a built-in dataset"),
    (["--normal-class", "42"], "--normal-class 42: no such label"),
    (["--model", "vae", "--kl-weight", "0"], "option kl_weight=0.0: expected a number > 0"),
    (["--data", "ring8", "--model", "ae", "--loss", "bce"], "loss=bce needs data scaled to [0, 1]"),
    (["--model", "ae", "--decoder", "gaussian"], "option decoder: does not apply to family 'ae' (it is an option of vae)"),
    (["--model", "gan", "--k", "2"], "option k: unknown key"),
    (["--epochs", "two"], "option epochs='two': expected an integer >= 1"),
    (["stray"], "unexpected argument 'stray'"),
])
def test_train_bad_input_exit_2(tmp_path, args, message):
    result = gen("train", *args, "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_train_bad_config_keys(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: ae\nepohcs: 3\n")
    result = gen("train", "--config", config)
    assert result.exit_code == 2 and "c.yaml epohcs: unknown key" in result.output


def test_export_refuses_to_overwrite(runs, bundles):
    result = gen("export", runs["ae"], "--out", bundles["ae"])
    assert result.exit_code == 2 and "bundles are immutable" in result.output


def test_family_options_on_the_command_line(tmp_path):
    import yaml

    result = gen("train", "--model", "gan", "--data", "ring8", "--epochs", 1, "--hidden", "8,8", "--latent-dim=2",
                 "--d-steps", 2, "--loss", "minimax", "--out", tmp_path / "run", "-q", "--json")
    assert result.exit_code == 0, result.output
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["hidden"] == [8, 8] and recorded["latent_dim"] == 2 and recorded["d_steps"] == 2
    assert recorded["loss"] == "minimax" and recorded["lr"] == 1e-3
    assert json.loads(result.output)["config"] == recorded


def test_models_lists_families_and_options():
    from gen.trainer import registry

    result = gen("models")
    assert result.exit_code == 0
    for name, family in registry.families().items():
        assert name in result.output and family.description in result.output
    listing = json.loads(gen("models", "--json").output)
    assert listing["gan"]["capabilities"] == ["sample", "score"]
    result = gen("models", "vae")
    assert result.exit_code == 0
    assert "--kl-weight" in result.output and "a number > 0" in result.output and "one of auto, bernoulli, gaussian" in result.output
    options = {o["name"]: o for o in json.loads(gen("models", "vae", "--json").output)["options"]}
    assert options["lr"]["default"] == 1e-3 and options["hidden"]["default"] == [256, 128]
    result = gen("models", "nope")
    assert result.exit_code == 2 and "model='nope'" in result.output


def test_export_of_non_run_folder(tmp_path):
    result = gen("export", tmp_path, "--out", tmp_path / "b")
    assert result.exit_code == 2 and "not a run folder" in result.output
    assert not (tmp_path / "b").exists()


def test_train_prints_calibration_warning_as_one_line(tmp_path):
    result = gen("train", "--model", "ae", "--normal-class", "0", "--epochs", 1, "--hidden", "8",
                 "--latent-dim", 2, "--out", tmp_path / "run", "-q")
    assert result.exit_code == 0
    assert "warning: only 35 calibration rows" in result.output


def test_cuda_fallback_warning_is_one_line(bundles, tmp_path, monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    real = onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession",
                        lambda blob, sess_options=None, providers=None:
                        real(blob, sess_options=sess_options, providers=["CPUExecutionProvider"]))
    result = gen("sample", bundles["ae"], "--n", 4, "--out", tmp_path / "s.npy", "--json")
    assert result.exit_code == 0
    assert "warning: CUDA was offered by onnxruntime but the session runs on CPUExecutionProvider" in result.output
    result = gen("sample", bundles["ae"], "--device", "cuda", "--out", tmp_path / "t.npy")
    assert result.exit_code == 2 and not (tmp_path / "t.npy").exists()


def test_export_check_failure_is_one_line_exit_1(runs, tmp_path, monkeypatch):
    from gen.exporters import onnx_export

    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)
    result = gen("export", runs["ae"], "--out", tmp_path / "b")
    assert result.exit_code == 1 and result.output.startswith("error: encoder: torch vs onnxruntime differ")
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "b").exists()


def test_missing_training_extra_is_one_line(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return real(name, *args, **kwargs)

    import sys

    for module in [m for m in sys.modules if m.startswith("gen.trainer.train") or m.startswith("gen.exporters")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    result = gen("train", "--epochs", 1, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.output.strip() == "error: this command needs torch: pip install 'gen[train]'"


def test_family_option_without_a_value_is_one_line(tmp_path):
    result = gen("train", "--model", "ae", "--latent-dim", "--epochs", 1, "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and "option latent_dim: needs a value (an integer >= 1)" in result.output


# -- anomaly explanations and maps, streaming encode ------------------------------------------

@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npy"])
def test_score_explain_columns(bundles, digits_rows, tmp_path, suffix):
    from gen.runtime import load

    if suffix == ".parquet":
        pq = pytest.importorskip("pyarrow.parquet")
    np.save(tmp_path / "rows.npy", digits_rows[:10])
    out = tmp_path / f"s{suffix}"
    result = gen("score", bundles["ae"], tmp_path / "rows.npy", "--out", out, "--explain", 2, "--chunk-rows", 3)
    assert result.exit_code == 0, result.output
    want = load(bundles["ae"]).explain(digits_rows[:10], 2)
    if suffix == ".csv":
        lines = out.read_text().splitlines()
        assert lines[0] == "index,score,normal_quantile,flag,top1_feature,top1_error,top2_feature,top2_error"
        table = {"top1_feature": [line.split(",")[4] for line in lines[1:]],
                 "top2_error": [float(line.split(",")[7]) for line in lines[1:]]}
    elif suffix == ".parquet":
        table = pq.read_table(out).to_pydict()
    else:
        table = np.load(out)
    assert list(table["top1_feature"]) == list(want.features[:, 0])
    np.testing.assert_allclose(table["top2_error"], want.errors[:, 1], rtol=1e-6)


def test_score_maps_png(bundles, digits_rows, tmp_path):
    from tests.runtime.test_model import png_size

    np.save(tmp_path / "rows.npy", digits_rows[:30])
    result = gen("score", bundles["vae"], tmp_path / "rows.npy", "--out", tmp_path / "s.csv",
                 "--maps", tmp_path / "maps.png", "--maps-rows", 4, "--chunk-rows", 8, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["maps"] == str(tmp_path / "maps.png")
    assert png_size(tmp_path / "maps.png") == ((3 * 9 + 1) * 8, (4 * 9 + 1) * 8)
    # the default is 16 rows
    assert gen("score", bundles["vae"], tmp_path / "rows.npy", "--out", tmp_path / "t.csv",
               "--maps", tmp_path / "all.png").exit_code == 0
    assert png_size(tmp_path / "all.png")[1] == (16 * 9 + 1) * 8
    result = gen("score", bundles["vae"], tmp_path / "rows.npy", "--out", tmp_path / "u.csv", "--maps-rows", 4)
    assert result.exit_code == 2 and "--maps-rows applies only with --maps" in result.output
    assert not (tmp_path / "u.csv").exists()


@pytest.fixture(scope="module")
def tabular_bundle(tmp_path_factory):
    """An ae bundle trained on a tiny CSV whose header names the columns."""
    folder = tmp_path_factory.mktemp("tabular")
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(60, 4)).astype(np.float32)
    np.savetxt(folder / "tab.csv", rows, delimiter=",", fmt="%g", header="age,income,debt,score", comments="")
    assert gen("train", "--model", "ae", "--data", folder / "tab.csv", "--epochs", 2, "--hidden", "8",
               "--latent-dim", 2, "--out", folder / "run", "-q").exit_code == 0
    assert gen("export", folder / "run", "--out", folder / "bundle").exit_code == 0
    return folder / "bundle", rows


def test_explain_names_tabular_columns_and_maps_are_refused(tabular_bundle, tmp_path):
    bundle, rows = tabular_bundle
    rows = rows[:5].copy()
    rows[:, 2] = 40.0  # far outside the training data: debt explains every row
    np.save(tmp_path / "rows.npy", rows)
    result = gen("score", bundle, tmp_path / "rows.npy", "--out", tmp_path / "s.csv", "--explain", 1)
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert [line.split(",")[4] for line in lines[1:]] == ["debt"] * 5
    result = gen("score", bundle, tmp_path / "rows.npy", "--out", tmp_path / "t.csv", "--maps", tmp_path / "m.png")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "anomaly maps need image data; this bundle's rows are tabular of shape [4]" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.npy", "s.csv"]


@pytest.mark.parametrize("flag", [["--explain", 3], ["--maps", "maps.png"]])
def test_explain_and_maps_refused_without_per_feature_errors(bundles, digits_rows, tmp_path, flag, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "rows.npy", digits_rows[:5])
    result = gen("score", bundles["rbm"], tmp_path / "rows.npy", "--out", tmp_path / "s.csv", *flag)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "model family 'rbm' gives one score per row and no per-feature errors" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.npy"]


def test_encode_streams_the_same_codes(bundles, digits_rows, tmp_path):
    from gen.runtime import load

    rows = tmp_path / "rows.csv"
    np.savetxt(rows, digits_rows[:10], delimiter=",", fmt="%g")
    for name in ("c.npy", "c.csv"):
        result = gen("encode", bundles["ae"], rows, "--out", tmp_path / name, "--chunk-rows", 3, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["rows"] == 10 and json.loads(result.output)["dim"] == 4
    want = load(bundles["ae"]).encode(digits_rows[:10])
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), want)
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "c.csv", delimiter=",", skiprows=1, dtype=np.float32), want)


def test_encode_bad_input_exit_2_and_no_output(bundles, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("\n".join(",".join(["1"] * 64) for _ in range(5)) + "\n1,2,3\n")  # a valid chunk, then a bad row
    for name in ("c.npy", "c.csv"):
        result = gen("encode", bundles["ae"], rows, "--out", tmp_path / name, "--chunk-rows", 2)
        assert result.exit_code == 2 and "line 6: expected 64 values, got 3" in result.output
        assert len(result.output.strip().splitlines()) == 1
    result = gen("encode", bundles["ae"], rows, "--out", tmp_path / "c.parquet")
    assert result.exit_code == 2 and "expected one of .npy, .csv" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


def test_score_peak_memory_does_not_grow_with_the_file(bundles, digits_rows, tmp_path):
    """`gen score` of 100x more rows (51 MiB of float32, and as uint8) in a fresh process: peak
    RSS within a fixed bound of scoring the small file, far below the big file's size."""
    import subprocess
    import sys

    from tests.memory import PEAK_MIB

    code = (PEAK_MIB + "import sys\nfrom gen.cli.main import app\n"
            "try:\n    app(sys.argv[1:])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(peak_mib())\n")
    for dtype in ("float32", "uint8"):
        peaks = {}
        for n in (2_000, 200_000):
            path = tmp_path / f"rows-{n}.npy"
            np.save(path, np.resize(digits_rows, (n, 64)).astype(dtype))
            done = subprocess.run([sys.executable, "-c", code, "score", str(bundles["ae"]), str(path), "--out",
                                   str(tmp_path / f"s-{n}.npy"), "--device", "cpu"],
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            peaks[n] = float(done.stdout.split()[-1])
            assert np.load(tmp_path / f"s-{n}.npy").shape[0] == n
        assert peaks[200_000] - peaks[2_000] < 20, (dtype, peaks)  # the float32 file alone is 49 MiB
