"""Running one graph: plain `session.run`, or IOBinding on the session's device.

On CUDA, IOBinding lets outputs stay on the GPU between graphs (the encoder's codes go
straight into the decoder) and avoids onnxruntime's per-call output allocation on the host.
The same code path runs on CPU when asked (`io_binding=True`), which is how it is tested on
machines without a GPU.
"""

from __future__ import annotations

import numpy as np

from .errors import DeviceError
from .providers import CUDA


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
            plain = {k: (v if isinstance(v, np.ndarray) else v.numpy()) for k, v in feeds.items()
                     if k in self.input_names}
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
