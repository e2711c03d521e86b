"""Benchmark `gen` end to end and write BENCHMARKS.md at the repository root.

What it measures (DESIGN.md, "Quality protocols"):

1. One-class anomaly detection on sklearn digits: for each normal class d in 0..9 it trains
   the `ae`, `vae` and `gan` families on the class-d rows of the fixed 80/20 split, exports
   each run to an ONNX bundle, loads the bundle with the torch-free runtime and computes the
   AUROC of the *runtime's* scores on all test rows (anomaly = label != d). The trainer's own
   AUROC (run.json) is recorded next to it to show the two agree. Two classical baselines
   share the table: distance to the class centroid and PCA (16 components) reconstruction
   error, both fitted on the same class-d training rows.
2. The same on MNIST-5k (real MNIST, 500 images per class) when the IDX file is available:
   `--mnist PATH`, or `${GEN_DATA:-~/.cache/gen-datasets}/mnist5k/mnist5k-images-idx3-ubyte.gz`
   (written by `python3 /work/shared/datasets/fetch.py`). The dataset is never copied here.
3. Sampling speed: wall time of `gen sample BUNDLE --n 64` as a subprocess against the wall
   time of `python -c "import torch"`, plus the in-process time of `model.sample(64)`.

Run it from the repository root with the project's virtual environment:

    .venv/bin/python bench/bench.py                 # full run (digits + MNIST-5k if present)
    .venv/bin/python bench/bench.py --quick         # smoke run: 2 classes, few epochs
    .venv/bin/python bench/bench.py --mnist PATH/mnist5k-images-idx3-ubyte.gz --epochs 50

Runs and bundles go to a temporary folder; only the report (`--out`, default
BENCHMARKS.md) is written into the repository.
"""

from __future__ import annotations

import argparse
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
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ("ae", "vae", "gan")
SEED = 0
# Same per-family epochs as `gen demo`; the GAN's steps are cheap, so it gets more passes.
DEFAULT_EPOCHS = {"ae": 100, "vae": 100, "gan": 300}
QUICK_EPOCHS = {"ae": 5, "vae": 5, "gan": 10}
QUICK_CLASSES = (0, 1)
PCA_COMPONENTS = 16
SAMPLE_N = 64


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- facts about the machine and the software ---------------------------------------------------

def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gib = int(line.split()[1]) / 1024 ** 2
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "ram_gib": ram_gib,
            "os": f"{platform.system()} {platform.release()}", "load_start": os.getloadavg()[0]}


def software_versions() -> dict:
    import onnx
    import onnxruntime
    import sklearn
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "ort_providers": onnxruntime.get_available_providers()}


def git_state() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.rstrip("\n") if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = [line[3:] for line in git("status", "--porcelain").splitlines() if line[3:].strip()]
    return f"{commit} at the start of the run" + (f", plus uncommitted changes in: {', '.join(dirty)}" if dirty else "")


def default_mnist_path() -> Path:
    root = Path(os.environ.get("GEN_DATA") or Path.home() / ".cache" / "gen-datasets")
    return root / "mnist5k" / "mnist5k-images-idx3-ubyte.gz"


# -- one-class anomaly detection ----------------------------------------------------------------

def auroc(scores: np.ndarray, labels: np.ndarray, normal_class: int) -> float:
    from gen.trainer.evaluate import one_class_auroc

    return one_class_auroc(np.asarray(scores, dtype=np.float64), labels, normal_class)


def baseline_scores(x_normal: np.ndarray, x_test: np.ndarray) -> dict[str, np.ndarray]:
    """Classical one-class scores fitted on the normal training rows (raw units)."""
    from sklearn.decomposition import PCA

    x_normal, x_test = x_normal.astype(np.float64), x_test.astype(np.float64)
    centroid = np.linalg.norm(x_test - x_normal.mean(axis=0), axis=1)
    pca = PCA(n_components=min(PCA_COMPONENTS, *x_normal.shape), random_state=SEED).fit(x_normal)
    recon = pca.inverse_transform(pca.transform(x_test))
    return {"centroid distance": centroid,
            f"PCA-{PCA_COMPONENTS} reconstruction": ((x_test - recon) ** 2).mean(axis=1)}


