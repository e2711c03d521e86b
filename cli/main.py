"""The `gen` command line. Commands parse, call a library function and print; errors reach
the user through one table (`gen.cli.errors`).

torch is imported only inside `train`, `export`, `models` and `demo` (cli/train.py);
`sample`, `score`, `encode` and `info` (cli/serve.py) and `complete` (cli/complete.py) run on
numpy + onnxruntime alone.
"""

from __future__ import annotations

import sys
import warnings
from typing import Annotated

import typer

from gen.runtime.errors import GenWarning
from gen.runtime.version import __version__

from . import complete, serve, train

app = typer.Typer(
    name="gen", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Train generative models (torch), export them to ONNX bundles, and sample, score, "
         "encode and complete with numpy + onnxruntime only.",
)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gen {__version__}")
        raise typer.Exit()


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings reach a CLI user as one line, not as a source location."""
    typer.echo(f"warning: {message}", err=True)


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """gen: generative models from training to a torch-free runtime."""
    warnings.showwarning = show_warning
    warnings.filterwarnings("always", category=GenWarning)


train.register(app)
for command in (*serve.COMMANDS, *complete.COMMANDS):
    app.command()(command)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
