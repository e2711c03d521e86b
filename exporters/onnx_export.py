"""Export a run folder to a bundle: one ONNX graph per role plus manifest.json.

Each graph is wrapped so it takes and returns raw units (the bundle's preprocessing is its
first and last nodes), exported with the torch.export-based exporter (dynamic batch axis on
every input), checked with `onnx.checker.check_model(full_check=True)`, and run through
onnxruntime on a probe batch of held-out raw rows (and seeded noise for the other inputs);
the torch vs onnxruntime difference is recorded in the manifest and export fails if it
exceeds the tolerance. The bundle is written to a staging folder and renamed into place, so
a failed export leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import torch

from gen.runtime.bundle import sha256_file, write_digests
from gen.runtime.errors import BundleError, ConfigError, ExportError
from gen.runtime.manifest import MANIFEST, WIDEN, GraphParity, GraphSpec, Manifest, ParitySpec, TensorSpec
from gen.runtime.outputs import staged_folder
from gen.runtime.providers import import_onnxruntime
from gen.runtime.version import gen_version
from gen.trainer.graphs import GraphDef, Port, RawUnits
from gen.trainer.refine import with_tuned_discriminator
from gen.trainer.run_folder import PROBE, load_run

OPSET = 18
PRECISIONS = ("fp32", "fp16")
PARITY_TOLERANCE = 1e-4
# Share of discrete chain-state entries (Bernoulli draws) allowed to differ: a flip needs a
# probability within float rounding (~1e-7) of its uniform noise, so about 1e-7 per entry.
STATE_TOLERANCE = 1e-3
# Options of the run, not of the model: where the run folder went, what the console showed, on
# which machines the processes ran. The manifest's config leaves them out, so the same model
# exports to the same bytes.
RUN_ONLY = ("out", "quiet", "engine", "address")


def build_time() -> datetime | None:
    """SOURCE_DATE_EPOCH (reproducible-builds.org) as a UTC time, or None where it is unset."""
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return None
    try:
        return datetime.fromtimestamp(int(raw), timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise ConfigError(f"SOURCE_DATE_EPOCH={raw!r}: expected whole seconds since 1970-01-01 UTC") from None


def _stamps(metrics):
    """The bundle's `created` and metrics: now and as trained; under SOURCE_DATE_EPOCH the
    epoch for both times and the training duration left out (it changes from run to run), so
    one run, or the same rows trained again with the same seed, exports the same bytes."""
    epoch = build_time()
    if epoch is None:
        return datetime.now(timezone.utc).isoformat(timespec="seconds"), metrics
    stamp = epoch.isoformat(timespec="seconds")
    return stamp, dataclasses.replace(metrics, train_seconds=None, trained_at=stamp)


def _one_line(exc: BaseException) -> str:
    """The root cause of an exporter or checker failure, in one line (the torch exporter wraps
    the cause in several lines of advice)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def export_graph(graph: GraphDef, module: RawUnits, path: Path) -> None:
    """Write one graph with a shared dynamic batch axis on every input and output."""
    examples = tuple(torch.zeros(2, *p.shape) for p in graph.inputs)
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            module, examples, dynamo=True, opset_version=OPSET, verbose=False,
            input_names=[p.name for p in graph.inputs], output_names=[p.name for p in graph.outputs],
            # forward(*inputs) takes one tuple: one {axis: Dim} per input, inside it.
            dynamic_shapes=(tuple({0: batch} for _ in graph.inputs),), optimize=True,
        )
    program.save(str(path))


def tensor_specs(values, ports: list[Port]) -> list[TensorSpec]:
    """The manifest's record of a graph's inputs or outputs, read from the ONNX file itself."""
    kinds = {p.name: p.kind for p in ports}
    return [TensorSpec(v.name, ["batch" if (d.dim_param or not d.HasField("dim_value")) else d.dim_value
                                for d in v.type.tensor_type.shape.dim],
                       onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                       kinds.get(v.name, "value"))
            for v in values]


