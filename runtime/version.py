"""The installed gen version, read once from the package metadata."""

from importlib.metadata import PackageNotFoundError, version as _version


def gen_version() -> str:
    """The version of the installed `gen` distribution ("0.0.0" from a bare source tree)."""
    try:
        return _version("gen")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


__version__ = gen_version()
