"""Render BENCHMARKS.md from a results file written by bench/run.py.

`render(results)` is a pure function of the results dict: every figure, every fact about the
machine and every comparison in the text is computed from it (the literature anchors are the
only fixed text, and they are cited). Re-render without re-running the benchmark:

    .venv/bin/python bench/report.py bench/results.json --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DISCRIMINATOR_SCORE = "negative_discriminator_logit"
ALL_SECTIONS = ("digits", "mnist", "tabular", "completion", "sampling", "boltzmann", "gans", "pipelines", "serving",
                "performance")
# The targets (fixed text; the figures they are compared with come from the results).
TARGET_RMSE = 0.89          # item-based AutoRec, ML-100K; the best published figure it knows is 0.889
TARGET_AUROC = 0.96         # best gen detector, mean AUROC on MNIST-5k
TARGET_KNN_WINS = 8         # classes of 10 on which that detector beats PyOD's k-NN
KNN = "PyOD KNN"
# The parameters of PyOD's detectors worth naming in the text (all of them are in the results).
PEER_PARAMS = {"KNN": ("n_neighbors", "method"), "OCSVM": ("kernel", "nu", "gamma"),
               "AutoEncoder": ("hidden_neuron_list", "epoch_num", "batch_size", "lr", "dropout_rate", "batch_norm",
                               "preprocessing")}
SURPRISE_PARAMS = ("n_factors", "n_epochs", "lr_bu", "reg_bu")
# Mode-collapse targets (modes, high-quality share, averaged over 3 seeds) and published anchors.
TARGET_MODES = {"ring8": (8, 0.95), "grid25": (25, 0.90)}
MODE_ANCHORS = {"VEEGAN (published)": {"ring8": (8.0, 0.529), "grid25": (24.6, 0.40)},
                "PacGAN4 (published)": {"ring8": (7.8, 0.959), "grid25": (24.8, 0.936)}}
TARGET_INFOGAN = 0.90
TARGET_STREAM_RSS_MIB = 300
REFINE_LABELS = (("plain", "plain"), ("drs", "DRS"), ("mh", "MH"))


# -- small formatting helpers -------------------------------------------------------------------

def table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    """A GitHub markdown table; `align` holds 'l' or 'r' per column (default: first l, rest r)."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    rule = [":---" if a == "l" else "---:" for a in align]
    return "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in [header, rule, *rows])


def f3(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def mean(values) -> float | None:
    values = [float(v) for v in values]
    return statistics.fmean(values) if values else None


def span(values, fmt: str = "{}") -> str:
    """'low-high', or one value when they print alike."""
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return low if low == high else f"{low}-{high}"


def fspan(values: list[float]) -> str:
    return span(values, "{:.2f}")


def pspan(values: list[float]) -> str:
    return span(values, "{:.1%}")


def plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word}es" if word.endswith(("s", "x", "ch", "sh")) else f"{n} {word}s"


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def join_words(words: list[str]) -> str:
    words = list(words)
    if len(words) <= 2:
        return " and ".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def when(iso: str | None) -> str:
    if not iso:
        return "unknown"
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(iso)


def loads(values) -> str:
    return "unknown" if not values else " / ".join(f"{v:.2f}" for v in values)


# -- what the results say -----------------------------------------------------------------------

def class_keys(dataset: dict) -> list[str]:
    return [str(d) for d in dataset["classes"]]


def is_complete(dataset: dict, method: dict) -> bool:
    return all(k in method["auroc"] for k in class_keys(dataset))


def method_mean(dataset: dict, method: dict) -> float | None:
    return mean(method["auroc"][k] for k in class_keys(dataset) if k in method["auroc"])


def mean_cell(dataset: dict, method: dict) -> str:
    value = method_mean(dataset, method)
    if value is None:
        return "no result"
    return f3(value) if is_complete(dataset, method) else f"{f3(value)} (partial)"


def seed_means(dataset: dict, method: dict) -> dict[str, float]:
    """{seed: mean AUROC over the classes} for every training seed with a result for all classes."""
    keys = class_keys(dataset)
    return {seed: mean(per_class[k] for k in keys) for seed, per_class in method.get("auroc_by_seed", {}).items()
            if all(k in per_class for k in keys)}


def over_seeds(dataset: dict, method: dict) -> tuple[float, float, float, list[str]] | None:
    """(mean, min, max, seeds) of the per-seed mean AUROCs, where more than one seed is complete."""
    by_seed = seed_means(dataset, method)
    if len(by_seed) < 2:
        return None
    values = list(by_seed.values())
    return mean(values), min(values), max(values), sorted(by_seed, key=int)


def all_runs(results: dict):
    """(dataset, family, class key, figures) for every finished run."""
    for dataset in results.get("datasets", []):
        for family, per_class in dataset.get("runs", {}).items():
            for key, figures in per_class.items():
                yield dataset, family, key, figures


def pixels(dataset: dict) -> str:
    shape = dataset.get("shape") or [dataset.get("dim")]
    if dataset.get("kind") == "image" and len(shape) == 3:
        channels, height, width = shape
        return f"{height}x{width}" + ("" if channels == 1 else f"x{channels}") + " pixels"
    return f"{dataset.get('dim')} features"


# -- sections -----------------------------------------------------------------------------------

def _rerun_machine(rerun: dict | None, original: dict) -> str:
    """Where a rerun ran, when that is not the original run's machine (the bench is rerun on
    whatever machine a later session gets: its CPU, and so its timings, may differ)."""
    if not rerun or (rerun.get("cpu"), rerun.get("cores")) == (original.get("cpu"), original.get("cores")):
        return "the facts above are those of the original run."
    return (f"**on another machine**: {rerun.get('cpu') or 'CPU unknown'}, {rerun.get('cores')} logical cores, "
            f"{rerun.get('ram_gib')} GiB RAM, {rerun.get('os')}: its section's timings are that machine's.")


def setup_section(results: dict) -> list[str]:
    machine, software = results.get("machine", {}), results.get("software", {})
    gpu, git, settings = machine.get("gpu") or {}, results.get("git") or {}, results.get("settings", {})
    code = f"git {git.get('short') or git.get('commit') or 'commit unknown'} at the start of the run"
    if git.get("dirty"):
        code += f", plus uncommitted changes in: {', '.join(git['dirty'])}"
    elif git.get("dirty") is None:
        code += " (working-tree state unknown)"
    ram = f"{machine['ram_gib']:.1f} GiB RAM" if machine.get("ram_gib") else "RAM unknown"
    cores = f"{machine.get('cores', 'unknown')} logical cores"
    if machine.get("usable_cores") is not None:
        cores += f" ({machine['usable_cores']} usable by the run)"
    devices = gpu.get("torch_cuda_devices") or []
    if gpu.get("torch_cuda_available"):
        gpu_text = f"torch sees CUDA: {', '.join(devices) or 'device names unknown'}"
    elif gpu:
        gpu_text = "torch sees no CUDA device"
    else:
        gpu_text = "not recorded"
    if gpu.get("ort_providers") is not None:
        gpu_text += f"; onnxruntime providers: {', '.join(gpu['ort_providers'])}"
    train_devices = sorted({str(f.get("device")) for _, _, _, f in all_runs(results) if f.get("device")})
    used = []
    if train_devices:
        used.append(f"training ran on {', '.join(train_devices)}")
    if settings.get("runtime_device"):
        used.append(f"the runtime scored and sampled with device=\"{settings['runtime_device']}\"")
    threads = settings.get("threads")
    versions = [f"Python {software['python']}" if software.get("python") else None,
                f"gen {software['gen']}" if software.get("gen") else None,
                f"torch {software['torch']}" if software.get("torch") else None,
                f"onnx {software['onnx']}" if software.get("onnx") else None,
                f"onnxruntime {software['onnxruntime']}" if software.get("onnxruntime") else None,
                f"numpy {software['numpy']}" if software.get("numpy") else None,
                f"scikit-learn {software['scikit-learn']}" if software.get("scikit-learn") else None,
                f"PyOD {software['pyod']}" if software.get("pyod") else None,
                f"scikit-surprise {software['scikit-surprise']}" if software.get("scikit-surprise") else None]
    wall = results.get("wall_s")
    lines = [
        f"- **Command:** `{results.get('command', 'unknown')}` (from the repository root)",
        f"- **Date:** {when(results.get('started'))}"
        + (f"; total wall time {duration(wall)}" if wall is not None else ""),
        f"- **Code:** {code}",
        f"- **Machine:** {machine.get('cpu') or 'CPU unknown'}"
        + (f" ({machine['arch']})" if machine.get("arch") else "")
        + f", {cores}, {ram}; {machine.get('os', 'OS unknown')}",
        f"- **GPU:** {gpu_text}" + (f"; {', '.join(used)}" if used else ""),
        f"- **Software:** {', '.join(v for v in versions if v)}",
        f"- **Load:** load averages (1 / 5 / 15 min) {loads(machine.get('load_start'))} at the start and "
        f"{loads(machine.get('load_end'))} at the end, on {machine.get('cores', 'an unknown number of')} "
        "logical cores. Timings (train, export, sampling) depend on what else the machine was running; "
        "the AUROC figures do not depend on load.",
        f"- **Training:** seed {settings.get('seed', 'unknown')} for the split, initialisation, batches and "
        "sampling"
        + (f"; torch intra-op threads {threads} (`--threads`)" if threads is not None else "")
        + (f"; epochs set for every family by `--epochs {settings['epochs_override']}`"
           if settings.get("epochs_override") else "; epochs and options from each family's bench preset "
           "(`family.bench` in the registry; *default budget* in the table: the preset is `gen train`'s own "
           "defaults, epochs included, so the figure is what the default command gives)" + ("; `--quick` divides the preset's epochs by 20 (at least 2)"
                                                 if results.get("mode") == "quick" else ""))
        + "; the settings in use per family (from each run's config.yaml) are in the table below.",
        "- **Mode:** " + ("quick smoke run (`--quick`): few classes and epochs, not a result"
                           if results.get("mode") == "quick" else "full run")
        + (f"; sections run: {', '.join(results['sections'])} (`--only`)"
           if results.get("sections") and set(results["sections"]) != set(ALL_SECTIONS) else ""),
    ]
    for rerun in results.get("reruns", []):
        git = rerun.get("git") or {}
        what = join_words(rerun["sections"]) + (f" ({join_words(rerun['families'])} rows only)"
                                                 if rerun.get("families") else "")
        lines.append(f"- **Rerun:** {what} replaced by `{rerun['command']}` on "
                     f"{when(rerun.get('started'))}" + (f" ({duration(rerun['wall_s'])})" if rerun.get("wall_s") else "")
                     + f", git {git.get('short') or 'unknown'}"
                     + (f" plus uncommitted changes in: {', '.join(git['dirty'])}" if git.get("dirty") else "")
                     + f"; load {loads(rerun.get('load_start'))} at its start and {loads(rerun.get('load_end'))} "
                     "at its end; " + _rerun_machine(rerun.get("machine"), machine))
    rows = []
    in_gans = _gan_families(results.get("gans"))
    for name, family in results.get("families", {}).items():
        config = family.get("config") or {}
        shown = ", ".join(f"{k} {v}" for k, v in config.items() if k not in ("epochs", "seed"))
        if not shown and name in in_gans:
            rows.append([name, family.get("description", ""), "-", "-",
                         "no one-class run; trained in the GAN section, settings there"])
            continue
        epochs = "default budget" if family.get("epochs") is None else str(family.get("epochs"))
        rows.append([name, family.get("description", ""), family.get("variant") or "-", epochs,
                     shown or "(no run finished)"])
    out = lines
    if rows:
        # The table belongs to the Training bullet; keep it after the bullets.
        out = lines + ["", table(["family", "description", "variant", "epochs", "settings"], rows,
                                 ["l", "l", "l", "r", "l"])]
    return out


