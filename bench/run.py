"""Benchmark `gen` end to end: measure, write every figure to a JSON results file, then render
the report (BENCHMARKS.md) from that file with bench/report.py.

What it measures (DESIGN.md, "Quality protocols"):

1. One-class anomaly detection on sklearn digits: for each normal class d in 0..9 it trains
   every family that has a bench preset in the registry (`family.bench`, with its epochs and
   options) on the class-d rows of the fixed 80/20 split, exports each run to an ONNX bundle,
   loads the bundle with the torch-free runtime and computes the AUROC of the *runtime's*
   scores on all test rows (anomaly = label != d). The trainer's own AUROC (run.json) is
   recorded next to it to show the two agree. Two classical baselines share the table:
   distance to the class centroid and PCA (16 components) reconstruction error, both fitted
   on the same class-d training rows.
2. The same on MNIST-5k (real MNIST, 500 images per class) when the IDX file is available:
   `--mnist PATH`, or `${GEN_DATA:-~/.cache/gen-datasets}/mnist5k/mnist5k-images-idx3-ubyte.gz`.
   The dataset is never copied here.
3. Sampling speed: wall time of `gen sample BUNDLE --n 64` as a subprocess against the wall
   time of `python -c "import torch"`, plus the in-process time of `model.sample(64)`.

Facts about the machine and the software (CPU, cores, RAM, OS, load averages at the start and
the end, GPUs seen by torch and onnxruntime, versions, git commit and uncommitted files) are
read while the benchmark runs and go into the results file with the figures.

Run it from the repository root with the project's virtual environment:

    .venv/bin/python bench/run.py                   # full run (digits + MNIST-5k if present)
    .venv/bin/python bench/run.py --quick --results /tmp/bench.json --out /tmp/bench.md
    .venv/bin/python bench/run.py --mnist PATH/mnist5k-images-idx3-ubyte.gz --epochs 50
    .venv/bin/python bench/report.py bench/results.json --out BENCHMARKS.md   # re-render only

Runs and bundles go to a temporary folder; only the results file (`--results`, default
bench/results.json) and the report (`--out`, default BENCHMARKS.md) are written.
"""

from __future__ import annotations

import argparse
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

REPO = Path(__file__).resolve().parents[1]
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
            "scikit-learn": sklearn.__version__, "torch_threads": torch.get_num_threads()}


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
        epochs = family.bench.epochs
        if args.quick:
            epochs = max(2, epochs // 20)
        chosen[name] = {"description": family.description, "capabilities": list(family.capabilities),
                        "score_kind": family.score_kind, "bench_epochs": family.bench.epochs,
                        "epochs": args.epochs or epochs, "options": dict(family.bench.options),
                        "variant": None, "config": None}
    return chosen


# -- one-class anomaly detection ----------------------------------------------------------------

def flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def baseline_scores(x_normal: np.ndarray, x_test: np.ndarray) -> dict[str, np.ndarray]:
    """Classical one-class scores fitted on the normal training rows (raw units, flattened)."""
    from sklearn.decomposition import PCA

    x_normal, x_test = flat(x_normal).astype(np.float64), flat(x_test).astype(np.float64)
    centroid = np.linalg.norm(x_test - x_normal.mean(axis=0), axis=1)
    pca = PCA(n_components=min(PCA_COMPONENTS, *x_normal.shape), random_state=SEED).fit(x_normal)
    recon = pca.inverse_transform(pca.transform(x_test))
    return {"centroid distance": centroid,
            f"PCA-{PCA_COMPONENTS} reconstruction": ((x_test - recon) ** 2).mean(axis=1)}


def run_family(name: str, family: dict, data_spec: str, normal_class: int, threads: int, workdir: Path,
               x_test: np.ndarray, y_test: np.ndarray) -> tuple[dict, Path, dict]:
    """Train -> export -> load with the runtime -> score the test rows.
    Returns the figures, the bundle folder and the run's resolved config."""
    import yaml

    from gen.exporters import export_run
    from gen.runtime import load
    from gen.runtime.errors import GenWarning
    from gen.trainer.config import TrainConfig
    from gen.trainer.protocols.one_class import one_class_auroc
    from gen.trainer.train import train

    tag = f"{name}-{normal_class}"
    bundle_dir = workdir / "bundles" / tag
    cfg = TrainConfig.make(model=name, data=data_spec, normal_class=normal_class, epochs=family["epochs"],
                           seed=SEED, out=str(workdir / "runs" / tag), quiet=True, threads=threads,
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
                        workdir: Path) -> tuple[dict, dict[str, dict[int, Path]]]:
    """Every (class, family) pair plus the baselines; failures are recorded, not hidden.
    Returns the section's results and the bundle folders {family: {class: path}}."""
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
              "classes": [int(d) for d in classes], "families": list(families),
              "methods": [], "runs": {}, "failures": [], "seconds": None}
    models = {name: {"name": f"{name} (runtime bundle)", "kind": "model", "family": name, "auroc": {}}
              for name in families}
    baselines: dict[str, dict] = {}
    bundles: dict[str, dict[int, Path]] = {}
    start = time.perf_counter()
    for d in classes:
        normal_train = data.x[train_idx][data.y[train_idx] == d]
        for method, scores in baseline_scores(normal_train, x_test).items():
            entry = baselines.setdefault(method, {"name": method, "kind": "baseline", "auroc": {}})
            entry["auroc"][str(d)] = one_class_auroc(scores, y_test, d)
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
            bundles.setdefault(name, {})[d] = bundle
            if family["config"] is None:
                family.update(resolved)
            log(f"{label} {name} class {d}: runtime AUROC {figures['runtime_auroc']:.4f} "
                f"(trainer {figures['trainer_auroc']:.4f}), train {figures['train_s']:.1f}s, "
                f"export {figures['export_s']:.1f}s")
    result["seconds"] = time.perf_counter() - start
    result["methods"] = list(models.values()) + list(baselines.values())
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
    return result


