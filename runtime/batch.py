"""Scoring many files: a folder (Hive-style partition folders such as `date=2026-11-21/`
included) or a glob of CSV / NPY / Parquet files, one output per input at the same relative
path under an output folder, files spread over a pool of worker processes that each load the
bundle once. Each output is written whole (temp + rename), so a failure leaves the finished
outputs valid and the failed one absent.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .bundle import sha256_file
from .errors import GenError, InputError
from .manifest import DIGESTS, MANIFEST
from .outputs import atomic_path, check_output, remove_stale_temps
from .readers import FORMATS, is_stdio

GLOB_CHARS = set("*?[")
LEDGER = ".gen-score.json"  # in the output folder: what finished, for --resume
ERRORS = ".gen-errors.json"  # in the output folder: the bad files a --skip-bad run passed over


def is_many(source: str | Path) -> bool:
    """Whether `source` names several files (a folder or a glob) rather than one."""
    text = str(source)
    return not is_stdio(text) and (Path(text).is_dir() or bool(GLOB_CHARS & set(text)))


def expand(source: str | Path) -> tuple[Path, list[Path]]:
    """(root, input files): every CSV / NPY / Parquet file under a folder, or matching a glob
    (`**` crosses folders), sorted; the root is the folder the relative output paths start from.
    Hidden files and folders (a leading dot, such as gen's own temp files) are skipped."""
    text = str(source)
    if Path(text).is_dir():
        root = Path(text)
        files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS]
    else:
        parts = Path(text).parts
        fixed = next((i for i, part in enumerate(parts) if GLOB_CHARS & set(part)), len(parts))
        root = Path(*parts[:fixed]) if fixed else Path(".")
        files = [Path(p) for p in glob.glob(text, recursive=True)
                 if Path(p).is_file() and Path(p).suffix.lower() in FORMATS]
    files = sorted(p for p in files if not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise InputError(f"{source}: no {', '.join(FORMATS)} files found")
    return root, files


@dataclass
class FileResult:
    input: str
    output: str
    rows: int
    flagged: int
    seconds: float
    median: float | None = None
    rss_mib: float | None = None  # the scoring process's peak resident memory when the file was done


@dataclass
class BatchResult:
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1
    resumed: int = 0
    failed: list[dict] = field(default_factory=list)  # with skip_bad: {"input", "error"} per bad file
    root: str = "."  # the folder the inputs' relative paths start from
    errors: str | None = None  # with failed files: the error report's path

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def flagged(self) -> int:
        return sum(f.flagged for f in self.files)


_worker_model = None


def _init_worker(bundle: str, device: str, threads: int | None, batch_size: int, public_key: str | None) -> None:
    global _worker_model
    from .model import load

    _worker_model = load(bundle, device=device, threads=threads, batch_size=batch_size, public_key=public_key)


def _score_one(source: str, target: str, options: dict, model=None, skip_bad: bool = False):
    """One file's FileResult; with skip_bad, a GenError (bad input) comes back as
    {"input", "error"} instead of stopping the job."""
    if not skip_bad:
        return _score_file(source, target, options, model)
    try:
        return _score_file(source, target, options, model)
    except GenError as exc:
        return {"input": source, "error": str(exc)}


def _score_file(source: str, target: str, options: dict, model=None) -> FileResult:
    model = model if model is not None else _worker_model
    start = time.perf_counter()
    stats: dict = {}
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)  # a worker killed while writing it left its temp file
    rows = model.score_file(source, target, stats=stats, **options)
    return FileResult(source, target, rows, stats["flagged"], time.perf_counter() - start, stats["median"],
                      peak_rss_mib())


def peak_rss_mib() -> float | None:
    """This process's peak resident memory in MiB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def output_path(root: Path, source: Path, out_dir: Path, suffix: str | None = None) -> Path:
    target = out_dir / source.relative_to(root)
    return target.with_suffix(suffix) if suffix else target


class Ledger:
    """The output folder's record of finished files (LEDGER, rewritten atomically after each):
    per output, its input's size and modification time, the bundle's SHA256SUMS digest, and
    the output's SHA-256 and counts. `--resume` skips a file only when all of them still match."""

    def __init__(self, out_dir: Path, bundle_digest: str, resume: bool):
        self.path = out_dir / LEDGER
        self.bundle_digest = bundle_digest
        self.entries: dict = {}
        if resume and self.path.is_file():
            try:
                raw = json.loads(self.path.read_text())
                if raw.get("bundle") == bundle_digest:
                    self.entries = dict(raw.get("files", {}))
            except (ValueError, OSError, AttributeError, TypeError):
                self.entries = {}

    @staticmethod
    def _input_facts(source: Path) -> dict:
        st = source.stat()
        return {"input_size": st.st_size, "input_mtime_ns": st.st_mtime_ns}

    def finished(self, source: Path, target: Path) -> FileResult | None:
        entry = self.entries.get(str(target))
        if not isinstance(entry, dict) or not target.is_file() or entry.get("input") != str(source):
            return None
        if any(entry.get(k) != v for k, v in self._input_facts(source).items()):
            return None
        if sha256_file(target) != entry.get("sha256"):
            return None
        try:
            return FileResult(str(source), str(target), int(entry["rows"]), int(entry["flagged"]), 0.0,
                              entry.get("median"))
        except (KeyError, TypeError, ValueError):
            return None

    def record(self, result: FileResult) -> None:
        self.entries[result.output] = {**asdict(result), **self._input_facts(Path(result.input)),
                                       "sha256": sha256_file(Path(result.output))}
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps({"bundle": self.bundle_digest, "files": self.entries}, indent=1))