def headline(results: dict) -> str:
    datasets = results.get("datasets", [])
    names = list(dict.fromkeys(m["name"] for ds in datasets for m in ds["methods"]))
    rows = []
    for name in names:
        cells = []
        for ds in datasets:
            method = next((m for m in ds["methods"] if m["name"] == name), None)
            cells.append(mean_cell(ds, method) if method else "not run")
        rows.append([name, *cells])
    lines = [table(["mean AUROC", *[ds["label"] for ds in datasets]], rows), ""] if datasets else []
    for ds in datasets:
        complete = {m["name"]: (m, method_mean(ds, m)) for m in ds["methods"] if is_complete(ds, m)}
        models = {n: v for n, (m, v) in complete.items() if m["kind"] == "model"}
        baselines = {n: v for n, (m, v) in complete.items() if m["kind"] == "baseline"}
        if models and baselines:
            bm, bb = max(models, key=models.get), max(baselines, key=baselines.get)
            gap = round(models[bm], 3) - round(baselines[bb], 3)
            verdict = "above" if gap > 0 else "below" if gap < 0 else "level with"
            family = complete[bm][0].get("family", bm)
            lines.append(f"- {ds['label']}: the best model, {family} ({models[bm]:.3f}), is {verdict} the best "
                         f"classical baseline, {bb} ({baselines[bb]:.3f}), in mean AUROC over "
                         f"{plural(len(ds['classes']), 'class')}.")
        elif ds["methods"]:
            lines.append(f"- {ds['label']}: no comparison of the best model with the best baseline "
                         "(no model or no baseline has a result for every class).")
        detectors = {n: v for n, (m, v) in complete.items() if m["kind"] == "peer"}
        if models and detectors:
            bm, bp = max(models, key=models.get), max(detectors, key=detectors.get)
            gap = round(models[bm], 3) - round(detectors[bp], 3)
            verdict = "above" if gap > 0 else "below" if gap < 0 else "level with"
            lines.append(f"- {ds['label']}: the best model, {complete[bm][0].get('family', bm)} ({models[bm]:.3f}), "
                         f"is {verdict} the best PyOD detector, {bp} ({detectors[bp]:.3f}).")
    completion = results.get("completion")
    if completion:
        seed = str(completion.get("protocol_seed", 0))
        figures = [(m["name"], m["runs"][seed]["rmse"]) for m in ordered_methods(completion) if seed in m["runs"]]
        if figures:
            lines.append(f"- {completion['label']} (split seed {seed}), test RMSE: "
                         + "; ".join(f"{n} {v:.4f}" for n, v in figures) + ".")
    sampling = results.get("sampling")
    if sampling and sampling.get("families"):
        ratios = [s["cli_median"] / sampling["import_torch"] for s in sampling["families"].values()]
        cli = [s["cli_median"] for s in sampling["families"].values()]
        lines.append(f"- `gen sample BUNDLE --n {sampling['n']}` takes {fspan(cli)} s end to end (median per "
                     f"bundle), {fspan(ratios)}x the {sampling['import_torch']:.2f} s that "
                     "`python -c \"import torch\"` alone takes on this machine.")
    n_failures = (sum(len(ds.get("failures", [])) for ds in datasets) + len(results.get("failures", []))
                  + len((completion or {}).get("failures", [])))
    if n_failures:
        lines.append(f"- {plural(n_failures, 'failure')} in this run, listed with their sections below.")
    return "\n".join(lines)


def fit_cell(method: dict) -> str:
    """Mean seconds to fit one class's model ('-' when not recorded)."""
    seconds = list((method.get("fit_s") or {}).values())
    if not seconds:
        return "-"
    value = mean(seconds)
    return f"{value:.1f}" if value >= 0.1 else f"{value:.3f}"


def peer_text(ds: dict) -> str:
    parts = []
    for name, peer in ds["peers"].items():
        short = peer["detector"].rsplit(".", 1)[-1]
        params = peer.get("params", {})
        shown = ", ".join(f"{k} {params[k]}" for k in PEER_PARAMS.get(short, ()) if k in params)
        parts.append(f"{name} = `{peer['detector']}`" + (f" ({shown})" if shown else ""))
    return (f"{'; '.join(parts)}; library defaults except a fixed random_state and no progress output, fitted on "
            f"the class-d training rows ({ds.get('peer_scaling', 'rows flattened')}, as gen scales images), "
            "score = `decision_function` of the test rows")


def dataset_section(ds: dict) -> list[str]:
    keys = class_keys(ds)
    normal = [ds["test_counts"][k] for k in keys if k in ds.get("test_counts", {})]
    seconds = ds.get("seconds")
    intro = (f"{ds['n']} images of {pixels(ds)}" if ds.get("kind") == "image" else f"{ds['n']} rows of {pixels(ds)}")
    intro += f", {ds['n_test']} test rows"
    if normal:
        intro += f" ({span(normal)} of them normal for each class)"
    intro += f"; families: {', '.join(ds['families']) or 'none'}"
    if seconds is not None:
        intro += f"; {duration(seconds)} for this section"
    out = ["", f"### {ds['label']}", "", intro + ".", ""]
    rows = [[m["name"], *[f3(m["auroc"].get(k)) for k in keys], f"**{mean_cell(ds, m)}**", fit_cell(m)]
            for m in ds["methods"]]
    out.append(table(["method", *keys, "mean", "fit s per class (mean)"], rows))
    if ds.get("peers"):
        out += ["", "PyOD detectors: " + peer_text(ds) + "."]
    seeded = [(m, over_seeds(ds, m)) for m in ds["methods"] if m["kind"] == "model"]
    seeded = [(m, s) for m, s in seeded if s is not None]
    if seeded:
        seeds = sorted({seed for _, s in seeded for seed in s[3]}, key=int)
        rows = [[m["name"], *[f3(seed_means(ds, m).get(seed)) for seed in seeds],
                 f"**{f3(s[0])}** ({f3(s[1])}-{f3(s[2])})"] for m, s in seeded]
        fixed = [m for m in ds["methods"] if m["kind"] != "model" and is_complete(ds, m)]
        best = max(fixed, key=lambda m: method_mean(ds, m)) if fixed else None
        out += ["", f"Mean AUROC over the {len(keys)} classes for each training seed (the default command with "
                "`--seed S`: the seed draws the fit/calibration partition of the normal training rows, the "
                "initialisation and the batches; the split stays the protocol's). The per-class table above is "
                "seed 0's." + (f" The peers and baselines do not depend on it (best: {best['name']}, "
                               f"{f3(method_mean(ds, best))})." if best else ""), "",
                table(["family", *[f"seed {seed}" for seed in seeds], "mean over seeds (min-max)"], rows)]

    agree, cost = [], []
    for family, per_class in ds.get("runs", {}).items():
        runs = list(per_class.values())
        if not runs:
            continue
        partial = "" if len(runs) == len(keys) else f" ({len(runs)} of {len(keys)} classes)"
        agree.append([family + partial, f3(mean(r["trainer_auroc"] for r in runs)),
                      f3(mean(r["runtime_auroc"] for r in runs)),
                      f"{max(abs(r['runtime_auroc'] - r['trainer_auroc']) for r in runs):.1e}",
                      f"{max(r['max_parity'] for r in runs):.1e}"])
        cost.append([family + partial, f"{mean(r['train_s'] for r in runs):.1f}",
                     f"{mean(r['export_s'] for r in runs):.1f}", span([r["n_fit"] for r in runs]),
                     span([r["n_calibration"] for r in runs]),
                     f"{mean(r['flag_rate_normal'] for r in runs):.3f}",
                     f"{mean(r['flag_rate_anomalous'] for r in runs):.3f}"])
    if agree:
        out += ["", "Trainer vs deployed bundle (the runtime loads the ONNX bundle with numpy + onnxruntime; "
                "the trainer scores with the torch network before export):", "",
                table(["family", "mean AUROC, trainer (run.json)", "mean AUROC, runtime bundle",
                       "max abs AUROC difference", "max abs torch-onnxruntime output difference at export"], agree)]
        contamination = sorted({r.get("contamination") for r in (x for p in ds["runs"].values() for x in p.values())
                                if r.get("contamination") is not None})
        level = f"contamination {', '.join(f'{c:g}' for c in contamination)}; " if contamination else ""
        out += ["", "Cost per model, and the calibrated threshold at work (`model.flag`; " + level +
                "threshold = the (1 - contamination) quantile of the scores of the held-out normal "
                "calibration rows):", "",
                table(["family", "train s (mean)", "export s (mean)", "fit rows", "calibration rows",
                       "flagged share of normal test rows", "flagged share of anomalous test rows"], cost)]
    if ds.get("failures"):
        out += ["", "**Failures** (left out of the tables above):", ""] + [f"- {e}" for e in ds["failures"]]
    return out


def difficulty_note(results: dict) -> str:
    """Easiest and hardest classes per dataset, by the mean AUROC over the methods with a
    result for every class."""
    parts = []
    for ds in results.get("datasets", []):
        keys = class_keys(ds)
        complete = [m for m in ds["methods"] if is_complete(ds, m)]
        if len(keys) < 3 or not complete:
            continue
        per_class = {k: mean(m["auroc"][k] for m in complete) for k in keys}
        order = sorted(keys, key=lambda k: per_class[k], reverse=True)
        parts.append(f"on {ds['label']} the easiest classes are {order[0]} and {order[1]} "
                     f"({per_class[order[0]]:.3f}, {per_class[order[1]]:.3f}) and the hardest is {order[-1]} "
                     f"({per_class[order[-1]]:.3f})")
    if not parts:
        return ""
    return ("By mean AUROC over every method with a result for all classes, " + "; ".join(parts) + ".")


def gan_note(results: dict) -> str:
    families = results.get("families", {})
    discriminators = [n for n, f in families.items() if f.get("score_kind") == DISCRIMINATOR_SCORE]
    notes = []
    for name in discriminators:
        lines, weaker_than_all_baselines, better, any_below = [], True, None, False
        for ds in results.get("datasets", []):
            method = next((m for m in ds["methods"] if m.get("family") == name), None)
            if not method or not method["auroc"]:
                continue
            values = list(method["auroc"].values())
            gan_mean = method_mean(ds, method)
            below = sum(v < 0.5 for v in values)
            any_below = any_below or below > 0
            lines.append(f"on {ds['label']} its mean AUROC is {gan_mean:.3f}"
                         + ("" if is_complete(ds, method) else " (partial)")
                         + f", and {below} of {len(values)} classes score below 0.5 (worse than chance)")
            baselines = [method_mean(ds, m) for m in ds["methods"] if m["kind"] == "baseline" and m["auroc"]]
            if not baselines or gan_mean >= min(baselines):
                weaker_than_all_baselines = False
            others = {m["family"] for m in ds["methods"]
                      if m["kind"] == "model" and m.get("family") != name and m["auroc"]
                      and method_mean(ds, m) > gan_mean}
            better = others if better is None else better & others
        if not lines:
            continue
        title = (f"**The {name} anomaly score is below every baseline.**" if weaker_than_all_baselines
                 else f"**The {name} anomaly score.**")
        text = (f"{title} The exported `score` graph of `{name}` is the discriminator's negative logit "
                f"(`{DISCRIMINATOR_SCORE}`). A discriminator is trained to tell real rows from the generator's "
                "current fakes, not to describe the normal class, so nothing in its training makes it rate "
                "other digits as less real; " + "; ".join(lines) + "."
                + (" Below 0.5 means the discriminator ranks the anomalies as *more* real than held-out normal "
                   "digits." if any_below else "")
                + " Flipping the sign after looking at the labels would be tuning on the test set, so the "
                "figure stands as measured.")
        if better:
            ordered = [n for n in families if n in better]
            text += (f" The {join_words([f'`{n}`' for n in ordered])} bundles score higher in mean AUROC on every "
                     "dataset of this run.")
        notes.append(text)
    return "\n\n".join(notes)


