"""uint8 rows (pixels as MNIST files store them): image bundles carry a `widen` graph (format 7),
uint8 rows stay uint8 until a batch is fed and are widened by that graph where the graphs run
(under IOBinding) or on the host; either way they score, encode and reconstruct exactly as the
same values in float32, in memory and from files."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from gen.cli.main import app
from gen.runtime import BundleError, load
from gen.runtime.manifest import FORMAT_VERSION

from .test_bundle import edit_manifest


@pytest.mark.parametrize("io_binding", [False, True])
def test_uint8_and_float32_rows_give_the_same_results(bundles, digits_rows, io_binding, monkeypatch):
    model = load(bundles["ae"], device="cpu", io_binding=io_binding, batch_size=64)
    assert model.manifest.format_version == FORMAT_VERSION and model.widen is not None
    widened = []
    run = model.widen.run
    monkeypatch.setattr(model.widen, "run", lambda feeds, **kw: widened.append(len(feeds["x"])) or run(feeds, **kw))
    u8 = digits_rows[:300].astype(np.uint8)
    f32 = u8.astype(np.float32)
    assert np.array_equal(model.score(u8), model.score(f32))
    assert np.array_equal(model.errors(u8), model.errors(f32))
    assert np.array_equal(model.encode(u8), model.encode(f32))
    assert np.array_equal(model.reconstruct(u8.reshape(-1, 1, 8, 8)), model.reconstruct(f32))
    # under IOBinding each uint8 batch went through the widen graph; plain runs widen on the host
    assert (sum(widened) == 4 * 300) if io_binding else not widened


def test_uint8_files_score_and_encode_as_float32_files(bundles, digits_rows, tmp_path):
    u8 = digits_rows[:500].astype(np.uint8)
    np.save(tmp_path / "u8.npy", u8)
    np.save(tmp_path / "f32.npy", u8.astype(np.float32))
    runner = CliRunner()
    for verb, suffix in (("score", "csv"), ("encode", "npy")):
        for name in ("u8", "f32"):
            result = runner.invoke(app, [verb, str(bundles["ae"]), str(tmp_path / f"{name}.npy"), "--out",
                                         str(tmp_path / f"{verb}-{name}.{suffix}"), "--batch-size", "128"])
            assert result.exit_code == 0, result.output
        assert (tmp_path / f"{verb}-u8.{suffix}").read_bytes() == (tmp_path / f"{verb}-f32.{suffix}").read_bytes()


def test_a_widen_graph_that_does_not_take_uint8_is_refused(bundle_copy):
    folder = bundle_copy("ae")
    edit_manifest(folder, lambda m: m["graphs"]["widen"]["inputs"][0].update(dtype="float32"))
    with pytest.raises(BundleError, match="graph 'widen' must take uint8 data 'x'"):
        load(folder, device="cpu")


def test_bundles_without_widen_take_uint8_rows_widened_on_the_host(bundles, bundle_copy, digits_rows):
    assert "widen" not in load(bundles["autorec"], device="cpu").manifest.graphs  # ratings, not images
    folder = bundle_copy("ae")  # as a format-6 bundle, written before widen graphs
    (folder / "widen.onnx").unlink()

    def older(m):
        del m["graphs"]["widen"], m["parity"]["graphs"]["widen"]
        m["format_version"] = 6
    edit_manifest(folder, older)
    model = load(folder, device="cpu", io_binding=True)
    assert model.widen is None
    u8 = digits_rows[:100].astype(np.uint8)
    assert np.array_equal(model.score(u8), load(bundles["ae"], device="cpu").score(u8.astype(np.float32)))
