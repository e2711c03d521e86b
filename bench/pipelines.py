"""Scoring partitioned datasets for bench/run.py (section `pipelines`, issue 12).

A 32-feature autoencoder bundle (trained for a few epochs on Gaussian rows; its quality does
not matter here) scores ROWS rows of the same kind, stored two ways:

- one Parquet file of all the rows: the single-file figure (`gen score FILE`);
- FILES Parquet files in Hive-style partition folders (`day=2026-11-01/part-0.parquet`, ...)
  with an `id` column beside the features, scored with `gen score FOLDER --keep-columns id`
  by 1 worker process, by one per core, and by Ray Data (`--engine ray`, a local cluster the
  command starts, its start-up included in the wall time).

Every command runs as its own subprocess, timed from the outside, with its peak resident
memory read by a parent that runs nothing else (the largest process: the CLI or one worker).
The local pool also reports each worker's own peak (`worker_peak_rss_mib` of `--json`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROWS = 2_000_000
FILES = 20
WIDTH = 32
REPEATS = 2  # timed runs per configuration (the best is reported, all are kept)


def _log(message: str) -> None:
    print(f"[bench pipelines] {message}", file=sys.stderr, flush=True)


def _gen() -> str:
    local = Path(sys.executable).parent / "gen"
    return str(local) if local.exists() else "gen"


def _run_measured(command: list[str]) -> tuple[float, float, str]:
    """(wall s, peak RSS MiB of the largest process, stdout) of a command run by a fresh parent."""
    script = ("import resource, subprocess, sys, time\n"
              "t = time.perf_counter()\n"
              "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
              "w = time.perf_counter() - t\n"
              "sys.stderr.write(p.stderr)\n"
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, w)\n"
              "print(p.stdout, end='')\n"
              "sys.exit(p.returncode)\n")
    out = subprocess.run([sys.executable, "-c", script, *command], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} ...: {out.stderr.strip().splitlines()[-1:]}")
    first, _, rest = out.stdout.partition("\n")
    rss, wall = first.split()
    return float(wall), float(rss), rest


def make_data(workdir: Path, rows: int, files: int, seed: int = 0) -> tuple[Path, Path, Path]:
    """(training CSV, single Parquet file, partition folder) of Gaussian rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(WIDTH, WIDTH)).astype(np.float32) / np.sqrt(WIDTH)
    train = workdir / "train.csv"
    np.savetxt(train, rng.normal(size=(4000, WIDTH)).astype(np.float32) @ mix, delimiter=",", fmt="%.6g")
    names = [f"f{i}" for i in range(WIDTH)]
    single = workdir / "all.parquet"
    folder = workdir / "days"
    per = rows // files
    writer = None
    for i in range(files):
        x = rng.normal(size=(per, WIDTH)).astype(np.float32) @ mix
        table = pa.table({"id": np.arange(i * per, (i + 1) * per), **{n: x[:, j] for j, n in enumerate(names)}})
        part = folder / f"day=2026-11-{i + 1:02d}" / "part-0.parquet"
        part.parent.mkdir(parents=True)
        pq.write_table(table, part)
        if writer is None:
            writer = pq.ParquetWriter(single, table.schema)
        writer.write_table(table)
    writer.close()
    return train, single, folder


def pipeline_benchmark(workdir: Path, quick: bool = False) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    rows, files = (200_000, 4) if quick else (ROWS, FILES)
    gen = _gen()
    start = time.perf_counter()
    train, single, folder = make_data(workdir, rows, files)
    _log(f"data: {rows:,} rows x {WIDTH} in {files} files ({sum(p.stat().st_size for p in folder.rglob('*.parquet')) / 2**20:.0f} MiB) "
         f"in {time.perf_counter() - start:.0f} s")
    run, bundle = workdir / "run", workdir / "bundle"
    subprocess.run([gen, "train", "--model", "ae", "--data", str(train), "--epochs", "3", "--device", "cpu",
                    "--out", str(run), "--seed", "0"], check=True, capture_output=True)
    subprocess.run([gen, "export", str(run), "--out", str(bundle)], check=True, capture_output=True)
    cores = os.cpu_count() or 1
    configs = [
        ("single file, 1 process", [gen, "score", str(bundle), str(single), "--out", "{out}.parquet",
                                    "--keep-columns", "id", "--device", "cpu", "--json"], 1),
        ("20 files, 1 worker", [gen, "score", str(bundle), str(folder), "--out", "{out}", "--workers", "1",
                                "--keep-columns", "id", "--device", "cpu", "--json"], 1),
        (f"20 files, {cores} workers", [gen, "score", str(bundle), str(folder), "--out", "{out}", "--workers",
                                        str(cores), "--threads", "1", "--keep-columns", "id", "--device", "cpu",
                                        "--json"], cores),
        ("20 files, Ray Data (local cluster)", [gen, "score", str(bundle), str(folder), "--out", "{out}",
                                                "--engine", "ray", "--keep-columns", "id", "--device", "cpu",
                                                "--json"], cores),
    ]
    results = []
    for k, (name, command, workers) in enumerate(configs):
        name = name.replace("20 files", f"{files} files")
        record = {"name": name, "workers": workers, "walls": [], "command": None}
        for r in range(REPEATS):
            out = workdir / f"out-{k}-{r}"
            cmd = [c.replace("{out}", str(out)) for c in command]
            wall, rss, stdout = _run_measured(cmd)
            summary = json.loads(stdout)
            record["walls"].append(wall)
            record["peak_rss_mib"] = max(record.get("peak_rss_mib", 0.0), rss)
            record["rows"] = summary["rows"]
            if summary.get("worker_peak_rss_mib") is not None:
                record["worker_peak_rss_mib"] = max(record.get("worker_peak_rss_mib", 0.0),
                                                    summary["worker_peak_rss_mib"])
            record["command"] = " ".join(Path(c).name if c == gen else c for c in command).replace(
                str(workdir) + "/", "")
            subprocess.run(["rm", "-rf", str(out), f"{out}.parquet"], check=False)
        record["wall_s"] = min(record["walls"])
        record["rows_per_s"] = record["rows"] / record["wall_s"]
        _log(f"{name}: {record['rows']:,} rows in {record['wall_s']:.1f} s ({record['rows_per_s']:,.0f} rows/s), "
             f"peak RSS {record['peak_rss_mib']:.0f} MiB"
             + (f", per worker {record['worker_peak_rss_mib']:.0f} MiB" if "worker_peak_rss_mib" in record else ""))
        results.append(record)
    return {"rows": rows, "files": files, "width": WIDTH, "cores": cores, "repeats": REPEATS,
            "bundle": "ae, 32 features, default layers, 3 epochs on 4,000 Gaussian rows", "configs": results,
            "wall_s": time.perf_counter() - start}
