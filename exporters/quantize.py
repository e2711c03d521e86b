"""Narrow score graphs, with their cost measured on the run's own held-out rows and their
threshold recalibrated on their own scores; export refuses when the cost is past the tolerance.

- `gen export --quantize int8`: int8 weights (onnxruntime's dynamic quantization: weights
  stored as int8, activations quantized per batch at run time), for CPU serving.
- `gen export --precision fp16`: float16 weights and activations (onnxruntime's own
  float16 converter, inputs and outputs kept float32 so callers feed and read the same
  arrays), for GPU serving: half the weight bytes and the tensor cores' fp16 rate. The cost
  is measured with onnxruntime's CPU provider, which runs an fp16 node that has no CPU
  kernel in float32 between casts: values are still rounded to fp16 between nodes (as on a
  GPU), while sums inside one node accumulate in float32 (as cuBLAS does with fp16 inputs
  by default).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from gen.runtime.errors import ConfigError, ExportError
from gen.runtime.manifest import QuantizationSpec, ScoringSpec
from gen.runtime.providers import import_onnxruntime
from gen.trainer.protocols.one_class import calibrate, one_class_auroc
from gen.trainer.train import training_rows

METHODS = {"int8": ("--quantize int8", "dynamic int8 weights (onnxruntime quantize_dynamic, QInt8)"),
           "fp16": ("--precision fp16", "float16 weights and activations (onnxruntime.transformers.float16, "
                                        "inputs and outputs kept float32)")}
MAX_AUROC_DROP = 0.005
MIN_FLAG_AGREEMENT = 0.99


def _scores(path: Path, output: str, rows: np.ndarray, shape: list[int]) -> np.ndarray:
    ort = import_onnxruntime()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    parts = [session.run([output], {"x": rows[i:i + 4096].reshape(-1, *shape).astype(np.float32)})[0]
             for i in range(0, len(rows), 4096)]
    return np.concatenate(parts).astype(np.float64).reshape(-1)


def error_pool_nodes(path: Path) -> list[str]:
    """The nodes of the error pooling (pool=smooth: MatMuls by the fixed blur matrices). They stay
    float32 under int8: quantizing them would scale each batch's error map by its own range, so
    a row's score would depend on the other rows of its batch."""
    import onnx

    graph = onnx.load(str(path)).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and any("error_pool." in i for i in n.input)]


def _narrow(method: str, source: Path, target: Path) -> None:
    """Write the `method` version of the graph at `source` to `target`."""
    if method == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.getLogger("root").setLevel(logging.ERROR)  # its "consider pre-processing" advice
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         nodes_to_exclude=error_pool_nodes(source))
        return
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(source))
    del model.graph.value_info[:]  # the exporter's float32 types of inner values: stale once halved
    with warnings.catch_warnings():  # its notes on weights clamped to the fp16 range
        warnings.simplefilter("ignore")
        half = OnnxModel(convert_float_to_float16(model, keep_io_types=True))
    half.topological_sort()  # the converter appends the casts of kept float32 inputs last
    half = half.model
    onnx.checker.check_model(half, full_check=True)
    onnx.save(half, str(target))


def quantize_scoring(cfg, staging: Path, scoring: ScoringSpec, shape: list[int], method: str
                     ) -> tuple[ScoringSpec, QuantizationSpec]:
    """Replace the score graph in `staging` by its `method` version ("int8" or "fp16");
    return the recalibrated scoring spec and the measured cost."""
    if method not in METHODS:
        raise ConfigError(f"narrow export {method!r}: expected one of {', '.join(METHODS)}")
    flag, description = METHODS[method]
    option = flag.split()[0]  # what to leave out when the cost is refused
    if scoring is None:
        raise ConfigError(f"{flag}: the cost is measured on anomaly scores, and the "
                          f"{cfg.family.name} family does not score")
    run = cfg.run
    data, _, _, cal_idx, test_idx = training_rows(cfg, np.random.default_rng(run.seed))
    float_path = staging / f"{scoring.graph}.onnx"
    narrow_path = staging / f".{scoring.graph}.{method}.onnx"
    try:
        _narrow(method, float_path, narrow_path)
    except Exception as exc:  # the converters and the checker raise many types
        raise ExportError(f"{flag}: converting the {scoring.graph} graph failed ({type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None
    x_cal, x_test = data.x[cal_idx], data.x[test_idx]
    f_cal, q_cal = (_scores(p, scoring.output, x_cal, shape) for p in (float_path, narrow_path))
    f_test, q_test = (_scores(p, scoring.output, x_test, shape) for p in (float_path, narrow_path))
    f_all, q_all = np.concatenate([f_cal, f_test]), np.concatenate([q_cal, q_test])
    if not np.isfinite(q_all).all():  # past float16's range (65504) a score becomes inf
        raise ExportError(f"{flag}: {int((~np.isfinite(q_all)).sum())} of {len(q_all)} held-out scores are not "
                          f"finite in the {method} graph (the float graph's largest is "
                          f"{float(np.abs(f_all).max()):.4g}); export without {option}")
    new = calibrate(q_cal, scoring.contamination)
    diff = np.abs(f_all - q_all)
    agreement = float(np.mean((f_test > scoring.threshold) == (q_test > new["threshold"]))) if len(f_test) else 1.0
    auroc_f = auroc_q = None
    if run.normal_class is not None and data.y is not None and len(set(data.y[test_idx].tolist())) > 1:
        auroc_f = one_class_auroc(f_test, data.y[test_idx], run.normal_class)
        auroc_q = one_class_auroc(q_test, data.y[test_idx], run.normal_class)
    spec = QuantizationSpec(method=description,
                            graphs=[scoring.graph], n_rows=int(len(f_all)),
                            max_abs_score_diff=float(diff.max()),
                            max_rel_score_diff=float((diff / np.maximum(np.abs(f_all), 1e-12)).max()),
                            flag_agreement=agreement, auroc_float=auroc_f, auroc_quantized=auroc_q,
                            max_auroc_drop=MAX_AUROC_DROP, min_flag_agreement=MIN_FLAG_AGREEMENT)
    if auroc_f is not None and auroc_f - auroc_q > MAX_AUROC_DROP:
        raise ExportError(f"{flag}: the one-class AUROC falls from {auroc_f:.4f} to {auroc_q:.4f} "
                          f"(more than {MAX_AUROC_DROP}); export without {option}")
    if auroc_f is None and agreement < MIN_FLAG_AGREEMENT:
        raise ExportError(f"{flag}: only {agreement:.1%} of held-out rows are flagged as the float "
                          f"graph flags them (under {MIN_FLAG_AGREEMENT:.0%}); export without {option}")
    narrow_path.replace(float_path)
    recalibrated = ScoringSpec(**{**scoring.__dict__, **new,
                                  "calibration": scoring.calibration + f"; recalibrated on the {method} graph's scores"})
    return recalibrated, spec
