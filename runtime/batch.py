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
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .bundle import sha256_file
from .errors import GenError, InputError
from .manifest import DIGESTS, MANIFEST
from .outputs import atomic_path, check_output
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


@dataclass
class BatchResult:
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1
    resumed: int = 0
    failed: list[dict] = field(default_factory=list)  # with skip_bad: {"input", "error"} per bad file

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


def _score_one(source: str, target: str, chunk_rows: int, model=None, skip_bad: bool = False):
    """One file's FileResult; with skip_bad, a GenError (bad input) comes back as
    {"input", "error"} instead of stopping the job."""
    if not skip_bad:
        return _score_file(source, target, chunk_rows, model)
    try:
        return _score_file(source, target, chunk_rows, model)
    except GenError as exc:
        return {"input": source, "error": str(exc)}


def _score_file(source: str, target: str, chunk_rows: int, model=None) -> FileResult:
    model = model if model is not None else _worker_model
    start = time.perf_counter()
    stats: dict = {}
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    rows = model.score_file(source, target, chunk_rows=chunk_rows, stats=stats)
    return FileResult(source, target, rows, stats["flagged"], time.perf_counter() - start, stats["median"])


def output_path(root: Path, source: Path, out_dir: Path) -> Path:
    return out_dir / source.relative_to(root)


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


def score_many(model, source: str | Path, out_dir: str | Path, workers: int | None = None,
               chunk_rows: int = 4096, threads: int | None = None, public_key: str | Path | None = None,
               on_file=None, resume: bool = False, skip_bad: bool = False) -> BatchResult:
    """Score every file of `source` (a folder or a glob) into `out_dir`, one output per input
    at the same relative path and in the same format. `workers` processes (default: one per
    core; 1 scores in this process with `model`) each load the bundle once with `threads`
    onnxruntime threads. The first bad file stops the job with its error; outputs already
    finished stay, valid (with `skip_bad`, a bad file is listed in `failed` and in the output
    folder's ERRORS file, and the others complete). With `resume`, files whose output a previous run finished (per the
    folder's ledger, checked against the output's SHA-256, the input's size and time and the
    bundle) are skipped, so a killed job re-run gives the uninterrupted output."""
    root, files = expand(source)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder (several inputs write into an output folder)")
    if out_dir.resolve().is_relative_to(root.resolve()) and Path(source).is_dir():
        raise InputError(f"{out_dir}: is inside the input folder {root}; its outputs would be read as inputs")
    for file in files:
        check_output(output_path(root, file, out_dir), (file,), model.bundle.folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = model.bundle.folder
    digest = sha256_file(folder / DIGESTS) if (folder / DIGESTS).is_file() else sha256_file(folder / MANIFEST)
    ledger = Ledger(out_dir, digest, resume)
    done: dict[str, FileResult] = {}
    jobs = []
    for f in files:
        target = output_path(root, f, out_dir)
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
            finish(_score_one(source_file, target, chunk_rows, model, skip_bad))
    elif jobs:
        init = (str(model.bundle.folder), model.bundle.device, threads, model.batch_size,
                None if public_key is None else str(public_key))
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=init) as pool:
            futures = [pool.submit(_score_one, s, t, chunk_rows, None, skip_bad) for s, t in jobs]
            try:
                for future in as_completed(futures):
                    finish(future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    result.files = [done[str(f)] for f in files if str(f) in done]
    result.failed.sort(key=lambda item: item["input"])
    if result.failed:
        with atomic_path(out_dir / ERRORS) as tmp:
            tmp.write_text(json.dumps(result.failed, indent=1))
    result.seconds = time.perf_counter() - start
    return result