def max_parity(parity: dict) -> float:
    """Largest torch-vs-onnxruntime difference over the bundle's graphs, from the manifest
    (either {role: diff, ...} or {"max_abs_diff": {role: diff}, ...})."""
    diffs = parity.get("max_abs_diff", parity)
    return max(float(v) for k, v in diffs.items()
               if isinstance(v, (int, float)) and k not in ("probe_rows", "tolerance"))


def run_family(family: str, data_spec: str, normal_class: int, epochs: int, workdir: Path,
               x_test: np.ndarray, y_test: np.ndarray) -> dict:
    """Train -> export -> load with the runtime -> score the test rows. Returns figures."""
    from gen.exporters import export_run
    from gen.runtime import load
    from gen.trainer.config import TrainConfig
    from gen.trainer.train import train

    name = f"{family}-{normal_class}"
    start = time.perf_counter()
    run_dir = train(TrainConfig(model=family, data=data_spec, normal_class=normal_class, epochs=epochs,
                                seed=SEED, out=str(workdir / "runs" / name), quiet=True))
    trained = time.perf_counter()
    manifest = export_run(run_dir, workdir / "bundles" / name)
    exported = time.perf_counter()
    model = load(workdir / "bundles" / name, device="cpu")
    scores = model.score(x_test)
    info = json.loads((Path(run_dir) / "run.json").read_text())
    return {"runtime_auroc": auroc(scores, y_test, normal_class),
            "trainer_auroc": info["metrics"]["auroc"],
            "flag_rate_normal": float((scores[y_test == normal_class] > model.threshold).mean()),
            "flag_rate_anomalous": float((scores[y_test != normal_class] > model.threshold).mean()),
            "train_s": trained - start, "export_s": exported - trained,
            "n_calibration": info["metrics"]["n_calibration"],
            "max_parity": max_parity(manifest.parity), "bundle": str(workdir / "bundles" / name)}


def one_class_benchmark(data_spec: str, label: str, families: tuple[str, ...], classes: tuple[int, ...],
                        epochs: dict[str, int], workdir: Path) -> dict:
    """Every (class, family) pair plus the baselines; failures are recorded, not hidden."""
    from gen.trainer.data import load_dataset
    from gen.trainer.evaluate import protocol_split

    data = load_dataset(data_spec)
    train_idx, test_idx = protocol_split(len(data.x), data.y)
    x_test, y_test = data.x[test_idx], data.y[test_idx]
    result = {"label": label, "n": len(data.x), "dim": int(data.x.shape[1]), "n_test": len(test_idx),
              "classes": list(classes), "families": list(families), "auroc": {}, "runs": {}, "errors": []}
    start = time.perf_counter()
    for d in classes:
        normal_train = data.x[train_idx][data.y[train_idx] == d]
        for method, scores in baseline_scores(normal_train, x_test).items():
            result["auroc"].setdefault(method, {})[d] = auroc(scores, y_test, d)
        for family in families:
            try:
                run = run_family(family, data_spec, d, epochs[family], workdir / label, x_test, y_test)
            except Exception as exc:  # report the failure in the table instead of stopping
                result["errors"].append(f"{family}, class {d}: {type(exc).__name__}: {exc}")
                log(f"{label} {family} class {d}: FAILED {type(exc).__name__}: {exc}")
                continue
            result["runs"].setdefault(family, {})[d] = run
            result["auroc"].setdefault(f"{family} (runtime bundle)", {})[d] = run["runtime_auroc"]
            log(f"{label} {family} class {d}: runtime AUROC {run['runtime_auroc']:.4f} "
                f"(trainer {run['trainer_auroc']:.4f}), train {run['train_s']:.1f}s, export {run['export_s']:.1f}s")
    result["seconds"] = time.perf_counter() - start
    order = [f"{f} (runtime bundle)" for f in families] + [m for m in result["auroc"] if "(runtime" not in m]
    result["auroc"] = {m: result["auroc"][m] for m in order if m in result["auroc"]}
    return result


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