def calibration_note(results: dict) -> str:
    runs = list(all_runs(results))
    if not runs:
        return ""
    rates = [f["flag_rate_normal"] for _, _, _, f in runs]
    worst_rate, worst = max((f["flag_rate_normal"], f"{fam} class {k} on {ds['label']}") for ds, fam, k, f in runs)
    levels = sorted({f["contamination"] for _, _, _, f in runs if f.get("contamination") is not None})
    sizes = "; ".join(f"{span([f['n_calibration'] for d, _, _, f in runs if d is ds])} rows per model on "
                      f"{ds['label']}" for ds in results["datasets"] if ds.get("runs"))
    n_small = min(f["n_calibration"] for _, _, _, f in runs)
    nominal = max(levels) if levels else None
    if nominal is not None and mean(rates) > nominal:
        title = (f"**Calibrated thresholds flag more normal test rows than the nominal "
                 f"{', '.join(f'{c:.0%}' for c in levels)}.**")
    elif nominal is not None:
        title = (f"**Calibrated thresholds flag at most the nominal {', '.join(f'{c:.0%}' for c in levels)} "
                 "of normal test rows on average.**")
    else:
        title = "**Calibrated thresholds.**"
    text = (f"{title} Across all bundles above, {pspan(rates)} of the normal test rows are flagged (mean "
            f"{mean(rates):.1%}; the highest is {worst}, {worst_rate:.1%}). The threshold is a high quantile of "
            f"the scores of a held-out calibration slice of normal training rows ({sizes}); a fresh normal row "
            "exceeds the maximum of n exchangeable scores with probability 1/(n+1), "
            f"{1 / (n_small + 1):.1%} for n = {n_small}, the smallest slice here.")
    expected = [f["expected_false_alarm_rate"] for _, _, _, f in runs if f.get("expected_false_alarm_rate") is not None]
    if expected:
        text += (f" The trainer's own expectation (run.json `expected_false_alarm_rate`, the larger of the "
                 f"contamination and 1/(n+1)) is {pspan(expected)}.")
    return text


def sampling_section(sampling: dict) -> list[str]:
    n = sampling["n"]
    out = ["", "## Sampling speed", "",
           f"Wall time of the CLI `gen sample BUNDLE --n {n} --seed 0 --out x.png` run as a subprocess "
           f"(`{sampling['gen']}`), against `python -c \"import torch\"` on the same machine in the same run; "
           f"median of {sampling['repeats']} runs each after one untimed warm-up, the commands interleaved "
           "round by round so that load on the machine hits them alike. Bundles: the "
           f"{sampling.get('bundles_from', 'first')} models from above. \"In-process\" is "
           f"`model.sample({n})` after `load()`, median of {sampling['inproc_repeats']} calls.", ""]
    rows = []
    for family, s in sampling["families"].items():
        rows.append([family, f"{s['cli_median']:.3f} ({s['cli_min']:.3f}-{s['cli_max']:.3f})",
                     f"{s['cli_median'] / sampling['import_torch']:.2f}", f"{s['load_s'] * 1e3:.0f}",
                     f"{s['sample_median'] * 1e3:.2f}", "yes" if s["torch_imported"] else "no"])
    out += [table(["bundle", "`gen sample` wall s (min-max)", "ratio to `import torch`", "in-process load ms",
                   f"in-process sample({n}) ms", "torch imported by the CLI"], rows), ""]
    ratios = [s["cli_median"] / sampling["import_torch"] for s in sampling["families"].values()]
    verdict = ("Every bundle's ratio is below 1: the whole torch-free CLI call" if max(ratios) < 1 else
               "Not every ratio is below 1; a ratio below 1 would mean the whole torch-free CLI call")
    out.append(f"Reference points: `python -c \"import torch\"` {sampling['import_torch']:.3f} s, "
               f"`python -c \"import onnxruntime\"` {sampling['import_ort']:.3f} s, "
               f"`python -c \"pass\"` {sampling['python']:.3f} s (medians). {verdict} (interpreter start, "
               "onnxruntime import, bundle verification, sampling, PNG) finishes before torch alone would have "
               "been imported.")
    streamed = sampling.get("streamed")
    if streamed:
        large, small = streamed["large"], streamed["small"]
        met = large["peak_rss_mib"] < TARGET_STREAM_RSS_MIB
        out += ["", f"**Memory of a large draw.** `gen sample` ({streamed['family']} bundle) with "
                f"`--n {large['n']:,}` to NPY writes {large['bytes'] / 2**30:.2f} GiB block by block: peak RSS "
                f"{large['peak_rss_mib']:.0f} MiB in {large['wall_s']:.1f} s, against {small['peak_rss_mib']:.0f} MiB "
                f"for `--n {small['n']}` (the process's own peak, measured by a parent that runs nothing else). "
                f"Target under {TARGET_STREAM_RSS_MIB} MiB: "
                + ("met." if met else f"missed by {large['peak_rss_mib'] - TARGET_STREAM_RSS_MIB:.0f} MiB.")]
    return out


def anchors_section(results: dict) -> list[str]:
    mnist = next((ds for ds in results.get("datasets", []) if ds["label"] == "MNIST-5k"), None)
    digits = next((ds for ds in results.get("datasets", []) if ds["label"] == "sklearn digits"), None)
    if mnist:
        fits = [f["n_fit"] for per_class in mnist.get("runs", {}).values() for f in per_class.values()]
        protocol = (f"MNIST-5k here is a {mnist['n']:,}-image subset of MNIST, the split is a stratified 80/20 of "
                    f"that subset ({mnist['n_test']:,} test images"
                    + (f", {span(fits)} normal images to fit per model" if fits else "") + ")")
    else:
        protocol = "MNIST-5k was not part of this run"
    digits_text = (f"sklearn digits ({pixels(digits)}, {digits['n']:,} images) has no standard published "
                   "one-class table; there the centroid and PCA baselines are the reference." if digits else "")
    return ["", "## Anchors from the literature", "",
            "- Ruff et al., *Deep One-Class Classification*, ICML 2018 (Deep SVDD), Table 1: on full MNIST "
            "(one class normal, about 6,000 training images per class, the official 10,000-image test set, "
            "AUROC averaged over 10 seeds) One-Class Deep SVDD reaches a mean AUROC of about 0.948; the "
            "baselines there (KDE, OC-SVM/SVDD, Isolation Forest, a deep convolutional autoencoder, "
            "AnoGAN) land roughly between 0.87 and 0.92 in mean, with per-class figures from about 0.74 "
            "to 0.995; classes 0 and 1 are among the easiest there and 8 among the hardest.",
            f"- The protocols differ, so these are anchors, not a like-for-like comparison: {protocol}; the "
            "models are the families listed above, not the paper's convolutional networks; a single seed is "
            f"reported; and the score is computed by the exported ONNX bundle. {digits_text}".rstrip()]


def failures_section(results: dict) -> list[str]:
    if not results.get("failures"):
        return []
    return ["", "## Failures", "", *[f"- {e}" for e in results["failures"]]]


def reproduce_section(results: dict) -> list[str]:
    return ["", "## Reproduce", "",
            "```",
            "make bench                                   # = .venv/bin/python bench/run.py",
            ".venv/bin/python bench/run.py                # full run: bench/results.json, then BENCHMARKS.md",
            ".venv/bin/python bench/run.py --mnist PATH/mnist5k-images-idx3-ubyte.gz   # include MNIST-5k",
            ".venv/bin/python bench/run.py --quick --results /tmp/bench.json --out /tmp/bench.md   # smoke run",
            ".venv/bin/python bench/run.py --only completion --merge   # rerun one section into bench/results.json",
            "#   sections: digits, mnist, tabular, completion, sampling, boltzmann, gans, pipelines, serving, performance; one-class = digits,mnist",
            ".venv/bin/python bench/report.py bench/results.json --out BENCHMARKS.md   # re-render only",
            "# GPU rows of `performance`, on a lent GPU machine (bench/gpu_perf.py says how; one device call):",
            ".venv/bin/python bench/gpu_perf.py prepare --mnist PATH/mnist5k-images-idx3-ubyte.gz   # here",
            "python3 bench/gpu_perf.py measure .gpu-perf --out $OUT/cuda.json   # there, after source bench/gpu-env.sh",
            ".venv/bin/python bench/gpu_perf.py merge cuda.json                   # here: into results.json",
            "```",
            "",
            f"This report was rendered from a results file written by `{results.get('command', 'bench/run.py')}`."]


# -- matrix completion ---------------------------------------------------------------------------

KIND_ORDER = {"model": 0, "peer": 1, "baseline": 2}


def ordered_methods(section: dict) -> list[dict]:
    """gen's models, then the other libraries' methods, then the baselines (stable within)."""
    return sorted(section.get("methods", []), key=lambda m: KIND_ORDER.get(m.get("kind"), 3))


def pm(stats: dict | None, digits: int = 4) -> str:
    """'mean ± std' of per-seed figures ('mean' for one seed, '-' for none)."""
    if not stats:
        return "-"
    if stats.get("std") is None:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def seconds_cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 0.1 else f"{value:.3f}"


def item_autorec(section: dict | None) -> dict | None:
    """The item-based AutoRec method of a completion section (the issue's target)."""
    if not section:
        return None
    return next((m for m in section.get("methods", []) if m.get("family") == "autorec"
                 and m.get("orientation") == "item"), None)


