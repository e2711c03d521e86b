"""Scoring on a Ray cluster through Ray Data (`pip install 'gen[ray]'`).

    import ray, ray.data
    from gen.pipelines.ray import score_dataset
    ds = ray.data.read_parquet("s3://bucket/day=2026-11-21/")
    score_dataset(ds, "bundles/ae", keep_columns=["id"]).write_parquet("s3://bucket/scores/")

`score_dataset` maps the dataset's Arrow batches through `gen.pipelines.arrow.Scorer` in a
pool of Ray actors (`map_batches` with a callable class), so each actor loads and verifies
the bundle once; with `device="cuda"` each actor asks Ray for one GPU. The bundle travels as
a path every node can read or, with `ship=True`, as its bytes through the object store.

`score_files` is `gen score --engine ray`: a folder or glob of Parquet or CSV files in, a
folder of Parquet or CSV files out (written by Ray's writers into a staging folder that is
renamed into place whole). Ray names the files, and the order of rows across them is Ray's:
keep an id column (`keep_columns`) to join the scores back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from pathlib import Path

from gen.runtime.errors import GenError, InputError, MissingDependency, UsageError

from .arrow import Scorer, pack_bundle


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependency("--engine ray needs Ray Data: pip install 'gen[ray]'") from None
    return ray


def score_dataset(dataset, bundle, *, columns=None, keep_columns=None, device: str = "auto",
                  concurrency: int | tuple[int, int] | None = None, batch_size: int | None = None,
                  threads: int | None = 1, ship: bool = False, public_key=None):
    """`dataset` (a ray.data.Dataset of raw rows) with the kept columns and the scores
    (`Scorer`'s output), lazily, as Ray Data does. The bundle is verified here first, so a
    bad one fails at once, in one line, and again on every actor as it loads.

    concurrency: actors in the pool (an int, or (min, max) to let Ray scale it; default:
    one per CPU of the cluster, or per GPU with device "cuda"). threads: onnxruntime
    threads per actor (default 1: parallelism comes from the actors)."""
    ray = _ray()
    from gen.runtime import load

    load(bundle, device="cpu", public_key=public_key).require("score")
    source = ray.put(pack_bundle(bundle)) if ship else str(Path(bundle).resolve())
    gpu = device == "cuda"
    if concurrency is None:  # a pool that grows to the cluster's size (a fixed one of every CPU
        # would leave none for the read tasks that feed it)
        concurrency = (1, max(1, int(ray.cluster_resources().get("GPU" if gpu else "CPU", 1))))
    low, high = concurrency if isinstance(concurrency, tuple) else (concurrency, concurrency)
    return dataset.map_batches(
        Scorer, compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high), fn_constructor_args=(source,),
        fn_constructor_kwargs={"columns": columns, "keep_columns": keep_columns, "device": device,
                               "threads": threads, "batch_size": None if batch_size is None else min(batch_size, 65536),
                               "public_key": None if public_key is None else str(public_key)},
        batch_format="pyarrow", batch_size=batch_size or 4096, num_gpus=1 if gpu else None, num_cpus=None if gpu else 1)


ERROR_LINE = re.compile(r"^gen\.runtime\.errors\.(\w+): (.+)$", re.MULTILINE)


def find_gen_error(exc: BaseException) -> GenError | None:
    """The GenError (bad input, bad bundle) behind a Ray exception, if there is one. Ray wraps
    an actor's exception in its own types and keeps the original only as traceback text, so
    the error is found in the exception chain or, failing that, in that text."""
    seen = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, GenError):
            return e
        stack += [getattr(e, "cause", None), e.__cause__, e.__context__]
    from gen.runtime import errors

    found = ERROR_LINE.findall(str(exc))
    if found:
        name, message = found[-1]
        kind = getattr(errors, name, None)
        if isinstance(kind, type) and issubclass(kind, GenError):
            return kind(message.strip())
    return None


def score_files(bundle, source, out, *, address: str | None = None, columns=None, keep_columns=None,
                device: str = "auto", workers: int | None = None, batch_size: int | None = None, threads: int | None = 1,
                public_key=None, ship: bool = False) -> dict:
    """Score the Parquet or CSV files of a folder or glob `source` on Ray (the cluster at
    `address`, or a local one started here) into the new folder `out`, in the inputs'
    format (Ray's file names; keep an id to join back). Returns a summary: files, rows,
    flagged, seconds, outputs.

    What Ray's driver prints meanwhile goes to the `gen.pipelines.ray` logger at INFO (shown
    only where logging is configured): it prints the raylet's warnings (such as "N PYTHON
    worker processes have been started") on `sys.stdout` whatever `log_to_driver` says, and
    stdout is where `gen score --json` writes its summary; failures come back as exceptions
    and reach the user as gen's one line. Ray's DeprecationWarnings about its own settings
    (raised as Ray copies its DataContext) are not the user's to act on and are not shown."""
    import warnings

    with contextlib.redirect_stdout(_LogLines(logging.getLogger(__name__))), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
        return _score_files(bundle, source, out, address=address, columns=columns, keep_columns=keep_columns,
                            device=device, workers=workers, batch_size=batch_size, threads=threads,
                            public_key=public_key, ship=ship)


def _score_files(bundle, source, out, *, address, columns, keep_columns, device, workers, batch_size, threads,
                 public_key, ship) -> dict:
    from gen.runtime.batch import expand
    from gen.runtime.outputs import make_folder, make_temp
    from gen.runtime.readers import is_number, os_reason

    root, files = expand(source)
    for f in files:
        try:
            str(f.resolve()).encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{os.fsencode(str(f)).decode('utf-8', 'backslashreplace')}: --engine ray reads "
                             "paths that are UTF-8 only; rename it, or score with the local engine") from None
    kinds = {f.suffix.lower() for f in files}
    if ".npy" in kinds:
        raise InputError(f"{source}: --engine ray reads Parquet and CSV files; {next(f for f in files if f.suffix.lower() == '.npy')} is NPY")
    if len(kinds) > 1:
        raise InputError(f"{source}: --engine ray reads one format at a time; found {', '.join(sorted(kinds))}")
    kind = kinds.pop()
    if kind == ".csv":
        for f in files:
            try:
                with open(f, encoding="utf-8-sig", errors="replace") as fh:
                    first = next((line for line in fh if line.strip()), "")
            except OSError as exc:
                raise InputError(f"{f}: cannot read ({os_reason(exc)})") from None
            if first and all(is_number(c) for c in first.strip().split(",")):
                raise InputError(f"{f}: line 1: --engine ray reads CSV files with a header line naming the "
                                 "columns; this file starts with numbers")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists; --engine ray writes a new folder (remove it or choose another --out)")
    if out.resolve().is_relative_to(Path(root).resolve()) and Path(source).is_dir():
        raise InputError(f"{out}: is inside the input folder {root}; its outputs would be read as inputs")
    make_folder(out.parent)

    ray = _ray()
    started = connect(address)
    staging = None
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)
        paths = [str(f.resolve()) for f in files]
        start = time.perf_counter()
        dataset = (ray.data.read_parquet(paths, partitioning=None) if kind == ".parquet"
                   else ray.data.read_csv(paths, partitioning=None, convert_options=_text_columns(keep_columns)))
        scored = score_dataset(dataset, bundle, columns=columns, keep_columns=keep_columns, device=device,
                               concurrency=workers, batch_size=batch_size, threads=threads, ship=ship,
                               public_key=public_key)
        staging = make_temp(out, folder=True)
        try:
            if kind == ".parquet":
                scored.write_parquet(str(staging.resolve()))
            else:
                scored.write_csv(str(staging.resolve()))
        except Exception as exc:
            cause = find_gen_error(exc)
            if cause is not None:
                raise type(cause)(str(cause)) from None
            raise GenError(f"ray: {str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}") from None
        seconds = time.perf_counter() - start
        if out.exists():
            out.rmdir()
        staging.rename(out)
        staging = None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if started:
            ray.shutdown()
    outputs = sorted(p for p in out.iterdir() if p.is_file())
    rows, flagged = _count(outputs, kind)
    return {"files": len(files), "outputs": [str(p) for p in outputs], "rows": rows, "flagged": flagged,
            "seconds": seconds}


