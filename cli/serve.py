"""Serving commands: sample, score, encode, info. numpy + onnxruntime only (no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import reported
from .options import BatchOpt, BundleArg, Device, DeviceOpt, JsonOpt, ThreadsOpt, emit


def sample(
    bundle: BundleArg,
    out: Annotated[Path, typer.Option(help="Output: .png (grid or scatter), .npy (the samples' own shape) or .csv (flat rows).")],
    n: Annotated[int, typer.Option(help="Number of samples.", min=1)] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the numpy Generator that draws the noise.", min=0)] = 0,
    device: DeviceOpt = Device.auto,
    steps: Annotated[Optional[int], typer.Option(help="Gibbs sampler: steps per chain (default: the bundle's).", min=1)] = None,
    burn_in: Annotated[Optional[int], typer.Option(help="Gibbs sampler: steps before the first kept sample (default: steps - thin).", min=0)] = None,
    thin: Annotated[Optional[int], typer.Option(help="Gibbs sampler: steps between kept samples of a chain.", min=1)] = None,
    chains: Annotated[Optional[int], typer.Option(help="Gibbs sampler: parallel chains (default: as few as give N samples).", min=1)] = None,
    batch_size: BatchOpt = 1024,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Draw N samples from a bundle with the sampler it declares. Same seed, same samples."""
    with reported():
        from gen.runtime import load
        from gen.runtime.outputs import save_samples

        model = load(bundle, device=device.value, batch_size=batch_size, threads=threads)
        options = {k: v for k, v in {"steps": steps, "burn_in": burn_in, "thin": thin, "chains": chains}.items()
                   if v is not None}
        samples = model.sample(n, seed=seed, **options)
        path = save_samples(samples, model.manifest.data, out)
        emit({"out": str(path), "n": n, "seed": seed, "sampler": model.manifest.sampler.kind,
              "provider": model.provider}, as_json,
             [f"{n} samples -> {path} ({model.manifest.sampler.kind} sampler, provider {model.provider})"])


def score(
    bundle: BundleArg,
    input: Annotated[Path, typer.Argument(help="Rows to score: .csv, .npy or .parquet (raw units).")],
    out: Annotated[Path, typer.Option(help="Output: .csv, .npy or .parquet (index, score, normal_quantile, flag).")],
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = 1024,
    threads: ThreadsOpt = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows read from the input at a time.", min=1)] = 4096,
    as_json: JsonOpt = False,
) -> None:
    """Score rows for anomaly (higher = more anomalous) and flag those above the threshold."""
    with reported():
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from gen.runtime import load

        model = load(bundle, device=device.value, batch_size=batch_size, threads=threads)
        console = Console(stderr=True)
        with Progress(SpinnerColumn(), TextColumn("scoring: {task.completed:,} rows"), TimeElapsedColumn(),
                      console=console, transient=True, disable=as_json or not console.is_terminal) as bar:
            task = bar.add_task("score", total=None)
            rows = model.score_file(input, out, chunk_rows=chunk_rows,
                                    on_chunk=lambda done: bar.update(task, completed=done))
        emit({"out": str(out), "rows": rows, "threshold": model.threshold, "provider": model.provider},
             as_json, [f"{rows} rows scored -> {out} (threshold {model.threshold:.6g}, provider {model.provider})"])


def encode(
    bundle: BundleArg,
    input: Annotated[Path, typer.Argument(help="Rows to encode: .csv, .npy or .parquet (raw units).")],
    out: Annotated[Path, typer.Option(help="Output codes: .npy or .csv.")],
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = 1024,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Encode rows to latent codes (the posterior mean for a VAE)."""
    with reported():
        from gen.runtime import InputError, load
        from gen.runtime.outputs import save_csv, save_npy
        from gen.runtime.readers import read_rows

        model = load(bundle, device=device.value, batch_size=batch_size, threads=threads)
        model.require("encode")
        if out.suffix.lower() not in (".npy", ".csv"):
            raise InputError(f"{out}: unsupported output format {out.suffix or '(none)'}; expected .npy or .csv")
        codes = model.encode(read_rows(input, model.shape))
        if out.suffix.lower() == ".npy":
            save_npy(codes, out)
        else:
            save_csv(codes, out, header=[f"z{i}" for i in range(codes.shape[1])])
        emit({"out": str(out), "rows": len(codes), "dim": int(codes.shape[1]), "provider": model.provider},
             as_json, [f"{len(codes)} codes of dimension {codes.shape[1]} -> {out}"])


def info(
    bundle: BundleArg,
    device: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Verify a bundle and summarise it: family, capabilities, graphs, sampler, calibration, provider."""
    with reported():
        from gen.runtime import load
        from gen.runtime.model import describe

        s = describe(load(bundle, device=device.value))
        lines = [f"{s['family']} ({s['variant']}) - gen {s['gen_version']}, format {s['format_version']}, "
                 f"created {s['created']}",
                 f"capabilities: {', '.join(s['capabilities'])}",
                 f"provider: {s['provider']}",
                 f"data: {s['data']['source']}, {s['data']['kind']} rows of shape {s['data']['shape']} "
                 f"(raw range {s['data']['raw_range']})",
                 "graphs: " + ", ".join(f"{role} ({', '.join(g['inputs'])} -> {', '.join(g['outputs'])})"
                                        for role, g in s["graphs"].items())]
        if s["sampler"]:
            latent = s["latent"]
            lines.append(f"sampler: {s['sampler']}" + (f", latent dim {latent['dim']} ({latent['prior']} prior)"
                                                       if latent else ""))
        if "scoring" in s:
            c = s["scoring"]
            lines.append(f"scoring: {c['kind']}, threshold {c['threshold']:.6g} "
                         f"(contamination {c['contamination']}, {c['n_calibration']} held-out rows)")
            if c["log_partition"]:
                z = c["log_partition"]
                lines.append(f"log Z: {z['value']:.4f} ± {z['std']:.2g} ({z['method']}; {z['detail']})")
        lines.append(f"export parity: max |torch - onnxruntime| {s['parity']['max_abs_diff']:.2g} "
                     f"on {s['parity']['probe_rows']} probe rows")
        if "auroc" in s["metrics"]:
            lines.append(f"one-class AUROC at training: {s['metrics']['auroc']:.4f}")
        emit(s, as_json, lines)


COMMANDS = (sample, score, encode, info)
