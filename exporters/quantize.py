"""`gen export --quantize int8`: the score graph with int8 weights (onnxruntime's dynamic
quantization: weights stored as int8, activations quantized per batch at run time), for CPU
serving, with its cost measured on the run's own held-out rows and its threshold recalibrated
on its own scores. Export refuses when the cost is past the tolerance."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from gen.runtime.errors import ConfigError, ExportError
from gen.runtime.manifest import QuantizationSpec, ScoringSpec
from gen.runtime.providers import import_onnxruntime
from gen.trainer.data import load_dataset
from gen.trainer.protocols.one_class import calibrate, one_class_auroc
from gen.trainer.train import split_rows

METHODS = ("int8",)
MAX_AUROC_DROP = 0.005
MIN_FLAG_AGREEMENT = 0.99


def _scores(path: Path, output: str, rows: np.ndarray, shape: list[int]) -> np.ndarray:
    ort = import_onnxruntime()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    parts = [session.run([output], {"x": rows[i:i + 4096].reshape(-1, *shape).astype(np.float32)})[0]
             for i in range(0, len(rows), 4096)]
    return np.concatenate(parts).astype(np.float64).reshape(-1)


def quantize_scoring(cfg, staging: Path, scoring: ScoringSpec, shape: list[int], method: str
                     ) -> tuple[ScoringSpec, QuantizationSpec]:
    """Replace the score graph in `staging` by its int8 version; return the recalibrated
    scoring spec and the measured cost."""
    if method not in METHODS:
        raise ConfigError(f"--quantize {method!r}: expected one of {', '.join(METHODS)}")
    if scoring is None:
        raise ConfigError(f"--quantize {method}: the cost is measured on anomaly scores, and the "
                          f"{cfg.family.name} family does not score")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    run = cfg.run
    data = load_dataset(run.data, run.label_column, seed=run.seed)
    _, cal_idx, test_idx = split_rows(cfg, data, np.random.default_rng(run.seed))
    float_path = staging / f"{scoring.graph}.onnx"
    int8_path = staging / f".{scoring.graph}.int8.onnx"
    logging.getLogger("root").setLevel(logging.ERROR)  # its "consider pre-processing" advice
    quantize_dynamic(str(float_path), str(int8_path), weight_type=QuantType.QInt8)
    x_cal, x_test = data.x[cal_idx], data.x[test_idx]
    f_cal, q_cal = (_scores(p, scoring.output, x_cal, shape) for p in (float_path, int8_path))
    f_test, q_test = (_scores(p, scoring.output, x_test, shape) for p in (float_path, int8_path))
    new = calibrate(q_cal, scoring.contamination)
    f_all, q_all = np.concatenate([f_cal, f_test]), np.concatenate([q_cal, q_test])
    diff = np.abs(f_all - q_all)
    agreement = float(np.mean((f_test > scoring.threshold) == (q_test > new["threshold"]))) if len(f_test) else 1.0
    auroc_f = auroc_q = None
    if run.normal_class is not None and data.y is not None and len(set(data.y[test_idx].tolist())) > 1:
        auroc_f = one_class_auroc(f_test, data.y[test_idx], run.normal_class)
        auroc_q = one_class_auroc(q_test, data.y[test_idx], run.normal_class)
    spec = QuantizationSpec(method=f"dynamic {method} weights (onnxruntime quantize_dynamic, QInt8)",
                            graphs=[scoring.graph], n_rows=int(len(f_all)),
                            max_abs_score_diff=float(diff.max()),
                            max_rel_score_diff=float((diff / np.maximum(np.abs(f_all), 1e-12)).max()),
                            flag_agreement=agreement, auroc_float=auroc_f, auroc_quantized=auroc_q,
                            max_auroc_drop=MAX_AUROC_DROP, min_flag_agreement=MIN_FLAG_AGREEMENT)
    if auroc_f is not None and auroc_f - auroc_q > MAX_AUROC_DROP:
        raise ExportError(f"--quantize {method}: the one-class AUROC falls from {auroc_f:.4f} to {auroc_q:.4f} "
                          f"(more than {MAX_AUROC_DROP}); export without --quantize")
    if auroc_f is None and agreement < MIN_FLAG_AGREEMENT:
        raise ExportError(f"--quantize {method}: only {agreement:.1%} of held-out rows are flagged as the float "
                          f"graph flags them (under {MIN_FLAG_AGREEMENT:.0%}); export without --quantize")
    int8_path.replace(float_path)
    recalibrated = ScoringSpec(**{**scoring.__dict__, **new,
                                  "calibration": scoring.calibration + f"; recalibrated on the {method} graph's scores"})
    return recalibrated, spec