class _LogLines:
    """A text stream that hands each complete line written to it to `logger.info`."""

    def __init__(self, logger: logging.Logger):
        self.logger, self.pending = logger, ""

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            if line.strip():
                self.logger.info("%s", line)
        return len(text)

    def flush(self) -> None:
        pass


def _text_columns(keep_columns):
    """CSV reading options that keep the kept columns as text (ids such as 0010 stay 0010, as
    the local engine writes them), instead of pyarrow's guessed types."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from gen.runtime.readers import Selection

    selection = Selection.of(None, keep_columns)
    return pacsv.ConvertOptions(column_types={name: pa.string() for name in (selection.keep if selection else ())})


def connect(address: str | None) -> bool:
    """Join the Ray cluster at `address` (None: start a local one), unless this process is in
    one already; True when it joined here (the caller shuts it down). Errors are one line."""
    ray = _ray()
    if ray.is_initialized():
        return False
    if address is not None:
        check_reachable(address)
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # gen reports errors itself, in one line
    try:
        with _quiet_stderr():  # Ray's C++ core logs its start-up on the process's stderr
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False,
                     configure_logging=True)
    except Exception as exc:  # ConnectionError, RuntimeError, ...: one line either way
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if address is not None:
            raise UsageError(f"--address {address}: cannot join the Ray cluster ({detail})") from None
        raise GenError(f"ray: cannot start a local Ray instance ({detail})") from None
    return True


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse, in one line, a HOST:PORT (or ray://HOST:PORT) that does not accept a TCP
    connection within `timeout`: ray.init would retry for minutes. `auto` is Ray's own."""
    import socket

    target = address.split("://", 1)[-1]
    if address == "auto" or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise UsageError(f"--address {address}: no Ray cluster answers there "
                         f"({getattr(exc, 'strerror', None) or exc})") from None


@contextlib.contextmanager
def _quiet_stderr():
    """File descriptor 2 sent to /dev/null for the block (errors still come back as exceptions)."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _count(outputs: list[Path], kind: str) -> tuple[int, int]:
    """Rows and flagged rows of the written outputs (their `flag` column only)."""
    import pyarrow.compute as pc

    rows = flagged = 0
    for path in outputs:
        if kind == ".parquet":
            import pyarrow.parquet as pq

            flags = pq.read_table(path, columns=["flag"]).column("flag")
        else:
            import pyarrow.csv as pacsv

            flags = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(include_columns=["flag"])).column("flag")
        rows += len(flags)
        flagged += int(pc.sum(pc.cast(flags, "int64")).as_py() or 0)
    return rows, flagged
