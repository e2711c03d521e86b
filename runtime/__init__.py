"""gen.runtime: load a bundle and sample, reconstruct, encode and score with numpy and
onnxruntime only. This package never imports torch."""

from importlib.metadata import PackageNotFoundError, version as _version

from .errors import BundleError, DeviceError, GenError, InputError, MissingDependency, NotSupported
from .manifest import FORMAT_VERSION, Manifest
from .model import GenModel, load

try:
    __version__ = _version("gen")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["load", "GenModel", "Manifest", "FORMAT_VERSION", "GenError", "InputError",
           "BundleError", "NotSupported", "DeviceError", "MissingDependency", "__version__"]
