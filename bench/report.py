"""Render BENCHMARKS.md from a results file written by bench/run.py.

`render(results)` is a pure function of the results dict: every figure, every fact about the
machine and every comparison in the text is computed from it. The targets it judges, and the
published figures it cites beside them, are declared in bench/targets.yaml; the wording is in
the Jinja templates of bench/templates/ (report.md.j2 lays out the sections). This module only
computes what the templates say: figures, tables, verdicts. Re-render without re-running the
benchmark:

    .venv/bin/python bench/report.py bench/results.json --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import operator
import re
import statistics
import sys
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from jinja2.ext import Extension

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TARGETS_FILE = BENCH / "targets.yaml"
DISCRIMINATOR_SCORE = "negative_discriminator_logit"
ALL_SECTIONS = ("digits", "mnist", "tabular", "completion", "sampling", "boltzmann", "gans", "pipelines", "scale", "serving",
                "performance")
CHANCE = 0.5  # the AUROC of a random score
# The parameters of PyOD's detectors worth naming in the text (all of them are in the results).
PEER_PARAMS = {"KNN": ("n_neighbors", "method"), "OCSVM": ("kernel", "nu", "gamma"),
               "AutoEncoder": ("hidden_neuron_list", "epoch_num", "batch_size", "lr", "dropout_rate", "batch_norm",
                               "preprocessing")}
SURPRISE_PARAMS = ("n_factors", "n_epochs", "lr_bu", "reg_bu", "k", "min_k", "sim_options", "bsl_options")
# Settings of a completion run that say how it ran, not what was trained: left out of the table.
PER_RUN_SETTINGS = ("epochs", "seed", "threads", "device", "stream", "nproc", "engine", "address")
NEIGHBOUR_PARAMS = ("sim_options", "bsl_options")  # every surprise algorithm has them; shown for the k-NN ones
SOFTWARE = (("python", "Python"), ("gen", "gen"), ("torch", "torch"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime"),
            ("numpy", "numpy"), ("scikit-learn", "scikit-learn"), ("pyod", "PyOD"),
            ("scikit-surprise", "scikit-surprise"))
REFINE_LABELS = (("plain", "plain"), ("drs", "DRS"), ("mh", "MH"))
POINT_SETS = {"ring8": ("Ring-8", 8), "grid25": ("Grid-25", 25)}  # title, modes


# -- targets ------------------------------------------------------------------------------------

DIRECTIONS = {"at_least": operator.ge, "at_most": operator.le, "below": operator.lt, "above": operator.gt}


class Verdict(NamedTuple):
    met: bool
    by: float  # distance of the figure from the target, in the target's unit


class Target(NamedTuple):
    """One entry of bench/targets.yaml."""
    key: str
    direction: str
    set_by: str
    description: str
    value: float | None = None
    unit: str | None = None
    against: str | None = None
    of: int | None = None
    batch: int | None = None
    batches: list[int] | None = None
    rows: int | None = None

    def judge(self, figure: float, reference: float | None = None) -> Verdict:
        """Met or not, and by how much; `reference` is the other method's figure of a target
        judged `against` it."""
        goal = self.value if reference is None else reference
        return Verdict(DIRECTIONS[self.direction](figure, goal), abs(figure - goal))


def load_targets(path: Path = TARGETS_FILE) -> tuple[dict[str, Target], dict]:
    """(targets by key, anchors) as declared in `path`."""
    declared = yaml.safe_load(path.read_text())
    targets = {key: Target(key=key, **entry) for key, entry in declared["targets"].items()}
    for t in targets.values():
        if t.direction not in DIRECTIONS or (t.value is None and t.against is None):
            raise ValueError(f"{path}: target {t.key} needs a direction in {sorted(DIRECTIONS)} and a value or "
                             "`against`")
    return targets, declared["anchors"]


TARGETS, ANCHORS = load_targets()


# -- small formatting helpers (most are also the templates' filters) --------------------------

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


def join_words(words) -> str:
    words = [str(w) for w in words]
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


def known(value, fallback: str = "unknown"):
    """The value, or `fallback` where the results hold none."""
    return fallback if value is None else value


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


# -- templates ----------------------------------------------------------------------------------

class LineContinuation(Extension):
    """A template line ending in a backslash goes on with the next one (the backslash, the line
    break and the next line's indentation are dropped), so that a paragraph, one line in the
    report, can be wrapped in its template."""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        return re.sub(r"\\\n[ \t]*", "", source)


TEMPLATES = Environment(loader=FileSystemLoader(BENCH / "templates"), undefined=StrictUndefined,
                        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                        extensions=[LineContinuation])
TEMPLATES.filters.update(fmt=format, f3=f3, fspan=fspan, pspan=pspan, plural=plural, duration=duration,
                         join_words=join_words, when=when, loads=loads, known=known)


def fill(template: str, **figures) -> str:
    """A section's text: its template filled with `figures`, without the last line's newline."""
    return TEMPLATES.get_template(template).render(**figures).removesuffix("\n")


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


def image_size(dataset: dict) -> dict:
    """What the templates' `size` macro needs: height, width and channels of an image, else the width."""
    shape = dataset.get("shape") or [dataset.get("dim")]
    if dataset.get("kind") == "image" and len(shape) == 3:
        channels, height, width = shape
        return {"image": True, "channels": channels, "height": height, "width": width}
    return {"image": False, "dim": dataset.get("dim")}


def dataset_by_label(results: dict, label: str) -> dict | None:
    return next((ds for ds in results.get("datasets", []) if ds["label"] == label), None)


# -- sections -----------------------------------------------------------------------------------

def setup_section(results: dict) -> str:
    machine, software = results.get("machine", {}), results.get("software", {})
    gpu, git, settings = machine.get("gpu") or {}, results.get("git") or {}, results.get("settings", {})
    reruns = []
    for rerun in results.get("reruns", []):
        # the bench is rerun on whatever machine a later session gets: its CPU, and so its timings, may differ
        other = rerun.get("machine")
        same = not other or (other.get("cpu"), other.get("cores")) == (machine.get("cpu"), machine.get("cores"))
        rerun_git = rerun.get("git") or {}
        reruns.append({"sections": rerun["sections"], "families": rerun.get("families"), "parts": rerun.get("parts"),
                       "command": rerun["command"],
                       "started": rerun.get("started"), "wall_s": rerun.get("wall_s"), "git": rerun_git.get("short"),
                       "dirty": rerun_git.get("dirty"), "load_start": rerun.get("load_start"),
                       "load_end": rerun.get("load_end"),
                       "machine": None if same else {k: other.get(k) for k in ("cpu", "cores", "ram_gib", "os")}})
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
    sections = results.get("sections")
    return fill(
        "setup.md.j2", command=results.get("command"), started=results.get("started"), wall_s=results.get("wall_s"),
        git=git.get("short") or git.get("commit"), dirty=git.get("dirty"), cpu=machine.get("cpu"),
        arch=machine.get("arch"), cores=machine.get("cores"), usable_cores=machine.get("usable_cores"),
        ram_gib=machine.get("ram_gib"), os=machine.get("os"), gpu_recorded=bool(gpu),
        cuda=bool(gpu.get("torch_cuda_available")), cuda_devices=gpu.get("torch_cuda_devices") or [],
        ort_providers=gpu.get("ort_providers"),
        train_devices=sorted({str(f.get("device")) for _, _, _, f in all_runs(results) if f.get("device")}),
        runtime_device=settings.get("runtime_device"),
        software=[(label, software[key]) for key, label in SOFTWARE if software.get(key)],
        load_start=machine.get("load_start"), load_end=machine.get("load_end"), seed=settings.get("seed"),
        threads=settings.get("threads"), epochs_override=settings.get("epochs_override"),
        quick=results.get("mode") == "quick",
        sections=sections if sections and set(sections) != set(ALL_SECTIONS) else None, reruns=reruns,
        families=table(["family", "description", "variant", "epochs", "settings"], rows, ["l", "l", "l", "r", "l"])
        if rows else "")


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
    comparisons = []
    for ds in datasets:
        complete = {m["name"]: (m, method_mean(ds, m)) for m in ds["methods"] if is_complete(ds, m)}
        best = {kind: max(((n, v) for n, (m, v) in complete.items() if m["kind"] == kind), key=lambda x: x[1],
                          default=None) for kind in ("model", "baseline", "peer")}
        model = best["model"]
        comparison = {"label": ds["label"], "n_classes": len(ds["classes"]), "any_method": bool(ds["methods"]),
                      "model": None, "baseline": None, "peer": None}
        if model:
            comparison["model"] = {"name": complete[model[0]][0].get("family", model[0]), "auroc": model[1]}
            for kind in ("baseline", "peer"):
                if best[kind]:
                    # the verdict compares the figures as printed
                    comparison[kind] = {"name": best[kind][0], "auroc": best[kind][1],
                                        "gap": round(model[1], 3) - round(best[kind][1], 3)}
        comparisons.append(comparison)
    completion = results.get("completion")
    rmse = None
    if completion:
        seed = str(completion.get("protocol_seed", 0))
        rmse = {"label": completion["label"], "seed": seed,
                "figures": [(m["name"], m["runs"][seed]["rmse"]) for m in ordered_methods(completion)
                            if seed in m["runs"]]}
    sampling = results.get("sampling")
    cli = None
    if sampling and sampling.get("families"):
        medians = [s["cli_median"] for s in sampling["families"].values()]
        cli = {"n": sampling["n"], "medians": medians, "import_torch": sampling["import_torch"],
               "ratios": [s / sampling["import_torch"] for s in medians]}
    n_failures = (sum(len(ds.get("failures", [])) for ds in datasets) + len(results.get("failures", []))
                  + len((completion or {}).get("failures", [])))
    return fill("headline.md.j2", auroc_table=table(["mean AUROC", *[ds["label"] for ds in datasets]], rows)
                if datasets else "", comparisons=comparisons, rmse=rmse, cli=cli, n_failures=n_failures)


def fit_cell(method: dict) -> str:
    """Mean seconds to fit one class's model ('-' when not recorded)."""
    seconds = list((method.get("fit_s") or {}).values())
    if not seconds:
        return "-"
    value = mean(seconds)
    return f"{value:.1f}" if value >= 0.1 else f"{value:.3f}"


def dataset_section(ds: dict) -> str:
    keys = class_keys(ds)
    normal = [ds["test_counts"][k] for k in keys if k in ds.get("test_counts", {})]
    rows = [[m["name"], *[f3(m["auroc"].get(k)) for k in keys], f"**{mean_cell(ds, m)}**", fit_cell(m)]
            for m in ds["methods"]]
    peers = []
    for name, peer in ds.get("peers", {}).items():
        params = peer.get("params", {})
        shown = [(k, params[k]) for k in PEER_PARAMS.get(peer["detector"].rsplit(".", 1)[-1], ()) if k in params]
        peers.append({"name": name, "detector": peer["detector"], "params": shown})
    seeded = [(m, over_seeds(ds, m)) for m in ds["methods"] if m["kind"] == "model"]
    seeded = [(m, s) for m, s in seeded if s is not None]
    seeds_table, best_fixed = "", None
    if seeded:
        seeds = sorted({seed for _, s in seeded for seed in s[3]}, key=int)
        seeds_table = table(["family", *[f"seed {seed}" for seed in seeds], "mean over seeds (min-max)"],
                            [[m["name"], *[f3(seed_means(ds, m).get(seed)) for seed in seeds],
                              f"**{f3(s[0])}** ({f3(s[1])}-{f3(s[2])})"] for m, s in seeded])
        fixed = [m for m in ds["methods"] if m["kind"] != "model" and is_complete(ds, m)]
        if fixed:
            best = max(fixed, key=lambda m: method_mean(ds, m))
            best_fixed = {"name": best["name"], "auroc": method_mean(ds, best)}
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
    contamination = sorted({r.get("contamination") for p in ds.get("runs", {}).values() for r in p.values()
                            if r.get("contamination") is not None})
    return fill(
        "dataset.md.j2", label=ds["label"], kind=ds.get("kind"), n=ds["n"], size=image_size(ds), n_test=ds["n_test"],
        normal=span(normal) if normal else None, families=ds["families"], seconds=ds.get("seconds"),
        auroc_table=table(["method", *keys, "mean", "fit s per class (mean)"], rows), peers=peers,
        peer_scaling=ds.get("peer_scaling"), n_classes=len(keys), seeds_table=seeds_table, best_fixed=best_fixed,
        agree_table=table(["family", "mean AUROC, trainer (run.json)", "mean AUROC, runtime bundle",
                           "max abs AUROC difference", "max abs torch-onnxruntime output difference at export"],
                          agree) if agree else "",
        cost_table=table(["family", "train s (mean)", "export s (mean)", "fit rows", "calibration rows",
                          "flagged share of normal test rows", "flagged share of anomalous test rows"], cost)
        if agree else "",
        contamination=contamination, failures=ds.get("failures", []))


def difficulty_note(results: dict) -> str:
    """Easiest and hardest classes per dataset, by the mean AUROC over the methods with a
    result for every class."""
    datasets = []
    for ds in results.get("datasets", []):
        keys = class_keys(ds)
        complete = [m for m in ds["methods"] if is_complete(ds, m)]
        if len(keys) < 3 or not complete:
            continue
        per_class = {k: mean(m["auroc"][k] for m in complete) for k in keys}
        order = sorted(keys, key=lambda k: per_class[k], reverse=True)
        datasets.append({"label": ds["label"], "easiest": [(k, per_class[k]) for k in order[:2]],
                         "hardest": (order[-1], per_class[order[-1]])})
    return fill("difficulty.md.j2", datasets=datasets) if datasets else ""


def gan_note(results: dict) -> str:
    families = results.get("families", {})
    discriminators = [n for n, f in families.items() if f.get("score_kind") == DISCRIMINATOR_SCORE]
    notes = []
    for name in discriminators:
        per_dataset, weaker_than_all_baselines, better = [], True, None
        for ds in results.get("datasets", []):
            method = next((m for m in ds["methods"] if m.get("family") == name), None)
            if not method or not method["auroc"]:
                continue
            values = list(method["auroc"].values())
            gan_mean = method_mean(ds, method)
            per_dataset.append({"label": ds["label"], "auroc": gan_mean, "complete": is_complete(ds, method),
                                "below": sum(v < CHANCE for v in values), "n_classes": len(values)})
            baselines = [method_mean(ds, m) for m in ds["methods"] if m["kind"] == "baseline" and m["auroc"]]
            if not baselines or gan_mean >= min(baselines):
                weaker_than_all_baselines = False
            others = {m["family"] for m in ds["methods"]
                      if m["kind"] == "model" and m.get("family") != name and m["auroc"]
                      and method_mean(ds, m) > gan_mean}
            better = others if better is None else better & others
        if per_dataset:
            notes.append(fill("gan_note.md.j2", name=name, score=DISCRIMINATOR_SCORE, chance=CHANCE,
                              below_every_baseline=weaker_than_all_baselines, datasets=per_dataset,
                              better=[n for n in families if n in (better or ())]))
    return "\n\n".join(notes)


def calibration_note(results: dict) -> str:
    runs = list(all_runs(results))
    if not runs:
        return ""
    rates = [f["flag_rate_normal"] for _, _, _, f in runs]
    worst = max((f["flag_rate_normal"], fam, k, ds["label"]) for ds, fam, k, f in runs)
    levels = sorted({f["contamination"] for _, _, _, f in runs if f.get("contamination") is not None})
    sizes = [(span([f["n_calibration"] for d, _, _, f in runs if d is ds]), ds["label"])
             for ds in results["datasets"] if ds.get("runs")]
    n_small = min(f["n_calibration"] for _, _, _, f in runs)
    expected = [f["expected_false_alarm_rate"] for _, _, _, f in runs if f.get("expected_false_alarm_rate") is not None]
    return fill("calibration.md.j2", rates=rates, mean_rate=mean(rates), levels=levels,
                worst={"rate": worst[0], "family": worst[1], "class": worst[2], "label": worst[3]}, sizes=sizes,
                n_small=n_small, exceed=1 / (n_small + 1), expected=expected)


def sampling_section(sampling: dict, targets: dict[str, Target] = TARGETS) -> str:
    n = sampling["n"]
    rows = []
    for family, s in sampling["families"].items():
        rows.append([family, f"{s['cli_median']:.3f} ({s['cli_min']:.3f}-{s['cli_max']:.3f})",
                     f"{s['cli_median'] / sampling['import_torch']:.2f}", f"{s['load_s'] * 1e3:.0f}",
                     f"{s['sample_median'] * 1e3:.2f}", "yes" if s["torch_imported"] else "no"])
    ratios = [s["cli_median"] / sampling["import_torch"] for s in sampling["families"].values()]
    cli = targets["sample_cli_vs_import_torch"]
    streamed = sampling.get("streamed")
    rss = targets["stream_peak_rss"]
    return fill(
        "sampling.md.j2", sampling=sampling, bundles_from=sampling.get("bundles_from"),
        table=table(["bundle", "`gen sample` wall s (min-max)", "ratio to `import torch`", "in-process load ms",
                     f"in-process sample({n}) ms", "torch imported by the CLI"], rows),
        cli_target=cli, cli_verdict=cli.judge(max(ratios)), streamed=streamed, rss_target=rss,
        rss_verdict=rss.judge(streamed["large"]["peak_rss_mib"]) if streamed else None)


def anchors_section(results: dict) -> str:
    mnist, digits = dataset_by_label(results, "MNIST-5k"), dataset_by_label(results, "sklearn digits")
    fits = [f["n_fit"] for per_class in (mnist or {}).get("runs", {}).values() for f in per_class.values()]
    return fill("anchors.md.j2", mnist=mnist, fits=span(fits) if fits else None, digits=digits,
                digits_size=image_size(digits) if digits else None)


# -- matrix completion ---------------------------------------------------------------------------

KIND_ORDER = {"model": 0, "peer": 1, "baseline": 2}


def ordered_methods(section: dict) -> list[dict]:
    """gen's models, then the other libraries' methods, then the baselines (stable within)."""
    return sorted(section.get("methods", []), key=lambda m: KIND_ORDER.get(m.get("kind"), 3))


def item_autorec(section: dict | None) -> dict | None:
    """The item-based AutoRec method of a completion section (the issue's target)."""
    if not section:
        return None
    return next((m for m in section.get("methods", []) if m.get("family") == "autorec"
                 and m.get("orientation") == "item"), None)


def best_completion(section: dict | None, targets: dict[str, Target] = TARGETS) -> dict | None:
    """The gen completion bundle with the lowest mean test RMSE over the section's seeds (only
    methods with a run on every seed), judged against the RMSE target and against the best
    surprise method's mean on the same seeds (or the one the target names)."""
    if not section:
        return None
    seeds = [str(s) for s in section.get("seeds", [])]
    means = {}
    for m in section.get("methods", []):
        if m.get("kind") in ("model", "peer") and seeds and all(s in m["runs"] for s in seeds):
            means[m["name"]] = (m, statistics.fmean(m["runs"][s]["rmse"] for s in seeds))
    ours = {k: v for k, v in means.items() if v[0]["kind"] == "model"}
    if not ours:
        return None
    name = min(ours, key=lambda k: ours[k][1])
    value = ours[name][1]
    out = {"name": name.replace(" (runtime bundle)", ""), "value": value, "n_seeds": len(seeds),
           "verdict": targets["completion_rmse"].judge(value), "peer": None}
    peers = {k: v for k, v in means.items() if v[0]["kind"] == "peer"}
    against = targets["completion_vs_peers"].against
    if against in peers:  # the target names one method; otherwise the best of them
        peers = {against: peers[against]}
    if peers:
        peer = min(peers, key=lambda k: peers[k][1])
        out["peer"] = {"name": peer, "value": peers[peer][1],
                       "verdict": targets["completion_vs_peers"].judge(value, peers[peer][1])}
    return out


def completion_section(section: dict | None) -> str:
    """MovieLens-100K: gen's completion bundles next to the baselines and surprise, from the figures."""
    if not section:
        return ""
    seed = str(section.get("protocol_seed", 0))
    seeds = [str(s) for s in section.get("seeds", [seed])]
    others = [s for s in seeds if s != seed]
    ratings = section.get("ratings") or []
    rows = []
    for m in ordered_methods(section):
        run = m["runs"].get(seed)
        spread = m.get("spread") or {}
        rows.append([m["name"], "-" if not run else f"{run['rmse']:.4f}", "-" if not run else f"{run['mae']:.4f}",
                     pm(spread.get("rmse")) if others else "-", pm(spread.get("mae")) if others else "-",
                     seconds_cell(run.get("fit_s")) if run else "-",
                     pm(spread.get("fit_s"), 1) if others else "-"])
    seeds_label = f"seeds {', '.join(seeds)}"
    settings = []  # gen's families, then surprise's methods, then a quick run's epochs
    for name, family in section.get("families", {}).items():
        config = family.get("config") or {}
        settings.append({"kind": "gen", "name": name, "default": family["epochs"] is None,
                         "epochs": family["epochs"] if family["epochs"] is not None else family.get("trained_epochs"),
                         "variants": [v for v in family.get("variants", {}).values() if v],
                         "config": [(k, v) for k, v in config.items() if k not in PER_RUN_SETTINGS]})
    settings += [{"kind": "peer", "name": m["name"],
                  "params": [(k, m["settings"][k]) for k in SURPRISE_PARAMS if k in m["settings"]
                             and (k not in NEIGHBOUR_PARAMS or "k" in m["settings"])],
                  "seeded": "random_state" in m["settings"]}
                 for m in ordered_methods(section) if m.get("kind") == "peer" and m.get("settings")]
    if section.get("surprise_epochs_override"):
        settings.append({"kind": "quick", "epochs": section["surprise_epochs_override"]})
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
    base = next((m for m in section.get("methods", []) if m["name"] == "user/item bias baseline"), None)
    checks = [r["trainer_rmse_bias_baseline"] - base["runs"][k]["rmse"]
              for m in section.get("methods", []) for k, r in m["runs"].items()
              if base and r.get("trainer_rmse_bias_baseline") is not None and k in base["runs"]]
    return fill(
        "completion.md.j2", section=section, seed=seed, seeds=seeds, others=others,
        split=section.get("splits", {}).get(seed) or {},
        ratings=span([int(r) if float(r).is_integer() else r for r in ratings]) if ratings else None,
        table=table(["method", f"RMSE, seed {seed} (protocol)", f"MAE, seed {seed}", f"RMSE, {seeds_label}",
                     f"MAE, {seeds_label}", f"fit s, seed {seed}", f"fit s, {seeds_label}"], rows),
        settings=settings,
        agree_table=table(["method", "RMSE, trainer (run.json)", "RMSE, runtime bundle", "max abs RMSE difference",
                           "max abs torch-onnxruntime output difference at export", "unseen test pairs",
                           "export s", "runtime complete + read s"], agree) if agree else "",
        bias_check=max(abs(c) for c in checks) if checks else None, skipped=section.get("skipped", []),
        failures=section.get("failures", []))


# -- targets ------------------------------------------------------------------------------------

def target_lines(results: dict, targets: dict[str, Target] = TARGETS) -> str:
    """The issue's targets, each met or missed, with the figures."""
    section = results.get("completion")
    autorec = item_autorec(section)
    rmse_target, svdpp_target = targets["autorec_rmse"], targets["autorec_vs_svdpp"]
    rmse = None
    if section and autorec:
        seed = str(section.get("protocol_seed", 0))
        run = autorec["runs"].get(seed)
        rmse = {"label": section["label"], "seed": seed, "value": run and run["rmse"], "svdpp": None}
        if run:
            rmse["verdict"] = rmse_target.judge(run["rmse"])
            svdpp = next((m for m in section["methods"] if m["name"] == svdpp_target.against), None)
            if svdpp and seed in svdpp["runs"]:
                other = svdpp["runs"][seed]["rmse"]
                a, b = (autorec.get("spread") or {}).get("rmse"), (svdpp.get("spread") or {}).get("rmse")
                rmse["svdpp"] = {"value": other, "verdict": svdpp_target.judge(run["rmse"], other),
                                 "means": (a["n"], a["mean"], b["mean"])
                                 if a and b and a.get("n", 1) > 1 and a.get("n") == b.get("n") else None}

    completion = best_completion(section, targets)

    mnist = dataset_by_label(results, "MNIST-5k")
    auroc_target, knn_target = targets["mnist_auroc"], targets["knn_wins"]
    models = {m["name"]: m for m in (mnist or {}).get("methods", []) if m["kind"] == "model" and is_complete(mnist, m)}
    auroc = None
    if mnist and models:
        best = max(models.values(), key=lambda m: method_mean(mnist, m))
        value = method_mean(mnist, best)
        auroc = {"family": best.get("family", best["name"]), "value": value, "verdict": auroc_target.judge(value),
                 "seeds": None, "knn": None}
        spread = {m["name"]: over_seeds(mnist, m) for m in models.values()}
        spread = {k: v for k, v in spread.items() if v is not None}
        if spread:
            name = max(spread, key=lambda k: spread[k][0])
            avg, low, high, seeds = spread[name]
            auroc["seeds"] = {"seeds": seeds, "family": models[name].get("family", name), "mean": avg, "low": low,
                              "high": high, "verdict": auroc_target.judge(avg)}
        knn = next((m for m in mnist["methods"] if m["name"] == knn_target.against), None)
        keys = class_keys(mnist)
        if knn and all(k in knn["auroc"] for k in keys):
            wins = [k for k in keys if best["auroc"][k] > knn["auroc"][k]]
            auroc["knn"] = {"mean": method_mean(mnist, knn), "wins": wins, "n_classes": len(keys),
                            "verdict": knn_target.judge(len(wins)) if len(keys) == knn_target.of else None}
    return fill("targets.md.j2", t=targets, skipped=(section or {}).get("skipped", []), rmse=rmse, completion=completion,
                auroc=auroc)


def time_lines(results: dict) -> str:
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
    return fill("times.md.j2", table=table(["method", "data", "figure", "fit s"], rows)) if rows else ""


def boltzmann_section(section: dict | None, targets: dict[str, Target] = TARGETS) -> str:
    """Likelihoods and speed of the Boltzmann machines (bench/boltzmann.py), from the figures."""
    if not section:
        return ""
    rows = []
    for name, m in section["models"].items():
        z = m.get("log_z")
        rows.append([f"gen {name}", m["variant"], str(m["epochs"]),
                     "-" if m.get("test_ll") is None else f"{m['test_ll']:.1f}",
                     "-" if m.get("train_ll") is None else f"{m['train_ll']:.1f}",
                     "-" if not z else f"{z['value']:.2f} ± {z['std']:.2f} ({z['method']})", f"{m['epoch_s']:.3f}"])
    for name, m in section["sklearn"].items():
        rows.append([f"scikit-learn BernoulliRBM, {name}",
                     f"{m['n_components']} hidden, batch {m['batch_size']}, lr {m['learning_rate']}",
                     str(m["n_iter"]), "-" if m.get("test_ll") is None else f"{m['test_ll']:.1f}",
                     "-" if m.get("train_ll") is None else f"{m['train_ll']:.1f}", "exact" if "test_ll" in m else "-",
                     f"{m['epoch_s']:.3f}"])
    gen20 = next((m for n, m in section["models"].items() if n.startswith("rbm-20")), None)
    sk20 = section["sklearn"].get("defaults")
    small = None
    if gen20 and sk20 and gen20.get("test_ll") is not None:
        small = {"test_ll": gen20["test_ll"], "sklearn_ll": sk20["test_ll"],
                 "verdict": targets["rbm20_test_ll"].judge(gen20["test_ll"]),
                 "speeds": [(key, section["sklearn"][key]["epoch_s"] / gen20["epoch_s"])
                            for key in ("defaults", "our batch and lr") if section["sklearn"].get(key)]}
    pcd = section["models"].get("rbm-500 (pcd)")
    sk500 = section["sklearn"].get("500 components, our batch and lr")
    large = None
    if pcd and pcd.get("test_ll") is not None:
        dbm = next((m for n, m in section["models"].items() if n.startswith("dbm")), None)
        large = {"test_ll": pcd["test_ll"], "verdict": targets["rbm500_pcd_test_ll"].judge(pcd["test_ll"]),
                 "dbm": dbm["test_ll"] if dbm and dbm.get("test_ll") is not None else None}
    speed = None
    if pcd and sk500:
        ratio = sk500["epoch_s"] / pcd["epoch_s"]
        speed = {"ratio": ratio, "verdict": targets["rbm500_speed_vs_sklearn"].judge(ratio)}
    ais_checks, log_z = [], []
    for name, m in section["models"].items():
        check, z = m.get("ais_check"), m.get("log_z")
        if check and z:
            ais_checks.append({"name": name, "log_z": z, "check": check, "shift": check["value"] - z["value"]})
    for name, m in section["models"].items():
        if m.get("log_z") is None and (m.get("options") or {}).get("log_z") == "ais":
            log_z.append({"name": name, "settled": False, "betas": (m.get("options") or {}).get("ais_betas")})
        elif m.get("log_z") and "converged:" in (m["log_z"].get("detail") or ""):
            detail = m["log_z"]["detail"]
            head = detail.split("), ", 1)[0] + (")" if "), " in detail else "")  # the schedules, not the chains
            log_z.append({"name": name, "settled": True, "detail": head})
    return fill(
        "boltzmann.md.j2", t=targets, section=section, samples_png=section.get("samples_png"),
        dbm_error=section.get("dbm_error"),
        table=table(["model", "variant / settings", "epochs", "test log-likelihood (nats)",
                     "train log-likelihood (first 1000 fit rows)", "log Z", "s per epoch"], rows) if rows else None,
        small=small, large=large, speed=speed, ais_checks=ais_checks, log_z=log_z,
        defaults=boltzmann_defaults(section.get("defaults"), targets))


def boltzmann_defaults(block: dict | None, targets: dict[str, Target] = TARGETS) -> dict | None:
    """The default commands' part of the Boltzmann section: a row per run, each model's mean
    over the seeds whose log Z was recorded, and the DBM-against-RBM verdict on the mean gap
    over the seeds where both were recorded."""
    if not block:
        return None
    rows, means = [], {}
    labels = {"rbm": "test log-likelihood", "dbm": "test lower bound"}
    for model, runs in block["models"].items():
        for r in runs:
            if r.get("error"):
                rows.append([f"`{r['command']}`", "-", "-", f"failed: {r['error'][:120]}", "-", "-", "-"])
                continue
            z = r.get("log_z")
            rows.append([f"`{r['command']}`", r["variant"], str(r["epochs"]),
                         "-" if r.get("test_ll") is None else f"{r['test_ll']:.1f} ({labels.get(model, '')})",
                         "-" if r.get("train_ll") is None else f"{r['train_ll']:.1f}",
                         "not recorded (did not settle)" if not z else f"{z['value']:.2f} ± {z['std']:.2f}",
                         f"{r['train_s']:.0f}"])
        recorded = [r["test_ll"] for r in runs if r.get("test_ll") is not None]
        means[model] = {"mean": statistics.fmean(recorded) if recorded else None,
                        "std": statistics.pstdev(recorded) if len(recorded) > 1 else 0.0,
                        "recorded": len(recorded), "runs": len(runs),
                        "details": [(r["seed"], (r.get("log_z") or {}).get("detail"),
                                     r.get("refused") or ([f"the run failed ({r['error']})"] if r.get("error") else []))
                                    for r in runs]}
    verdict = None
    by_seed = {model: {r["seed"]: r["test_ll"] for r in runs if r.get("test_ll") is not None}
               for model, runs in block["models"].items()}
    paired = sorted(set(by_seed.get("rbm", {})) & set(by_seed.get("dbm", {})))
    if paired:  # judged on the seeds where both models have a recorded log Z
        gap = statistics.fmean(by_seed["dbm"][s] - by_seed["rbm"][s] for s in paired)
        verdict = {"gap": gap, "verdict": targets["dbm_bound_vs_rbm"].judge(gap), "seeds": paired,
                   "of": len(block.get("seeds") or paired)}
    return {"table": table(["command", "variant", "epochs", "test (nats)", "train (first 1000 fit rows)",
                            "log Z (AIS)", "train s (incl. AIS)"], rows),
            "means": means, "verdict": verdict, "seeds": block.get("seeds"), "side_by_side": block.get("side_by_side", 1)}


def _mode_means(runs: list[dict], key: str) -> tuple[float, float]:
    return (statistics.fmean(r[key]["modes"] for r in runs), statistics.fmean(r[key]["high_quality"] for r in runs))


def mode_targets(section: dict, targets: dict[str, Target] = TARGETS) -> list[dict]:
    """Per point set, the family that comes closest to the mode-collapse targets on the seed
    mean with plain sampling (the targets are for plain sampling), judged against them; beside
    it, the closest of any sampling mode (`--refine drs|mh` included)."""

    def closest(data: str, keys) -> tuple | None:
        modes, share = targets[f"{data}_modes"], targets[f"{data}_high_quality"]
        best = None
        for name, record in section["families"].items():
            runs = record["data"].get(data, {}).get("runs", [])
            for key, label in keys:
                if runs and all(key in r for r in runs):
                    m, q = _mode_means(runs, key)
                    reached, quality = modes.judge(m), share.judge(q)
                    rank = (reached.met and quality.met, q if reached.met else -1, m)
                    if best is None or rank > best[0]:
                        best = (rank, name, label, m, q, len(runs), reached, quality)
        return best

    out = []
    for data, (title, _) in POINT_SETS.items():
        plain, best = closest(data, REFINE_LABELS[:1]), closest(data, REFINE_LABELS)
        if plain is None:
            continue
        _, name, label, m, q, n, reached, quality = plain
        out.append({"title": title, "modes": targets[f"{data}_modes"], "share": targets[f"{data}_high_quality"],
                    "family": name, "refine": label, "mean_modes": m, "high_quality": q, "n_seeds": n,
                    "reached": reached, "quality": quality,
                    "any": {"family": best[1], "refine": best[2], "mean_modes": best[3], "high_quality": best[4],
                            "met": best[6].met and best[7].met},
                    "anchor": ANCHORS["mode_collapse"]["PacGAN4 (published)"][data]})
    return out


def _gan_families(section: dict | None) -> set[str]:
    """Families that ran in the GAN section (mode coverage or image quality)."""
    section = section or {}
    names = set((section.get("modes") or {}).get("families", {}))
    for block in ((section.get("images") or {}).get("datasets") or {}).values():
        names |= set(block.get("families", {}))
    return names


def gans_section(section: dict | None, targets: dict[str, Target] = TARGETS) -> str:
    """Mode collapse and image sample quality of the GAN families (bench/gans.py)."""
    if not section:
        return ""
    modes = section.get("modes")
    point_sets = []
    if modes and modes.get("families"):
        for data, (title, n_centres) in POINT_SETS.items():
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
            for anchor, figures in ANCHORS["mode_collapse"].items():
                rows.append([anchor, f"{figures[data]['modes']}/{n_centres}", "-", "-",
                             f"{figures[data]['high_quality']:.1%}", "-", "-", "-"])
            point_sets.append({"title": title, "table": table(["family", "modes plain", "modes DRS", "modes MH",
                                                               "HQ plain", "HQ DRS", "HQ MH", "train s"], rows)})
    images = []
    for label, ds in ((section.get("images") or {}).get("datasets") or {}).items():
        floor = ds["floor"]
        rows = [["real training rows (floor)", f"{floor['frechet']:.2f}", "-", "-",
                 f"{floor['classes_found']}", "-", "-", f"{floor['kl_from_uniform']:.3f}", "-"]]
        for name, r in ds["families"].items():
            rows.append([name, *(f"{r[k]['frechet']:.2f}" for k, _ in REFINE_LABELS),
                         *(str(r[k]["classes_found"]) for k, _ in REFINE_LABELS),
                         f"{r['plain']['kl_from_uniform']:.3f}", f"{r['train_s']:.0f}"])
        info = ds["families"].get("infogan", {}).get("infogan")
        infogan = None
        if info:
            seeds = info.get("seeds") or [{"seed": 0, "accuracy": info["accuracy"]}]
            accuracy = statistics.fmean(r["accuracy"] for r in seeds)
            infogan = {**info, "seeds": [r["seed"] for r in seeds], "accuracies": [r["accuracy"] for r in seeds],
                       "mean": accuracy,
                       "verdict": targets["infogan_accuracy"].judge(accuracy) if label == "mnist" else None}
        images.append({"name": "sklearn digits" if label == "digits" else "MNIST-5k", "data": ds, "infogan": infogan,
                       "table": table(["family", "Frechet plain", "Frechet DRS", "Frechet MH", "classes plain",
                                       "classes DRS", "classes MH", "KL plain", "train s"], rows)})
    if point_sets:  # the epochs a default-command run trained (its budget follows the data)
        modes = {**modes, "families": {n: {**r, "trained": sorted({str(run["trained_epochs"]) for d in r["data"].values()
                                                                   for run in d["runs"] if run.get("trained_epochs")}),
                                           "kept": [f"{run['kept_epoch']} ({name} seed {run['seed']})"
                                                    for name, d in r["data"].items() for run in d["runs"]
                                                    if run.get("kept_epoch")]}
                                       for n, r in modes["families"].items()}}
    return fill("gans.md.j2", t=targets, modes=modes if point_sets else None, point_sets=point_sets,
                mode_targets=mode_targets(modes, targets) if point_sets else [],
                skipped=sorted(_gan_families(section) - set(modes["families"])) if point_sets else [],
                images=section.get("images") if images else None, image_sets=images,
                infogan_paper=ANCHORS["infogan_mnist_accuracy"])


DEFAULT_COMMAND = "gen (default command)"  # the tabular section's row of `gen train` without --model


def tabular_section(section: dict | None) -> str:
    """One-class detection on real tables: the default command against the peers, three seeds
    (bench/tabular.py). Cells: mean AUROC and min-max over the seeds; best per dataset in bold."""
    if not section:
        return ""
    sets = section["datasets"]
    methods = list(dict.fromkeys(m for d in sets for m in d["auroc"]))
    peers = list(section["peers"])

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
        if DEFAULT_COMMAND in means:
            if means[DEFAULT_COMMAND] >= best_peer[0] - 1e-12:
                wins += 1
            else:
                misses.append({"name": d["name"], "auroc": means[DEFAULT_COMMAND], "peer": best_peer[1],
                               "peer_auroc": best_peer[0], "short": best_peer[0] - means[DEFAULT_COMMAND]})
    avg = {m: sum(sum(d["auroc"][m]) / len(d["auroc"][m]) for d in sets) / len(sets)
           for m in methods if all(m in d["auroc"] for d in sets)}
    rows.append(["**mean over the sets**", *[f"{avg[m]:.3f}" if m in avg else "-" for m in methods]])
    seconds = sorted(s for d in sets for s in d["seconds"].get(DEFAULT_COMMAND, []))
    return fill(
        "tabular.md.j2", section=section, sets=sets, peers=peers,
        resolved=next((d["resolved"].get(DEFAULT_COMMAND) for d in sets if d["resolved"].get(DEFAULT_COMMAND)), None),
        table=table(["dataset (rows x features)", *methods], rows, ["l"] + ["r"] * len(methods)), wins=wins,
        misses=misses, default_mean=avg.get(DEFAULT_COMMAND), peer_means=[(p, avg[p]) for p in peers if p in avg],
        seconds={"low": seconds[0], "high": seconds[-1], "median": seconds[len(seconds) // 2]} if seconds else None)


def pipelines_section(section: dict | None) -> str:
    """Scoring a partitioned dataset: rows/s and memory per configuration (bench/pipelines.py)."""
    if not section:
        return ""
    configs = section["configs"]
    base = next((c for c in configs if c["name"].startswith("single file")), None)
    rows = []
    for c in configs:
        ratio = f"{c['rows_per_s'] / base['rows_per_s']:.2f}x" if base else "-"
        worker = f"{c['worker_peak_rss_mib']:.0f}" if c.get("worker_peak_rss_mib") is not None else "-"
        rows.append([c["name"], f"{c['rows']:,}", f"{c['wall_s']:.1f}", f"{c['rows_per_s']:,.0f}", ratio,
                     f"{c['peak_rss_mib']:.0f}", worker])
    return fill("pipelines.md.j2", section=section,
                table=table(["configuration", "rows", "wall s", "rows/s", "vs one file", "peak RSS MiB",
                             "per worker MiB"], rows, ["l", "r", "r", "r", "r", "r", "r"]))


def scale_section(section: dict | None, targets: dict[str, Target] = TARGETS) -> str:
    """Training at scale: streamed memory, processes, Ray Train (bench/scale.py)."""
    if not section:
        return ""
    memory, procs = section["memory"], section["processes"]
    peak = {c["name"]: c["peak_rss_mib"] * 2 ** 20 for c in memory["configs"]}  # bytes
    streamed = next(c for c in memory["configs"] if c["name"].startswith("streamed"))
    in_memory = next(c for c in memory["configs"] if c["name"].startswith("in memory"))
    mem_rows = [[c["name"], f"{c['n_fit']:,}", ", ".join(f"{p:.0f}" for p in c.get("peaks_mib", [c["peak_rss_mib"]])),
                 f"{peak[c['name']] / 1e6:.0f}", f"{c['wall_s']:.1f}",
                 f"`{c['command']}`"] for c in memory["configs"]]
    quality = procs["quality"]
    q_rows = [[q["name"], ", ".join(str(s) for s in q["seeds"]), ", ".join(f"{a:.4f}" for a in q["auroc"]),
               f"{q['mean']:.4f}" + (f" +/- {q['std']:.4f}" if q["std"] is not None else ""),
               f"{sum(q['wall_s']) / len(q['wall_s']):.0f}"] for q in quality]
    by_name = {q["name"]: q for q in quality}
    within = []
    for q in quality:
        base = by_name.get(q.get("against"))
        if base is not None:
            spread = max(base["std"] or 0.0, q["std"] or 0.0)
            within.append({"name": q["name"], "against": base["name"], "gap": q["mean"] - base["mean"],
                           "spread": spread, "sigmas": abs(q["mean"] - base["mean"]) / max(spread, 1e-9)})
    runs = {(s["batch_size"], s["processes"]): s for s in procs["speed"]}
    speed_rows, speedups = [], []
    for batch in sorted({b for b, _ in runs}):
        one_proc, two = runs.get((batch, 1)), runs.get((batch, 2))
        if one_proc and two:
            speed_rows.append([f"{batch}", f"{one_proc['epochs']}", f"{one_proc['fit_seconds']:.1f}",
                               f"{two['fit_seconds']:.1f}", f"{one_proc['fit_seconds'] / two['fit_seconds']:.2f}x",
                               f"{one_proc['wall_s']:.1f}", f"{two['wall_s']:.1f}",
                               f"{one_proc['wall_s'] / two['wall_s']:.2f}x"])
            speedups.append(one_proc["fit_seconds"] / two["fit_seconds"])
    return fill("scale.md.j2", section=section, memory=memory, procs=procs, t=targets,
                verdict=targets["stream_train_peak_rss"].judge(peak[streamed["name"]]),
                streamed_bytes=peak[streamed["name"]], in_memory_bytes=peak[in_memory["name"]], within=within,
                repeats=len(streamed.get("peaks_mib", [streamed["peak_rss_mib"]])),
                n_fit=procs["speed"][0]["n_fit"], best_speedup=max(speedups) if speedups else None,
                speed_table=table(["batch size", "epochs", "fit s, 1 process", "fit s, 2", "speed-up", "wall s, 1",
                                   "wall s, 2", "speed-up"], speed_rows),
                memory_table=table(["training data", "fitting rows", "peak RSS MiB, each run", "MB, the highest", "wall s",
                                    "command"],
                                   mem_rows, ["l", "r", "r", "r", "r", "l"]),
                quality_table=table(["configuration", "seeds", "test AUROC", "mean", "s per run"], q_rows,
                                    ["l", "l", "l", "r", "r"]))


def serving_section(section: dict | None) -> str:
    """The load test of `gen serve` (bench/serving.py)."""
    if not section:
        return ""
    rows = [[c["name"], f"{c['requests']:,}", f"{c['requests_per_s']:,.0f}", f"{c['rows_per_s']:,.0f}",
             f"{c['p50_ms']:.2f}", f"{c['p99_ms']:.2f}"] for c in section["configs"]]
    batched = next((c for c in section["configs"] if "adaptive" in c["name"]), None)
    plain = next((c for c in section["configs"] if "no batching" in c["name"]), None)
    return fill("serving.md.j2", section=section,
                gain={"ratio": batched["rows_per_s"] / plain["rows_per_s"], "batched_p99": batched["p99_ms"],
                      "plain_p99": plain["p99_ms"]} if batched and plain else None,
                table=table(["configuration", "requests", "requests/s", "rows/s", "p50 ms", "p99 ms"], rows,
                            ["l", "r", "r", "r", "r", "r"]))


# -- runtime performance ------------------------------------------------------------------------

PERF_NAMES = {"gen": "gen public API (`model.score`)", "gen-uint8": "gen, uint8 rows",
              "gen-int8": "gen, `--quantize int8` bundle", "gen-fp16": "gen, `--precision fp16` bundle",
              "ort-plain": "onnxruntime alone (`session.run`)",
              "ort-bound": "onnxruntime, IOBinding bound per batch", "ort-prealloc":
              "onnxruntime, device buffers allocated once, refilled in place",
              "ort-cuda-graph": "the same under a CUDA graph",
              "ort-on-device": "onnxruntime, input already on the device (compute only)",
              "torch-eager": "torch eager, same weights", "torch-compile": "torch.compile, same weights"}
REPEATED_BATCHES = (1, 4096)  # the batches bench/performance.py measures in alternating processes
SESSION_BATCHES = (1, 4096)  # the batches of its session-options table


def _rate(alts: dict, mode: str, batch: int) -> float | None:
    # batch keys are ints in memory and strings once the results went through JSON
    v = alts.get(mode)
    v = v.get(batch, v.get(str(batch))) if isinstance(v, dict) else None
    return v["rows_per_s"] if isinstance(v, dict) else None


def _speed_table(alts: dict, batches: list[int]) -> str:
    """rows/s per batch size of each alternative, and gen over torch eager."""
    header = ["batch", *(PERF_NAMES[m] for m in alts), "gen / torch eager"]
    rows = []
    for b in batches:
        g, t = _rate(alts, "gen", b), _rate(alts, "torch-eager", b)
        rows.append([f"{b:,}", *(f"{r:,.0f}" if (r := _rate(alts, m, b)) is not None else "did not run" for m in alts),
                     f"{g / t:.2f}x" if g is not None and t is not None else "-"])
    return table(header, rows, ["r"] * len(header))


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


def perf_targets(section: dict, targets: dict[str, Target] = TARGETS) -> dict:
    """Each CPU target of issue 11 with the run's figure and its verdict."""
    alts = section["alternatives"]
    out = dict.fromkeys(("batch1", "sgemm", "int8", "file_path", "file", "cold_start"))
    batch1 = targets["batch1_vs_torch"]
    spread = _ratio_spread(section.get("repeats"), batch1.batch)
    g1, t1 = _rate(alts, "gen", batch1.batch), _rate(alts, "torch-eager", batch1.batch)
    ratio = spread[0] if spread else g1 / t1 if g1 and t1 else None
    if ratio is not None:
        out["batch1"] = {"ratio": ratio, "spread": spread, "verdict": batch1.judge(ratio)}
    sgemm = targets["float32_sgemm_share"]
    g = _rate(alts, "gen", sgemm.batch)
    if g:
        share = section["flops_per_row"] * g / 1e9 / section["sgemm_gflops"]
        out["sgemm"] = {"share": share, "verdict": sgemm.judge(share)}
    speed, change_target = targets["int8_vs_torch"], targets["int8_auroc_change"]
    q, t = _rate(alts, "gen-int8", speed.batch), _rate(alts, "torch-eager", speed.batch)
    torch_runs = ((section.get("repeats") or {}).get("torch-eager") or {})
    torch_runs = [*torch_runs.get(speed.batch, torch_runs.get(str(speed.batch), [])), *([t] if t else [])]
    if torch_runs:  # the int8 ratio against torch eager's median over every process that measured it
        t = statistics.median(torch_runs)
    quant = section.get("quantization") or {}
    if q and t:
        out["int8"] = {"ratio": q / t, "torch": t, "torch_runs": len(torch_runs), "change": None}
        if quant.get("auroc_float") is not None and quant.get("auroc_quantized") is not None:
            change = round(quant["auroc_quantized"] - quant["auroc_float"], 4) + 0.0
            out["int8"].update(change=change, met=speed.judge(q / t).met and change_target.judge(abs(change)).met)
    fp = section.get("file_path")
    if fp and fp["rates"].get("pipelined") and fp["rates"].get("in-process"):
        ratio = statistics.median(fp["rates"]["pipelined"]) / statistics.median(fp["rates"]["in-process"])
        out["file_path"] = {"ratio": ratio, "verdict": targets["file_vs_api"].judge(ratio)}
    rate, rss = targets["file_rows_per_s"], targets["file_peak_rss"]
    big = section["gen_score_files"].get(rate.rows) or section["gen_score_files"].get(str(rate.rows))
    if big:
        out["file"] = {**big, "met": rate.judge(big["rows_per_s"]).met and rss.judge(big["peak_rss_mib"]).met}
    c = section.get("cold_start")
    if c:
        ratio = c["gen_sample_64_s"] / c["import_torch_s"]
        out["cold_start"] = {"ratio": ratio, "verdict": targets["cold_start_vs_import_torch"].judge(ratio)}
    return out


def performance_section(section: dict | None, targets: dict[str, Target] = TARGETS) -> str:
    """The runtime against torch on the same weights (bench/performance.py)."""
    if not section:
        return ""
    alts = section["alternatives"]
    spreads = [(b, _ratio_spread(section.get("repeats"), b)) for b in REPEATED_BATCHES]
    opts = section.get("session_options")
    if opts and "error" not in opts:
        opts = {**opts, "table": table(["session options", *(f"batch {b:,}" for b in SESSION_BATCHES)],
                                       [[name, *(f"{v.get(b, v.get(str(b))):,.0f}" for b in SESSION_BATCHES)]
                                        for name, v in opts["rows_per_s"].items()], ["l", "r", "r"])}
    else:
        opts = None
    best = max((v["rows_per_s"] for v in alts.get("gen", {}).values() if isinstance(v, dict) and "rows_per_s" in v),
               default=None)
    fp, install, cuda = section.get("file_path"), section.get("runtime_install"), section.get("cuda")
    return fill(
        "performance.md.j2", t=targets, section=section,
        speed_table=_speed_table(alts, section["batches"]),
        errors=[(PERF_NAMES[m], v["error"]) for m, v in alts.items() if isinstance(v, dict) and "error" in v],
        spreads=spreads if all(sp for _, sp in spreads) else None, session_options=opts,
        costs=[(label, section[key]) for key, label in (("quantization", "int8"), ("fp16", "fp16")) if section.get(key)],
        achieved=section["flops_per_row"] * best / 1e9 if best else None,
        files=[(int(str(n).split("-")[0]), f) for n, f in section["gen_score_files"].items()],
        file_path={**fp, "median": {mode: statistics.median(v) for mode, v in fp["rates"].items() if v},
                   "runs": len(fp["rates"].get("pipelined") or [])} if fp else None,
        csv_path={**section["csv_path"], "median": {mode: statistics.median(v) for mode, v in
                                                   section["csv_path"]["rates"].items() if v},
                  "runs": len(section["csv_path"]["rates"].get("pyarrow") or [])} if section.get("csv_path") else None,
        install=install if install and "error" not in install else None,
        verdicts=perf_targets(section, targets), cuda=cuda_section(cuda, section["batches"], targets) if cuda else "")


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
CUDA_RERUN_MODES = ("gen", "gen-uint8", "gen:staging=0", "torch-eager")  # shown for the other machines
ROW_BYTES = 3136  # an MNIST row of float32
CHUNK_ROWS = 4096  # `gen score --chunk-rows` where a record has none


def cuda_section(cuda: dict, batches: list[int], targets: dict[str, Target] = TARGETS) -> str:
    """The GPU rows (bench/gpu_perf.py, one device call): gen against onnxruntime and torch on the
    same weights, the staging's ablations, files, and issue 27's targets."""
    alts, facts = cuda["alternatives"], cuda.get("machine", {})
    rate_target, ratio_target = targets["cuda_rows_per_s"], targets["cuda_vs_torch"]
    main = [m for m in CUDA_MAIN if m in alts]
    rows = []
    for b in batches:
        g, t = _rate(alts, "gen", b), _rate(alts, "torch-eager", b)
        rows.append([f"{b:,}", *(f"{r:,.0f}" if (r := _rate(alts, m, b)) else "did not run" for m in main),
                     f"{g / t:.2f}x" if g and t else "-"])
    ablations = [m for m in CUDA_ABLATIONS if m in alts]
    reruns = []
    for again in cuda.get("reruns", [])[:4]:  # the template names them second to fifth
        ra = again["alternatives"]
        reruns.append({
            "copy_8_threads": again.get("machine", {}).get("host_gb_per_s", {}).get("copy_8_threads", 0),
            "rates": [(CUDA_MAIN.get(m, m), [r for b in rate_target.batches if b in batches and (r := _rate(ra, m, b))])
                      for m in CUDA_RERUN_MODES if m in ra],
            "files": [{**f, "chunk_rows": f.get("chunk_rows", CHUNK_ROWS)} for f in again.get("files", {}).values()]})

    def met(g: float, t: float) -> bool:
        return rate_target.judge(g).met and ratio_target.judge(g / t).met
    api = []
    for b in rate_target.batches:
        g, t = _rate(alts, "gen", b), _rate(alts, "torch-eager", b)
        if not (g and t):
            continue
        others = [(og, ot) for r in cuda.get("reruns", [])
                  if (og := _rate(r["alternatives"], "gen", b)) and (ot := _rate(r["alternatives"], "torch-eager", b))]
        # what the other paths of the same run reached at that size, to say why a batch misses
        staged, bound, ceiling = (_rate(alts, m, b) for m in ("gen:MIN_STAGED_BYTES=4194304", "ort-bound",
                                                               "ort-on-device"))
        api.append({"batch": b, "rate": g, "ratio": g / t, "others": others, "rate_verdict": rate_target.judge(g),
                    "ratio_verdict": ratio_target.judge(g / t), "machines": 1 + len(others),
                    "hits": sum(met(*pair) for pair in [(g, t), *others]),
                    "why": {"megabytes": b * ROW_BYTES / 1e6, "staged": staged, "bound": bound, "ceiling": ceiling}
                    if staged and bound and ceiling else None})
    uint8_target = targets["cuda_uint8_rows_per_s"]
    uint8 = [{"batch": b, "rate": u, "verdict": uint8_target.judge(u)} for b in uint8_target.batches
             if (u := _rate(alts, "gen-uint8", b))]
    best = max(cuda.get("files", {}).values(), key=lambda f: f["rows_per_s"], default=None)
    link = facts.get("link_gb_per_s")
    return fill(
        "cuda.md.j2", t=targets, cuda=cuda, facts=facts, measured=cuda.get("measured", {}),
        link=link if isinstance(link, dict) else None,
        table=table(["batch", *(CUDA_MAIN[m] for m in main), "gen / torch eager"], rows, ["r"] * (len(main) + 2)),
        errors=[(m, v["error"]) for m, v in alts.items() if isinstance(v, dict) and "error" in v],
        ablations=table(["gen setting", *(f"batch {b:,}" for b in batches)],
                        [[CUDA_ABLATIONS[m], *(f"{r:,.0f}" if (r := _rate(alts, m, b)) else "-" for b in batches)]
                         for m in ablations], ["l"] + ["r"] * len(batches)) if len(ablations) > 2 else "",
        small=cuda.get("small_calls") if (cuda.get("small_calls") or {}).get("batches") else None, reruns=reruns,
        files=[(int(key.split("-")[0]), {**f, "chunk_rows": f.get("chunk_rows", CHUNK_ROWS)})
               for key, f in cuda.get("files", {}).items()], api=api, uint8=uint8,
        best_file={**best, "verdict": targets["cuda_file_rows_per_s"].judge(best["rows_per_s"])} if best else None)


def render(results: dict, targets: dict[str, Target] | None = None) -> str:
    """The whole BENCHMARKS.md text, from a results dict of bench/run.py (judged against the
    targets of bench/targets.yaml unless `targets` replaces them)."""
    targets = TARGETS if targets is None else targets
    sampling = results.get("sampling")
    completion = results.get("completion")
    return fill(
        "report.md.j2", results=results, reruns=bool(results.get("reruns")), completion=completion,
        seeds=(completion or {}).get("seeds", []), pca=results.get("settings", {}).get("pca_components", 16),
        setup=setup_section(results), headline=headline(results), targets=target_lines(results, targets),
        times=time_lines(results), datasets=[dataset_section(ds) for ds in results.get("datasets", [])],
        notes=[*results.get("notes", []), difficulty_note(results), gan_note(results), calibration_note(results)],
        sections=[sampling_section(sampling, targets) if sampling and sampling.get("families") else "",
                  tabular_section(results.get("tabular")), completion_section(completion),
                  boltzmann_section(results.get("boltzmann"), targets), gans_section(results.get("gans"), targets),
                  pipelines_section(results.get("pipelines")), scale_section(results.get("scale"), targets),
                  serving_section(results.get("serving")),
                  performance_section(results.get("performance"), targets)],
        failures=results.get("failures", []), anchors=anchors_section(results)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render BENCHMARKS.md from a bench/run.py results file.")
    parser.add_argument("results", type=Path, nargs="?", default=BENCH / "results.json",
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
