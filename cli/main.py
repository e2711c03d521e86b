"""The `gen` command line. Commands parse, call a library function and print; errors reach
the user through one table (`gen.cli.errors`).

torch is imported only inside `train`, `export`, `models` and `demo` (cli/train.py);
`sample`, `score`, `encode`, `info` and `verify` (cli/bundle.py), `report` (cli/report.py, with
Jinja2), `serve` (cli/serve.py) and `complete` (cli/complete.py) run on numpy + onnxruntime alone.
"""

from __future__ import annotations

import sys
import warnings
from typing import Annotated

import typer
from typer.core import TyperGroup

from gen.runtime.errors import GenWarning
from gen.runtime.version import __version__

from . import bundle, complete, report, serve, train

class OneLineErrors(TyperGroup):
    """Usage errors (an unknown option, a value out of range, a missing argument) as one line
    on stderr and exit 2, like every other refusal, instead of a usage box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                              **extra)
        except Exception as exc:
            kind = type(exc).__name__
            if kind == "NoArgsIsHelpError":  # bare `gen`: the help, as before
                exc.show()
                sys.exit(exc.exit_code)
            if kind == "Abort":
                typer.echo("error: aborted", err=True)
                sys.exit(1)
            if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
                raise
            command = getattr(getattr(exc, "ctx", None), "command_path", None)
            message = " ".join(str(exc.format_message()).split())
            typer.echo(f"error: {message}" + (f" (see '{command} --help')" if command else ""), err=True)
            sys.exit(exc.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="gen", cls=OneLineErrors, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
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
for command in (*bundle.COMMANDS, *report.COMMANDS, *complete.COMMANDS, *serve.COMMANDS):
    app.command()(command)


def main() -> None:
    """Run the command line in this process (the console script is `gen.cli.entry:main`,
    which installs the signal handling first)."""
    app()
