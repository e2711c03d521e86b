"""gen.cli: the `gen` command line (Typer)."""

from .main import app

__all__ = ["app"]
