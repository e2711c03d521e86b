"""What each served verb takes and returns, as Open Inference Protocol tensors (names,
datatypes, shapes), and how a request's tensors are checked and run on a GenModel. Nothing
here imports the server, so it is tested alone.

Every bundle is served as one model per verb, named `NAME.VERB` (`digits.score`,
`digits.sample`, ...), and as `NAME` for its first verb in VERB_ORDER (score when it scores).

- score: input `x` (rows, raw units, flat or in the data's shape; FP32, or any numeric type:
  UINT8 pixels stay bytes until the graphs widen them) -> `score` FP64,
  `normal_quantile` FP64, `flag` BOOL (and `log_p` FP64 where the bundle knows log Z).
- encode: `x` -> `z` FP32 (the latent code; the posterior mean for a VAE).
- reconstruct: `x` -> `x_hat` FP32, in the data's shape.
- complete (AutoRec): `x` (rows of ratings; unobserved entries may hold anything, NaN included)
  and `mask` (1 where observed, 0 elsewhere), same shape -> `completed` FP32: the rows filled in.
- sample: no input; parameters `n` (default 1) and `seed` (default 0), or INT64 inputs of those
  names -> `samples` FP32 in the data's shape. Same seed, same samples as `model.sample`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gen.runtime.errors import InputError
from gen.runtime.readers import check_array

VERB_ORDER = ("score", "complete", "sample", "encode", "reconstruct")
ROW_VERBS = ("score", "complete", "encode", "reconstruct")  # one output row per input row: batched together
NUMERIC = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
           "BOOL"}


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: list[int]

    def as_dict(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def served_verbs(model) -> list[str]:
    return [v for v in VERB_ORDER if v in model.capabilities]


def signature(model, verb: str) -> tuple[list[Tensor], list[Tensor]]:
    """(inputs, outputs) of `verb` on `model`, with -1 for the batch axis."""
    shape = list(model.shape)
    x = Tensor("x", "FP32", [-1, *shape])
    if verb == "score":
        outputs = [Tensor("score", "FP64", [-1]), Tensor("normal_quantile", "FP64", [-1]), Tensor("flag", "BOOL", [-1])]
        if model.manifest.scoring.log_partition is not None:
            outputs.append(Tensor("log_p", "FP64", [-1]))
        return [x], outputs
    if verb == "encode":
        dim = int(np.prod(model.manifest.graphs["encoder"].port("z", outputs=True).shape[1:]))
        return [x], [Tensor("z", "FP32", [-1, dim])]
    if verb == "reconstruct":
        return [x], [Tensor("x_hat", "FP32", [-1, *shape])]
    if verb == "complete":
        return [x, Tensor("mask", "FP32", [-1, *shape])], [Tensor("completed", "FP32", [-1, *shape])]
    if verb == "sample":
        return [Tensor("n", "INT64", [1]), Tensor("seed", "INT64", [1])], [Tensor("samples", "FP32", [-1, *shape])]
    raise ValueError(f"unknown verb {verb!r}")


def completion_rows(model, inputs: dict[str, np.ndarray], max_rows: int) -> np.ndarray:
    """A complete request's `x` and `mask` as one float32 array, values then mask along the
    last axis (so the batcher handles one array); unobserved values are zeroed first."""
    extra = sorted(set(inputs) - {"x", "mask"})
    if extra:
        raise InputError(f"input {extra[0]!r}: not an input of complete (it takes 'x' and 'mask')")
    for name in ("x", "mask"):
        if name not in inputs:
            raise InputError(f"input {name!r}: missing (complete takes 'x', the ratings, and 'mask', 1 where observed)")
    mask = rows_of(model, {"x": inputs["mask"]}, max_rows, "input 'mask'")
    if not np.isin(mask, (0.0, 1.0)).all():
        raise InputError("input 'mask': expected 0 or 1 values")
    values = np.asarray(inputs["x"])
    if values.shape != np.asarray(inputs["mask"]).shape:
        raise InputError(f"input 'x': shape {values.shape} differs from the mask's {np.asarray(inputs['mask']).shape}")
    if values.dtype.kind == "f":
        values = np.where(mask.reshape(values.shape) > 0, values, 0.0)
    rows = rows_of(model, {"x": values}, max_rows)
    return np.concatenate([rows, mask], axis=-1)


def rows_of(model, inputs: dict[str, np.ndarray], max_rows: int, where: str = "input 'x'",
            narrow: bool = False) -> np.ndarray:
    """The request's `x` as validated float32 rows of the model's shape: one line naming the
    problem (a missing or extra input, a shape or datatype that does not fit, NaN, too many rows).
    With `narrow`, UINT8 rows stay bytes: a batch of them is widened where the graphs run (by
    the bundle's widen graph on the GPU), a batch mixing them with float rows on the host."""
    extra = sorted(set(inputs) - {"x"})
    if extra:
        raise InputError(f"input {extra[0]!r}: not an input of this model (it takes 'x')")
    if "x" not in inputs:
        raise InputError("input 'x': missing (rows to score, encode or reconstruct)")
    x = inputs["x"]
    if x.dtype == object or x.dtype.kind not in "fiub":
        raise InputError(f"{where}: expected numbers, got datatype {x.dtype}")
    if x.ndim >= 1 and x.shape[0] > max_rows:
        raise InputError(f"{where}: {x.shape[0]} rows, more than the {max_rows} a request may hold "
                         "(--max-request-rows)")
    return check_array(x, list(model.shape), where, narrow=narrow)


def sample_options(inputs: dict[str, np.ndarray], parameters: dict, max_rows: int, row_values: int = 1,
                   max_bytes: int | None = None) -> tuple[int, int]:
    """(n, seed) of a sample request, from parameters or INT inputs named n and seed; n
    samples of `row_values` float32 values must fit in `max_bytes` (the response bound, as
    requests are bounded by the body limit)."""
    values = {}
    for key, default in (("n", 1), ("seed", 0)):
        value = parameters.get(key, default)
        if key in inputs:
            tensor = np.asarray(inputs[key]).reshape(-1)
            if tensor.size != 1 or tensor.dtype.kind not in "iu":
                raise InputError(f"input {key!r}: expected one integer, got {tensor.size} values of {tensor.dtype}")
            value = tensor[0]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise InputError(f"parameter {key!r}: expected an integer, got {value!r}")
        values[key] = int(value)
    extra = sorted(set(inputs) - {"n", "seed"})
    if extra:
        raise InputError(f"input {extra[0]!r}: not an input of sample (it takes parameters n and seed)")
    if not 1 <= values["n"] <= max_rows:
        raise InputError(f"parameter 'n': expected 1..{max_rows}, got {values['n']}")
    if max_bytes is not None and values["n"] * row_values * 4 > max_bytes:
        most = max(1, max_bytes // (row_values * 4))
        raise InputError(f"parameter 'n': {values['n']} samples of {row_values} values are over the response limit "
                         f"of {max_bytes / 2**20:g} MiB (--max-body-mb); ask for at most {most} per request")
    if not 0 <= values["seed"] < 2**63:
        raise InputError(f"parameter 'seed': expected 0..2^63-1, got {values['seed']}")
    return values["n"], values["seed"]


def run_rows(model, verb: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Run a row verb on validated rows: {output name: array with one entry per row}."""
    if verb == "score":
        scores = model._score_rows(rows).astype(np.float64)
        out = {"score": scores, "normal_quantile": np.asarray(model.normal_quantile(scores), dtype=np.float64),
               "flag": scores > model.threshold}
        log_z = model.manifest.scoring.log_partition
        if log_z is not None:
            out["log_p"] = -scores - log_z.value
        return out
    if verb == "encode":
        z = model.encode(rows)
        return {"z": np.ascontiguousarray(z.reshape(len(rows), -1), dtype=np.float32)}
    if verb == "reconstruct":
        return {"x_hat": np.ascontiguousarray(model.reconstruct(rows), dtype=np.float32)}
    if verb == "complete":  # completion_rows' layout: values, then mask, along the last axis
        width = rows.shape[-1] // 2
        out = model.run_batched("complete", {"x": rows[..., :width], "mask": rows[..., width:]}, "completed")
        return {"completed": np.ascontiguousarray(out, dtype=np.float32)}
    raise ValueError(f"{verb} is not a row verb")
