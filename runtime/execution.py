"""Running one graph: plain `session.run`, or IOBinding on the session's device.

On CUDA, IOBinding lets outputs stay on the GPU between graphs (the encoder's codes go
straight into the decoder) and avoids onnxruntime's per-call output allocation on the host.
The same code path runs on CPU when asked (`io_binding=True`), which is how it is tested on
machines without a GPU.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import DeviceError
from .providers import CUDA

# Default rows per onnxruntime call: about this many bytes of float32 input rows, as a power of
# two, within these bounds. CPU, measured on this repository's 2-core machine (model.score of
# 65,536 rows): a 64-feature autoencoder peaks at 4,096-16,384 rows (1.15M rows/s; 0.82M at
# 65,536, 0.52M at 64), the 784-feature MNIST one at 1,024 (261k; 175k at 65,536, 184k at 64):
# a batch that stays in the caches. CUDA: launches and copies amortise over bigger batches; the
# H100 profile of issue 11 doubled compute-only rows/s from 4,096 to 65,536 rows of 784 features.
BATCH_BYTES = {"cpu": 4 << 20, "cuda": 64 << 20}
BATCH_ROWS = {"cpu": (256, 16384), "cuda": (1024, 65536)}


def default_batch_size(row_values: int, provider: str) -> int:
    """Rows per call for rows of `row_values` float32 values on `provider` (see BATCH_BYTES)."""
    kind = "cuda" if provider == CUDA else "cpu"
    low, high = BATCH_ROWS[kind]
    rows = BATCH_BYTES[kind] / (4 * max(1, row_values))
    return int(min(high, max(low, 2 ** round(math.log2(rows)))))


def binding_device(provider: str, io_binding: bool | None) -> str | None:
    """The device to bind outputs on, or None for plain `session.run`.

    io_binding None (auto): bind on CUDA, run plainly on CPU; True: always bind, on the
    provider's device; False: never bind.
    """
    if io_binding is False:
        return None
    if provider == CUDA:
        return "cuda"
    if io_binding is None:
        return None
    if provider != "CPUExecutionProvider":
        raise DeviceError(f"io_binding is not supported on {provider}")
    return "cpu"


class GraphRunner:
    """One session, fed and read by name, run plainly or through IOBinding."""

    def __init__(self, session, device: str | None):
        self.session = session
        self.device = device
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self._needs = frozenset(self.input_names)

    def run(self, feeds: dict, outputs: list[str] | None = None, keep_on_device: bool = False) -> dict:
        """Run on `feeds` ({input name: numpy array, or an OrtValue kept on the device by
        another runner}); return {output name: value} for `outputs` (default: all).

        Values are numpy arrays, or OrtValues left on the device when `keep_on_device` and
        IOBinding is on (hand those to the next runner's `run`).
        """
        if not self._needs.issubset(feeds):  # a programming error inside gen, never a user's: say which
            missing = [name for name in self.input_names if name not in feeds]
            raise KeyError(f"graph inputs {missing} not fed (fed: {sorted(feeds)})")
        names = list(outputs or self.output_names)
        if self.device is None:
            plain = {k: (v if isinstance(v, np.ndarray) else v.numpy()) for k, v in feeds.items() if k in self._needs}
            return dict(zip(names, self.session.run(names, plain)))
        binding = self.session.io_binding()
        for name in self.input_names:
            value = feeds[name]
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
            else:
                binding.bind_ortvalue_input(name, value)
        for name in names:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        values = binding.get_outputs() if keep_on_device else binding.copy_outputs_to_cpu()
        return dict(zip(names, values))
