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

import itertools
import json
import math
import re
from dataclasses import dataclass

import numpy as np

from gen.runtime.errors import InputError
from gen.runtime.readers import check_array

VERB_ORDER = ("score", "complete", "sample", "encode", "reconstruct")
ROW_VERBS = ("score", "complete", "encode", "reconstruct")  # one output row per input row: batched together
DTYPES = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "INT8": np.int8, "INT16": np.int16,
          "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
          "UINT64": np.uint64, "BOOL": np.bool_}
NAME = re.compile(r"[A-Za-z0-9_-]+")


def check_name(name: str, where: str = "--name", hint: str = "") -> str:
    """`name` if it is a plain word (it is served as NAME and NAME.VERB, in URLs); else one line."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InputError(f"{where} {name!r}: a model name is a plain word (letters, digits, - and _){hint}")
    return name


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


def _json_kinds(name: str, data: list) -> tuple[set, list]:
    """The Python types of a JSON tensor's values (nested rows flattened), and the flat values."""
    kinds = set(map(type, data))
    if list not in kinds:
        return kinds, data
    flat = np.array(data, dtype=object).ravel()  # rows of equal length; uneven ones stay lists
    kinds = set(map(type, flat))
    if list in kinds:
        raise InputError(f"input {name!r}: nested data rows of different lengths")
    return kinds, list(flat)


def _json_array(datatype: str, data: list, dtype) -> np.ndarray | None:
    """`data` as an array of `dtype` where numpy's own reading of it is certainly right (the
    common case, one pass in C): numbers for a numeric datatype, true / false for BOOL, every
    value within the datatype's range. None where the values need a closer look (strings,
    null, uneven rows, floats in integer data, or true / false among numbers, which numpy
    reads as 1 and 0); the caller then finds the value to name."""
    try:
        array = np.array(data)
    except (ValueError, OverflowError, TypeError):  # uneven rows, integers beyond 64 bits
        return None
    if array.dtype.kind not in ("b" if datatype == "BOOL" else "iu" if datatype[0] in "IU" else "iuf"):
        return None
    if array.dtype.kind != "b" and array.size and ((array == 0) | (array == 1)).any():
        # a true or false would be read as 1 or 0: only then are the values' types looked at
        flat = data
        for _ in range(array.ndim - 1):  # rows numpy found even: lists all the way down to ndim
            flat = itertools.chain.from_iterable(flat)
        if bool in set(map(type, flat)):
            return None
    if datatype[0] in "IU" and array.size:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            return None
    return array.astype(dtype, copy=False)


def tensor_array(name: str, datatype: str, shape, data=None, raw: bytes | None = None) -> np.ndarray:
    """A request tensor (JSON or gRPC typed `data`, or `raw` bytes) as an array of its declared
    datatype and shape, or one line naming what does not fit: a datatype gen does not serve, a
    shape that is not non-negative integers, JSON values that are not numbers (a string or
    `true` in FP32 data; numpy would convert them silently), or a count of values or bytes
    that differs from the shape's."""
    where = f"input {name!r}"
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise InputError(f"{where}: datatype {datatype!r} is not numeric (expected one of {', '.join(DTYPES)})")
    if not isinstance(shape, (list, tuple)) or not all(type(d) is int and d >= 0 for d in shape):
        raise InputError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    count = math.prod(shape)
    if raw is not None:
        need = count * np.dtype(dtype).itemsize
        if len(raw) != need:
            raise InputError(f"{where}: {len(raw)} bytes of {datatype} data for shape {list(shape)}, "
                             f"which needs {need}")
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    data = data if isinstance(data, list) else list(data or [])
    array = _json_array(datatype, data, dtype)
    if array is not None:
        if array.size != count:
            raise InputError(f"{where}: {array.size} values for shape {list(shape)}, which needs {count}")
        return array.reshape(shape)
    kinds, flat = _json_kinds(name, data)
    allowed = {bool} if datatype == "BOOL" else {int} if datatype[0] in "IU" else {int, float}
    if not kinds <= allowed:
        bad = next(v for v in flat if type(v) not in allowed)
        wanted = "true or false" if datatype == "BOOL" else "integers" if datatype[0] in "IU" else "numbers"
        raise InputError(f"{where}: {datatype} data must be {wanted}, got {bad!r}")
    if len(flat) != count:
        raise InputError(f"{where}: {len(flat)} values for shape {list(shape)}, which needs {count}")
    try:
        return np.array(flat, dtype=dtype).reshape(shape)
    except (OverflowError, ValueError) as exc:
        raise InputError(f"{where}: a value does not fit {datatype} ({str(exc).splitlines()[0]})") from None


def check_binary_body(body: bytes, header: str | None) -> None:
    """One line for a binary-extension request whose parts do not add up (KServe would fail
    with a 500, or read past one input into the next): the JSON header's length, each
    input's binary_data_size against its shape and datatype, and the bytes after the JSON."""
    if header is None or not header.strip().isdigit():
        raise InputError(f"Inference-Header-Content-Length: expected the JSON header's length in bytes, got {header!r}")
    json_length = int(header)
    if json_length > len(body):
        raise InputError(f"Inference-Header-Content-Length {json_length}: the body has only {len(body)} bytes")
    try:
        request = json.loads(body[:json_length])
    except (ValueError, UnicodeDecodeError):
        raise InputError("request body: the JSON header (Inference-Header-Content-Length bytes) is not JSON") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise InputError("request body: expected a JSON object with a list of 'inputs'")
    declared = 0
    for i, tensor in enumerate(request["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise InputError(f"request inputs[{i}]: expected an object with a 'name'")
        where, shape, datatype = f"input {tensor['name']!r}", tensor.get("shape"), tensor.get("datatype")
        parameters = tensor.get("parameters") or {}
        if "data" in tensor or not isinstance(parameters, dict):
            continue  # JSON data, or no binary part: KServe's own checks answer these
        size = parameters.get("binary_data_size")
        if type(size) is not int or size < 0:
            raise InputError(f"{where}: binary_data_size must be a non-negative integer, got {size!r}")
        if datatype in DTYPES and isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape):
            need = math.prod(shape) * np.dtype(DTYPES[datatype]).itemsize
            if size != need:
                raise InputError(f"{where}: binary_data_size {size} for shape {shape} of {datatype}, "
                                 f"which needs {need}")
        declared += size
    sent = len(body) - json_length
    if declared != sent:
        raise InputError(f"request body: the inputs' binary_data_size add up to {declared} bytes, "
                         f"but {sent} follow the JSON header")


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