# -- main ---------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: classes {QUICK_CLASSES}, epochs max(2, bench epochs // 20), "
                             "fewer timing repeats")
    parser.add_argument("--mnist", type=Path, default=None,
                        help="MNIST-5k images IDX file (default: $GEN_DATA or ~/.cache/gen-datasets "
                             "mnist5k/mnist5k-images-idx3-ubyte.gz, used when it exists)")
    parser.add_argument("--no-mnist", action="store_true", help="skip MNIST-5k even when the file exists")
    parser.add_argument("--mnist-families", default=None,
                        help="families to run on MNIST-5k, comma-separated (default: every family "
                             "with a bench preset)")
    parser.add_argument("--no-boltzmann", action="store_true",
                        help="skip the Boltzmann-machine likelihood section (needs MNIST-5k)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs for every family (default: each family's bench preset)")
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
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raw_argv = sys.argv[1:] if argv is None else list(argv)
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
    log(f"machine {machine}; epochs {epochs}; classes {classes}")

    scoring = {n: f for n, f in families.items() if "score" in f["capabilities"]}
    mnist_families = scoring
    if args.mnist_families is not None:
        wanted = [f.strip() for f in args.mnist_families.split(",") if f.strip()]
        unknown = [f for f in wanted if f not in scoring]
        if unknown:
            raise SystemExit(f"--mnist-families: {', '.join(unknown)} not among the benchmarked families "
                             f"({', '.join(scoring)})")
        mnist_families = {n: f for n, f in scoring.items() if n in wanted}

    mnist = None if args.no_mnist else (args.mnist or default_mnist_path())
    notes, failures = [], []
    if mnist is not None and not mnist.is_file():
        if args.mnist:
            raise SystemExit(f"--mnist {mnist}: no such file")
        log(f"MNIST-5k not found at {mnist}; pass --mnist PATH to include it")
        mnist = None

    results = {
        "format": FORMAT, "generator": "bench/run.py", "mode": "quick" if args.quick else "full",
        "command": "python " + shlex.join([display_path(__file__), *raw_argv]), "argv": raw_argv,
        "python_executable": sys.executable, "started": started.isoformat(timespec="seconds"),
        "finished": None, "wall_s": None, "git": code, "machine": machine, "software": software,
        "settings": {"seed": SEED, "threads": args.threads, "classes": list(classes), "epochs_override": args.epochs,
                     "pca_components": PCA_COMPONENTS, "runtime_device": "cpu"},
        "families": families, "datasets": [], "sampling": None, "notes": notes, "failures": failures,
    }

    with tempfile.TemporaryDirectory(prefix="gen-bench-") as tmp:
        workdir = Path(tmp)
        digits, digit_bundles = one_class_benchmark("digits", "sklearn digits", scoring, classes, args.threads,
                                                    workdir)
        results["datasets"].append(digits)
        if mnist is not None:
            section, _ = one_class_benchmark(str(mnist), "MNIST-5k", mnist_families, classes, args.threads, workdir)
            results["datasets"].append(section)
            if set(mnist_families) != set(scoring):
                notes.append(f"MNIST-5k ran only the {', '.join(mnist_families)} families (`--mnist-families`).")
        else:
            notes.append("MNIST-5k was not run (" + ("`--no-mnist`" if args.no_mnist else
                                                      f"no file at `{default_mnist_path()}`; pass `--mnist PATH`")
                         + ").")
        if mnist is not None and not args.no_boltzmann:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from boltzmann import boltzmann_benchmark

            try:
                results["boltzmann"] = boltzmann_benchmark(mnist, args.threads, workdir / "boltzmann", quick=args.quick)
            except Exception as exc:
                failures.append(f"Boltzmann benchmark: {type(exc).__name__}: {exc}")
                log(failures[-1])
        first = classes[0]
        samplers = [n for n, f in families.items() if "sample" in f["capabilities"]]
        bundles = {n: digit_bundles[n][first] for n in samplers if first in digit_bundles.get(n, {})}
        if bundles:
            try:
                results["sampling"] = sampling_benchmark(
                    bundles, f"sklearn digits, normal class {first}", repeats=3 if args.quick else 5,
                    inproc_repeats=20 if args.quick else 200, workdir=workdir)
            except Exception as exc:
                failures.append(f"sampling benchmark: {type(exc).__name__}: {exc}")
                log(failures[-1])
        else:
            failures.append("sampling benchmark: no bundle to sample from")

    machine["load_end"] = load_averages()
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["wall_s"] = time.perf_counter() - t0

    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.results}")
    report = load_report_module()
    args.out.write_text(report.render(results))
    log(f"wrote {args.out} ({results['wall_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
