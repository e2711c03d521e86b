"""The gen version: one constant, read by setup.py for the package metadata, so that asking for
it costs nothing at start-up (importlib.metadata took 12 ms of every `gen` command)."""

__version__ = "0.5.0"


def gen_version() -> str:
    """The version of gen (the installed distribution's, which setup.py takes from here)."""
    return __version__
