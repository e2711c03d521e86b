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
    """One session with its input and output names, run plainly or through IOBinding."""

    def __init__(self, session, device: str | None):
        self.session = session
        self.device = device
        self.input_name = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, x, keep_on_device: bool = False) -> list:
        """Run on `x` (a numpy array, or an OrtValue kept on the device by another runner).

        Returns numpy arrays, or OrtValues left on the device when `keep_on_device` and
        IOBinding is on (hand those to the next runner's `run`).
        """
        if self.device is None:
            if not isinstance(x, np.ndarray):
                x = x.numpy()
            return self.session.run(None, {self.input_name: x})
        binding = self.session.io_binding()
        if isinstance(x, np.ndarray):
            binding.bind_cpu_input(self.input_name, np.ascontiguousarray(x))
        else:
            binding.bind_ortvalue_input(self.input_name, x)
        for name in self.output_names:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        return binding.get_outputs() if keep_on_device else binding.copy_outputs_to_cpu()