def completion_section(section: dict | None) -> list[str]:
    """MovieLens-100K: gen's completion bundles next to the baselines and surprise, from the figures."""
    if not section:
        return []
    seed = str(section.get("protocol_seed", 0))
    seeds = [str(s) for s in section.get("seeds", [seed])]
    split = section.get("splits", {}).get(seed) or {}
    others = [s for s in seeds if s != seed]
    seed_text = (f"the protocol's split is seed {seed}; seeds {join_words(others)} are run as well to show the "
                 "spread (a seed changes the split and every method's initialisation), reported as mean ± sample "
                 f"standard deviation over seeds {join_words(seeds)}" if others
                 else f"the protocol's split, seed {seed}, only (no spread over seeds in this run)")
    ratings = section.get("ratings") or []
    scale = f"ratings {span([int(r) if float(r).is_integer() else r for r in ratings])}" if ratings else "ratings"
    out = ["", f"## Matrix completion ({section['label']})", "",
           f"Protocol (DESIGN.md): `{section['data']}`, {section['n_ratings']:,} {scale} by {section['n_users']:,} "
           f"users of {section['n_items']:,} items. The ratings are permuted with "
           "`numpy.random.RandomState(seed)`; the first 90% train"
           + (f" ({split['n_train']:,})" if split else "") + ", the last 10% test"
           + (f" ({split['n_test']:,})" if split else "")
           + f" (`gen.trainer.protocols.completion.completion_split`); {seed_text}. Every method is fitted on "
           "exactly the training triples and predicts exactly the test pairs. gen's rows are the **deployed "
           "bundle**: the run is exported to ONNX, loaded with `gen.runtime.load` (no torch), "
           "`model.complete(values, mask)` completes the rows of the training ratings and the test pairs are "
           "read off them"
           + (f"; the {split['n_test_unseen']} test pairs (seed {seed}) whose user or item has no training rating "
              "get the global training mean from gen and the baselines, and from surprise its global mean plus "
              "any bias it knows" if split else "")
           + ". Fit s: the training loop (gen: run.json `train_seconds`; surprise: `fit`); for the baselines, "
           "fitting and predicting together. The bias baseline is the global mean plus regularised user and item "
           "biases (`bias_baseline`, reg 10, 5 passes), clipped to the rating range.", ""]
    rows = []
    for m in ordered_methods(section):
        run = m["runs"].get(seed)
        spread = m.get("spread") or {}
        rows.append([m["name"], "-" if not run else f"{run['rmse']:.4f}", "-" if not run else f"{run['mae']:.4f}",
                     pm(spread.get("rmse")) if others else "-", pm(spread.get("mae")) if others else "-",
                     seconds_cell(run.get("fit_s")) if run else "-",
                     pm(spread.get("fit_s"), 1) if others else "-"])
    seeds_label = f"seeds {', '.join(seeds)}"
    out.append(table(["method", f"RMSE, seed {seed} (protocol)", f"MAE, seed {seed}", f"RMSE, {seeds_label}",
                      f"MAE, {seeds_label}", f"fit s, seed {seed}", f"fit s, {seeds_label}"], rows))

    settings = []
    for name, family in section.get("families", {}).items():
        config = family.get("config") or {}
        shown = ", ".join(f"{k} {v}" for k, v in config.items() if k not in ("epochs", "seed", "threads", "device"))
        variants = "; ".join(v for v in family.get("variants", {}).values() if v)
        settings.append(f"gen {name}: {family['epochs']} epochs" + (f", {variants}" if variants else "")
                        + (f" ({shown})" if shown else "") + "; the trainer's seed is the split seed")
    for m in ordered_methods(section):
        if m.get("kind") == "peer" and m.get("settings"):
            params = m["settings"]
            shown = ", ".join(f"{k} {params[k]}" for k in SURPRISE_PARAMS if k in params)
            settings.append(f"{m['name']}: defaults ({shown}), random_state = the split seed")
    if section.get("surprise_epochs_override"):
        settings.append(f"quick run: surprise ran {section['surprise_epochs_override']} epochs, not its default")
    if settings:
        out += ["", "Settings: " + "; ".join(settings) + "."]

    agree = []
    for m in ordered_methods(section):
        runs = [r for r in m["runs"].values() if r.get("trainer_rmse") is not None]
        if m.get("kind") != "model" or not runs:
            continue
        agree.append([m["name"], pm({"mean": mean(r["trainer_rmse"] for r in runs), "std": None}),
                      pm({"mean": mean(r["rmse"] for r in runs), "std": None}),
                      f"{max(abs(r['rmse'] - r['trainer_rmse']) for r in runs):.1e}",
                      f"{max(r['max_parity'] for r in runs):.1e}",
                      span([r["n_test_unseen"] for r in runs]),
                      f"{mean(r['export_s'] for r in runs):.1f}", f"{mean(r['predict_s'] for r in runs):.2f}"])
    if agree:
        out += ["", f"Trainer vs deployed bundle, mean over {plural(len(seeds), 'seed')} (the trainer completes with "
                "the torch network before export):", "",
                table(["method", "RMSE, trainer (run.json)", "RMSE, runtime bundle", "max abs RMSE difference",
                       "max abs torch-onnxruntime output difference at export", "unseen test pairs",
                       "export s", "runtime complete + read s"], agree)]
    base = next((m for m in section.get("methods", []) if m["name"] == "user/item bias baseline"), None)
    checks = [r["trainer_rmse_bias_baseline"] - base["runs"][k]["rmse"]
              for m in section.get("methods", []) for k, r in m["runs"].items()
              if base and r.get("trainer_rmse_bias_baseline") is not None and k in base["runs"]]
    if checks:
        out += ["", f"The trainer's own bias-baseline RMSE (run.json) differs from the one computed here on the "
                f"same split by at most {max(abs(c) for c in checks):.1e}: the two use the same split."]
    for reason in section.get("skipped", []):
        out += ["", f"**Not run:** {reason}."]
    if section.get("failures"):
        out += ["", "**Failures** (left out of the tables above):", ""] + [f"- {e}" for e in section["failures"]]
    return out


# -- targets ------------------------------------------------------------------------------------

def target_lines(results: dict) -> list[str]:
    """The issue's targets, each met or missed, with the figures."""
    lines = []
    section = results.get("completion")
    autorec = item_autorec(section)
    if section and autorec:
        seed = str(section.get("protocol_seed", 0))
        run = autorec["runs"].get(seed)
        if run:
            value = run["rmse"]
            verdict = (f"met ({TARGET_RMSE - value:.4f} below)" if value <= TARGET_RMSE
                       else f"missed by {value - TARGET_RMSE:.4f}")
            lines.append(f"Item-based AutoRec test RMSE on {section['label']} (runtime bundle, split seed {seed}): "
                         f"{value:.4f} vs target {TARGET_RMSE}: {verdict}.")
            svdpp = next((m for m in section["methods"] if m["name"] == "surprise SVD++"), None)
            if svdpp and seed in svdpp["runs"]:
                other = svdpp["runs"][seed]["rmse"]
                verdict = (f"beats it by {other - value:.4f}: met" if value < other
                           else f"does not beat it (behind by {value - other:.4f}): missed")
                text = (f"Item-based AutoRec vs surprise SVD++ (RMSE, split seed {seed}): {value:.4f} vs "
                        f"{other:.4f}, {verdict}")
                a, b = (autorec.get("spread") or {}).get("rmse"), (svdpp.get("spread") or {}).get("rmse")
                if a and b and a.get("n", 1) > 1 and a.get("n") == b.get("n"):
                    text += f"; over {a['n']} seeds the means are {a['mean']:.4f} and {b['mean']:.4f}"
                lines.append(text + ".")
        else:
            lines.append(f"Item-based AutoRec RMSE (target {TARGET_RMSE}): no result for split seed {seed} "
                         "(see the failures of the completion section).")
    else:
        why = "; ".join((section or {}).get("skipped", [])) or "the completion section was not run"
        lines.append(f"Item-based AutoRec RMSE (target {TARGET_RMSE}, and beating surprise SVD++): not measured "
                     f"in this run ({why}).")

    mnist = next((ds for ds in results.get("datasets", []) if ds["label"] == "MNIST-5k"), None)
    models = {m["name"]: m for m in (mnist or {}).get("methods", []) if m["kind"] == "model" and is_complete(mnist, m)}
    if mnist and models:
        best = max(models.values(), key=lambda m: method_mean(mnist, m))
        value = method_mean(mnist, best)
        verdict = f"met ({value - TARGET_AUROC:.3f} above)" if value >= TARGET_AUROC else \
            f"missed by {TARGET_AUROC - value:.3f}"
        family = best.get("family", best["name"])
        lines.append(f"Best gen detector on MNIST-5k: {family}, mean AUROC {value:.3f} (runtime bundle) vs target "
                     f"{TARGET_AUROC}: {verdict}.")
        spread = {m["name"]: over_seeds(mnist, m) for m in models.values()}
        spread = {k: v for k, v in spread.items() if v is not None}
        if spread:
            name = max(spread, key=lambda k: spread[k][0])
            avg, low, high, seeds = spread[name]
            lines.append(f"Over training seeds {', '.join(seeds)}: best {models[name].get('family', name)}, mean "
                         f"{avg:.3f} (per seed {low:.3f}-{high:.3f}) vs target {TARGET_AUROC}: "
                         + (f"met ({avg - TARGET_AUROC:.3f} above)." if avg >= TARGET_AUROC
                            else f"missed by {TARGET_AUROC - avg:.3f}."))
        knn = next((m for m in mnist["methods"] if m["name"] == KNN), None)
        keys = class_keys(mnist)
        if knn and all(k in knn["auroc"] for k in keys):
            wins = [k for k in keys if best["auroc"][k] > knn["auroc"][k]]
            text = (f"{family} beats {KNN} (mean {method_mean(mnist, knn):.3f}) on {len(wins)} of {len(keys)} "
                    f"digits" + (f" ({', '.join(wins)})" if wins and len(wins) < len(keys) else ""))
            if len(keys) == 10:
                text += (f"; target at least {TARGET_KNN_WINS} of 10: "
                         + ("met." if len(wins) >= TARGET_KNN_WINS else f"missed by {TARGET_KNN_WINS - len(wins)}."))
            else:
                text += f" (the target, at least {TARGET_KNN_WINS} of 10, needs all ten classes)."
            lines.append(text)
        else:
            lines.append(f"Beating {KNN} on at least {TARGET_KNN_WINS} of 10 MNIST-5k digits: not measured "
                         "(no complete k-NN result in this run).")
    else:
        lines.append(f"Best gen detector mean AUROC on MNIST-5k (target {TARGET_AUROC}) and wins over {KNN}: not "
                     "measured in this run (no complete model result on MNIST-5k).")
    return [f"- {line}" for line in lines]


def time_lines(results: dict) -> list[str]:
    """Training time of each family for the figures above (mean per class, per seed)."""
    rows = []
    for ds in results.get("datasets", []):
        for m in ds["methods"]:
            if m["kind"] == "model" and m.get("fit_s"):
                rows.append([m.get("family", m["name"]), ds["label"], f"mean AUROC {mean_cell(ds, m)}",
                             fit_cell(m) + " per class"])
    section = results.get("completion")
    if section:
        seed = str(section.get("protocol_seed", 0))
        for m in ordered_methods(section):
            run = m["runs"].get(seed)
            if run:
                rows.append([m["name"].replace(" (runtime bundle)", ""), section["label"],
                             f"RMSE {run['rmse']:.4f} (seed {seed})", seconds_cell(run.get("fit_s")) + " per fit"])
    if not rows:
        return []
    return ["", "Training time behind these figures (one thread; the loop only, without export):", "",
            table(["method", "data", "figure", "fit s"], rows)]


