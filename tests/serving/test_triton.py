"""`gen export RUN --out REPO --triton`: every config.pbtxt parses into Triton's ModelConfig
protobuf (as shipped by tritonclient), and onnxruntime serves each copied graph with exactly
the names, datatypes and dims the config declares."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from gen.cli.main import app

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")

NUMPY = {model_config_pb2.TYPE_FP32: np.float32, model_config_pb2.TYPE_FP64: np.float64,
         model_config_pb2.TYPE_INT64: np.int64}
ORT = {model_config_pb2.TYPE_FP32: "tensor(float)", model_config_pb2.TYPE_FP64: "tensor(double)",
       model_config_pb2.TYPE_INT64: "tensor(int64)"}


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_triton_repository_configs_parse_and_match_the_graphs(runs, bundles, tmp_path, family, digits_rows):
    import onnxruntime as ort

    repo = tmp_path / "repo"
    result = CliRunner().invoke(app, ["export", str(runs[family]), "--out", str(repo), "--triton", "--name", "m"])
    assert result.exit_code == 0, result.output
    folders = sorted(p.name for p in repo.iterdir())
    expected = {"vae": ["m.decoder", "m.encoder", "m.score"], "gan": ["m.generator", "m.score"]}[family]
    assert [f for f in folders if f in expected] == expected
    for folder in folders:
        for variant, kind in (("config.pbtxt", model_config_pb2.ModelInstanceGroup.KIND_GPU), ("configs/cpu.pbtxt",
                                                                             model_config_pb2.ModelInstanceGroup.KIND_CPU)):
            config = text_format.Parse((repo / folder / variant).read_text(), model_config_pb2.ModelConfig())
            assert config.name == folder and config.platform == "onnxruntime_onnx"
            assert config.instance_group[0].kind == kind
            assert config.max_batch_size == 4096 and config.dynamic_batching.max_queue_delay_microseconds == 5000
        session = ort.InferenceSession(str(repo / folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        for declared, actual in ((config.input, session.get_inputs()), (config.output, session.get_outputs())):
            assert [t.name for t in declared] == [a.name for a in actual]
            for t, a in zip(declared, actual):
                assert ORT[t.data_type] == a.type
                dims = list(t.reshape.shape) if t.HasField("reshape") else list(t.dims)
                assert [-1 if not isinstance(d, int) else d for d in a.shape[1:]] == dims, (folder, t.name)
        batch = {t.name: np.zeros((3, *t.dims), dtype=NUMPY[t.data_type]) for t in config.input}
        if folder.endswith("score") and family == "vae":
            batch = {"x": digits_rows[:3].reshape(3, *config.input[0].dims)}
        outputs = session.run(None, batch)
        assert all(o.shape[0] == 3 for o in outputs)
    if family == "vae":
        score = text_format.Parse((repo / "m.score" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        assert float(score.parameters["gen_threshold"].string_value) > 0


def test_triton_refusals(runs, tmp_path):
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(app, ["export", str(runs["ae"]), "--out", str(tmp_path / "file"), "--triton"])
    assert result.exit_code == 2 and "is not a folder" in result.output


def test_triton_refuses_other_options_names_and_foreign_folders(runs, tmp_path):
    runner = CliRunner()
    repo = tmp_path / "repo"
    for extra, message in ((["--quantize", "int8"], "--quantize: not with --triton"),
                           (["--force"], "--force: not with --triton"),
                           (["--name", "a/b"], "a model name is a plain word"),
                           (["--name", ".hidden"], "a model name is a plain word")):
        result = runner.invoke(app, ["export", str(runs["ae"]), "--out", str(repo), "--triton", *extra])
        assert result.exit_code == 2 and message in result.output, result.output
    (repo / "m.score").mkdir(parents=True)
    (repo / "m.score" / "mine.txt").write_text("keep")
    result = runner.invoke(app, ["export", str(runs["ae"]), "--out", str(repo), "--triton", "--name", "m"])
    assert result.exit_code == 2 and "is not a model gen wrote" in result.output
    assert (repo / "m.score" / "mine.txt").read_text() == "keep"
    assert not [p for p in repo.iterdir() if p.name.startswith(".")]
