"""Running a bundle's declared verbs, shared by the contract test and its torch-free
subprocess (so this module imports nothing but numpy)."""

from __future__ import annotations

import numpy as np

N = 5


def verb_outputs(model, rows: np.ndarray) -> dict[str, tuple[list[int], str]]:
    """{verb: (shape, dtype)} for every verb the bundle declares, run on `rows` (N of them)."""
    calls = {"sample": lambda: model.sample(N, seed=0), "reconstruct": lambda: model.reconstruct(rows),
             "encode": lambda: model.encode(rows), "score": lambda: model.score(rows),
             "complete": lambda: model.complete(rows, (np.arange(rows.size).reshape(rows.shape) % 2).astype(np.float32))}
    return {verb: (list(out.shape), out.dtype.name) for verb, out in
            ((verb, calls[verb]()) for verb in model.capabilities)}