def boltzmann_section(section: dict | None) -> list[str]:
    """Likelihoods and speed of the Boltzmann machines (bench/boltzmann.py), from the figures."""
    if not section:
        return []
    out = ["", "## Boltzmann machines: likelihood and speed", "",
           f"Data: {section['data']}; DESIGN.md's split, the models fitted on {section['n_fit']} training rows "
           f"(the trainer holds the rest of the training split out for calibration) and evaluated on "
           f"{section['n_test']} test rows. gen's figures are those of the **deployed bundle**: "
           "`model.log_prob` = -F(v) - log Z with the log Z stored in its manifest (exact by enumeration, or "
           "AIS with its standard error); for the DBM the figure is the mean-field lower bound -F_q(v) - log Z. "
           "scikit-learn's BernoulliRBM is fitted on the same binary rows in the same run and its exact "
           "log-likelihood computed with the same code.", ""]
    rows = []
    for name, m in section["models"].items():
        z = m.get("log_z")
        ll = "-" if m.get("test_ll") is None else f"{m['test_ll']:.1f}"
        rows.append([f"gen {name}", m["variant"], str(m["epochs"]), ll,
                     "-" if m.get("train_ll") is None else f"{m['train_ll']:.1f}",
                     "-" if not z else f"{z['value']:.2f} ± {z['std']:.2f} ({z['method']})",
                     f"{m['epoch_s']:.3f}"])
    for name, m in section["sklearn"].items():
        rows.append([f"scikit-learn BernoulliRBM, {name}",
                     f"{m['n_components']} hidden, batch {m['batch_size']}, lr {m['learning_rate']}",
                     str(m["n_iter"]), "-" if m.get("test_ll") is None else f"{m['test_ll']:.1f}",
                     "-" if m.get("train_ll") is None else f"{m['train_ll']:.1f}", "exact" if "test_ll" in m else "-",
                     f"{m['epoch_s']:.3f}"])
    out.append(table(["model", "variant / settings", "epochs", "test log-likelihood (nats)",
                      "train log-likelihood (first 1000 fit rows)", "log Z", "s per epoch"], rows))
    gen20 = next((m for n, m in section["models"].items() if n.startswith("rbm-20")), None)
    sk20 = section["sklearn"].get("defaults")
    notes = []
    if gen20 and sk20 and gen20.get("test_ll") is not None:
        notes.append(f"20 hidden units: gen {gen20['test_ll']:.1f} nats against scikit-learn's "
                     f"{sk20['test_ll']:.1f} (defaults); the target was -195 or better, "
                     + ("met." if gen20["test_ll"] >= -195 else f"missed by {-195 - gen20['test_ll']:.1f} nats."))
        for key in ("defaults", "our batch and lr"):
            sk = section["sklearn"].get(key)
            if sk:
                notes.append(f"Speed per epoch, 20 hidden, against scikit-learn ({key}): "
                             f"{sk['epoch_s'] / gen20['epoch_s']:.1f}x its speed.")
    pcd = section["models"].get("rbm-500 (pcd)")
    sk500 = section["sklearn"].get("500 components, our batch and lr")
    if pcd and pcd.get("test_ll") is not None:
        notes.append(f"500 hidden units, PCD: {pcd['test_ll']:.1f} nats by AIS; the target was -130 or better, "
                     + ("met." if pcd["test_ll"] >= -130 else f"missed by {-130 - pcd['test_ll']:.1f} nats."))
        dbm = next((m for n, m in section["models"].items() if n.startswith("dbm")), None)
        if dbm and dbm.get("test_ll") is not None:
            notes.append(f"DBM lower bound {dbm['test_ll']:.1f} nats vs the PCD RBM's {pcd['test_ll']:.1f}: "
                         + ("the DBM is ahead." if dbm["test_ll"] > pcd["test_ll"] else "the DBM does not beat it."))
    if pcd and sk500:
        ratio = sk500["epoch_s"] / pcd["epoch_s"]
        notes.append(f"Speed per epoch, 500 hidden, against scikit-learn at the same batch and lr: {ratio:.1f}x its "
                     "speed; the target was 5x, " + ("met." if ratio >= 5 else f"missed by a factor of {5 / ratio:.1f}."))
    for name, m in section["models"].items():
        check, z = m.get("ais_check"), m.get("log_z")
        if check and z:
            shift = check["value"] - z["value"]
            notes.append(f"AIS check, {name}: log Z {z['value']:.2f} ± {z['std']:.2f} with the bundle's schedule, "
                         f"{check['value']:.2f} ± {check['std']:.2f} with {check['n_betas']} betas and another seed "
                         f"({shift:+.2f} nats; AIS is biased low when the schedule is too short, so a rise means the "
                         "log-likelihood above is optimistic by about that much).")
    for name, m in section["models"].items():
        if m.get("log_z") is None and (m.get("options") or {}).get("log_z") == "ais":
            notes.append(f"{name}: no log Z was recorded, so no log-likelihood: its AIS estimate did not settle as "
                         f"the schedule doubled ({(m.get('options') or {}).get('ais_betas', '?')} betas and up to four "
                         "times as many; the convergence rule, README \"Log-likelihoods\").")
        elif m.get("log_z") and "converged:" in (m["log_z"].get("detail") or ""):
            detail = m["log_z"]["detail"]
            head = detail.split("), ", 1)[0] + (")" if "), " in detail else "")  # the schedules, not the chains
            notes.append(f"{name}: log Z recorded under the convergence rule: {head}.")
    if section.get("dbm_error"):
        notes.append(f"The DBM run failed: {section['dbm_error']}.")
    out += [""] + [f"- {n}" for n in notes]
    if section.get("samples_png"):
        out += ["", f"Gibbs samples of the 500-hidden PCD RBM (`model.sample(64, steps=1000)`, mean-field "
                    f"probabilities of the last visible layer): ![Gibbs samples]({section['samples_png']})"]
    return out


def _mode_means(runs: list[dict], key: str) -> tuple[float, float]:
    return (statistics.fmean(r[key]["modes"] for r in runs), statistics.fmean(r[key]["high_quality"] for r in runs))


def mode_target_lines(section: dict) -> list[str]:
    """Whether some family (and sampling mode) meets each mode-collapse target, on the seed mean."""
    lines = []
    for data, (modes, share) in TARGET_MODES.items():
        best = None
        for name, record in section["families"].items():
            runs = record["data"].get(data, {}).get("runs", [])
            for key, label in REFINE_LABELS:
                if runs and all(key in r for r in runs):
                    m, q = _mode_means(runs, key)
                    rank = (m >= modes and q >= share, q if m >= modes else -1, m)
                    if best is None or rank > best[0]:
                        best = (rank, name, label, m, q, len(runs))
        if best is None:
            continue
        _, name, label, m, q, n = best
        met = m >= modes and q >= share
        verdict = "met" if met else (f"missed: {m:.1f}/{modes} modes" if m < modes else
                                     f"missed by {100 * (share - q):.1f} points of high-quality share")
        pacgan = MODE_ANCHORS["PacGAN4 (published)"][data]
        lines.append(f"{'Ring-8' if data == 'ring8' else 'Grid-25'} (target {modes}/{modes} modes with at least "
                     f"{share:.0%} high-quality samples, mean over {plural(n, 'seed')}): best is {name} ({label}), "
                     f"{m:.1f}/{modes} modes and {q:.1%}: {verdict}. PacGAN4 published {pacgan[0]}/{modes} "
                     f"with {pacgan[1]:.1%}.")
    return lines


def _gan_families(section: dict | None) -> set[str]:
    """Families that ran in the GAN section (mode coverage or image quality)."""
    section = section or {}
    names = set((section.get("modes") or {}).get("families", {}))
    for block in ((section.get("images") or {}).get("datasets") or {}).values():
        names |= set(block.get("families", {}))
    return names


def gans_section(section: dict | None) -> list[str]:
    """Mode collapse and image sample quality of the GAN families (bench/gans.py)."""
    if not section:
        return []
    out = ["", "## GAN families: mode collapse and sample quality", ""]
    modes = section.get("modes")
    if modes and modes.get("families"):
        seeds = modes.get("seeds", [])
        out += [f"Protocol (DESIGN.md): ring-8 (radius 2, std 0.02) and grid-25 (-4..4 step 2, std 0.05); each "
                f"family is trained once per seed ({join_words([str(s) for s in seeds])}: the seed drives the "
                f"data draw, the split, the initialisation and the sampling), exported, and the bundle draws "
                f"{modes['n_samples']:,} samples with `gen sample` (plain), `--refine drs` and `--refine mh`. A mode "
                "is captured when some sample lies within 3 std of its centre; *HQ* is the share of samples within "
                "3 std of any centre. Cells are the mean over seeds with the range in brackets; *train s* is the "
                "mean training time per run (loop, discriminator fine-tuning and calibration; one thread).", ""]
        for data, title in (("ring8", "Ring-8"), ("grid25", "Grid-25")):
            rows = []
            for name, record in modes["families"].items():
                block = record["data"].get(data)
                if not block:
                    continue
                runs, n_modes = block["runs"], block["n_modes"]
                row = [name]
                for key, _ in REFINE_LABELS:
                    ms = [r[key]["modes"] for r in runs]
                    row.append(f"{statistics.fmean(ms):.1f}/{n_modes} ({span(ms)})")
                for key, _ in REFINE_LABELS:
                    qs = [r[key]["high_quality"] for r in runs]
                    row.append(f"{statistics.fmean(qs):.1%} ({pspan(qs)})")
                row.append(f"{statistics.fmean(r['train_s'] for r in runs):.0f}")
                rows.append(row)
            for anchor, figures in MODE_ANCHORS.items():
                m, q = figures[data]
                rows.append([anchor, f"{m}/{8 if data == 'ring8' else 25}", "-", "-", f"{q:.1%}", "-", "-", "-"])
            out += [f"**{title}**", "", table(["family", "modes plain", "modes DRS", "modes MH", "HQ plain", "HQ DRS",
                                               "HQ MH", "train s"], rows), ""]
        out += [f"- {line}" for line in mode_target_lines(modes)]
        settings = "; ".join(f"{n}: {r['epochs']} epochs, " + ", ".join(f"{k}={v}" for k, v in r["options"].items())
                             for n, r in modes["families"].items())
        skipped = sorted(_gan_families(section) - set(modes["families"]))
        out += ["", f"Settings: {settings}. Other options are the family defaults (`gen models NAME`)."
                + (f" Not run on the point sets: {join_words(skipped)} (convolutional only: the 2-D points are not "
                   "images)." if skipped else "")]
    images = section.get("images")
    if images and images.get("datasets"):
        out += ["", "**Image sample quality.** A one-hidden-layer classifier (64 ReLU units, scikit-learn) is "
                "trained on the real training split; *Frechet* is the Frechet distance between the features of "
                f"{images['n_samples']:,} samples and of the real test rows in its hidden layer (lower is better; "
                "the *real training rows* line is the floor: real data against real data); *classes* is how many of "
                "the 10 classes it finds among the samples (a class counts from 10% of its uniform share), *KL* "
                "the KL divergence of the samples' class histogram from uniform (0 is balanced, log 10 = 2.30 "
                "is one class)."]
        for label, ds in images["datasets"].items():
            floor = ds["floor"]
            rows = [["real training rows (floor)", f"{floor['frechet']:.2f}", "-", "-",
                     f"{floor['classes_found']}", "-", "-", f"{floor['kl_from_uniform']:.3f}", "-"]]
            for name, r in ds["families"].items():
                rows.append([name, *(f"{r[k]['frechet']:.2f}" for k, _ in REFINE_LABELS),
                             *(str(r[k]["classes_found"]) for k, _ in REFINE_LABELS),
                             f"{r['plain']['kl_from_uniform']:.3f}", f"{r['train_s']:.0f}"])
            name = "sklearn digits" if label == "digits" else "MNIST-5k"
            out += ["", f"*{name}* ({ds['n_train']:,} training rows, {ds['n_test']:,} test rows; the classifier's "
                    f"test accuracy is {ds['classifier_test_accuracy']:.3f}):", "",
                    table(["family", "Frechet plain", "Frechet DRS", "Frechet MH", "classes plain", "classes DRS",
                           "classes MH", "KL plain", "train s"], rows)]
            settings = "; ".join(f"{n}: {r['epochs']} epochs" + "".join(f", {k}={v}" for k, v in r["options"].items())
                                 for n, r in ds["families"].items())
            out += ["", f"Settings: {settings}; seed 0."]
            info = ds["families"].get("infogan", {}).get("infogan")
            if info:
                seeds = info.get("seeds") or [{"seed": 0, "accuracy": info["accuracy"]}]
                accs = [r["accuracy"] for r in seeds]
                mean = statistics.fmean(accs)
                spread = (f"; over seeds {join_words([str(r['seed']) for r in seeds])} the mean is {mean:.1%} "
                          f"(range {pspan(accs)})" if len(seeds) > 1 else "")
                verdict = ""
                if label == "mnist":
                    verdict = (f"; target {TARGET_INFOGAN:.0%}" + (" (on the mean over seeds)" if len(seeds) > 1
                                                                   else "") + ": "
                               + ("met" if mean >= TARGET_INFOGAN
                                  else f"missed by {100 * (TARGET_INFOGAN - mean):.1f} points"))
                out += ["", f"InfoGAN's categorical code as a classifier on {name}: each of its {info['categories']} "
                        "categories is mapped to the majority label of the training rows the bundle's encoder (Q) "
                        f"puts in it ({info['labels_covered']} distinct labels are reached with seed 0); test "
                        f"accuracy {info['accuracy']:.1%} with seed 0{spread}{verdict} (the InfoGAN paper reports "
                        "95% on full MNIST)."]
    return out


