"""Choosing onnxruntime execution providers from a `--device` value.

The choice is a pure function of the requested device and the providers onnxruntime
offers, so it is tested with a faked provider list; the provider actually in use is
always read back from the session, never assumed.
"""

from __future__ import annotations

import warnings

from .errors import DeviceError, MissingDependency

DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def import_onnxruntime():
    """Import onnxruntime, or say how to install it instead of a traceback."""
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - exercised by the message test
        raise MissingDependency(
            "onnxruntime is not installed: pip install 'gen[cpu]' (or 'gen[gpu]' for "
            "onnxruntime-gpu on a CUDA machine; never both)"
        ) from exc
    return onnxruntime


def select_providers(device: str, available: list[str]) -> list[str]:
    """Return the provider list to hand to `InferenceSession` for `device`.

    `auto` takes CUDA when onnxruntime offers it, else CPU; `cuda` fails when CUDA is not
    offered; `cpu` is always CPU. CPU stays last as the fallback for unsupported nodes.
    """
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}: expected one of {', '.join(DEVICES)}")
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if device == "cuda":
        raise DeviceError(
            "device 'cuda' was asked for but onnxruntime offers no CUDAExecutionProvider "
            f"(available: {', '.join(available) or 'none'}); install 'gen[gpu]' "
            "(onnxruntime-gpu) on a machine with CUDA, or use --device cpu"
        )
    return [CPU]


def check_session_provider(device: str, requested: list[str], used: list[str]) -> str:
    """Return the provider a session really runs on.

    onnxruntime-gpu offers CUDA even where its libraries cannot load, and then quietly
    builds a CPU session; asked for `cuda` that is an error here, under `auto` a warning.
    """
    primary = used[0] if used else "none"
    if requested[0] == CUDA and primary != CUDA:
        if device == "cuda":
            raise DeviceError(
                f"device 'cuda' was asked for but the session runs on {primary} "
                "(CUDA or cuDNN libraries missing or incompatible with onnxruntime-gpu?)"
            )
        warnings.warn(f"CUDA was offered by onnxruntime but the session runs on {primary}", stacklevel=2)
    return primary