def cli_imports_torch(bundle: str, out_png: Path) -> bool:
    """Run the `gen sample` command in a fresh interpreter and report whether torch got imported."""
    code = ("import sys\nfrom gen.cli.main import app\n"
            f"sys.argv = ['gen', 'sample', {bundle!r}, '--n', '{SAMPLE_N}', '--seed', '0', '--out', {str(out_png)!r}]\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO)
    return done.stdout.strip().splitlines()[-1] == "True"


def sampling_benchmark(bundles: dict[str, str], repeats: int, inproc_repeats: int, workdir: Path) -> dict:
    from gen.runtime import load

    out_png = workdir / "x.png"
    result = {"repeats": repeats, "inproc_repeats": inproc_repeats, "gen": gen_executable(), "families": {}}
    commands = {"python": [sys.executable, "-c", "pass"],
                "import_torch": [sys.executable, "-c", "import torch"],
                "import_ort": [sys.executable, "-c", "import onnxruntime"]}
    for family, bundle in bundles.items():
        commands[family] = [result["gen"], "sample", bundle, "--n", str(SAMPLE_N), "--seed", "0",
                            "--out", str(out_png)]
    times = wall_times(commands, repeats)
    for name in ("python", "import_torch", "import_ort"):
        result[name] = statistics.median(times[name])
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
            "cli_median": statistics.median(cli), "cli_min": min(cli), "cli_max": max(cli),
            "load_s": load_s, "sample_median": statistics.median(inproc),
            "torch_imported": cli_imports_torch(bundle, out_png)}
        log(f"sampling {family}: CLI {statistics.median(cli):.3f}s, import torch {result['import_torch']:.3f}s, "
            f"in-process sample({SAMPLE_N}) {statistics.median(inproc) * 1e3:.2f} ms")
    return result


# -- report -------------------------------------------------------------------------------------