def tabular_section(section: dict | None) -> list[str]:
    """One-class detection on real tables: the default command against the peers, three seeds
    (bench/tabular.py). Cells: mean AUROC and min-max over the seeds; best per dataset in bold."""
    if not section:
        return []
    sets = section["datasets"]
    methods = list(dict.fromkeys(m for d in sets for m in d["auroc"]))
    peers = list(section["peers"])
    default = "gen (default command)"

    def cell(values: list[float] | None, best: float | None) -> str:
        if not values:
            return "-"
        m = float(sum(values) / len(values))
        text = f"{m:.3f}" + (f" ({min(values):.3f}-{max(values):.3f})" if len(values) > 1 else "")
        return f"**{text}**" if best is not None and round(m, 3) >= round(best, 3) else text  # best as shown

    rows, wins, misses = [], 0, []
    for d in sets:
        means = {m: sum(v) / len(v) for m, v in d["auroc"].items() if v}
        best = max(means.values())
        rows.append([f"{d['name']} ({d['rows']:,} x {d['features']})",
                     *[cell(d["auroc"].get(m), best) if m in d["auroc"] else
                       ("refused" if m in d.get("errors", {}) else "-") for m in methods]])
        best_peer = max((means[p], p) for p in peers if p in means)
        if default in means:
            if means[default] >= best_peer[0] - 1e-12:
                wins += 1
            else:
                misses.append(f"{d['name']} ({means[default]:.3f} against {best_peer[1]}'s {best_peer[0]:.3f}, "
                              f"{best_peer[0] - means[default]:.3f} short)")
    avg = {m: sum(sum(d["auroc"][m]) / len(d["auroc"][m]) for d in sets) / len(sets)
           for m in methods if all(m in d["auroc"] for d in sets)}
    rows.append(["**mean over the sets**", *[f"{avg[m]:.3f}" if m in avg else "-" for m in methods]])
    resolved = next((d["resolved"].get(default) for d in sets if d["resolved"].get(default)), None)
    seconds = [s for d in sets for s in d["seconds"].get(default, [])]
    about = "; ".join(f"*{d['name']}*: {d['about']}" for d in sets)
    n_seeds = len(section["seeds"])
    out = ["", f"## Defaults on real tables (one-class, {plural(n_seeds, 'seed')})", "",
           f"{len(sets)} public imbalanced-classification tables (KEEL repository copies of UCI data, read from the "
           f"`{section['wheel']}` wheel by `bench/tabular.py`), each handed to gen as the raw CSV a user would "
           "have: a header, unscaled features, a `label` column (0 = the majority class, normal; 1 = the "
           "set's own positive minority class, anomaly). Split: DESIGN.md's fixed stratified 80/20 "
           "(`protocol_split`); every model trains on the normal training rows and scores all test rows. "
           "**gen (default command)** is exactly `gen train --data FILE.csv --label-column label "
           "--normal-class 0 --seed S` with no other option" + (
               f" (it resolved to family `{resolved['family']}`, score `{resolved['score']}`)" if resolved else "")
           + "; the other gen rows add only `--model`. Peers: PyOD's "
           + ", ".join(f"{p} (`{section['peers'][p]}`)" for p in peers)
           + ", library defaults with the seed fixed, fitted on the same normal training rows standardised by "
           f"their own mean and standard deviation. Cells: mean AUROC over seeds {', '.join(map(str, section['seeds']))} "
           "(min-max); the best mean per set in bold. " + about + ".", "",
           table(["dataset (rows x features)", *methods], rows, ["l"] + ["r"] * len(methods)), "",
           f"The default command reaches the best peer's mean AUROC on {wins} of {len(sets)} sets"
           + (f"; it misses on {join_words(misses)}" if misses else "") + "."
           + (f" Its mean over the sets is {avg[default]:.3f}, against "
              + ", ".join(f"{p} {avg[p]:.3f}" for p in peers if p in avg) + "." if default in avg else "")
           + (f" Training time of the default command: {min(seconds):.1f}-{max(seconds):.1f} s per run "
              f"(median {sorted(seconds)[len(seconds) // 2]:.1f} s), one thread." if seconds else "")]
    return out


def pipelines_section(section: dict | None) -> list[str]:
    """Scoring a partitioned dataset: rows/s and memory per configuration (bench/pipelines.py)."""
    if not section:
        return []
    configs = section["configs"]
    base = next((c for c in configs if c["name"].startswith("single file")), None)
    rows = []
    for c in configs:
        ratio = f"{c['rows_per_s'] / base['rows_per_s']:.2f}x" if base else "-"
        worker = f"{c['worker_peak_rss_mib']:.0f}" if c.get("worker_peak_rss_mib") is not None else "-"
        rows.append([c["name"], f"{c['rows']:,}", f"{c['wall_s']:.1f}", f"{c['rows_per_s']:,.0f}", ratio,
                     f"{c['peak_rss_mib']:.0f}", worker])
    out = ["", "## Scoring partitioned datasets", "",
           f"`gen score` on {section['rows']:,} rows of {section['width']} features ({section['bundle']}): one "
           f"Parquet file, and the same rows in {section['files']} Hive-style partition files with an `id` "
           f"column kept (`--keep-columns id`), on this {section['cores']}-core machine. Each configuration runs as "
           f"its own subprocess {section['repeats']} times (the best wall time is shown); *peak RSS* is the "
           "largest process's (the CLI, or a worker), read by a parent that runs nothing else; *per worker* is "
           "the largest worker's own peak (`worker_peak_rss_mib` in `--json`). The Ray row includes starting a "
           "local Ray cluster, and its peak RSS is the driver's only (Ray's actors are not the CLI's children).",
           "",
           table(["configuration", "rows", "wall s", "rows/s", "vs one file", "peak RSS MiB",
                  "per worker MiB"], rows, ["l", "r", "r", "r", "r", "r", "r"]), "",
           "Commands (paths shortened):", ""]
    out += [f"- {c['name']}: `{c['command']}`" for c in configs]
    return out


def serving_section(section: dict | None) -> list[str]:
    """The load test of `gen serve` (bench/serving.py)."""
    if not section:
        return []
    rows = [[c["name"], f"{c['requests']:,}", f"{c['requests_per_s']:,.0f}", f"{c['rows_per_s']:,.0f}",
             f"{c['p50_ms']:.2f}", f"{c['p99_ms']:.2f}"] for c in section["configs"]]
    batched = next((c for c in section["configs"] if "adaptive" in c["name"]), None)
    plain = next((c for c in section["configs"] if "no batching" in c["name"]), None)
    gain = (f" Adaptive batching gives {batched['rows_per_s'] / plain['rows_per_s']:.2f}x the throughput of "
            f"unbatched serving, with p99 latency {batched['p99_ms']:.1f} ms against {plain['p99_ms']:.1f} ms."
            if batched and plain else "")
    return ["", "## Online serving (Open Inference Protocol)", "",
            f"`gen serve` ({section['bundle']}) on 127.0.0.1, called by {section['clients']} concurrent "
            f"clients (tritonclient.http.aio, one process, one request in flight per client) sending "
            f"{section['requests_per_client']} `score` requests each of {section['rows_per_request']} rows; "
            "latency is the client's, per request. Server and clients share this machine's cores. The last row "
            "calls `model.score` in-process on the same request sizes, one after another." + gain, "",
            table(["configuration", "requests", "requests/s", "rows/s", "p50 ms", "p99 ms"], rows,
                  ["l", "r", "r", "r", "r", "r"])]


GPU_LAST = ("H100 GPU rows were not re-measured here (no GPU lent); the last measurement (issue 11, before this "
            "work): batch 4,096 gen 279k rows/s vs torch eager 1,576k; batch 65,536 233k vs 1,740k; batch 1 6.2k vs 3.6k.")


def performance_section(section: dict | None) -> list[str]:
    """The runtime against torch on the same weights (bench/performance.py)."""
    if not section:
        return []
    alts = section["alternatives"]
    names = PERF_NAMES
    out = ["", "## Runtime performance (CPU)", "",
           f"One autoencoder trained on {section['data']} ({section['features']} inputs, default layers), scored "
           f"as host float32 rows with scores back on the host, on {section['threads']} threads; rows/s, each "
           "alternative in its own process"
           + ("; `uint8 rows` feeds the same pixels as the bytes MNIST stores (widened per batch)"
              if "gen-uint8" in alts else "")
           + ("; the fp16 bundle is for GPUs: on this CPU onnxruntime computes most of its nodes in float32 "
              "between casts" if "gen-fp16" in alts else "") + ".", "",
           _speed_table(alts, section["batches"]), ""]
    errors = [f"{names[m]}: {v['error']}" for m, v in alts.items() if isinstance(v, dict) and "error" in v]
    out += [f"- Did not run: {e}" for e in errors]
    spreads = [(b, _ratio_spread(section.get("repeats"), b)) for b in (1, 4096)]
    if all(sp for _, sp in spreads):
        out += ["- gen / torch eager again in alternating fresh processes, " + "; ".join(
            f"batch {b:,}: median {sp[0]:.2f}x, {sp[1]:.2f}x-{sp[2]:.2f}x over {sp[3]} pairs" for b, sp in spreads)
            + " (one process to the next moves either by several percent).", ""]
    opts = section.get("session_options")
    if opts and "error" not in opts:
        out += ["onnxruntime's CPU session options on the same score graph (plain `session.run`, rows/s), and "
                "its load time (median of 7):", "",
                table(["session options", "batch 1", "batch 4,096"],
                      [[name, *(f"{v.get(b, v.get(str(b))):,.0f}" for b in (1, 4096))]
                       for name, v in opts["rows_per_s"].items()], ["l", "r", "r"]), "",
                "- Load time of the score graph's session: " + "; ".join(
                    f"{name} {ms:.1f} ms" for name, ms in opts["load_ms"].items()) + ".", ""]
    for key, label in (("quantization", "int8"), ("fp16", "fp16")):
        q = section.get(key)
        if q:
            rel = q["max_rel_score_diff"]
            out.append(f"- The {label} bundle's cost, measured at export on {q['n_rows']:,} held-out rows: scores "
                       f"within {f'{rel:.2%}' if rel >= 1e-4 else f'{rel * 100:.2g}%'} of the float graph's, flags agree on "
                       f"{q['flag_agreement']:.1%}"
                       + (f", AUROC {q['auroc_float']:.4f} -> {q['auroc_quantized']:.4f}"
                          if q.get("auroc_float") is not None else "") + ".")
    flops, sgemm = section["flops_per_row"], section["sgemm_gflops"]
    best = max((v["rows_per_s"] for v in alts.get("gen", {}).values() if isinstance(v, dict) and "rows_per_s" in v),
               default=None)
    if best:
        achieved = flops * best / 1e9
        out.append(f"- The score graph does {flops:,} FLOP per row: gen's best rate is {achieved:.1f} GFLOP/s, "
                   f"{achieved / sgemm:.0%} of numpy's SGEMM ({sgemm:.1f} GFLOP/s, 2048^3, same run)"
                   + (": numpy's BLAS is not this CPU's limit, onnxruntime's own GEMM kernels run faster on it."
                      if achieved > sgemm else "."))
    for n, f in section["gen_score_files"].items():
        rows_n = int(str(n).split("-")[0])
        out.append(f"- `gen score` of a {rows_n:,}-row {f.get('dtype', 'float32')} NPY file: {f['rows_per_s']:,.0f} "
                   f"rows/s including start-up, peak RSS {f['peak_rss_mib']:.0f} MiB.")
    fp = section.get("file_path")
    if fp:
        med = {mode: statistics.median(v) for mode, v in fp["rates"].items() if v}
        runs = len(fp["rates"].get("pipelined") or [])
        out.append(f"- The file path after load ({fp['rows']:,}-row {fp['dtype']} NPY, median of {runs} rounds of "
                   "fresh processes taking turns, start-up not counted): `model.score` on 4,096-row chunks read "
                   f"from the file {med['in-process']:,.0f} rows/s; `score_file` (what `gen score` runs) "
                   f"{med['pipelined']:,.0f} pipelined ({med['pipelined'] / med['in-process']:.0%} of it) and "
                   f"{med['serial']:,.0f} serial ({med['serial'] / med['in-process']:.0%}): reading the next "
                   "chunk and writing the last on threads while this one is scored.")
    for name, s in section["sampling"].items():
        out.append(f"- `sample` ({name}): " + (f"{s['samples_per_s']:,.0f} samples/s"
                                                + (f" ({s['gibbs_steps']} Gibbs steps each)" if s.get("gibbs_steps") else "")
                                                if "error" not in s else f"did not run ({s['error']})"))
    c = section["cold_start"]
    out.append(f"- Cold start: `gen sample --n 64` {c['gen_sample_64_s']:.2f} s against `import torch` "
               f"{c['import_torch_s']:.2f} s ({c['gen_sample_64_s'] / c['import_torch_s']:.2f}x).")
    inst = section.get("runtime_install")
    if inst and "error" not in inst:
        out.append(f"- A runtime-only environment (`pip install gen[cpu]`): {inst['mib']:.0f} MiB of site-packages, "
                   f"torch {'included (wrong!)' if inst['torch'] else 'absent'}.")
    out += ["", "Issue 11's CPU targets, from the figures above:", "", *perf_targets(section)]
    cuda = section.get("cuda")
    if not cuda:
        out.append(f"- {GPU_LAST}")
        return out
    return out + cuda_section(cuda, section["batches"])


