"""Export a run folder to a bundle: one ONNX graph per role plus manifest.json.

Each graph is exported with the torch.export-based exporter (dynamic batch axis), checked
with `onnx.checker.check_model(full_check=True)`, and run through onnxruntime on a probe
batch; the max absolute difference from torch is recorded in the manifest and export
fails if it exceeds `PARITY_TOLERANCE`. The bundle is written to a temporary folder and
renamed into place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import logging
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import torch

from gen.runtime.bundle import sha256_file
from gen.runtime.manifest import MANIFEST, DataSpec, GraphSpec, LatentSpec, Manifest, ScoringSpec, TensorSpec
from gen.runtime.providers import import_onnxruntime
from gen.trainer.models.base import GraphDef
from gen.trainer.train import gen_version, load_checkpoint, staged_folder

OPSET = 18
PARITY_TOLERANCE = 1e-4


class ExportError(Exception):
    """Export failed a check (parity, ONNX validity); nothing was written."""

    exit_code = 1


def export_graph(graph: GraphDef, path: Path) -> None:
    """Write one graph with a dynamic batch axis on its input and outputs."""
    example = torch.zeros(2, *graph.input_shape)
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            graph.module, (example,), dynamo=True, opset_version=OPSET, verbose=False,
            input_names=[graph.input_name], output_names=graph.output_names,
            dynamic_shapes=({0: batch},), optimize=True,
        )
    program.save(str(path))


def tensor_specs(values) -> list[TensorSpec]:
    return [TensorSpec(v.name, ["batch" if (d.dim_param or not d.HasField("dim_value")) else d.dim_value
                                for d in v.type.tensor_type.shape.dim],
                       onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name)
            for v in values]


def probe_input(graph: GraphDef, probe_rows: np.ndarray, seed: int) -> np.ndarray:
    """Held-out data rows for data graphs; standard-normal codes for latent graphs."""
    if graph.input_kind == "data":
        return probe_rows.astype(np.float32)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((len(probe_rows), *graph.input_shape)).astype(np.float32)


def parity(graph: GraphDef, path: Path, probe: np.ndarray) -> tuple[float, float]:
    """(max |torch - onnxruntime|, max |torch|) over all outputs on the probe batch."""
    ort = import_onnxruntime()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {graph.input_name: probe})
    with torch.no_grad():
        want = graph.module(torch.from_numpy(probe))
    want = want if isinstance(want, tuple) else (want,)
    diff = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))
    return diff, max(float(np.abs(w.numpy()).max()) for w in want)


def export_run(run_dir: str | Path, out: str | Path, force: bool = False) -> Manifest:
    """Export the run folder `run_dir` to the bundle folder `out`; return its manifest."""
    run_dir, out = Path(run_dir), Path(out)
    cfg, info, net = load_checkpoint(run_dir)
    probe_rows = np.load(run_dir / "probe.npy", allow_pickle=False)
    with staged_folder(out, MANIFEST, "bundle", replace=force) as staging:
        graphs, parities, scales = {}, {}, {}
        for role, graph in net.graphs().items():
            path = staging / f"{role}.onnx"
            export_graph(graph, path)
            model = onnx.load(str(path))
            onnx.checker.check_model(model, full_check=True)
            diff, scale = parity(graph, path, probe_input(graph, probe_rows, cfg.seed))
            # Absolute for outputs of order 1; relative for large ones (a VAE's negative ELBO
            # sums hundreds of float32 terms, so its last bits differ by more than 1e-4).
            if not diff <= PARITY_TOLERANCE * max(1.0, scale):
                raise ExportError(f"{role}: torch vs onnxruntime differ by {diff:.3g} "
                                  f"(> {PARITY_TOLERANCE} x max(1, {scale:.3g})) on the probe batch")
            parities[role], scales[role] = diff, scale
            graphs[role] = GraphSpec(role=role, file=path.name, sha256=sha256_file(path), opset=OPSET,
                                     inputs=tensor_specs(model.graph.input),
                                     outputs=tensor_specs(model.graph.output))
        scoring = info["scoring"] if "score" in info["capabilities"] else None
        manifest = Manifest(
            family=cfg.model, variant=_variant(cfg, net), gen_version=gen_version(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"), seed=cfg.seed,
            config=cfg.to_dict(), data=DataSpec(**info["data"]), graphs=graphs,
            capabilities=list(info["capabilities"]), latent=LatentSpec(**info["latent"]),
            scoring=ScoringSpec(**scoring) if scoring else None,
            metrics={**info["metrics"], "trained_with_torch": info["torch_version"],
                     "trained_at": info["created"]},
            parity={"max_abs_diff": parities, "max_abs_output": scales, "probe_rows": int(len(probe_rows)),
                    "tolerance": PARITY_TOLERANCE, "rule": "max_abs_diff <= tolerance * max(1, max_abs_output)"},
        )
        manifest.write(staging)
    return manifest


def _variant(cfg, net) -> str:
    if cfg.model == "vae":
        return f"{net.decoder_kind} decoder"
    if cfg.model == "gan":
        return f"{cfg.gan_loss} loss, k={cfg.k}"
    return {"ae-naive": "naive", "ae": "standard", "ae-tied": "tied weights"}[cfg.model]