class WorkerDied(GenError):
    """A worker process died (killed, or out of memory) twice while scoring; exit code 1."""


def score_many(model, source: str | Path, out_dir: str | Path, workers: int | None = None,
               chunk_rows: int = 4096, threads: int | None = None, public_key: str | Path | None = None,
               on_file=None, resume: bool = False, skip_bad: bool = False, columns=None, keep_columns=None,
               suffix: str | None = None) -> BatchResult:
    """Score every file of `source` (a folder or a glob) into `out_dir`, one output per input
    at the same relative path and in the same format (or with `suffix`, e.g. ".parquet").
    `workers` processes (default: one per core; 1 scores in this process with `model`) each
    load the bundle once with `threads` onnxruntime threads. `columns` and `keep_columns` are
    GenModel.score_file's.

    The first bad file stops the job with its error; outputs already finished stay, valid
    (with `skip_bad`, a bad file is listed in `failed` and in the output folder's ERRORS
    file, and the others complete). A worker process that dies (killed, out of memory)
    leaves no output for its file: the files not finished are retried once in a new pool,
    and a second death stops the job (WorkerDied). With `resume`, files whose output a
    previous run finished (per the folder's ledger, checked against the output's SHA-256,
    the input's size and time and the bundle) are skipped, so a killed job re-run gives the
    uninterrupted output."""
    root, files = expand(source)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder (several inputs write into an output folder)")
    if out_dir.resolve().is_relative_to(root.resolve()) and Path(source).is_dir():
        raise InputError(f"{out_dir}: is inside the input folder {root}; its outputs would be read as inputs")
    targets = {}
    for file in files:
        target = output_path(root, file, out_dir, suffix)
        if target in targets:
            raise InputError(f"{target}: would hold the scores of both {targets[target]} and {file}")
        targets[target] = file
        check_output(target, (file,), model.bundle.folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = model.bundle.folder
    digest = sha256_file(folder / DIGESTS) if (folder / DIGESTS).is_file() else sha256_file(folder / MANIFEST)
    options = {"chunk_rows": chunk_rows, "columns": columns, "keep_columns": keep_columns}
    ledger = Ledger(out_dir, digest + json.dumps([columns, keep_columns], default=str), resume)
    done: dict[str, FileResult] = {}
    jobs = []
    for f in files:
        target = output_path(root, f, out_dir, suffix)
        previous = ledger.finished(f, target) if resume else None
        if previous is not None:
            done[str(f)] = previous
        else:
            jobs.append((str(f), str(target)))
    workers = max(1, min(workers or os.cpu_count() or 1, max(1, len(jobs))))
    result = BatchResult(workers=workers, resumed=len(done))
    start = time.perf_counter()

    def finish(item) -> None:
        if isinstance(item, dict):  # a bad file, skipped
            result.failed.append(item)
            return
        ledger.record(item)
        done[item.input] = item
        if on_file is not None:
            on_file(item)

    if workers == 1:
        for source_file, target in jobs:
            finish(_score_one(source_file, target, options, model, skip_bad))
    elif jobs:
        init = (str(model.bundle.folder), model.bundle.device, threads, model.batch_size,
                None if public_key is None else str(public_key))
        for attempt in (1, 2):
            remaining = [(s, t) for s, t in jobs if s not in done
                         and not any(f["input"] == s for f in result.failed)]
            try:
                _run_pool(remaining, workers, init, options, skip_bad, finish)
                break
            except BrokenProcessPool:
                left = [s for s, _ in jobs if s not in done and not any(f["input"] == s for f in result.failed)]
                if attempt == 2:
                    for source_file, target in jobs:  # the dead and terminated workers' temp files
                        if source_file not in done:
                            remove_stale_temps(target)
                    raise WorkerDied(
                        f"a worker process died twice (killed, or out of memory) while scoring "
                        f"{', '.join(left[:3])}{', ...' if len(left) > 3 else ''}; the {len(done)} finished "
                        f"outputs are kept, re-run with --resume to finish") from None
    result.files = [done[str(f)] for f in files if str(f) in done]
    result.failed.sort(key=lambda item: item["input"])
    result.root = str(root)
    if result.failed:
        result.errors = str(out_dir / ERRORS)
        with atomic_path(out_dir / ERRORS) as tmp:
            tmp.write_text(json.dumps(result.failed, indent=1))
    result.seconds = time.perf_counter() - start
    return result


def _run_pool(jobs, workers: int, init: tuple, options: dict, skip_bad: bool, finish) -> None:
    """Score `jobs` in a pool of `workers` processes, passing each result to `finish`; a
    worker's death raises BrokenProcessPool after the results that did finish are passed on."""
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), initializer=_init_worker,
                             initargs=init) as pool:
        futures = [pool.submit(_score_one, s, t, options, None, skip_bad) for s, t in jobs]
        handled = set()
        try:
            for future in as_completed(futures):
                finish(future.result())
                handled.add(future)
        except BrokenProcessPool:
            for future in futures:  # those that finished before the pool broke
                if future not in handled and future.done() and not future.cancelled() \
                        and future.exception() is None:
                    finish(future.result())
            raise
        except BaseException:
            for future in futures:
                future.cancel()
            raise