def table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    """A GitHub markdown table; `align` holds 'l' or 'r' per column (default: first l, rest r)."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    rule = [":---" if a == "l" else "---:" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines)


def f3(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def mean_of(values: dict) -> float | None:
    return float(np.mean(list(values.values()))) if values else None


def auroc_section(res: dict) -> str:
    classes = res["classes"]
    rows = []
    for method, per_class in res["auroc"].items():
        cells = [f3(per_class.get(d)) for d in classes]
        complete = len(per_class) == len(classes)
        mean = f3(mean_of(per_class)) if complete else f"{f3(mean_of(per_class))} (partial)"
        rows.append([method, *cells, f"**{mean}**"])
    auroc_table = table(["method", *[str(d) for d in classes], "mean"], rows)

    agree_rows, cost_rows = [], []
    for family, runs in res["runs"].items():
        diffs = [abs(r["runtime_auroc"] - r["trainer_auroc"]) for r in runs.values()]
        agree_rows.append([family, f3(mean_of({d: r["trainer_auroc"] for d, r in runs.items()})),
                           f3(mean_of({d: r["runtime_auroc"] for d, r in runs.items()})),
                           f"{max(diffs):.1e}", f"{max(r['max_parity'] for r in runs.values()):.1e}"])
        cost_rows.append([family, f"{np.mean([r['train_s'] for r in runs.values()]):.1f}",
                          f"{np.mean([r['export_s'] for r in runs.values()]):.1f}",
                          span([r["n_calibration"] for r in runs.values()]),
                          f"{np.mean([r['flag_rate_normal'] for r in runs.values()]):.3f}",
                          f"{np.mean([r['flag_rate_anomalous'] for r in runs.values()]):.3f}"])
    parts = [auroc_table, "",
             "Trainer vs deployed bundle (the runtime loads the ONNX bundle with numpy + onnxruntime; "
             "the trainer scores with the torch network before export):", "",
             table(["family", "mean AUROC, trainer (run.json)", "mean AUROC, runtime bundle",
                    "max abs AUROC difference", "max abs torch-onnxruntime output difference at export"],
                   agree_rows), "",
             "Cost per model, and the calibrated threshold at work (`model.flag`; contamination 0.01, "
             "threshold = 99th percentile of the scores of the held-out normal calibration rows):", "",
             table(["family", "train s (mean)", "export s (mean)", "calibration rows",
                    "flagged share of normal test rows",
                    "flagged share of anomalous test rows"], cost_rows)]
    if res["errors"]:
        parts += ["", "**Failures** (left out of the table above):", ""] + [f"- {e}" for e in res["errors"]]
    return "\n".join(parts)


def headline(results: list[dict], sampling: dict | None) -> str:
    """Mean AUROC per method and dataset, the best model and baseline, and the sampling ratio."""
    methods = list(dict.fromkeys(m for res in results for m in res["auroc"]))
    rows = [[m, *[f3(mean_of(res["auroc"][m])) if m in res["auroc"] else "not run" for res in results]]
            for m in methods]
    lines = [table(["mean AUROC", *[res["label"] for res in results]], rows), ""]
    for res in results:
        means = {m: mean_of(v) for m, v in res["auroc"].items() if len(v) == len(res["classes"])}
        models = {m: v for m, v in means.items() if "(runtime" in m}
        baselines = {m: v for m, v in means.items() if "(runtime" not in m}
        if models and baselines:
            bm, bb = max(models, key=models.get), max(baselines, key=baselines.get)
            verdict = "above" if models[bm] > baselines[bb] else "below" if models[bm] < baselines[bb] else "level with"
            lines.append(f"- {res['label']}: the best model, {bm.split(' ')[0]} ({models[bm]:.3f}), is {verdict} the "
                         f"best classical baseline, {bb} ({baselines[bb]:.3f}).")
    if sampling and sampling["families"]:
        ratios = [s["cli_median"] / sampling["import_torch"] for s in sampling["families"].values()]
        cli = [s["cli_median"] for s in sampling["families"].values()]
        lines.append(f"- `gen sample BUNDLE --n {SAMPLE_N}` takes {fspan(cli)} s end to end (median per bundle), "
                     f"{fspan(ratios)}x the {sampling['import_torch']:.2f} s that "
                     "`python -c \"import torch\"` alone takes on this machine.")
    return "\n".join(lines)


def fspan(values: list[float]) -> str:
    low, high = f"{min(values):.2f}", f"{max(values):.2f}"
    return low if low == high else f"{low}-{high}"


def span(values: list[int]) -> str:
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}-{max(values)}"


def calibration_note(results: list[dict]) -> str:
    runs = [r for res in results for fam in res["runs"].values() for r in fam.values()]
    if not runs:
        return ""
    rates = [r["flag_rate_normal"] for r in runs]
    worst_rate, worst = max((r["flag_rate_normal"], f"{fam} class {d} on {res['label']}") for res in results
                            for fam, per_class in res["runs"].items() for d, r in per_class.items())
    sizes = "; ".join(f"{span([r['n_calibration'] for f in res['runs'].values() for r in f.values()])} rows per "
                      f"class on {res['label']}" for res in results if res["runs"])
    n_small = min(r["n_calibration"] for r in runs)
    return ("**Calibrated thresholds flag more normal rows than the nominal 1%.** Across all bundles above, "
            f"{min(rates):.1%}-{max(rates):.1%} of the normal test rows are flagged (mean {np.mean(rates):.1%}; "
            f"the worst is {worst}, {worst_rate:.1%}). "
            f"The threshold is the 99th percentile of a small held-out calibration slice ({sizes}), "
            "which sits close to the slice's maximum; a fresh normal row exceeds the maximum of n "
            f"exchangeable scores with probability 1/(n+1), {1 / (n_small + 1):.1%} for n = {n_small}. "
            "A 1% false-alarm rate needs a few hundred calibration rows; with one-class data this "
            "small, expect several percent.")


def gan_note(results: list[dict]) -> str:
    lines = []
    for res in results:
        per_class = res["auroc"].get("gan (runtime bundle)", {})
        if not per_class:
            continue
        below = [d for d, v in per_class.items() if v < 0.5]
        lines.append(f"on {res['label']} its mean AUROC is {mean_of(per_class):.3f}, and {len(below)} of "
                     f"{len(per_class)} classes score below 0.5 (worse than chance)")
    if not lines:
        return ""
    return ("**The GAN's anomaly score is weak, and this is expected.** The exported `score` graph is the "
            "discriminator's negative logit. A discriminator is trained to tell real rows from the "
            "generator's current fakes, not to describe the normal class, so nothing makes it rate other "
            "digits as less real; " + "; ".join(lines) + ". Below 0.5 means the discriminator ranks the "
            "anomalies as *more* real than held-out normal digits. Flipping the sign after looking at the "
            "labels would be tuning on the test set, so the figure stands as measured. For anomaly "
            "detection use the `ae` or `vae` bundles; the GAN is here for sampling.")


def threads_note(threads: int) -> str:
    if threads != 1:
        return f"torch with {threads} intra-op threads (`--threads`)"
    return ("torch held to 1 intra-op thread (`--threads`, default 1: with 2 threads, one other busy process "
            "on this 2-core machine made the same fits up to 50x slower in a trial run, with the same AUROC)")


def report(args: argparse.Namespace, command: str, started: datetime, code: str, total_s: float, machine: dict,
           versions: dict, epochs: dict, results: list[dict], sampling: dict | None, notes: list[str]) -> str:
    ram = f"{machine['ram_gib']:.1f} GiB RAM" if machine["ram_gib"] else "RAM unknown"
    gpu = "CUDA available" if versions["cuda"] else "no GPU (CPU only)"
    out = [
        "# Benchmarks",
        "",
        "Written by `bench/bench.py`; every figure below comes from the one run described here. "
        "Regenerate with the same command; figures are for seed 0 only (no error bars) and move "
        "slightly with the torch version and thread count.",
        "",
        f"- **Command:** `{command}` (from the repository root)",
        f"- **Date:** {started.strftime('%Y-%m-%d %H:%M UTC')}; total wall time {total_s / 60:.1f} min",
        f"- **Code:** git {code}",
        f"- **Machine:** {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{ram}, {gpu}; {machine['os']}",
        f"- **Software:** Python {versions['python']}, torch {versions['torch']} "
        f"({versions['torch_threads']} training thread{'s' if versions['torch_threads'] != 1 else ''}), onnx {versions['onnx']}, onnxruntime {versions['onnxruntime']} "
        f"({', '.join(versions['ort_providers'])}), numpy {versions['numpy']}, "
        f"scikit-learn {versions['scikit-learn']}",
        f"- **Load:** 1-minute load average {machine['load_start']:.2f} at the start, {os.getloadavg()[0]:.2f} at "
        "the end. The machine is a shared 2-core VM; other jobs may run beside the benchmark, so the "
        "second-level timings (train, export) are indicative only. The AUROC figures do not depend on load.",
        f"- **Training:** epochs {', '.join(f'{f} {e}' for f, e in epochs.items())}; seed {SEED} for the "
        "split, initialisation, batches and sampling; " + threads_note(versions["torch_threads"]) + "; "
        "every other setting at its `TrainConfig` default "
        "(batch 64, Adam lr 1e-3, default widths and latent sizes, calibration slice 10%).",
        f"- **Mode:** {'quick smoke run (`--quick`): few classes and epochs, not a result' if args.quick else 'full run'}",
        "",
        "## Headline",
        "",
        headline(results, sampling),
        "",
        "## One-class anomaly detection",
        "",
        "Protocol (DESIGN.md): stratified 80/20 split (`train_test_split(test_size=0.2, stratify=y, "
        "random_state=0)`, as `gen.trainer.evaluate.protocol_split`). For each normal class d a model is "
        "trained on the class-d training rows only (90% to fit, 10% held out to calibrate the threshold), "
        "every test row is scored, anomaly = label != d, and the table gives AUROC per class and the mean. "
        "Model rows are the AUROC of the **deployed bundle**: the run is exported to ONNX, loaded with "
        "`gen.runtime.load` (no torch) and `model.score` is called on the raw test rows. Baselines are "
        f"fitted on all class-d training rows in raw pixel units: *centroid distance* = Euclidean distance "
        f"to the mean class-d image; *PCA-{PCA_COMPONENTS} reconstruction* = mean squared error after "
        f"projecting onto the top {PCA_COMPONENTS} principal components of the class-d rows.",
    ]
    for res in results:
        out += ["", f"### {res['label']}", "",
                f"{res['n']} images of {res['dim']} pixels, {res['n_test']} test rows (about a tenth normal "
                f"for each class); families: {', '.join(res['families'])}; {res['seconds'] / 60:.1f} min "
                "for this section.", "", auroc_section(res)]
    out += [n for note in notes for n in ("", note)]
    for note in (gan_note(results), calibration_note(results)):
        if note:
            out += ["", note]
    if sampling:
        out += ["", "## Sampling speed", "",
                f"Wall time of the CLI `gen sample BUNDLE --n {SAMPLE_N} --seed 0 --out /tmp/x.png` run as a "
                f"subprocess (`{Path(sampling['gen']).relative_to(REPO) if Path(sampling['gen']).is_relative_to(REPO) else sampling['gen']}`), "
                f"against `python -c \"import torch\"` on the same machine in the same run; median of "
                f"{sampling['repeats']} runs each after one untimed warm-up, the commands interleaved round by "
                "round so that load on the machine hits them alike. Bundles: the digits class-0 "
                "models from above. \"In-process\" is `model.sample(64)` after `load()`, median of "
                f"{sampling['inproc_repeats']} calls.", ""]
        rows = []
        for family, s in sampling["families"].items():
            rows.append([family, f"{s['cli_median']:.3f} ({s['cli_min']:.3f}-{s['cli_max']:.3f})",
                         f"{s['cli_median'] / sampling['import_torch']:.2f}",
                         f"{s['load_s'] * 1e3:.0f}", f"{s['sample_median'] * 1e3:.2f}",
                         "yes" if s["torch_imported"] else "no"])
        out += [table(["bundle", "`gen sample` wall s (min-max)", "ratio to `import torch`",
                       "in-process load ms", f"in-process sample({SAMPLE_N}) ms", "torch imported by the CLI"],
                      rows), "",
                f"Reference points: `python -c \"import torch\"` {sampling['import_torch']:.3f} s, "
                f"`python -c \"import onnxruntime\"` {sampling['import_ort']:.3f} s, "
                f"`python -c \"pass\"` {sampling['python']:.3f} s (medians). A ratio below 1 means the whole "
                "torch-free CLI call (interpreter start, onnxruntime import, bundle verification, sampling, "
                "PNG) finishes before torch alone would have been imported."]
    out += ["", "## Anchors from the literature", "",
            "- Ruff et al., *Deep One-Class Classification*, ICML 2018 (Deep SVDD), Table 1: on full MNIST "
            "(one class normal, about 6,000 training images per class, the official 10,000-image test set, "
            "AUROC averaged over 10 seeds) One-Class Deep SVDD reaches a mean AUROC of about 0.948; the "
            "baselines there (KDE, OC-SVM/SVDD, Isolation Forest, a deep convolutional autoencoder, "
            "AnoGAN) land roughly between 0.87 and 0.92 in mean, with per-class figures from about 0.74 "
            "to 0.995. As in our tables, classes 0 and 1 are the easiest there and 8 is among the hardest.",
            "- Our protocol differs, so these are anchors, not a like-for-like comparison: MNIST-5k is a "
            "5,000-image subset (500 per class), the split is a stratified 80/20 of that subset (about 360 "
            "normal images to fit per class, 1,000 test images), our models are small MLPs rather than "
            "convolutional networks, a single seed is reported, and the score is computed by the exported "
            "ONNX bundle. sklearn digits (8x8, 1,797 images) has no standard published one-class table; "
            "there the centroid and PCA baselines are the reference.",
            "", "## Reproduce", "",
            "```",
            "python3 /work/shared/datasets/fetch.py      # MNIST-5k into ${GEN_DATA:-~/.cache/gen-datasets}",
            ".venv/bin/python bench/bench.py             # full run, rewrites BENCHMARKS.md",
            ".venv/bin/python bench/bench.py --quick --out /tmp/bench.md   # smoke run",
            "```", ""]
    return "\n".join(out)


# -- main ---------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: classes {QUICK_CLASSES}, epochs {QUICK_EPOCHS}, fewer timing repeats")
    parser.add_argument("--mnist", type=Path, default=None,
                        help="MNIST-5k images IDX file (default: the fetch.py location, used when it exists)")
    parser.add_argument("--no-mnist", action="store_true", help="skip MNIST-5k even when the file exists")
    parser.add_argument("--mnist-families", default=",".join(FAMILIES),
                        help="families to run on MNIST-5k, comma-separated (default: all)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs for every family (default: {DEFAULT_EPOCHS})")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for training (default 1: these small MLPs gain "
                             "little from more, and one thread is robust to other load on the machine)")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md", help="report to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python " + shlex.join([os.path.relpath(__file__, REPO), *(sys.argv[1:] if argv is None else argv)])
    started = datetime.now(timezone.utc)
    code = git_state()
    t0 = time.perf_counter()
    base = QUICK_EPOCHS if args.quick else DEFAULT_EPOCHS
    epochs = {f: args.epochs or base[f] for f in FAMILIES}
    classes = QUICK_CLASSES if args.quick else tuple(range(10))
    import torch

    torch.set_num_threads(args.threads)
    machine, versions = machine_info(), software_versions()
    log(f"machine {machine}; epochs {epochs}; classes {classes}")

    mnist = None if args.no_mnist else (args.mnist or default_mnist_path())
    if mnist is not None and not mnist.is_file():
        if args.mnist:
            raise SystemExit(f"--mnist {mnist}: no such file")
        log(f"MNIST-5k not found at {mnist}; run python3 /work/shared/datasets/fetch.py to include it")
        mnist = None

    results, notes = [], []
    with tempfile.TemporaryDirectory(prefix="gen-bench-") as tmp:
        workdir = Path(tmp)
        digits = one_class_benchmark("digits", "sklearn digits", FAMILIES, classes, epochs, workdir)
        results.append(digits)
        if mnist is not None:
            families = tuple(f.strip() for f in args.mnist_families.split(",") if f.strip())
            results.append(one_class_benchmark(str(mnist), "MNIST-5k", families, classes, epochs, workdir))
            if set(families) != set(FAMILIES):
                notes.append(f"MNIST-5k ran only the {', '.join(families)} families (to bound the run time).")
        else:
            notes.append("MNIST-5k was not run (file not found or `--no-mnist`).")
        first = classes[0]
        bundles = {f: runs[first]["bundle"] for f, runs in digits["runs"].items() if first in runs}
        sampling = sampling_benchmark(bundles, repeats=3 if args.quick else 5,
                                      inproc_repeats=20 if args.quick else 200, workdir=workdir) if bundles else None
        total = time.perf_counter() - t0
        text = report(args, command, started, code, total, machine, versions, epochs, results, sampling, notes)
    args.out.write_text(text)
    log(f"wrote {args.out} ({total / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
