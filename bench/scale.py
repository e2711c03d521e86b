"""Training at scale for bench/run.py (section `scale`, issue 25): streamed training data,
data-parallel processes and Ray Train, each with the default command.

1. Memory. MNIST-5k copied COPIES times (each copy's rows in a seeded order) is 100,000 rows of
   784 float32 features: a Parquet folder of COPIES files, and the same rows as one .npy. `gen
   train --model ae --epochs 1` on the folder (streamed: trainer/stream.py) and on the .npy (read
   into memory) each run in a fresh process that reports its own peak resident memory (VmHWM, read
   inside it at exit), MEMORY_REPEATS times; the highest peak is the figure. The epochs do not
   change the peak, so one is trained.
2. Processes. The MNIST-5k one-class task of digit NORMAL_CLASS (`gen train --model ae --data
   mnist5k --normal-class 0`, the default budget) over SEEDS: one process, `--nproc 2` (torchrun's
   agent, gloo), Ray Train (`--engine ray --nproc 2`, a local cluster the command starts) on one
   seed, and the same pixels as a Parquet table (with a label column) read into memory and
   streamed (`--stream`): test AUROC (run.json) and wall time. The speed-up of 2 processes over
   1 is measured apart, on all of MNIST-5k for each (batch size, epochs) of SPEED_RUNS, as the
   fitting time run.json records (start-up excluded) and as the command's wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

COPIES = 20
NORMAL_CLASS = 0
SEEDS = (0, 1, 2)
MEMORY_REPEATS = 3  # runs per memory configuration: the peak varies by a few MB between runs; the highest counts
SPEED_RUNS = ((64, 20), (512, 100))  # (batch size, epochs) of the speed runs
PEAK = ("import atexit, sys\n"
        "def peak():\n"
        "    with open('/proc/self/status') as s:\n"
        "        kib = next(int(l.split()[1]) for l in s if l.startswith('VmHWM'))\n"
        "    sys.stderr.write(f'\\nPEAK_MIB {kib / 1024:.1f}\\n')\n"
        "atexit.register(peak)\n"
        "sys.argv = ['gen', *sys.argv[1:]]\n"
        "from gen.cli.entry import main\n"
        "main()\n")


def _log(message: str) -> None:
    print(f"[bench scale] {message}", file=sys.stderr, flush=True)


def _gen(*args, peak: bool = False, env: dict | None = None) -> tuple[float, float | None, str]:
    """(wall s, the process's own peak RSS MiB when `peak`, stdout) of `gen ARGS`."""
    command = [sys.executable, "-c", PEAK] if peak else [sys.executable, "-m", "gen"]
    start = time.perf_counter()
    done = subprocess.run([*command, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"gen {' '.join(map(str, args[:4]))} ...: {done.stderr.strip().splitlines()[-1:]}")
    mib = None
    if peak:
        mib = float(next(line.split()[1] for line in done.stderr.splitlines() if line.startswith("PEAK_MIB")))
    return wall, mib, done.stdout


def _run_info(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


def _mnist(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from gen.trainer.data import mnist_idx

    data = mnist_idx(path)
    return data.x.reshape(len(data.x), -1), data.y


def memory(workdir: Path, mnist: Path, copies: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, _ = _mnist(mnist)
    rng = np.random.default_rng(0)
    folder, single = workdir / "copies", workdir / "all.npy"
    names = [f"p{j}" for j in range(x.shape[1])]
    parts = []
    for i in range(copies):
        rows = x[rng.permutation(len(x))]
        part = folder / f"copy={i:02d}" / "part-0.parquet"
        part.parent.mkdir(parents=True)
        pq.write_table(pa.table({n: rows[:, j] for j, n in enumerate(names)}), part)
        parts.append(rows)
    np.save(single, np.concatenate(parts))
    del parts
    n = copies * len(x)
    mib = sum(p.stat().st_size for p in folder.rglob("*.parquet")) / 2 ** 20
    _log(f"data: {n:,} rows x {x.shape[1]} in {copies} Parquet files ({mib:.0f} MiB) and one .npy "
         f"({single.stat().st_size / 2 ** 20:.0f} MiB)")
    configs = []
    for name, data, extra in (("streamed: a folder of Parquet files", folder, []),
                              ("in memory: one .npy file", single, [])):
        out = workdir / f"mem-{len(configs)}"
        args = ["train", "--model", "ae", "--data", data, "--epochs", 1, "--out", out, "--quiet", "--device", "cpu",
                *extra]
        runs = [_gen(*args, peak=True) for _ in range(MEMORY_REPEATS)]
        peaks = [p for _, p, _ in runs]
        info = _run_info(out)
        configs.append({"name": name, "command": "gen " + " ".join(map(str, args)).replace(str(workdir) + "/", ""),
                        "peak_rss_mib": max(peaks), "peaks_mib": peaks, "wall_s": min(w for w, _, _ in runs),
                        "n_fit": info["metrics"]["n_fit"], "fit_seconds": info["metrics"]["train_seconds"]})
        _log(f"{name}: peak RSS {min(peaks):.0f}-{max(peaks):.0f} MiB over {len(peaks)} runs")
    return {"rows": n, "features": int(x.shape[1]), "files": copies, "parquet_mib": mib,
            "npy_mib": single.stat().st_size / 2 ** 20, "configs": configs}


def processes(workdir: Path, mnist: Path, seeds: tuple[int, ...], speed_runs: tuple) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, y = _mnist(mnist)
    table = workdir / "mnist5k.parquet"
    pq.write_table(pa.table({**{f"p{j}": x[:, j] for j in range(x.shape[1])}, "label": y}), table)
    base = ["train", "--model", "ae", "--normal-class", NORMAL_CLASS, "--device", "cpu", "--quiet"]
    # (name, extra flags, seeds, data, the configuration it is compared with): the IDX file is
    # images ([0, 1] pixels, smoothed errors); the same pixels in a Parquet table are a table
    # (z-scored columns, the combined score), so a stream is compared with that table in memory.
    one, table_in_memory = "1 process", "one Parquet table, in memory"
    configs = [(one, [], seeds, mnist, None),
               ("2 processes (--nproc 2, gloo)", ["--nproc", 2], seeds, mnist, one),
               ("Ray Train, 2 workers (--engine ray --nproc 2)", ["--engine", "ray", "--nproc", 2], seeds[:1], mnist,
                one),
               (table_in_memory, ["--label-column", "label"], seeds, table, None),
               ("the same table streamed (--stream)", ["--stream", "--label-column", "label"], seeds, table,
                table_in_memory)]
    quality = []
    for name, extra, run_seeds, data, against in configs:
        record = {"name": name, "seeds": list(run_seeds), "auroc": [], "wall_s": [], "against": against,
                  "command": "gen " + " ".join(map(str, [*base[:3], "--data", Path(data).name, *base[3:], *extra]))}
        for seed in run_seeds:
            out = workdir / f"q-{len(quality)}-{seed}"
            wall, _, _ = _gen(*base, "--data", data, "--seed", seed, "--out", out, *extra)
            info = _run_info(out)
            record["auroc"].append(info["metrics"]["evaluation"]["auroc"])
            record["wall_s"].append(wall)
        record["mean"] = float(np.mean(record["auroc"]))
        record["std"] = float(np.std(record["auroc"])) if len(record["auroc"]) > 1 else None
        _log(f"{name}: AUROC {record['mean']:.4f}" + (f" +/- {record['std']:.4f}" if record["std"] is not None else "")
             + f", {np.mean(record['wall_s']):.0f} s per run")
        quality.append(record)
    speed = []
    for batch, epochs in speed_runs:
        for n in (1, 2):
            out = workdir / f"speed-{batch}-{n}"
            args = ["train", "--model", "ae", "--data", mnist, "--epochs", epochs, "--batch-size", batch,
                    "--device", "cpu", "--quiet", "--nproc", n, "--out", out]
            wall, _, _ = _gen(*args)
            info = _run_info(out)
            speed.append({"processes": n, "batch_size": batch, "wall_s": wall,
                          "fit_seconds": info["metrics"]["train_seconds"], "n_fit": info["metrics"]["n_fit"],
                          "epochs": info["metrics"]["epochs"],
                          "command": "gen " + " ".join(map(str, args)).replace(str(workdir) + "/", "").replace(
                              str(mnist), Path(mnist).name)})
            _log(f"{n} process(es), batch {batch}, {epochs} epochs of MNIST-5k: fitting "
                 f"{speed[-1]['fit_seconds']:.1f} s, wall {wall:.1f} s")
    return {"normal_class": NORMAL_CLASS, "quality": quality, "speed": speed}


def scale_benchmark(workdir: Path, mnist: Path | None, quick: bool = False) -> dict:
    if mnist is None:
        raise RuntimeError("the scale section needs MNIST-5k (python3 ../shared/datasets/fetch.py)")
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    section = {"cores": os.cpu_count() or 1,
               "memory": memory(workdir, mnist, 2 if quick else COPIES),
               "processes": processes(workdir, mnist, SEEDS[:1] if quick else SEEDS,
                                      ((64, 1),) if quick else SPEED_RUNS)}
    section["wall_s"] = time.perf_counter() - start
    return section


if __name__ == "__main__":  # a quick look without the whole bench: python bench/scale.py MNIST [--quick]
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gen-scale-") as tmp:
        print(json.dumps(scale_benchmark(Path(tmp), Path(sys.argv[1]), quick="--quick" in sys.argv), indent=2))
