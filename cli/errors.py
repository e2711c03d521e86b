"""How errors reach a CLI user: one line on stderr, and the exit code of the error's class
(2: the user can fix it; 1: gen failed). This table is the one place that maps them."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

import typer

from gen.runtime.errors import GenError, InputError, MissingDependency

# Optional packages a command may need, and the extra that installs each.
EXTRAS = {"torch": "train", "onnx": "train", "onnxscript": "train", "sklearn": "train", "scipy": "train",
          "onnxruntime": "cpu", "pyarrow": "parquet"}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that fails to import, a module without a spec
        return False


def as_gen_error(exc: BaseException) -> GenError | None:
    """The GenError a user should read for `exc`, or None for a bug (shown as a traceback)."""
    if isinstance(exc, GenError):
        return exc
    if isinstance(exc, MemoryError):
        detail = str(exc).splitlines()[0] if str(exc) else "allocation failed"
        return InputError(f"not enough memory ({detail}); ask for less at a time "
                          "(a smaller --n, --batch-size or --chunk-rows)")
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in EXTRAS:
        name = exc.name.split(".")[0]
        extra = EXTRAS[name]
        if extra == "train" and name != "torch" and not _importable("torch"):
            name = "torch"  # the whole train extra is missing: name torch, whichever module was imported first
        hint = "onnxruntime (or 'gen[gpu]' for onnxruntime-gpu; never both)" if extra == "cpu" else name
        return MissingDependency(f"this command needs {hint}: pip install 'gen[{extra}]'")
    return None


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Turn gen's own errors (and missing optional packages) into one line and an exit code."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        error = as_gen_error(exc)
        if error is None:
            raise
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(error.exit_code) from None
