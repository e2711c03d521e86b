"""A Triton Inference Server model repository from a bundle (`gen export RUN --out REPO --triton`).

Each graph of the bundle that serves alone (score, encoder, decoder, generator; they take raw
units, since preprocessing is inside the graphs) becomes one Triton model, `NAME.ROLE`:

    REPO/NAME.score/1/model.onnx          the bundle's graph, byte for byte
    REPO/NAME.score/config.pbtxt          onnxruntime_onnx, max_batch_size, dynamic batching,
                                          names, datatypes and dims from the manifest, KIND_GPU
    REPO/NAME.score/configs/cpu.pbtxt     the same on KIND_CPU (tritonserver --model-config-name=cpu)

What Triton cannot do with a bare graph stays gen's: the calibrated threshold and quantiles of
`score`, samplers (Gibbs chains, mixtures, refinement). The threshold is written into the
config's parameters so a client can flag rows itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from gen.runtime.errors import InputError

from .verbs import check_name

ROLES = ("score", "encoder", "decoder", "generator")
TRITON_TYPES = {"float32": "TYPE_FP32", "float64": "TYPE_FP64", "float16": "TYPE_FP16", "int64": "TYPE_INT64",
                "int32": "TYPE_INT32", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL"}


def _tensor(port, batched: bool) -> str:
    dims = [d if isinstance(d, int) else -1 for d in (port.shape[1:] if batched else port.shape)]
    lines = [f'    name: "{port.name}"', f"    data_type: {TRITON_TYPES[port.dtype]}"]
    if batched and not dims:  # one value per row: Triton wants dims [1], reshaped to a scalar
        lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    else:
        lines.append(f"    dims: [ {', '.join(str(d) for d in dims)} ]")
    return "  {\n" + "\n".join(lines) + "\n  }"


def model_config(name: str, graph, kind: str, max_batch: int, max_delay_us: int, parameters: dict) -> str:
    """config.pbtxt text (Triton's ModelConfig in protobuf text format)."""
    ports = [*graph.inputs, *graph.outputs]
    batched = max_batch > 0 and all(p.shape and not isinstance(p.shape[0], int) for p in ports)
    text = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {max_batch if batched else 0}",
            "input [\n" + ",\n".join(_tensor(p, batched) for p in graph.inputs) + "\n]",
            "output [\n" + ",\n".join(_tensor(p, batched) for p in graph.outputs) + "\n]"]
    if batched:
        text.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {max_delay_us}\n}}")
    text.append(f"instance_group [\n  {{\n    count: 1\n    kind: {kind}\n  }}\n]")
    for key, value in parameters.items():
        text.append(f'parameters {{\n  key: "{key}"\n  value: {{ string_value: "{value}" }}\n}}')
    return "\n".join(text) + "\n"


def write_triton_repository(bundle: str | Path, repo: str | Path, name: str | None = None, max_batch: int = 4096,
                            max_delay_us: int = 5000) -> list[Path]:
    """Write (or add to) the model repository `repo` from the verified bundle `bundle`; returns
    the model folders written. A model folder that exists is replaced."""
    from gen.runtime import load

    name = check_name(name or Path(bundle).resolve().name)
    model = load(bundle, device="cpu")
    manifest = model.manifest
    repo = Path(repo)
    if repo.exists() and not repo.is_dir():
        raise InputError(f"{repo}: exists and is not a folder (a Triton model repository is a folder)")
    roles = [r for r in ROLES if r in manifest.graphs]
    if not roles:
        raise InputError(f"{bundle}: no graph that serves alone ({', '.join(ROLES)}); Triton cannot run this "
                         f"{manifest.family} bundle's samplers")
    repo.mkdir(parents=True, exist_ok=True)
    written = []
    for role in roles:
        graph = manifest.graphs[role]
        model_name = f"{name}.{role}"
        params = {"gen_family": manifest.family, "gen_role": role}
        if role == "score" and manifest.scoring is not None:
            params.update(gen_threshold=repr(manifest.scoring.threshold),
                          gen_contamination=repr(manifest.scoring.contamination))
        staging = repo / f".{model_name}.part"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "1").mkdir(parents=True)
        (staging / "configs").mkdir()
        shutil.copyfile(Path(bundle) / graph.file, staging / "1" / "model.onnx")
        (staging / "config.pbtxt").write_text(model_config(model_name, graph, "KIND_GPU", max_batch, max_delay_us,
                                                           params))
        (staging / "configs" / "cpu.pbtxt").write_text(model_config(model_name, graph, "KIND_CPU", max_batch,
                                                                    max_delay_us, params))
        target = repo / model_name
        if target.exists():
            if not (target / "config.pbtxt").is_file() or "gen_role" not in (target / "config.pbtxt").read_text():
                shutil.rmtree(staging, ignore_errors=True)
                raise InputError(f"{target}: exists and is not a model gen wrote; remove it or choose another --name")
            shutil.rmtree(target)
        staging.rename(target)
        written.append(target)
    return written
