"""Scoring many files: a folder (Hive-style partition folders such as `date=2026-11-21/`
included) or a glob of CSV / NPY / Parquet files, one output per input at the same relative
path under an output folder, files spread over a pool of worker processes that each load the
bundle once. Each output is written whole (temp + rename), so a failure leaves the finished
outputs valid and the failed one absent; no output, temp file, ledger or error report can
land on an input (checked, all of them, before anything is written).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import signal
import stat
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .bundle import sha256_file
from .errors import GenError, InputError
from .manifest import DIGESTS, MANIFEST
from .outputs import OutputError, atomic_path, check_outputs, is_running, make_folder, remove_stale_temps
from .readers import FORMATS, arrow_path, is_stdio, os_reason

GLOB_CHARS = set("*?[")
LEDGER = ".gen-score.json"  # in the output folder: what finished, for --resume
ERRORS = ".gen-errors.json"  # in the output folder: the bad files a --skip-bad run passed over


def is_many(source: str | Path) -> bool:
    """Whether `source` names several files (a folder or a glob) rather than one (a file whose
    name holds glob characters is one file)."""
    text = str(source)
    return not is_stdio(text) and (os.path.isdir(text) or (bool(GLOB_CHARS & set(text)) and not os.path.isfile(text)))


def expand(source: str | Path, problems: list | None = None) -> tuple[Path, list[Path]]:
    """(root, input files): every CSV / NPY / Parquet file under a folder, or matching a glob
    (`**` crosses folders), sorted; the root is the folder the relative output paths start from.
    Hidden files and folders (a leading dot, such as gen's own temp files) are skipped.

    Symbolic links are followed, each real file is listed once (by a path without a link
    where it has one), and a linked folder already walked, or the root or one of its
    ancestors, is not entered, so a loop such as `ln -s . d/self` is walked once. A folder or
    file that cannot be read is reported: appended to `problems` as {"input", "error"} when
    a list is given (the walk goes on), else raised (InputError)."""
    text = str(source)
    if os.path.isdir(text):
        root, pattern = Path(text), None
    else:
        parts = Path(text).parts
        fixed = next((i for i, part in enumerate(parts) if GLOB_CHARS & set(part)), len(parts))
        root, pattern = (Path(*parts[:fixed]) if fixed else Path(".")), parts[fixed:]
    found = []
    files = _walk(root, pattern, problems if problems is not None else found)
    if problems is None and found:
        raise InputError(found[0]["error"])
    if not files:
        if problems:
            raise InputError(problems[0]["error"])
        raise InputError(f"{source}: no {', '.join(FORMATS)} files found")
    return root, files


def _states(pattern: tuple[str, ...], parts: tuple[str, ...]) -> set[int]:
    """The positions in a glob `pattern` (one item per path component; `**` stands for any
    number of them) that matching the components `parts` can reach; len(pattern) is a
    whole match, and a position before it a folder worth entering."""
    def closure(states):
        more = set(states)
        for i in states:
            while i < len(pattern) and pattern[i] == "**":
                i += 1
                more.add(i)
        return more

    states = closure({0})
    for part in parts:
        states = closure({i if pattern[i] == "**" else i + 1 for i in states
                          if i < len(pattern) and (pattern[i] == "**" or fnmatch.fnmatch(part, pattern[i]))})
    return states


def _walk(root: Path, pattern: tuple[str, ...] | None, problems: list) -> list[Path]:
    """The data files under `root` (those matching `pattern`, a glob's components under the
    root, when given), as `expand` describes; folders and files that cannot be read go to
    `problems`. Folders reached without a symbolic link are walked first, so a file is named
    by such a path when it has one."""
    top = os.path.realpath(root)
    seen: set[tuple[int, int]] = set()  # (device, inode) of the folders walked
    best: dict[str, tuple[tuple[bool, str], Path]] = {}  # real path: (rank, path), the lowest rank kept
    plain, linked = [(root, (), False)], []  # (folder, its components under root, reached by a link)
    while plain or linked:
        folder, rel, via_link = plain.pop() if plain else linked.pop(0)
        try:
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
            real_folder = os.path.realpath(folder)
        except OSError as exc:
            if not (rel == () and isinstance(exc, FileNotFoundError)):  # a glob's missing root: no match
                problems.append({"input": str(folder), "error": f"{folder}: cannot read the folder ({os_reason(exc)})"})
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            parts, path = (*rel, entry.name), folder / entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if pattern is not None and not (_states(pattern, parts) - {len(pattern)}):
                    continue  # no file below can match
                if not entry.is_symlink():
                    plain.append((path, parts, via_link))
                    continue
                real = os.path.realpath(path)
                if real != top and not top.startswith(real.rstrip(os.sep) + os.sep):  # not the root or above it
                    linked.append((path, parts, True))
            elif Path(entry.name).suffix.lower() in FORMATS and (
                    pattern is None or len(pattern) in _states(pattern, parts)):
                try:
                    if not stat.S_ISREG(entry.stat().st_mode):  # a pipe or device named .csv: not a file
                        continue
                except OSError as exc:  # a broken link, a file the walk may not reach
                    problems.append({"input": str(path), "error": f"{path}: cannot read ({os_reason(exc)})"})
                    continue
                link = entry.is_symlink()
                real = os.path.realpath(path) if link else os.path.join(real_folder, entry.name)
                rank = (via_link or link, str(path))
                if real not in best or rank < best[real][0]:
                    best[real] = (rank, path)
    return sorted(path for _, path in best.values())


@dataclass
class Inputs:
    """A folder job's inputs: `expand`'s root and files, the folders and files that could not
    be read (`problems`, {"input", "error"} each), and whether the source was a folder."""

    root: Path
    files: list[Path]
    problems: list[dict]
    folder: bool


def find_inputs(source: str | Path, skip_bad: bool = False) -> Inputs:
    """`expand(source)` as Inputs: an unreadable folder or file is raised, or with `skip_bad`
    kept in `problems` (the job lists it as a bad file)."""
    problems: list[dict] = []
    root, files = expand(source, problems if skip_bad else None)
    return Inputs(root, files, problems, os.path.isdir(source))


@dataclass
class FileResult:
    input: str
    output: str
    rows: int
    flagged: int
    seconds: float
    median: float | None = None
    rss_mib: float | None = None  # the scoring process's peak resident memory when the file was done
    input_facts: dict | None = None  # the input as it was read (input_facts), for the ledger
    resumed: bool = False  # finished by an earlier run (--resume), not scored in this one


@dataclass
class BatchResult:
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1  # the scoring processes used (0: nothing to score; 1: this process)
    resumed: int = 0
    failed: list[dict] = field(default_factory=list)  # with skip_bad: {"input", "error"} per bad file
    root: str = "."  # the folder the inputs' relative paths start from
    errors: str | None = None  # with failed files: the error report's path
    requested: int | None = None  # the workers asked for (None: one per core)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def flagged(self) -> int:
        return sum(f.flagged for f in self.files)

    @property
    def scored(self) -> list[FileResult]:
        """The files scored in this run (not those a previous run finished)."""
        return [f for f in self.files if not f.resumed]


_worker_model = None


def _init_worker(creator: int, bundle: str, device: str, threads: int | None, batch_size: int,
                 public_key: str | None) -> None:
    global _worker_model
    from .model import load

    _die_with_parent(creator)
    _worker_model = load(bundle, device=device, threads=threads, batch_size=batch_size, public_key=public_key)


PARENT_POLL_S = 1.0


def _die_with_parent(creator: int) -> None:
    """Make this worker process end when the process that started it dies, kill -9 included,
    rather than live on holding a loaded bundle: the kernel's parent-death signal on Linux,
    and everywhere a thread that watches for the orphan's new parent process id. `creator`
    is the pool's process id, taken before the fork: a parent that is not it is a fork
    server, or tells that the creator died before this worker started watching."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):  # no libc prctl: the watching thread still works
            import ctypes

            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
    if parent != creator and not is_running(creator):
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="gen-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)  # the parent is gone: nobody will collect this worker's results


def _score_one(source: str, target: str, options: dict, model=None, skip_bad: bool = False):
    """One file's FileResult; with skip_bad, a GenError about the input (bad input) comes back
    as {"input", "error"} instead of stopping the job (an OutputError still stops it)."""
    if not skip_bad:
        return _score_file(source, target, options, model)
    try:
        return _score_file(source, target, options, model)
    except OutputError:
        raise
    except GenError as exc:
        return {"input": source, "error": str(exc)}


READS = 2  # times a file that changes while it is scored is read before the job gives up on it


def input_facts(source: str | Path) -> dict | None:
    """What identifies the version of a file: size, modification and change times, inode (a
    file replaced by `mv` has a new one); None when it cannot be read."""
    try:
        st = os.stat(source)
    except OSError:
        return None
    return {"input_size": st.st_size, "input_mtime_ns": st.st_mtime_ns, "input_ctime_ns": st.st_ctime_ns,
            "input_inode": st.st_ino}


def _score_file(source: str, target: str, options: dict, model=None) -> FileResult:
    """Score `source` into `target`; the input's facts are taken before and after, and a file
    that changed meanwhile (replaced or rewritten mid-read: the output holds the old rows, or
    a mix) is scored again, up to READS times, then refused, its output removed."""
    model = model if model is not None else _worker_model
    start = time.perf_counter()
    make_folder(Path(target).parent)
    for _ in range(READS):
        before, stats, error = input_facts(source), {}, None
        try:
            rows = model.score_file(source, target, stats=stats, warn_drift=False, **options)  # one warning, at the end
        except OutputError:
            raise
        except GenError as exc:  # a bad file, or one read as it changed: told apart below
            error = exc
        if input_facts(source) == before:
            if error is not None:
                raise error
            return FileResult(source, target, rows, stats["flagged"], time.perf_counter() - start, stats["median"],
                              peak_rss_mib(), before)
    with contextlib.suppress(OSError):
        Path(target).unlink(missing_ok=True)
    raise InputError(f"{source}: changed while it was being scored, {READS} times in a row; it has no output "
                     f"(score it again once it is complete)")


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
    per output, its input's facts as they were when it was read (input_facts: size, times,
    inode; a file that changed while read is scored again, never recorded), the bundle's
    SHA256SUMS digest, and the output's SHA-256 and counts. `--resume` skips a file only when
    all of them still match."""

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

    def finished(self, source: Path, target: Path) -> FileResult | None:
        entry = self.entries.get(str(target))
        if not isinstance(entry, dict) or not target.is_file() or entry.get("input") != str(source):
            return None
        facts = input_facts(source)
        if facts is None or any(entry.get(k) != v for k, v in facts.items()):
            return None
        try:
            if sha256_file(target) != entry.get("sha256"):
                return None
            return FileResult(str(source), str(target), int(entry["rows"]), int(entry["flagged"]), 0.0,
                              entry.get("median"), resumed=True)
        except (KeyError, TypeError, ValueError, OSError):
            return None

    def record(self, result: FileResult) -> None:
        entry = {k: v for k, v in asdict(result).items() if k not in ("input_facts", "resumed")}
        try:
            self.entries[result.output] = {**entry, **(result.input_facts or {}),
                                           "sha256": sha256_file(Path(result.output))}
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps({"bundle": self.bundle_digest, "files": self.entries}, indent=1))
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write ({os_reason(exc)})") from None


class WorkerDied(GenError):
    """A worker process died (killed, or out of memory) twice while scoring; exit code 1."""


def score_many(model, source: str | Path | Inputs, out_dir: str | Path, workers: int | None = None,
               chunk_rows: int = 4096, threads: int | None = None, public_key: str | Path | None = None,
               on_file=None, resume: bool = False, skip_bad: bool = False, columns=None, keep_columns=None,
               suffix: str | None = None) -> BatchResult:
    """Score every file of `source` (a folder or a glob, see `expand`, or its Inputs) into
    `out_dir`, one output per input at the same relative path and in the same format (or with
    `suffix`, e.g. ".parquet"). `workers` processes (default: one per core; 1 scores in this
    process with `model`) each load the bundle once with `threads` onnxruntime threads, and
    end when this process does (kill -9 included). `columns` and `keep_columns` are
    GenModel.score_file's.

    Before anything is written, every output, the ledger and the error report are checked
    against every input (resolved paths): none may replace one. The first bad file (or
    unreadable file or folder) stops the job with its error; outputs already finished stay,
    valid (with `skip_bad`, a bad file is listed in `failed` and in the output folder's ERRORS
    file, which a run with no bad file removes, and the others complete). A worker process
    that dies (killed, out of memory) leaves no output for its file: the files not finished
    are retried once in a new pool, and a second death stops the job (WorkerDied). With
    `resume`, files whose output a previous run finished (per the folder's ledger, checked
    against the output's SHA-256, the input's facts as read and the bundle) are skipped, so a
    killed job re-run gives the uninterrupted output. The temp files of dead gen processes in
    the output folders are removed at the end."""
    inputs = source if isinstance(source, Inputs) else find_inputs(source, skip_bad)
    root, files, out_dir = inputs.root, inputs.files, Path(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InputError(f"{out_dir}: exists and is not a folder (several inputs write into an output folder)")
    if inputs.folder and Path(os.path.realpath(out_dir)).is_relative_to(os.path.realpath(root)):
        raise InputError(f"{out_dir}: is inside the input folder {root}; its outputs would be read as inputs")
    outputs = [output_path(root, file, out_dir, suffix) for file in files]
    targets: dict[str, Path] = {}  # resolved output path: its input
    for file, target in zip(files, outputs):
        real = os.path.realpath(target)
        if real in targets:
            raise InputError(f"{target}: would hold the scores of both {targets[real]} and {file}")
        targets[real] = file
    check_outputs([*outputs, out_dir / LEDGER, out_dir / ERRORS], files, model.bundle.folder,
                  hint="outputs never replace an input: choose another --out")
    make_folder(out_dir)
    with contextlib.suppress(OSError):  # the report of an earlier run; this run writes its own
        (out_dir / ERRORS).unlink(missing_ok=True)
    folder = model.bundle.folder
    digest = sha256_file(folder / DIGESTS) if (folder / DIGESTS).is_file() else sha256_file(folder / MANIFEST)
    options = {"chunk_rows": chunk_rows, "columns": columns, "keep_columns": keep_columns}
    ledger = Ledger(out_dir, digest + json.dumps([columns, keep_columns], default=str), resume)
    done: dict[str, FileResult] = {}
    jobs = []
    for f, target in zip(files, outputs):
        previous = ledger.finished(f, target) if resume else None
        if previous is not None:
            done[str(f)] = previous
        else:
            jobs.append((str(f), str(target)))
    workers_used = max(1, min(workers or os.cpu_count() or 1, len(jobs))) if jobs else 0
    result = BatchResult(workers=workers_used, resumed=len(done), requested=workers,
                         failed=list(inputs.problems))
    start = time.perf_counter()

    def finish(item) -> None:
        if isinstance(item, dict):  # a bad file, skipped
            result.failed.append(item)
            return
        ledger.record(item)
        done[item.input] = item
        if on_file is not None:
            on_file(item)

    try:
        if workers_used == 1:
            for source_file, target in jobs:
                finish(_score_one(source_file, target, options, model, skip_bad))
        elif jobs:
            init = (os.getpid(), str(model.bundle.folder), model.bundle.device, threads, model.batch_size,
                    None if public_key is None else str(public_key))
            for attempt in (1, 2):
                remaining = [(s, t) for s, t in jobs if s not in done
                             and not any(f["input"] == s for f in result.failed)]
                try:
                    _run_pool(remaining, workers_used, init, options, skip_bad, finish)
                    break
                except BrokenProcessPool:
                    left = [s for s, _ in jobs if s not in done and not any(f["input"] == s for f in result.failed)]
                    if attempt == 2:
                        raise WorkerDied(
                            f"a worker process died twice (killed, or out of memory) while scoring "
                            f"{', '.join(left[:3])}{', ...' if len(left) > 3 else ''}; the {len(done)} finished "
                            f"outputs are kept, re-run with --resume to finish") from None
    finally:  # what dead workers, or runs killed before this one, left in the output folders
        for where in {out_dir, *(target.parent for target in outputs)}:
            remove_stale_temps(where)
    result.files = [done[str(f)] for f in files if str(f) in done]
    result.failed.sort(key=lambda item: item["input"])
    result.root = str(root)
    if result.failed:
        result.errors = str(out_dir / ERRORS)
        try:
            with atomic_path(out_dir / ERRORS) as tmp:
                tmp.write_text(json.dumps(result.failed, indent=1))
        except OSError as exc:
            raise OutputError(f"{out_dir / ERRORS}: cannot write ({os_reason(exc)})") from None
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


def source_name(relative: Path) -> str:
    """An input's path as the SOURCE column holds it: POSIX text, and a name that is not
    UTF-8 (bytes a str holds as surrogate escapes) with those bytes as \\xNN escapes."""
    return os.fsencode(relative.as_posix()).decode("utf-8", "backslashreplace")


def score_single(model, source: str | Path, out: str | Path, **options) -> BatchResult:
    """Score every file of `source` into one CSV or Parquet file `out`: the rows of each input
    in order (inputs sorted by path), after a first column SOURCE naming the input (its path
    under the folder or the glob's fixed part, `source_name`). Files are scored as
    `score_many` does (same options, workers, --resume) into a hidden parts folder beside
    `out`, then joined into `out` in one atomic write; the parts folder is removed once `out`
    is whole, and kept when some files were skipped as bad (their error report is in it), so
    --resume after a fix scores only those. No input may be `out` or lie in the parts folder."""
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
    inputs = find_inputs(source, options.get("skip_bad", False))
    check_outputs([out], inputs.files, model.bundle.folder, hint="outputs never replace an input: choose another --out")
    real_parts = os.path.realpath(parts)
    inside = next((f for f in inputs.files if os.path.realpath(f).startswith(real_parts + os.sep)), None)
    if inside is not None:
        raise InputError(f"{parts}: holds the input {inside}, and --single scores into this folder and then "
                         "removes it; choose another --out")
    result = score_many(model, inputs, parts, suffix=out.suffix.lower(), **options)
    sources = [(source_name(Path(f.input).relative_to(inputs.root)), Path(f.output)) for f in result.files]
    if not sources:  # every file was bad (--skip-bad): no table to write
        return result
    try:
        (_join_csv if out.suffix.lower() == ".csv" else _join_parquet)(sources, out)
    except OSError as exc:
        raise OutputError(f"{out}: cannot write ({os_reason(exc)})") from None
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
        writer = sink = None
        try:
            for name, part in sources:
                pfile = pq.ParquetFile(arrow_path(part))
                schema = pa.schema([pa.field(SOURCE, pa.string()), *pfile.schema_arrow])
                if writer is None:
                    sink = arrow_path(tmp, "wb")
                    writer = pq.ParquetWriter(sink, schema)
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
            if sink is not None and not isinstance(sink, str):
                sink.close()
