"""gen: train generative models on rows in memory or files, export them to ONNX bundles, and
serve those bundles with numpy and onnxruntime only.

    import gen
    run = gen.fit(x, model="vae", epochs=50)          # training (torch): the same path as `gen train`
    bundle = run.export("artifacts/vae")              # ONNX graphs, checked against torch
    model = gen.load("artifacts/vae")                 # serving: no torch
    det = gen.Detector(model="ae").fit(x_train)       # scikit-learn estimator, PyOD's attributes

`import gen` loads nothing heavy: each name is imported on first use, so a serving process
that calls `gen.load` never imports torch (the runtime, `gen.runtime`, never does).
"""

from __future__ import annotations

import importlib

_LAZY = {"fit": ("gen.fitting", "fit"), "Run": ("gen.fitting", "Run"), "Detector": ("gen.detector", "Detector"),
         "load": ("gen.runtime", "load"), "GenModel": ("gen.runtime", "GenModel"),
         "__version__": ("gen.runtime.version", "__version__")}

__all__ = sorted(_LAZY)


# What each name needs beyond the runtime, and the extra that installs it.
_EXTRAS = {"torch": "train", "sklearn": "train", "onnx": "train", "onnxruntime": "cpu"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'gen' has no attribute {name!r}")
    module, attr = _LAZY[name]
    try:
        value = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in _EXTRAS:
            raise
        from gen.runtime.errors import MissingDependency

        raise MissingDependency(f"gen.{name} needs {missing}: pip install 'gen[{_EXTRAS[missing]}]'") from exc
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
