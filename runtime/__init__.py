"""gen.runtime: load a bundle and sample, reconstruct, encode and score with numpy and
onnxruntime only. This package never imports torch; it is the lowest layer of gen and owns
everything numpy-only that training and serving share (readers, manifest, atomic writes,
latent drawing, image grids, errors, version)."""

from .errors import (BundleError, ConfigError, DeviceError, ExportError, GenError, GenWarning, InputError,
                     MissingDependency, NotSupported, UsageError)
from .manifest import FORMAT_VERSION, Manifest
from .model import GenModel, load
from .version import __version__

__all__ = ["load", "GenModel", "Manifest", "FORMAT_VERSION", "GenError", "UsageError", "InputError",
           "ConfigError", "BundleError", "NotSupported", "DeviceError", "MissingDependency", "ExportError",
           "GenWarning", "__version__"]