# The CUDA record's modes (bench/gpu_perf.py MODES): gen as it ships, then the ways it was chosen
CUDA_MAIN = {"gen": "gen public API, float32 rows", "gen-uint8": "gen, uint8 rows", "gen-fp16": "gen, fp16 bundle",
             "gen:staging=0": "gen before issue 27 (no staging)", "ort-bound": "onnxruntime, IOBinding per batch",
             "ort-cuda-graph": "onnxruntime, CUDA graph, buffers refilled", "ort-on-device":
             "onnxruntime, input on the device (ceiling)", "torch-eager": "torch eager, same weights"}
CUDA_ABLATIONS = {"gen": "gen as it ships (calls from 16 MiB staged: pinned buffers, 8 copy threads, pieces of >= 8 MiB)",
                  "gen:MIN_STAGED_BYTES=4194304": "calls from 4 MiB staged (4,096 rows: 12.8 MB, staged)",
                  "gen:staging=0": "no staging: whole-array isfinite, then the caller's rows bound (pageable)",
                  "gen:PINNED=0": "staging into ordinary (pageable) memory",
                  "gen:DEVICE_INPUT=1": "each piece copied into a device buffer first (`update_inplace`)",
                  "gen:MIN_PIECE_BYTES=33554432": "pieces of >= 32 MiB (4,096 rows: one piece)",
                  "gen:FILL_CHUNK_BYTES=1048576": "copy and check 1 MiB at a time (in cache, more GIL round trips)",
                  "gen-uint8": "uint8 rows as it ships", "gen-uint8:DEVICE_INPUT=1": "uint8, piece copied to the device first",
                  "gen-uint8:staging=0": "uint8, no staging"}


def _rate(alts: dict, mode: str, batch: int) -> float | None:
    v = alts.get(mode)
    v = v.get(batch, v.get(str(batch))) if isinstance(v, dict) else None
    return v["rows_per_s"] if isinstance(v, dict) else None


def _met_on(g: float, t: float, others: list) -> str:
    """'met', or on how many of the machines measured it was met when reruns exist."""
    pairs = [(g, t), *((og, ot) for og, ot in others if og and ot)]
    hits = sum(1 for a, b in pairs if a >= 5e6 and a >= 2 * b)
    return "met" if hits == len(pairs) else f"met here, on {hits} of the {len(pairs)} machines measured"


def _small_call_why(alts: dict, b: int) -> str:
    """Why a batch misses: what the other paths of the same run reached at that size."""
    staged, bound, ceiling = (_rate(alts, m, b) for m in ("gen:MIN_STAGED_BYTES=4194304", "ort-bound",
                                                           "ort-on-device"))
    if not (staged and bound and ceiling):
        return ""
    return (f": at {b * 3136 / 1e6:.1f} MB a call staging does not pay (staged: {staged / 1e6:.2f}M), and "
            f"onnxruntime bound to the caller's rows reaches {bound / 1e6:.2f}M without any NaN check, against "
            f"{ceiling / 1e6:.1f}M once the rows are on the device: the host side (the check, the copy threads' "
            "hand-offs, pageable copies) bounds one call of this size, not the GPU")


def cuda_section(cuda: dict, batches: list[int]) -> list[str]:
    """The GPU rows (bench/gpu_perf.py, one device call): gen against onnxruntime and torch on the
    same weights, the staging's ablations, files, and issue 27's targets."""
    alts = cuda["alternatives"]
    facts = cuda.get("machine", {})
    link = facts.get("link_gb_per_s") if isinstance(facts.get("link_gb_per_s"), dict) else {}
    host = facts.get("host_gb_per_s", {})
    out = ["", f"## Runtime performance (CUDA: {cuda['device']})", "",
           f"Measured {cuda.get('measured', {}).get('date', '?')[:10]} on a lent {cuda['device']} "
           f"({facts.get('nvidia_smi', '?')}), host {facts.get('cpu', '?')} with {facts.get('cpu_count', '?')} cores, "
           f"onnxruntime-gpu {cuda.get('measured', {}).get('onnxruntime', '?')}, torch "
           f"{cuda.get('measured', {}).get('torch', '?')}; `bench/gpu_perf.py` (one device call). "
           + (f"The link read in the same run: host to device {link['h2d_pageable']:.1f} GB/s from pageable memory, "
              f"{link['h2d_pinned']:.1f} GB/s from pinned; on the host, one thread copies "
              f"{host.get('copy_1_threads', 0):.1f} GB/s and checks `isfinite` at {host.get('isfinite_all_1_thread', 0):.1f} "
              f"GB/s, eight copy {host.get('copy_8_threads', 0):.1f} GB/s. " if link else "")
           + "Host float32 rows in (MNIST, 784 values: 3,136 bytes a row), scores back on the host; rows/s, each "
           "alternative in its own process. gen's pinned buffers came from "
           f"`{facts.get('gen_host_buffer', '?')}`" + (" (this onnxruntime build lists no CUDA EP device, so its "
           "host-accessible allocator was not offered)" if facts.get("gen_host_buffer") == "cudart" else "") + ".", ""]
    main = [m for m in CUDA_MAIN if m in alts]
    rows = []
    for b in batches:
        cells = [f"{b:,}"] + [f"{_rate(alts, m, b):,.0f}" if _rate(alts, m, b) else "did not run" for m in main]
        g, t = _rate(alts, "gen", b), _rate(alts, "torch-eager", b)
        rows.append(cells + [f"{g / t:.2f}x" if g and t else "-"])
    out += [table(["batch", *(CUDA_MAIN[m] for m in main), "gen / torch eager"], rows, ["r"] * (len(main) + 2)), ""]
    out += [f"- Did not run: {m}: {v['error']}" for m, v in alts.items() if isinstance(v, dict) and "error" in v]
    abl = [m for m in CUDA_ABLATIONS if m in alts]
    if len(abl) > 2:
        out += ["", "How gen's staging was chosen (same run; one setting changed from the default at a time):", "",
                table(["gen setting", *(f"batch {b:,}" for b in batches)],
                      [[CUDA_ABLATIONS[m], *(f"{_rate(alts, m, b):,.0f}" if _rate(alts, m, b) else "-" for b in batches)]
                       for m in abl], ["l"] + ["r"] * len(batches)), ""]
    if cuda.get("renamed"):
        out += ["Renamed after the run: " + "; ".join(f"`{a}` is shown as `{b}`" for a, b in cuda["renamed"].items())
                + " (the default changed to a setting this run measured beside it; the code path shown is the one "
                "that ships).", ""]
    small = cuda.get("small_calls")
    if small and small.get("batches"):
        out += [f"gen's figures at batch {join_words([f'{b:,}' for b in small['batches']])} are those of `{small['mode']}`: "
                f"calls under {small['min_staged_bytes'] / 2**20:.0f} MiB take that plain path since the threshold was "
                "raised after these runs (staging was slower there on 3 of 4 machines; the staged figures are in the "
                "ablation table).", ""]
    for nth, again in zip(("second", "third", "fourth", "fifth"), cuda.get("reruns", [])):
        ra = again["alternatives"]
        shown = [m for m in ("gen", "gen-uint8", "gen:staging=0", "torch-eager") if m in ra]
        host = again.get("machine", {}).get("host_gb_per_s", {})
        files = ", ".join(f"{f['dtype']} --chunk-rows {f.get('chunk_rows', 4096):,} {f['rows_per_s']:,.0f}"
                          for f in again.get("files", {}).values())
        out.append(f"- Again on a {nth} machine of the kind (host: eight threads copy "
                   f"{host.get('copy_8_threads', 0):.1f} GB/s): " + "; ".join(f"{CUDA_MAIN.get(m, m)} " + ", ".join(
                       f"{_rate(ra, m, b) / 1e6:.2f}M" for b in batches if _rate(ra, m, b) and b >= 4096)
                       for m in shown) + " rows/s at batch 4,096 and 65,536" + (f"; files: {files} rows/s" if files
                                                                               else "") + ".")
    if cuda.get("reruns"):
        out.append("")
    for key, f in cuda.get("files", {}).items():
        out.append(f"- `gen score --device cuda --chunk-rows {f.get('chunk_rows', 4096):,}` of a "
                   f"{int(key.split('-')[0]):,}-row {f['dtype']} NPY file: {f['rows_per_s']:,.0f} rows/s including "
                   f"start-up ({f['wall_s']:.2f} s), peak RSS {f['peak_rss_mib']:.0f} MiB.")
    out += ["", "Issue 27's targets, from the figures above:", ""]
    for b in (4096, 65536):
        g, t = _rate(alts, "gen", b), _rate(alts, "torch-eager", b)
        if g and t:
            others = [(_rate(r["alternatives"], "gen", b), _rate(r["alternatives"], "torch-eager", b))
                      for r in cuda.get("reruns", [])]
            elsewhere = ", ".join(f"{og / 1e6:.2f}M ({og / ot:.2f}x)" for og, ot in others if og and ot)
            out.append(f"- Public API >= 5M rows/s and >= 2x torch eager at batch {b:,} (float32 host rows): "
                       f"{g / 1e6:.2f}M rows/s, {g / t:.2f}x" + (f"; on the other machines {elsewhere}" if elsewhere
                                                                  else "") + ": " + (_met_on(g, t, others) if g >= 5e6 and g >= 2 * t else
                       f"missed by {max(0, 5e6 - g) / 1e6:.2f}M rows/s" + (f" and {2 - g / t:.2f}x" if g < 2 * t else "")
                       + _small_call_why(alts, b)) + ".")
    for b in (4096, 65536):
        u = _rate(alts, "gen-uint8", b)
        if u:
            out.append(f"- >= 20M rows/s from uint8 rows at batch {b:,}: {u / 1e6:.2f}M, "
                       + ("met" if u >= 20e6 else f"missed by {(20e6 - u) / 1e6:.2f}M") + ".")
    best = max((f for f in cuda.get("files", {}).values()), key=lambda f: f["rows_per_s"], default=None)
    if best:
        out.append(f"- `gen score` of 1M rows >= 1M rows/s: best {best['rows_per_s']:,.0f} rows/s ({best['dtype']}), "
                   + ("met" if best["rows_per_s"] >= 1e6 else f"missed by {1e6 - best['rows_per_s']:,.0f} rows/s") + ".")
    return out


