"""Scoring many files: a folder (Hive-style partition folders such as `date=2026-11-21/`
included) or a glob of CSV / NPY / Parquet files, one output per input at the same relative
path under an output folder, files spread over a pool of worker processes that each load the
bundle once. Each output is written whole (temp + rename), so a failure leaves the finished
outputs valid and the failed one absent.
"""

from __future__ import annotations

import glob
import os
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .readers import FORMATS, is_stdio

GLOB_CHARS = set("*?[")


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


@dataclass
class BatchResult:
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1

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


def _score_one(source: str, target: str, chunk_rows: int, model=None) -> FileResult:
    model = model if model is not None else _worker_model
    start = time.perf_counter()
    stats: dict = {}
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    rows = model.score_file(source, target, chunk_rows=chunk_rows, stats=stats)
    return FileResult(source, target, rows, stats["flagged"], time.perf_counter() - start, stats["median"])


def output_path(root: Path, source: Path, out_dir: Path) -> Path:
    return out_dir / source.relative_to(root)


def score_many(model, source: str | Path, out_dir: str | Path, workers: int | None = None,
               chunk_rows: int = 4096, threads: int | None = None, public_key: str | Path | None = None,
               on_file=None) -> BatchResult:
    """Score every file of `source` (a folder or a glob) into `out_dir`, one output per input
    at the same relative path and in the same format. `workers` processes (default: one per
    core; 1 scores in this process with `model`) each load the bundle once with `threads`
    onnxruntime threads. The first bad file stops the job with its error; outputs already
    finished stay, valid."""
    root, files = expand(source)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder (several inputs write into an output folder)")
    if out_dir.resolve().is_relative_to(root.resolve()) and Path(source).is_dir():
        raise InputError(f"{out_dir}: is inside the input folder {root}; its outputs would be read as inputs")
    from .outputs import check_output

    for file in files:
        check_output(output_path(root, file, out_dir), (file,), model.bundle.folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, len(files)))
    result = BatchResult(workers=workers)
    start = time.perf_counter()
    jobs = [(str(f), str(output_path(root, f, out_dir))) for f in files]
    if workers == 1:
        for source_file, target in jobs:
            result.files.append(_score_one(source_file, target, chunk_rows, model))
            if on_file is not None:
                on_file(result.files[-1])
    else:
        init = (str(model.bundle.folder), model.bundle.device, threads, model.batch_size,
                None if public_key is None else str(public_key))
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=init) as pool:
            futures = {pool.submit(_score_one, s, t, chunk_rows): s for s, t in jobs}
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                for future in pending:
                    future.cancel()
                raise failed[0].exception()
            by_input = {f.result().input: f.result() for f in done}
            for source_file, _ in jobs:
                result.files.append(by_input[source_file])
                if on_file is not None:
                    on_file(by_input[source_file])
    result.seconds = time.perf_counter() - start
    return result