def probe_feeds(graph: GraphDef, probe_rows: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Held-out raw rows for data inputs; seeded draws for the others (binary for masks and
    chain states, uniform or normal for noise and codes as the port says)."""
    rng = np.random.default_rng(seed)
    n = len(probe_rows)
    feeds = {}
    for port in graph.inputs:
        shape = (n, *port.shape)
        if port.kind == "data":
            feeds[port.name] = probe_rows.reshape(shape).astype(np.float32)
        elif port.kind in ("mask", "state"):
            feeds[port.name] = (rng.random(shape) < 0.5).astype(np.float32)
        elif port.distribution == "uniform":
            feeds[port.name] = rng.random(shape, dtype=np.float32)
        else:
            feeds[port.name] = rng.standard_normal(shape, dtype=np.float32)
    return feeds


def parity(graph: GraphDef, module: RawUnits, path: Path, feeds: dict[str, np.ndarray]) -> GraphParity:
    """max |torch - onnxruntime| and max |torch| over the continuous outputs on the probe
    feeds; the share of differing entries over the discrete chain-state outputs."""
    ort = import_onnxruntime()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [p.name for p in graph.outputs]
    got = session.run(names, feeds)
    with torch.no_grad():
        want = module(*(torch.from_numpy(feeds[p.name]) for p in graph.inputs))
    want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
    pairs = list(zip(graph.outputs, got, want))
    values = [(g, w) for p, g, w in pairs if p.kind != "state"]
    states = [(g, w) for p, g, w in pairs if p.kind == "state"]
    return GraphParity(max_abs_diff=max((float(np.abs(g - w).max()) for g, w in values), default=0.0),
                       max_abs_output=max((float(np.abs(w).max()) for _, w in values), default=0.0),
                       # binary states must agree exactly; continuous ones (a Gaussian RBM's) to tolerance
                       state_mismatch=float(np.mean(np.concatenate(
                           [(np.abs(g - w) > PARITY_TOLERANCE * np.maximum(1.0, np.abs(w))).ravel() for g, w in states])))
                       if states else 0.0)


def export_widen(staging: Path, shape: list[int], probe_rows: np.ndarray) -> tuple[GraphSpec, GraphParity]:
    """Write the `widen` graph of an image bundle (uint8 rows -> the float32 rows the other
    graphs take, one Cast) and check it on the probe rows, rounded into uint8."""
    role, source, target = WIDEN
    dims = ["batch", *shape]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Cast", [source], [target], to=onnx.TensorProto.FLOAT)], role,
        [onnx.helper.make_tensor_value_info(source, onnx.TensorProto.UINT8, dims)],
        [onnx.helper.make_tensor_value_info(target, onnx.TensorProto.FLOAT, dims)])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="gen")
    model.ir_version = 8  # read by every onnxruntime gen supports
    onnx.checker.check_model(model, full_check=True)
    path = staging / f"{role}.onnx"
    onnx.save(model, str(path))
    rows = np.clip(np.rint(probe_rows), 0, 255).astype(np.uint8).reshape(-1, *shape)
    session = import_onnxruntime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([target], {source: rows})[0]
    result = GraphParity(max_abs_diff=float(np.abs(got - rows.astype(np.float32)).max()),
                         max_abs_output=float(np.abs(got).max()))
    if result.max_abs_diff != 0.0:
        raise ExportError(f"{role}: onnxruntime's Cast of uint8 rows differs from numpy's by {result.max_abs_diff}")
    spec = GraphSpec(role=role, file=path.name, sha256=sha256_file(path), opset=OPSET,
                     inputs=[TensorSpec(source, dims, "uint8", "data")],
                     outputs=[TensorSpec(target, dims, "float32", "data")], file_bytes=path.stat().st_size)
    return spec, result


def export_run(run_dir: str | Path, out: str | Path, force: bool = False,
               sign_key: str | Path | None = None, quantize: str | None = None,
               precision: str = "fp32") -> Manifest:
    """Export the run folder `run_dir` to the bundle folder `out`; return its manifest. With
    `sign_key` (an EC private key on P-256, P-384 or P-521 in PEM; any other is refused before
    the export's work) the bundle is signed (model.sig, gen[sign]). With
    `quantize` ("int8") the score graph is written with int8 weights, its cost measured and
    its threshold recalibrated (exporters/quantize.py); with `precision` "fp16" the same, with
    float16 weights and activations (for GPU serving)."""
    run_dir, out = Path(run_dir), Path(out)
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision != "fp32" and quantize is not None:
        raise ConfigError(f"--precision {precision} and --quantize {quantize}: choose one narrow score graph")
    narrow = quantize if quantize is not None else (precision if precision != "fp32" else None)
    build_time()  # a bad SOURCE_DATE_EPOCH is refused before the export's work
    if sign_key is not None:
        from gen.runtime.signing import check_signing_available

        check_signing_available(sign_key)  # before the export's work, not after it
    loaded = load_run(run_dir)
    cfg, data, net = loaded.cfg, loaded.data, loaded.net
    probe_rows = np.load(run_dir / PROBE, allow_pickle=False)
    with staged_folder(out, MANIFEST, "bundle", error=BundleError, replace=force) as staging:
        graphs, parities = {}, {}
        for role, graph in with_tuned_discriminator(cfg.family, net, loaded.tuned, data).items():
            path = staging / f"{role}.onnx"
            module = RawUnits(graph, data.preprocessing, data.shape).eval()
            try:
                export_graph(graph, module, path)
                model = onnx.load(str(path))
                onnx.checker.check_model(model, full_check=True)
                result = parity(graph, module, path, probe_feeds(graph, probe_rows, cfg.run.seed))
            except Exception as exc:  # the torch exporter, the checker and onnxruntime raise many types
                raise ExportError(f"{role}: export failed ({_one_line(exc)})") from None
            # Absolute for outputs of order 1; relative for large ones (a VAE's negative ELBO
            # sums hundreds of float32 terms, so its last bits differ by more than 1e-4).
            if not result.max_abs_diff <= PARITY_TOLERANCE * max(1.0, result.max_abs_output):
                raise ExportError(f"{role}: torch vs onnxruntime differ by {result.max_abs_diff:.3g} "
                                  f"(> {PARITY_TOLERANCE} x max(1, {result.max_abs_output:.3g})) on the probe batch")
            if not result.state_mismatch <= STATE_TOLERANCE:
                raise ExportError(f"{role}: torch vs onnxruntime chain states differ in {result.state_mismatch:.2%} "
                                  f"of entries (> {STATE_TOLERANCE:.2%}) on the probe batch")
            parities[role] = result
            graphs[role] = GraphSpec(role=role, file=path.name, sha256=sha256_file(path), opset=OPSET,
                                     inputs=tensor_specs(model.graph.input, graph.inputs),
                                     outputs=tensor_specs(model.graph.output, graph.outputs),
                                     file_bytes=path.stat().st_size)
        if data.kind == "image" and any(p.kind == "data" for g in graphs.values() for p in g.inputs):
            graphs[WIDEN[0]], parities[WIDEN[0]] = export_widen(staging, list(data.shape), probe_rows)
        scoring = loaded.run.scoring
        quantization = None
        if narrow is not None:
            from .quantize import quantize_scoring

            scoring, quantization = quantize_scoring(cfg, staging, scoring, list(data.shape), narrow)
            graph = graphs[scoring.graph]
            graphs[scoring.graph] = GraphSpec(role=graph.role, file=graph.file,
                                              sha256=sha256_file(staging / graph.file), opset=graph.opset,
                                              inputs=graph.inputs, outputs=graph.outputs,
                                              file_bytes=(staging / graph.file).stat().st_size)
        created, metrics = _stamps(loaded.run.metrics)
        manifest = Manifest(
            family=cfg.family.name, variant=loaded.run.variant, gen_version=gen_version(),
            created=created, seed=cfg.run.seed,
            config={k: v for k, v in cfg.to_dict().items() if k not in RUN_ONLY}, data=data, graphs=graphs, capabilities=list(loaded.run.capabilities),
            sampler=loaded.run.sampler, latent=loaded.run.latent,
            scoring=scoring, quantization=quantization,
            metrics=metrics, fitted=loaded.run.fitted, refine=loaded.run.refine,
            parity=ParitySpec(graphs=parities, probe_rows=int(len(probe_rows)), tolerance=PARITY_TOLERANCE,
                              state_tolerance=STATE_TOLERANCE),
        )
        manifest.check(str(staging / MANIFEST))
        manifest.write(staging)
        write_digests(staging)
        if sign_key is not None:
            from gen.runtime.signing import sign_bundle

            sign_bundle(staging, sign_key)
    return manifest

