"""`gen score` as one library call: which options combine, where the job runs (one file, a
folder or glob through a pool of worker processes or into one file, or Ray Data), the drift
test, and the summary the CLI prints or writes as JSON. The CLI parses flags and formats the
summary's line; everything a Python caller could need from the command is here.

    from gen.runtime.jobs import score_job
    summary = score_job("bundle", "rows.csv", "scores.csv")                 # one file
    summary = score_job(model, "parts/", "scored/", workers=4, resume=True)  # a folder
"""

from __future__ import annotations

from typing import Callable

from .errors import InputError

ENGINES = ("local", "ray")


def plural(n: int, word: str) -> str:
    """`n word`, the word in the plural unless n is 1: "1 row", "2,048 rows"."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def check_score_options(source, *, explain: int = 0, maps=None, maps_rows: int | None = None,
                        workers: int | None = None, resume: bool = False, skip_bad: bool = False,
                        single: bool = False, engine: str = "local", address: str | None = None) -> bool:
    """Refuse options that do not combine (InputError, named as `gen score`'s flags); returns
    whether `source` is many files (a folder or a glob)."""
    from .batch import is_many

    if engine not in ENGINES:
        raise InputError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if maps_rows is not None and maps is None:
        raise InputError("--maps-rows applies only with --maps")
    many = is_many(source)
    if not many and (workers is not None or resume or skip_bad or single or engine != "local"):
        raise InputError("--workers, --resume, --skip-bad, --single and --engine apply to a folder or glob input")
    if address is not None and engine != "ray":
        raise InputError("--address applies with --engine ray")
    if engine == "ray" and (explain or maps is not None or resume or skip_bad or single):
        raise InputError("--engine ray writes a new output folder; --explain, --maps, --resume, --skip-bad "
                         "and --single are the local engine's")
    if many and (explain or maps is not None):
        raise InputError("--explain and --maps score one file at a time; give a single input file")
    return many


def score_job(bundle, source, out, *, explain: int = 0, maps=None, maps_rows: int | None = None,
              chunk_rows: int = 4096, workers: int | None = None, skip_bad: bool = False, resume: bool = False,
              columns=None, keep_columns=None, single: bool = False, engine: str = "local",
              address: str | None = None, device: str = "auto", batch_size: int | None = None,
              threads: int | None = None, public_key=None, on_chunk: Callable[[int], None] | None = None) -> dict:
    """Score `source` (a CSV/NPY/Parquet file, `-`, a folder or a glob) into `out` with
    `bundle` (a bundle folder, or a loaded GenModel); the options are `gen score`'s. Returns
    the summary (`kind` "file", "folder" or "ray"; rows, flagged, threshold, drift, ...). A
    folder job with `skip_bad` that skipped files lists them under `failed` (the CLI then
    exits with 2); every other problem raises, with nothing half-written."""
    many = check_score_options(source, explain=explain, maps=maps, maps_rows=maps_rows, workers=workers,
                               resume=resume, skip_bad=skip_bad, single=single, engine=engine, address=address)
    if engine == "ray":
        return _on_ray(bundle, source, out, address, columns, keep_columns, device, workers, batch_size, threads,
                       public_key)
    model = _load(bundle, device, batch_size, threads, public_key)
    if many:
        return _folder(model, source, out, workers, chunk_rows, threads, public_key, resume, skip_bad, columns,
                       keep_columns, single)
    stats: dict = {}
    rows = model.score_file(source, out, chunk_rows=chunk_rows, on_chunk=on_chunk, explain=explain or 0,
                            maps=maps, maps_rows=maps_rows or 16, stats=stats, columns=columns,
                            keep_columns=keep_columns)
    summary = {"kind": "file", "out": str(out), "rows": rows, "flagged": stats["flagged"],
               "threshold": model.threshold, "provider": model.provider,
               "drift": stats["drift"]}  # score_file tested it (and warned)
    if maps is not None:
        summary.update(maps=str(maps), maps_rows=min(rows, maps_rows or 16))
    return summary


def _load(bundle, device, batch_size, threads, public_key):
    from .model import GenModel, load

    if isinstance(bundle, GenModel):
        return bundle
    return load(bundle, device=device, batch_size=batch_size, threads=threads, public_key=public_key)


def _drift(model, files: list[tuple[str, int, int, float | None]]) -> list[dict]:
    """The drift test of many files at once, warned about once (GenWarning)."""
    from .drift import check_drift

    return check_drift(model.manifest.scoring, files, stacklevel=4)


def _on_ray(bundle, source, out, address, columns, keep_columns, device, workers, batch_size, threads,
            public_key) -> dict:
    """Ray Data reads, scores (an actor pool) and writes; the summary."""
    from gen.pipelines.ray import score_files

    from .model import GenModel, load

    folder = bundle.bundle.folder if isinstance(bundle, GenModel) else bundle
    r = score_files(folder, source, out, address=address, columns=columns, keep_columns=keep_columns,
                    device=device, workers=workers, batch_size=batch_size, threads=threads or 1,
                    public_key=public_key)
    model = load(folder, device="cpu", public_key=public_key)
    drift = _drift(model, [(f"{source} (all files)", r["rows"], r["flagged"], None)])
    return {**r, "kind": "ray", "out": str(out), "engine": "ray",
            "flagged_share": r["flagged"] / r["rows"] if r["rows"] else 0.0,
            "rows_per_s": r["rows"] / r["seconds"] if r["seconds"] > 0 else float("nan"),
            "threshold": model.threshold, "drift": drift}


def _folder(model, source, out, workers, chunk_rows, threads, public_key, resume, skip_bad, columns,
            keep_columns, single) -> dict:
    """One output per input file (or one file with `single`) through worker processes."""
    from .batch import score_many, score_single

    run = score_single if single else score_many
    result = run(model, source, out, workers=workers, chunk_rows=chunk_rows, threads=threads,
                 public_key=public_key, resume=resume, skip_bad=skip_bad, columns=columns,
                 keep_columns=keep_columns)
    scored = result.scored  # this run's files; the totals below are the folder's
    drift = _drift(model, [(f.input, f.rows, f.flagged, f.median) for f in result.files])
    rows, flagged = sum(f.rows for f in scored), sum(f.flagged for f in scored)
    return {"kind": "folder", "single": bool(single), "out": str(out), "files": len(result.files),
            "rows": result.rows, "flagged": result.flagged,
            "flagged_share": result.flagged / result.rows if result.rows else 0.0,
            "files_scored": len(scored), "rows_scored": rows, "flagged_scored": flagged, "seconds": result.seconds,
            "rows_per_s": rows / result.seconds if scored and result.seconds > 0 else None,  # this run's rows
            "workers": result.workers, "workers_requested": result.requested, "resumed": result.resumed,
            "worker_peak_rss_mib": max((f.rss_mib for f in scored if f.rss_mib is not None), default=None),
            "failed": result.failed, "errors": str(result.errors) if result.failed else None,
            "threshold": model.threshold, "provider": model.provider, "drift": drift,
            "outputs": [{"input": f.input, "output": f.output, "rows": f.rows, "flagged": f.flagged}
                        for f in result.files]}


def score_line(summary: dict) -> str:
    """The one line `gen score` prints for a summary of `score_job`."""
    if summary["kind"] == "file":
        return (f"{plural(summary['rows'], 'row')} scored -> {summary['out']} (threshold {summary['threshold']:.6g}, "
                f"provider {summary['provider']})")
    if summary["kind"] == "ray":
        return (f"{plural(summary['files'], 'file')}, {plural(summary['rows'], 'row')} scored on Ray -> "
                f"{summary['out']}/ ({plural(len(summary['outputs']), 'output file')}; {summary['flagged']:,} "
                f"flagged, {summary['flagged_share']:.2%}; {summary['rows_per_s']:,.0f} rows/s)")
    where = f"{summary['out']}{'' if summary['single'] else '/'}"
    done = f"{plural(summary['resumed'], 'file')} already done"
    rows, flagged, rate = summary["rows_scored"], summary["flagged_scored"], summary["rows_per_s"]
    if not summary["files_scored"] and summary["resumed"]:
        return (f"nothing to score: {done} -> {where} ({plural(summary['rows'], 'row')}, {summary['flagged']:,} "
                f"flagged, {summary['flagged_share']:.2%})")
    asked = summary["workers_requested"]
    asked = f", {asked} asked for" if asked not in (None, summary["workers"]) else ""
    return (f"{plural(summary['files_scored'], 'file')}, {plural(rows, 'row')} scored -> {where} ({flagged:,} "
            f"flagged, {flagged / rows if rows else 0.0:.2%}; "
            + (f"{rate:,.0f} rows/s with {plural(summary['workers'], 'worker')}{asked}; " if rate is not None else "")
            + f"provider {summary['provider']})" + (f"; {done}, skipped" if summary["resumed"] else ""))