SINGLE_FORMATS = (".csv", ".parquet")
SOURCE = "source"  # the column of a --single output naming each row's input file


def parts_folder(out: Path) -> Path:
    """Where score_single keeps the per-file outputs (and their ledger, for --resume)."""
    return out.parent / f".{out.name}.gen-parts"


def score_single(model, source: str | Path, out: str | Path, **options) -> BatchResult:
    """Score every file of `source` into one CSV or Parquet file `out`: the rows of each input
    in order (inputs sorted by path), after a first column SOURCE naming the input (its path
    under the folder or the glob's fixed part). Files are scored as `score_many` does (same
    options, workers, --resume) into a hidden parts folder beside `out`, then joined into
    `out` in one atomic write; the parts folder is removed once `out` is whole, and kept
    when some files were skipped as bad (their error report is in it), so --resume after a
    fix scores only those."""
    out = Path(out)
    if out.suffix.lower() not in SINGLE_FORMATS:
        raise InputError(f"{out}: --single writes one .csv or .parquet table (with a {SOURCE} column), "
                         f"got {out.suffix or '(no extension)'}")
    if out.is_dir():
        raise InputError(f"{out}: is a folder; --single writes one file")
    if not out.parent.is_dir():
        raise InputError(f"{out}: output folder {out.parent} does not exist")
    keep = options.get("keep_columns")
    if keep is not None and SOURCE in ([k.strip() for k in keep.split(",")] if isinstance(keep, str) else keep):
        raise InputError(f"--keep-columns: {SOURCE!r} is also the --single output's column naming the input file")
    parts = parts_folder(out)
    root, files = expand(source)
    for file in files:
        check_output(out, (file,), model.bundle.folder)
    result = score_many(model, source, parts, suffix=out.suffix.lower(), **options)
    sources = [(Path(f.input).relative_to(root).as_posix(), Path(f.output)) for f in result.files]
    if not sources:  # every file was bad (--skip-bad): no table to write
        return result
    if out.suffix.lower() == ".csv":
        _join_csv(sources, out)
    else:
        _join_parquet(sources, out)
    for f in result.files:
        f.output = str(out)
    if not result.failed:
        import shutil

        shutil.rmtree(parts, ignore_errors=True)
    return result


def _join_csv(sources: list[tuple[str, Path]], out: Path) -> None:
    """Records, not lines: a quoted kept cell may hold a line break."""
    import csv

    with atomic_path(out) as tmp, open(tmp, "w", newline="") as dst:
        writer = csv.writer(dst, lineterminator="\n")
        for i, (name, part) in enumerate(sources):
            with open(part, newline="") as src:
                reader = csv.reader(src)
                header = next(reader, [])
                if i == 0:
                    writer.writerow([SOURCE, *header])
                writer.writerows([name, *row] for row in reader)


def _join_parquet(sources: list[tuple[str, Path]], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(out) as tmp:
        writer = None
        try:
            for name, part in sources:
                pfile = pq.ParquetFile(part)
                schema = pa.schema([pa.field(SOURCE, pa.string()), *pfile.schema_arrow])
                if writer is None:
                    writer = pq.ParquetWriter(tmp, schema)
                elif not schema.equals(writer.schema):
                    theirs = {f.name: f.type for f in schema}
                    diff = next((f for f in writer.schema if theirs.get(f.name) != f.type), None)
                    what = (f"column {diff.name!r} is {theirs.get(diff.name, 'missing')}, not {diff.type}"
                            if diff is not None else "its columns differ")
                    raise InputError(f"{name}: {what} as in the first file; --single needs one schema (or write "
                                     "one output per file)")
                for batch in pfile.iter_batches():
                    writer.write_table(pa.Table.from_batches([batch]).add_column(
                        0, SOURCE, pa.array([name] * batch.num_rows, pa.string())))
        finally:
            if writer is not None:
                writer.close()
