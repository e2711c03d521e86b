"""`gen report`: one self-contained HTML page about a bundle and, given rows, their anomalies
(gen.runtime.report). numpy + onnxruntime + Jinja2 (gen[report]); no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import reported
from .options import BundleArg, Device, DeviceOpt, JsonOpt, PublicKeyOpt, ThreadsOpt, emit


def report(
    bundle: BundleArg,
    rows: Annotated[Optional[Path], typer.Argument(
        help="Rows to look at (.csv, .npy or .parquet, raw units): their scores against the normal ones, "
             "the drift test, the top rows with their maps or features, a sortable table of the highest.")] = None,
    out: Annotated[Path, typer.Option(help="The page to write: one .html file, everything inline.")] = Path(
        "report.html"),
    top_k: Annotated[int, typer.Option(help="Top rows shown with their anomaly maps (images) or largest "
                                            "per-feature errors (tables), 0 to 64.")] = 8,
    table_rows: Annotated[int, typer.Option(help="Rows in the sortable table of the highest scores, 0 to 1000.")
                          ] = 100,
    samples: Annotated[int, typer.Option(help="Samples drawn for a family that samples, 0 to 256.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the samples.")] = 0,
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    public_key: PublicKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write one self-contained HTML page about a bundle (model card, calibration, samples) and,
    given ROWS, their anomalies. It opens from disk: no network fetches."""
    with reported():
        from gen.runtime import InputError, load
        from gen.runtime.outputs import check_output
        from gen.runtime.report import check_report_options, write_report

        if out.suffix.lower() not in (".html", ".htm"):
            raise InputError(f"--out {out}: expected an .html file")
        check_report_options(top_k, table_rows, samples)
        check_output(out, inputs=(rows,), bundle=bundle)
        model = load(bundle, device=device.value, threads=threads, public_key=public_key)
        path = write_report(model, out, rows, top_k=top_k, table_rows=table_rows, samples=samples, seed=seed,
                            public_key=public_key)
        size = path.stat().st_size
        emit({"out": str(path), "bytes": size, "bundle": str(bundle), "rows": None if rows is None else str(rows)},
             as_json, [f"wrote {path} ({size / 1024:,.0f} KiB)"])


COMMANDS = (report,)
