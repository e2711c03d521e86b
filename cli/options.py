"""Options shared by several commands, declared once."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


BundleArg = Annotated[Path, typer.Argument(help="Bundle folder.")]
DeviceOpt = Annotated[Device, typer.Option(help="auto, cpu or cuda (onnxruntime provider).")]
BatchOpt = Annotated[Optional[int], typer.Option(
    help="Rows per onnxruntime call [default: from the row size and device: about 4 MiB of float32 rows "
         "on CPU (256..16384), 64 MiB on CUDA (1024..65536)].", min=1, show_default=False)]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="onnxruntime intra-op threads (default: one per core).", min=1)]
PublicKeyOpt = Annotated[Optional[Path], typer.Option(
    envvar="GEN_PUBLIC_KEY", help="Serve only a bundle signed by this EC public key (PEM; needs gen[sign]). "
                                  "Also read from $GEN_PUBLIC_KEY.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def emit(summary: dict, as_json: bool, lines: list[str], err: bool = False) -> None:
    """Print a command's summary: JSON for machines, or readable lines (on stderr when the
    command's output goes to stdout, `--out -`)."""
    typer.echo(json.dumps(summary, indent=2, default=str) if as_json else "\n".join(lines), err=err)
