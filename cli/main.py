"""The `gen` command line. Commands parse, call a library function and print.

torch is imported only inside `train`, `export` and `demo`; `sample`, `score`, `info` and
`encode` run on numpy + onnxruntime alone.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from gen.runtime import GenError, __version__

app = typer.Typer(
    name="gen", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Train generative models (torch), export them to ONNX bundles, and sample, score "
         "and encode with numpy + onnxruntime only.",
)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


# Options shared by the serving commands, declared once.
BundleArg = Annotated[Path, typer.Argument(help="Bundle folder.")]
DeviceOpt = Annotated[Device, typer.Option(help="auto, cpu or cuda (onnxruntime provider).")]
BatchOpt = Annotated[int, typer.Option(help="Rows per onnxruntime call.", min=1)]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="onnxruntime intra-op threads (default: one per core).", min=1)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


@contextlib.contextmanager
def user_errors():
    """Turn gen's own errors into one line on stderr and the documented exit code."""
    try:
        yield
    except GenError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except Exception as exc:
        code = getattr(exc, "exit_code", None)
        if code is None:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code) from None


def emit(summary: dict, as_json: bool, lines: list[str]) -> None:
    typer.echo(json.dumps(summary, indent=2, default=str) if as_json else "\n".join(lines))


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


@app.command()
def train(
    model: Annotated[Optional[str], typer.Option(help="Family: ae-naive, ae, ae-tied, vae, gan.")] = None,
    data: Annotated[Optional[str], typer.Option(help="digits, ring8, grid25, or a path (MNIST IDX, .npy, .csv, .parquet).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder to write.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML file with the same keys as these flags; flags override it.")] = None,
    normal_class: Annotated[Optional[int], typer.Option(help="Train on rows of this label only; report one-class AUROC.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Passes over the training rows. [default: 30]")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for splits, initialisation and batches. [default: 0]")] = None,
    device: Annotated[Optional[Device], typer.Option(help="Training device. [default: auto]")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Rows per step. [default: 64]")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (Adam). [default: 1e-3]")] = None,
    hidden: Annotated[Optional[str], typer.Option(help="Hidden widths, comma-separated, e.g. 256,128.")] = None,
    latent_dim: Annotated[Optional[int], typer.Option(help="Code / noise dimension.")] = None,
    contamination: Annotated[Optional[float], typer.Option(help="Expected anomaly share; the threshold is the (1 - c) quantile of held-out normal scores. [default: 0.01]")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Label column of a CSV/Parquet file.")] = None,
    loss: Annotated[Optional[str], typer.Option(help="Autoencoder loss: auto, mse, bce.")] = None,
    decoder: Annotated[Optional[str], typer.Option(help="VAE decoder: auto, bernoulli, gaussian.")] = None,
    kl_weight: Annotated[Optional[float], typer.Option(help="VAE KL weight (> 0). [default: 1.0]")] = None,
    gan_loss: Annotated[Optional[str], typer.Option(help="GAN generator loss: minimax, non_saturating.")] = None,
    k: Annotated[Optional[int], typer.Option(help="GAN discriminator steps per generator step. [default: 1]")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: torch's choice).", min=1)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a model and write a run folder (checkpoint, config, metrics, calibration)."""
    with user_errors():
        from gen.trainer.config import TrainConfig
        from gen.trainer.train import train as run_training

        raw = dict(TrainConfig.from_yaml(config).to_dict()) if config else {}
        flags = {"model": model, "data": data, "out": str(out) if out else None, "normal_class": normal_class,
                 "epochs": epochs, "seed": seed, "device": device.value if device else None,
                 "batch_size": batch_size, "lr": lr, "latent_dim": latent_dim, "contamination": contamination,
                 "label_column": label_column, "loss": loss, "decoder": decoder, "kl_weight": kl_weight,
                 "gan_loss": gan_loss, "k": k, "threads": threads, "quiet": quiet or None}
        if hidden is not None:
            try:
                flags["hidden"] = [int(h) for h in hidden.split(",") if h.strip()]
            except ValueError:
                raise typer.BadParameter(f"--hidden {hidden!r}: expected comma-separated integers") from None
        raw.update({key: value for key, value in flags.items() if value is not None})
        cfg = TrainConfig.from_dict(raw)
        run_dir = run_training(cfg)
        metrics = json.loads((run_dir / "run.json").read_text())["metrics"]
        lines = [f"run folder: {run_dir} (trained on {metrics['device']})"]
        if "auroc" in metrics:
            lines.append(f"one-class AUROC (normal class {cfg.normal_class}): {metrics['auroc']:.4f}")
        emit({"run": str(run_dir), "metrics": metrics}, as_json, lines)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by `gen train`.")],
    out: Annotated[Path, typer.Option(help="Bundle folder to write.")],
    force: Annotated[bool, typer.Option(help="Replace an existing bundle folder.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Export a run folder to an ONNX bundle (checked: onnx checker + torch/onnxruntime parity)."""
    with user_errors():
        from gen.exporters import export_run

        manifest = export_run(run_dir, out, force=force)
        parity = manifest.parity["max_abs_diff"]
        lines = [f"bundle: {out}", f"graphs: {', '.join(manifest.graphs)}",
                 "parity (max |torch - onnxruntime|): " + ", ".join(f"{k} {v:.2g}" for k, v in parity.items())]
        emit({"bundle": str(out), "graphs": list(manifest.graphs), "parity": manifest.parity}, as_json, lines)


@app.command()
def sample(
    bundle: BundleArg,
    out: Annotated[Path, typer.Option(help="Output: .png (grid or scatter), .npy or .csv.")],
    n: Annotated[int, typer.Option(help="Number of samples.", min=1)] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the numpy Generator that draws the noise.")] = 0,
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = 1024,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Draw N samples from a bundle. Same seed, same samples."""
    with user_errors():
        from gen.runtime import load
        from gen.runtime.outputs import save_samples

        model = load(bundle, device=device.value, batch_size=batch_size, threads=threads)
        samples = model.sample(n, seed=seed)
        path = save_samples(samples, model.manifest.data, out)
        emit({"out": str(path), "n": n, "seed": seed, "provider": model.provider}, as_json,
             [f"{n} samples -> {path} (provider {model.provider})"])


@app.command()
def score(
    bundle: BundleArg,
    input: Annotated[Path, typer.Argument(help="Rows to score: .csv, .npy or .parquet.")],
    out: Annotated[Path, typer.Option(help="Output: .csv, .npy or .parquet (index, score, normal_quantile, flag).")],
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = 1024,
    threads: ThreadsOpt = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows read from the input at a time.", min=1)] = 4096,
    as_json: JsonOpt = False,
) -> None:
    """Score rows for anomaly (higher = more anomalous) and flag those above the threshold."""
    with user_errors():
        from gen.runtime import load

        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        model = load(bundle, device=device.value, batch_size=batch_size, threads=threads)
        console = Console(stderr=True)
        with Progress(SpinnerColumn(), TextColumn("scoring: {task.completed:,} rows"), TimeElapsedColumn(),
                      console=console, transient=True, disable=as_json or not console.is_terminal) as bar:
            task = bar.add_task("score", total=None)
            rows = model.score_file(input, out, chunk_rows=chunk_rows,
                                    on_chunk=lambda done: bar.update(task, completed=done))
        emit({"out": str(out), "rows": rows, "threshold": model.threshold, "provider": model.provider},
             as_json, [f"{rows} rows scored -> {out} (threshold {model.threshold:.6g}, provider {model.provider})"])


@app.command()
def encode(
    bundle: BundleArg,
    input: Annotated[Path, typer.Argument(help="Rows to encode: .csv, .npy or .parquet.")],
    out: Annotated[Path, typer.Option(help="Output codes: .npy or .csv.")],
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = 1024,
    threads: ThreadsOpt = None,
) -> None:
    """Encode rows to latent codes (the posterior mean for a VAE)."""
    with user_errors():
        from gen.runtime import InputError, load
        from gen.runtime.inputs import read_file
        from gen.runtime.outputs import save_csv, save_npy

        model = load(bundle, device=device.value, batch_size=batch_size, threads=threads)
        model.require("encode")
        if out.suffix.lower() not in (".npy", ".csv"):
            raise InputError(f"{out}: unsupported output format {out.suffix or '(none)'}; expected .npy or .csv")
        codes = model.encode(read_file(input, model.shape))
        if out.suffix.lower() == ".npy":
            save_npy(codes, out)
        else:
            save_csv(codes, out, header=[f"z{i}" for i in range(codes.shape[1])])
        typer.echo(f"{len(codes)} codes of dimension {codes.shape[1]} -> {out}")


@app.command()
def info(
    bundle: BundleArg,
    device: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Verify a bundle and summarise it: family, capabilities, graphs, calibration, provider."""
    with user_errors():
        from gen.runtime import load
        from gen.runtime.model import describe

        summary = describe(load(bundle, device=device.value))
        lines = [f"{summary['family']} ({summary['variant']}) - gen {summary['gen_version']}, "
                 f"format {summary['format_version']}, created {summary['created']}",
                 f"capabilities: {', '.join(summary['capabilities'])}",
                 f"provider: {summary['provider']}",
                 f"data: {summary['data']['source']} rows of shape {summary['data']['shape']}",
                 f"graphs: {', '.join(f'{r} ({f})' for r, f in summary['graphs'].items())}"]
        if summary["latent"]:
            lines.append(f"latent: dim {summary['latent']['dim']}, prior {summary['latent']['prior']}")
        if "scoring" in summary:
            s = summary["scoring"]
            lines.append(f"scoring: {s['kind']}, threshold {s['threshold']:.6g} "
                         f"(contamination {s['contamination']}, {s['n_calibration']} held-out rows)")
        if "auroc" in summary["metrics"]:
            lines.append(f"one-class AUROC at training: {summary['metrics']['auroc']:.4f}")
        emit(summary, as_json, lines)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for runs, bundles and outputs.")] = Path("artifacts/demo"),
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs per model. [default: ae 100, vae 100, gan 300]", min=1)] = None,
    seed: Annotated[int, typer.Option(help="Seed for everything.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train an AE, a VAE and a GAN on sklearn digits, export them, sample PNG grids and score a batch."""
    with user_errors():
        from gen.cli.demo import run_demo

        result = run_demo(out, epochs=epochs, seed=seed, quiet=quiet, echo=typer.echo)
        typer.echo("sample grids: " + " ".join(str(p) for p in result["grids"]))
        typer.echo(f"scores: {result['scores']}")


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
