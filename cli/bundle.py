"""Commands that run a bundle: sample, score, encode, info, verify. numpy + onnxruntime only (no torch)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import reported
from .options import BatchOpt, BundleArg, Device, DeviceOpt, JsonOpt, PublicKeyOpt, ThreadsOpt, emit


def sample(
    bundle: BundleArg,
    out: Annotated[Path, typer.Option(help="Output: .png (grid or scatter, at most 4,096 samples), .npy (the samples' own shape) or .csv (flat rows); .npy and .csv are written block by block, in memory that does not grow with --n.")],
    n: Annotated[int, typer.Option(help="Number of samples.", min=1)] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the numpy Generator that draws the noise.", min=0, max=2**63 - 1)] = 0,
    device: DeviceOpt = Device.auto,
    steps: Annotated[Optional[int], typer.Option(help="Gibbs sampler: steps per chain (default: the bundle's).", min=1)] = None,
    burn_in: Annotated[Optional[int], typer.Option(help="Gibbs sampler: steps before the first kept sample (default: steps - thin).", min=0)] = None,
    thin: Annotated[Optional[int], typer.Option(help="Gibbs sampler: steps between kept samples of a chain.", min=1)] = None,
    chains: Annotated[Optional[int], typer.Option(help="Gibbs sampler: parallel chains (default: as few as give N samples).", min=1)] = None,
    refine: Annotated[Optional[Refine], typer.Option(
        help="GAN bundles: discriminator-guided sampling, drs (rejection sampling) or mh (Metropolis-Hastings), "
             "with the discriminator calibrated at training.")] = None,
    refine_steps: Annotated[Optional[int], typer.Option(
        help="--refine mh: proposals per chain (default 50).", min=1)] = None,
    drs_quantile: Annotated[Optional[float], typer.Option(
        help="--refine drs: quantile of F(x) per round used as gamma (default 0.95; higher keeps fewer, "
             "better samples).", min=0.0, max=0.999)] = None,
    code: Annotated[Optional[list[str]], typer.Option(
        help="InfoGAN bundles: hold a latent code fixed, NAME=VALUE (repeatable): --code cat=3 --code c1=0.5; "
             "`gen info` lists the codes.", metavar="NAME=VALUE")] = None,
    batch_size: BatchOpt = None,
    threads: ThreadsOpt = None,
    public_key: PublicKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Draw N samples from a bundle with the sampler it declares. Same seed, same samples."""
    with reported():
        model = load_for_command(bundle, device, batch_size, threads, public_key)
        options = {k: v for k, v in {"steps": steps, "burn_in": burn_in, "thin": thin, "chains": chains,
                                     "refine": refine.value if refine else None, "refine_steps": refine_steps,
                                     "drs_quantile": drs_quantile, "codes": parse_codes(code)}.items()
                   if v is not None}
        path = model.sample_file(n, out, seed=seed, **options)
        kind = model.manifest.sampler.kind
        emit({"out": str(path), "n": n, "seed": seed, "sampler": kind, "refine": refine.value if refine else None,
              "provider": model.provider}, as_json,
             [f"{plural(n, 'sample')} -> {path} ({kind} sampler{f', refined by {refine.value}' if refine else ''}, "
              f"provider {model.provider})"])


class Refine(str, Enum):
    drs = "drs"
    mh = "mh"


def parse_codes(items: list[str] | None) -> dict[str, str] | None:
    """--code NAME=VALUE items as {name: value} (values checked against the bundle's codes)."""
    if not items:
        return None
    codes = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            from gen.runtime.errors import InputError

            raise InputError(f"--code {item!r}: expected NAME=VALUE, e.g. --code cat=3")
        codes[name.strip()] = value.strip()
    return codes


def load_for_command(bundle, device, batch_size, threads, public_key):
    """The bundle as the command's options load it (gen.runtime.load: verified, signed if asked)."""
    from gen.runtime import load

    return load(bundle, device=device.value, batch_size=batch_size, threads=threads, public_key=public_key)


def plural(n: int, word: str) -> str:
    """`n word`, the word in the plural unless n is 1 (gen.runtime.jobs.plural, imported late:
    the CLI's module imports stay light)."""
    from gen.runtime.jobs import plural as words

    return words(n, word)