def _verdict(got: float, target: float, fmt: str, why: str, higher: bool = True, unit: str = "") -> str:
    met = got >= target if higher else got <= target
    return "met" if met else f"missed by {abs(got - target):{fmt}}{unit}: {why}"


def _ratio_spread(repeats: dict | None, batch: int) -> tuple[float, float, float, int] | None:
    """gen / torch eager at `batch` over the alternating repeats: (median, min, max, pairs)."""
    if not repeats:
        return None
    def runs(mode):
        v = (repeats.get(mode) or {})
        return v.get(batch, v.get(str(batch))) or []
    ratios = sorted(g / t for g, t in zip(runs("gen"), runs("torch-eager")) if t)
    if not ratios:
        return None
    return statistics.median(ratios), ratios[0], ratios[-1], len(ratios)


def perf_targets(section: dict) -> list[str]:
    """Each CPU target of issue 11 with the run's figure: met, or missed by how much and why."""
    alts, out = section["alternatives"], []

    def rate(mode, batch):
        v = alts.get(mode, {})
        v = v.get(batch, v.get(str(batch))) if isinstance(v, dict) else None
        return v["rows_per_s"] if isinstance(v, dict) else None
    spread = _ratio_spread(section.get("repeats"), 1)
    g1, t1 = rate("gen", 1), rate("torch-eager", 1)
    ratio, how = ((spread[0], f" (median of {spread[3]} alternating pairs of processes; "
                              f"{spread[1]:.2f}x-{spread[2]:.2f}x)") if spread
                  else (g1 / t1, "") if g1 and t1 else (None, ""))
    if ratio is not None:
        out.append(f"- Batch 1 >= 3x torch eager: {ratio:.2f}x{how}, " + _verdict(
            ratio, 3.0, ".2f", "the rest is gen's checks around onnxruntime's call (about 5 us of a 32 us call: "
            "finiteness, the float64 result) and onnxruntime's own call") + ".")
    g, q, t = rate("gen", 4096), rate("gen-int8", 4096), rate("torch-eager", 4096)
    torch_runs = ((section.get("repeats") or {}).get("torch-eager") or {})
    torch_runs = [*torch_runs.get(4096, torch_runs.get("4096", [])), *([t] if t else [])]
    if torch_runs:  # the int8 ratio against torch eager's median over every process that measured it
        t = statistics.median(torch_runs)
    if g:
        share = section["flops_per_row"] * g / 1e9 / section["sgemm_gflops"]
        out.append(f"- float32 at batch 4,096 >= 85% of numpy's SGEMM: {share:.0%}, " + _verdict(
            share * 100, 85, ".0f", "a fifth of the graph's time is its element-wise nodes (the "
            "preprocessing, the error and its mean: no FLOPs counted, bound by memory), and onnxruntime's GEMM "
            "kernels reach 70-90% of numpy's 2048^3 rate on these shapes (profiled)", unit=" points") + ".")
    quant = section.get("quantization") or {}
    if q and t:
        if quant.get("auroc_float") is None or quant.get("auroc_quantized") is None:
            out.append(f"- int8 >= 2x torch eager with an AUROC change <= 0.002: {q / t:.2f}x; the AUROC change "
                       "was not measured (a run without labels), so the target cannot be judged.")
        else:
            change = round(quant["auroc_quantized"] - quant["auroc_float"], 4) + 0.0
            out.append(f"- int8 >= 2x torch eager with an AUROC change <= 0.002: {q / t:.2f}x (torch eager: median "
                       f"of {len(torch_runs)} processes, {t:,.0f} rows/s), AUROC change "
                       f"{change:+.4f}, " + ("met" if q / t >= 2 and abs(change) <= 0.002 else "missed") + ".")
    fp = section.get("file_path")
    if fp and fp["rates"].get("pipelined") and fp["rates"].get("in-process"):
        ratio = statistics.median(fp["rates"]["pipelined"]) / statistics.median(fp["rates"]["in-process"])
        out.append(f"- `gen score` of the 200k-row NPY within 10% of the in-process API's rows/s (issue 29, after "
                   f"load): {ratio:.0%}, " + _verdict(ratio, 0.9, ".0%", "on two cores the reader and writer "
                                                     "threads take CPU time from onnxruntime's own threads")
                   + ".")
    big = section["gen_score_files"].get(200_000) or section["gen_score_files"].get("200000")
    if big:
        out.append(f"- `gen score` of the 200k-row NPY >= 120k rows/s with peak RSS <= 300 MiB: "
                   f"{big['rows_per_s']:,.0f} rows/s, {big['peak_rss_mib']:.0f} MiB, "
                   + ("met" if big["rows_per_s"] >= 120_000 and big["peak_rss_mib"] <= 300 else "missed") + ".")
    c = section.get("cold_start")
    if c:
        ratio = c["gen_sample_64_s"] / c["import_torch_s"]
        out.append(f"- Cold start <= 0.25x `import torch`: {ratio:.2f}x, " + _verdict(
            ratio, 0.25, ".2f", "most of gen's start-up is importing numpy, onnxruntime and typer (measure "
            "with -X importtime; typer 0.29 and later add pydantic, about 50 ms, hence the pin below 0.29)",
            higher=False) + ".")
    return out


PERF_NAMES = {"gen": "gen public API (`model.score`)", "gen-uint8": "gen, uint8 rows",
              "gen-int8": "gen, `--quantize int8` bundle", "gen-fp16": "gen, `--precision fp16` bundle",
              "ort-plain": "onnxruntime alone (`session.run`)",
              "ort-bound": "onnxruntime, IOBinding bound per batch", "ort-prealloc":
              "onnxruntime, device buffers allocated once, refilled in place",
              "ort-cuda-graph": "the same under a CUDA graph",
              "ort-on-device": "onnxruntime, input already on the device (compute only)",
              "torch-eager": "torch eager, same weights", "torch-compile": "torch.compile, same weights"}


def _speed_table(alts: dict, batches: list[int]) -> str:
    """rows/s per batch size of each alternative, and gen over torch eager."""
    header = ["batch", *(PERF_NAMES[m] for m in alts), "gen / torch eager"]
    rows = []
    for b in batches:
        cells = [f"{b:,}"]
        # batch keys are ints in memory and strings once the results went through JSON
        at = {mode: (v.get(b, v.get(str(b))) if isinstance(v, dict) else None) for mode, v in alts.items()}
        for mode in alts:
            cells.append(f"{at[mode]['rows_per_s']:,.0f}" if isinstance(at[mode], dict) else "did not run")
        g, t = at.get("gen"), at.get("torch-eager")
        cells.append(f"{g['rows_per_s'] / t['rows_per_s']:.2f}x" if isinstance(g, dict) and isinstance(t, dict) else "-")
        rows.append(cells)
    return table(header, rows, ["r"] * len(header))


def render(results: dict) -> str:
    """The whole BENCHMARKS.md text, from a results dict of bench/run.py."""
    datasets = results.get("datasets", [])
    pca = results.get("settings", {}).get("pca_components", 16)
    completion = results.get("completion")
    seeds = (completion or {}).get("seeds", [])
    spread = (f" Matrix-completion figures are for split seed {completion.get('protocol_seed', 0)}, with the "
              f"mean ± std over seeds {join_words([str(s) for s in seeds])} beside them; the other figures are for "
              "one seed (no error bars)." if len(seeds) > 1 else " Figures are for one seed (no error bars).")
    out = ["# Benchmarks", "",
           "Written by `bench/run.py` (figures to a JSON results file) and `bench/report.py` (this text, "
           "from that file only); every figure and machine fact below was measured or read in the run "
           "described here" + (" and its reruns" if results.get("reruns") else "") + "." + spread, ""]
    out += setup_section(results)
    out += ["", "## Headline", "", headline(results), "", "## Targets", "", *target_lines(results),
            *time_lines(results), "",
            "## One-class anomaly detection", "",
            "Protocol (DESIGN.md): stratified 80/20 split (`train_test_split(test_size=0.2, stratify=y, "
            "random_state=0)`, as `gen.trainer.protocols.one_class.protocol_split`). For each normal class d a "
            "model is trained on the class-d training rows only (a held-out slice of them calibrates the "
            "threshold; fit and calibration rows per model are in the cost tables), every test row is scored, "
            "anomaly = label != d, and the table gives AUROC per class and the mean (marked *partial* where "
            "some classes have no result). Model rows are the AUROC of the **deployed bundle**: the run is "
            "exported to ONNX, loaded with `gen.runtime.load` (no torch) and `model.score` is called on the raw "
            "test rows. Baselines are fitted on all class-d training rows in raw pixel units: *centroid "
            "distance* = Euclidean distance to the mean class-d image; *PCA-" f"{pca} reconstruction* = mean "
            f"squared error after projecting onto the top {pca} principal components of the class-d rows. "
            "PyOD detectors (named under each table) are fitted on the same rows scaled as gen scales images. "
            "*Fit s per class*: gen's training loop (run.json `train_seconds`, one thread; export and scoring "
            "not included), PyOD's `fit`, the baselines' fit and scoring together."]
    for ds in datasets:
        out += dataset_section(ds)
    for note in [*results.get("notes", []), difficulty_note(results), gan_note(results), calibration_note(results)]:
        if note:
            out += ["", note]
    sampling = results.get("sampling")
    if sampling and sampling.get("families"):
        out += sampling_section(sampling)
    out += tabular_section(results.get("tabular"))
    out += completion_section(completion)
    out += boltzmann_section(results.get("boltzmann"))
    out += gans_section(results.get("gans"))
    out += pipelines_section(results.get("pipelines"))
    out += serving_section(results.get("serving"))
    out += performance_section(results.get("performance"))
    out += failures_section(results)
    out += anchors_section(results)
    out += reproduce_section(results)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render BENCHMARKS.md from a bench/run.py results file.")
    parser.add_argument("results", type=Path, nargs="?", default=REPO / "bench" / "results.json",
                        help="results JSON written by bench/run.py (default bench/results.json)")
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"),
                        help="report to write (default BENCHMARKS.md; '-' prints it)")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text())
    except FileNotFoundError:
        parser.error(f"{args.results}: no such file (run bench/run.py first)")
    except json.JSONDecodeError as exc:
        parser.error(f"{args.results}: not valid JSON ({exc})")
    text = render(results)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