@contextlib.contextmanager
def row_progress(verb: str, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A spinner counting the rows done on stderr (only on a terminal, never with --json);
    yields the callback a streaming verb reports its progress to."""
    import sys

    from gen.runtime.outputs import on_terminal

    if quiet or not on_terminal(sys.stderr):  # a log or a pipe: the summary line says it all
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn(f"{verb}: {{task.completed:,}} rows"), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(verb, total=None)
        yield lambda done: bar.update(task, completed=done)


ChunkOpt = Annotated[int, typer.Option(help="Rows read from the input at a time.", min=1)]


def score(
    bundle: BundleArg,
    input: Annotated[Path, typer.Argument(help="Rows to score: .csv, .npy or .parquet (raw units); - reads CSV "
                                                "or NPY from standard input; a folder (partition folders "
                                                "included) or a quoted glob scores every such file into the "
                                                "--out folder, one output per input.")],
    out: Annotated[Path, typer.Option(help="Output: .csv, .npy or .parquet (index, score, normal_quantile, flag); "
                                           "- writes CSV to standard output (the summary goes to stderr).")],
    explain: Annotated[Optional[int], typer.Option(
        help="Add each row's K largest per-feature errors: columns top1_feature, top1_error, ... topK_error "
             "(bundles with per-feature errors: autoencoders, PCA, VAE).", min=1, metavar="K")] = None,
    maps: Annotated[Optional[Path], typer.Option(
        help="Also write a .png anomaly map of the highest-scoring rows (image bundles): input, "
             "reconstruction, error heat map.")] = None,
    maps_rows: Annotated[Optional[int], typer.Option(
        help="Rows shown in --maps, the highest-scoring ones (default: 16).", min=1)] = None,
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = None,
    threads: ThreadsOpt = None,
    chunk_rows: ChunkOpt = 4096,
    workers: Annotated[Optional[int], typer.Option(
        help="Folder or glob input: worker processes, each loading the bundle once (default: one per "
             "core).", min=1)] = None,
    skip_bad: Annotated[bool, typer.Option(
        help="Folder or glob input: list a bad file (in the summary and the output folder's "
             ".gen-errors.json) and go on with the others; the exit code is then 2.")] = False,
    resume: Annotated[bool, typer.Option(
        help="Folder or glob input: skip files a previous run into the same --out finished (per the output "
             "folder's ledger: the output's SHA-256, the input's size, times and inode as read).")] = False,
    columns: Annotated[Optional[str], typer.Option(
        help="The feature columns of a wider table, by name, in the model's order (CSV with a header, or "
             "Parquet); default: every column not kept.", metavar="A,B,...")] = None,
    keep_columns: Annotated[Optional[str], typer.Option(
        help="Columns copied from input to output before the scores (ids, timestamps), so a pipeline can "
             "join back; .csv and .parquet outputs.", metavar="A,B,...")] = None,
    single: Annotated[bool, typer.Option(
        help="Folder or glob input: write one .csv or .parquet file --out, the inputs' rows in order after "
             "a first column `source` naming each row's file.")] = False,
    engine: Annotated[Engine, typer.Option(
        help="Folder or glob input: local (a pool of worker processes) or ray (Ray Data on the cluster at "
             "--address, or a local one; Parquet or CSV with a header; needs gen[ray]).")] = "local",
    address: Annotated[Optional[str], typer.Option(
        help="--engine ray: the Ray cluster to run on (e.g. ray://head:10001 or auto); default: start a "
             "local one. Inputs and --out must be on storage every node sees.")] = None,
    public_key: PublicKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score rows for anomaly (higher = more anomalous) and flag those above the threshold."""
    with reported():
        from gen.runtime.batch import is_many
        from gen.runtime.jobs import score_job, score_line

        with row_progress("scoring", as_json or is_many(input)) as progress:  # folder jobs: the summary line
            summary = score_job(bundle, input, out, explain=explain or 0, maps=maps, maps_rows=maps_rows,
                                chunk_rows=chunk_rows, workers=workers, skip_bad=skip_bad, resume=resume,
                                columns=columns, keep_columns=keep_columns, single=single, engine=engine.value,
                                address=address, device=device.value, batch_size=batch_size, threads=threads,
                                public_key=public_key, on_chunk=progress)
        lines = [score_line(summary)]
        if summary.get("maps"):
            lines.append(f"anomaly maps of the {plural(summary['maps_rows'], 'highest-scoring row')} -> {maps}")
        emit(summary, as_json, lines, err=str(out) == "-")
        if summary.get("failed"):
            typer.echo(f"error: {plural(len(summary['failed']), 'bad file')} skipped (listed in {summary['errors']}): "
                       f"{summary['failed'][0]['error']}", err=True)
            raise typer.Exit(2)


class Engine(str, Enum):
    local = "local"
    ray = "ray"


def encode(
    bundle: BundleArg,
    input: Annotated[Path, typer.Argument(help="Rows to encode: .csv, .npy or .parquet (raw units); - reads "
                                                "standard input.")],
    out: Annotated[Path, typer.Option(help="Output codes: .npy (N, latent) or .csv (columns z0, z1, ...); - "
                                           "writes CSV to standard output.")],
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = None,
    threads: ThreadsOpt = None,
    chunk_rows: ChunkOpt = 4096,
    public_key: PublicKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Encode rows to latent codes (the posterior mean for a VAE), streaming like score."""
    with reported():
        model = load_for_command(bundle, device, batch_size, threads, public_key)
        with row_progress("encoding", as_json) as progress:
            rows = model.encode_file(input, out, chunk_rows=chunk_rows, on_chunk=progress)
        dim = int(model.manifest.graphs["encoder"].port("z", outputs=True).shape[1])
        emit({"out": str(out), "rows": rows, "dim": dim, "provider": model.provider},
             as_json, [f"{plural(rows, 'code')} of dimension {dim} -> {out}"], err=str(out) == "-")


def info(
    bundle: BundleArg,
    device: DeviceOpt = Device.auto,
    public_key: PublicKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a bundle and summarise it: family, capabilities, graphs, sampler, calibration, provider."""
    with reported():
        from gen.runtime import load
        from gen.runtime.model import describe

        s = describe(load(bundle, device=device.value, public_key=public_key))
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
            if latent and latent["codes"]:
                lines.append("codes (--code NAME=VALUE): " + ", ".join(
                    f"{c['name']} (0..{c['size'] - 1})" if c["kind"] == "categorical"
                    else f"{c['name']} (uniform {c['low']:g}..{c['high']:g})" for c in latent["codes"]))
            if s["refine"]:
                r = s["refine"]
                lines.append(f"--refine drs|mh: {r['graph']} calibrated on {r['n_real']} held-out rows vs "
                             f"{r['n_fake']} generated (balanced accuracy {r['accuracy']:.3f})")
        if "scoring" in s:
            c = s["scoring"]
            lines.append(f"scoring: {c['kind']}, threshold {c['threshold']:.6g} "
                         f"(contamination {c['contamination']}, {c['n_calibration']} held-out rows)")
            if c["log_partition"]:
                z = c["log_partition"]
                lines.append(f"log Z: {z['value']:.4f} ± {z['std']:.2g} ({z['method']}; {z['detail']})")
        lines.append(f"export parity: max |torch - onnxruntime| {s['parity']['max_abs_diff']:.2g} "
                     f"on {s['parity']['probe_rows']} probe rows")
        if s.get("quantization"):
            q = s["quantization"]
            lines.append(f"quantized: {', '.join(q['graphs'])} ({q['method']}); max score difference "
                         f"{q['max_rel_score_diff']:.2%}, flags agree on {q['flag_agreement']:.1%} of "
                         f"{q['n_rows']} held-out rows"
                         + (f", AUROC {q['auroc_float']:.4f} -> {q['auroc_quantized']:.4f}"
                            if q['auroc_float'] is not None else ""))
        if "auroc" in s["metrics"]:
            lines.append(f"one-class AUROC at training: {s['metrics']['auroc']:.4f}")
        if "ratings" in s:
            r, ev = s["ratings"], s["metrics"]
            rows, cols = ("items", "users") if r["orientation"] == "item" else ("users", "items")
            lines.append(f"ratings: {r['orientation']}-based ({r[rows]} {rows} as rows, {r[cols]} {cols} as columns), "
                         f"{r['n_ratings']} training ratings in [{r['rating_range'][0]:g}, {r['rating_range'][1]:g}], "
                         f"global mean {r['global_mean']:.4f}")
            if "rmse" in ev:
                lines.append(f"held-out test at training: RMSE {ev['rmse']:.4f}, MAE {ev['mae']:.4f} "
                             f"(global mean {ev['rmse_global_mean']:.4f}, bias baseline {ev['rmse_bias_baseline']:.4f})")
        emit(s, as_json, lines)


def verify(
    bundle: BundleArg,
    public_key: PublicKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a bundle whole without serving it: its files, SHA256SUMS, manifest, graphs and,
    with --public-key, its signature."""
    with reported():
        from gen.runtime import load
        from gen.runtime.signing import SIGNATURE

        model = load(bundle, device="cpu", public_key=public_key)
        files = sorted(p.name for p in bundle.iterdir())
        signed = SIGNATURE in files
        signature = ("valid, by " + str(public_key) if public_key is not None
                     else "present, not checked (give --public-key)" if signed else "none")
        emit({"bundle": str(bundle), "verified": True, "format_version": model.manifest.format_version,
              "files": files, "signed": signed, "signature_checked": public_key is not None},
             as_json, [f"{bundle}: verified ({model.manifest.family}, format {model.manifest.format_version}, "
                       f"{len(files)} files match SHA256SUMS and the manifest); signature: {signature}"])


COMMANDS = (sample, score, encode, info, verify)
