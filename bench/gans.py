"""The GAN families for bench/run.py (section `gans`): DESIGN.md's mode-collapse and
image sample-quality protocols, measured on the bundles the torch-free runtime serves.

- Mode collapse: every GAN family that trains on 2-D points, on ring-8 and grid-25, for each
  of the seeds (default 0, 1, 2; the seed drives the data draw, the split, initialisation,
  batches and the sampling): 2,500 samples from the bundle, plain and with `--refine drs` and
  `--refine mh`; modes captured and the share of high-quality samples (within 3 std of a
  centre), and the training time.
- Image sample quality, on sklearn digits and MNIST-5k (DESIGN.md's 80/20 split, all
  classes): 1,000 samples per family (plain, drs, mh); Frechet distance to the real test rows
  in the hidden layer of a small classifier trained on the real training split (the real
  training rows' distance is the floor), the classes that classifier finds among the samples
  (a class counts once it gets 10% of its uniform share, so stray misclassifications of a
  collapsed generator do not count) and the KL of their histogram from uniform.
- InfoGAN: its categorical code as a classifier. Each category is mapped to the majority label
  of the training rows the bundle's encoder (the Q head) puts in it; accuracy on the test rows.

Settings per family and dataset are the table below (the bench's, recorded with the figures).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

SEEDS = (0, 1, 2)
MODE_SAMPLES = 2500
IMAGE_SAMPLES = 1000
REFINES = (None, "drs", "mh")
PARTS = ("modes", "images")  # the mode-collapse protocol on points, the image protocols
CLASS_SHARE = 0.1  # a class is found when it gets this share of n / n_classes samples

# (epochs, options) per family for the 2-D mixtures; families missing here do not train on points.
# Every family runs its default command: `gen train --model NAME --data ring8|grid25 --seed S`.
POINTS = {name: (None, {}) for name in ("gan", "wgan", "wgan-gp", "infogan", "veegan", "adagan")}
# (epochs, options) per family and image dataset.
IMAGES = {
    "digits": {
        "gan": (300, {}), "dcgan": (150, {}), "wgan": (300, {}), "wgan-gp": (150, {}),
        "infogan": (None, {}), "veegan": (300, {}), "adagan": (100, {"components": 3}),
    },
    "mnist": {
        "gan": (60, {}), "dcgan": (25, {}), "wgan": (40, {}), "wgan-gp": (25, {}),
        "infogan": (None, {}), "veegan": (60, {}), "adagan": (20, {"components": 3}),
    },
}
# None: the family's default command (`gen train --model NAME --data D --seed S`, its own budget).
# InfoGAN's code-as-classifier accuracy varies with the seed: besides seed 0 (whose bundle the
# quality table uses) these seeds train once more each, for the accuracy's mean and range.
INFOGAN_SEEDS = {"digits": (1, 2), "mnist": (1, 2)}


def _log(message: str) -> None:
    import sys

    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def train_export(model: str, data: str, epochs: int, options: dict, seed: int, threads: int, workdir: Path,
                 tag: str):
    """Train and export one run; (bundle loaded on the CPU, facts about the run)."""
    from gen.exporters import export_run
    from gen.runtime import load
    from gen.trainer.config import TrainConfig
    from gen.trainer.train import train

    cfg = TrainConfig.make(model=model, data=data, epochs=epochs, seed=seed, device="cpu", quiet=True,
                           threads=threads, out=str(workdir / "runs" / tag), **options)
    start = time.perf_counter()
    run = train(cfg)
    seconds = time.perf_counter() - start
    manifest = export_run(run, workdir / "bundles" / tag)
    info = json.loads((run / "run.json").read_text())
    stopping = info["metrics"].get("stopping") or {}
    return load(workdir / "bundles" / tag, device="cpu"), {
        "variant": info["variant"], "train_s": seconds, "epochs": epochs, "trained_epochs": info["metrics"]["epochs"],
        # the epoch a held-out check chose (a default-command gan on points), else None
        "kept_epoch": stopping.get("kept_epoch") if "best_val_score" in stopping else None,
        "discriminator_accuracy": manifest.refine.accuracy if manifest.refine else None,
        "max_parity": float(manifest.parity.max_abs_diff),
    }


def draw(model, n: int, seed: int, refine: str | None) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    x = model.sample(n, seed=seed, **({"refine": refine} if refine else {}))
    return x, time.perf_counter() - start


def modes_benchmark(families: list[str], seeds: tuple[int, ...], threads: int, workdir: Path,
                    quick: bool = False) -> dict:
    from gen.trainer.protocols.modes import grid25_coverage, ring8_coverage

    coverage = {"ring8": ring8_coverage, "grid25": grid25_coverage}
    out: dict = {"seeds": list(seeds), "n_samples": MODE_SAMPLES, "families": {}}
    for name in families:
        if name not in POINTS:
            continue
        epochs, options = POINTS[name]
        epochs = quick_epochs(epochs) if quick else epochs
        record = out["families"][name] = {"epochs": epochs, "options": options, "data": {}}
        for data in ("ring8", "grid25"):
            runs = []
            for seed in seeds:
                model, facts = train_export(name, data, epochs, options, seed, threads, workdir,
                                            f"{name}-{data}-{seed}")
                figures = {}
                for refine in REFINES:
                    x, seconds = draw(model, MODE_SAMPLES, seed, refine)
                    c = coverage[data](x.reshape(len(x), -1))
                    figures[refine or "plain"] = {"modes": c["modes"], "high_quality": c["high_quality"],
                                                  "sample_s": seconds}
                runs.append({"seed": seed, **facts, **figures})
                _log(f"modes {name} {data} seed {seed}: " + ", ".join(
                    f"{k} {figures[k]['modes']}/{c['n_modes']} {figures[k]['high_quality']:.1%}" for k in figures)
                    + f" ({facts['train_s']:.0f} s)")
            record["data"][data] = {"n_modes": 8 if data == "ring8" else 25, "runs": runs}
            record["variant"] = runs[0]["variant"]
    return out


def _classifier(x_train: np.ndarray, y_train: np.ndarray, scale: float):
    from gen.trainer.protocols.sample_quality import fit_feature_classifier

    return fit_feature_classifier(x_train.reshape(len(x_train), -1) / scale, y_train, seed=0)


def _quality(clf, scale: float, samples: np.ndarray, test_features: np.ndarray, n_classes: int) -> dict:
    from gen.trainer.protocols.sample_quality import class_coverage, classifier_features, frechet_distance

    rows = samples.reshape(len(samples), -1) / scale
    labels = clf.predict(rows)
    cover = class_coverage(labels, n_classes)
    hist = np.asarray(cover["histogram"])
    found = int((hist >= CLASS_SHARE * len(labels) / n_classes).sum())
    return {"frechet": frechet_distance(classifier_features(clf, rows), test_features), "classes_found": found,
            "kl_from_uniform": cover["kl_from_uniform"], "histogram": cover["histogram"]}


def quick_epochs(epochs: int | None) -> int:
    """A --quick smoke run's epochs: a thirtieth of the protocol's, at least 2 (2 for a default command)."""
    return 2 if epochs is None else max(2, epochs // 30)


def infogan_accuracy(model, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                     y_test: np.ndarray) -> dict:
    """The categorical code as a classifier: category -> majority training label, test accuracy."""
    codes = model.manifest.latent.codes
    k = next(c.size for c in codes if c.kind == "categorical")
    cat_train = model.encode(x_train)[:, :k].argmax(axis=1)
    cat_test = model.encode(x_test)[:, :k].argmax(axis=1)
    mapping = {}
    for c in range(k):
        labels = y_train[cat_train == c]
        mapping[c] = int(np.bincount(labels).argmax()) if len(labels) else -1
    predicted = np.array([mapping[c] for c in cat_test])
    return {"accuracy": float((predicted == y_test).mean()), "categories": k,
            "labels_covered": len({v for v in mapping.values() if v >= 0}), "mapping": mapping}


def _infogan_seed(spec: str, label: str, epochs: int | None, options: dict, seed: int, threads: int,
                  workdir: Path) -> dict:
    """One more InfoGAN seed, trained, exported and read as a classifier (in its own process
    when images_benchmark has seed_jobs > 1)."""
    import torch

    from gen.trainer.data import load_dataset
    from gen.trainer.protocols.one_class import protocol_split

    torch.set_num_threads(threads)
    data = load_dataset(spec)
    train_idx, test_idx = protocol_split(len(data.x), data.y)
    model, facts = train_export("infogan", spec, epochs, options, seed, threads, workdir, f"infogan-{label}-seed{seed}")
    acc = infogan_accuracy(model, data.x[train_idx], data.y[train_idx], data.x[test_idx], data.y[test_idx])["accuracy"]
    _log(f"{label} infogan seed {seed}: accuracy {acc:.3f} ({facts['train_s']:.0f} s)")
    return {"seed": seed, "accuracy": acc, "train_s": facts["train_s"], "trained_epochs": facts["trained_epochs"],
            "kept_epoch": facts["kept_epoch"]}


def images_benchmark(families: list[str], datasets: dict[str, str], threads: int, workdir: Path,
                     quick: bool = False, seed_jobs: int = 1) -> dict:
    """seed_jobs > 1: InfoGAN's extra seeds train in that many processes beside the main one
    (each with `threads` torch threads)."""
    from gen.trainer.data import load_dataset
    from gen.trainer.protocols.one_class import protocol_split
    from gen.trainer.protocols.sample_quality import classifier_features

    out = {"n_samples": IMAGE_SAMPLES, "datasets": {}}
    for label, spec in datasets.items():
        data = load_dataset(spec)
        train_idx, test_idx = protocol_split(len(data.x), data.y)
        scale = float(data.raw_range[1])
        x_train, y_train, x_test, y_test = data.x[train_idx], data.y[train_idx], data.x[test_idx], data.y[test_idx]
        start = time.perf_counter()
        clf = _classifier(x_train, y_train, scale)
        test_features = classifier_features(clf, x_test.reshape(len(x_test), -1) / scale)
        n_classes = int(len(np.unique(data.y)))
        rng = np.random.default_rng(0)
        floor_rows = x_train[rng.choice(len(x_train), size=min(IMAGE_SAMPLES, len(x_train)), replace=False)]
        floor = _quality(clf, scale, floor_rows, test_features, n_classes)
        section = out["datasets"][label] = {
            "data": spec, "n_train": int(len(train_idx)), "n_test": int(len(test_idx)),
            "classifier_test_accuracy": float(clf.score(x_test.reshape(len(x_test), -1) / scale, y_test)),
            "classifier_s": time.perf_counter() - start, "floor": floor, "families": {}}
        _log(f"{label}: classifier test accuracy {section['classifier_test_accuracy']:.3f}, "
             f"floor Frechet {floor['frechet']:.3f}")
        for name in families:
            if name not in IMAGES[label]:
                continue
            epochs, options = IMAGES[label][name]
            epochs = quick_epochs(epochs) if quick else epochs
            more_seeds = [] if quick or name != "infogan" else list(INFOGAN_SEEDS.get(label, ()))
            pool = _seed_pool(seed_jobs) if more_seeds and seed_jobs > 1 else None
            try:
                pending = [pool.submit(_infogan_seed, spec, label, epochs, options, seed, threads, workdir)
                           for seed in more_seeds] if pool else []
                model, facts = train_export(name, spec, epochs, options, 0, threads, workdir, f"{name}-{label}")
                record = {"epochs": epochs, "options": options, **facts}
                for refine in REFINES:
                    x, seconds = draw(model, IMAGE_SAMPLES, 0, refine)
                    record[refine or "plain"] = {**_quality(clf, scale, x, test_features, n_classes),
                                                 "sample_s": seconds}
                if name == "infogan":
                    record["infogan"] = infogan_accuracy(model, x_train, y_train, x_test, y_test)
                    seeds = [{"seed": 0, "accuracy": record["infogan"]["accuracy"]}]
                    seeds += [f.result() for f in pending] if pool else [
                        _infogan_seed(spec, label, epochs, options, seed, threads, workdir) for seed in more_seeds]
                    record["infogan"]["seeds"] = seeds
            finally:  # on an error too: queued seeds are dropped, a running one is waited for
                if pool:
                    pool.shutdown(cancel_futures=True)
            section["families"][name] = record
            _log(f"{label} {name}: Frechet " + ", ".join(f"{k} {record[k]['frechet']:.2f}" for k in ("plain", "drs", "mh"))
                 + f"; classes {record['plain']['classes_found']}"
                 + (f"; InfoGAN accuracy {record['infogan']['accuracy']:.3f}" if "infogan" in record else "")
                 + f" ({facts['train_s']:.0f} s)")
    return out


def _seed_pool(jobs: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=jobs - 1, mp_context=multiprocessing.get_context("spawn"))


def _part(part: str, families: list[str], mnist: Path | None, threads: int, workdir: Path, quick: bool,
          seeds: tuple[int, ...], seed_jobs: int = 1) -> dict:
    import torch

    torch.set_num_threads(threads)
    if part == "modes":
        return modes_benchmark(families, seeds[:1] if quick else seeds, threads, workdir / "modes", quick)
    datasets = {"digits": "digits", **({"mnist": str(mnist)} if mnist is not None else {})}
    return images_benchmark(families, datasets, threads, workdir / "images", quick, seed_jobs)


def gan_benchmark(families: list[str], mnist: Path | None, threads: int, workdir: Path, quick: bool = False,
                  seeds: tuple[int, ...] = SEEDS, jobs: int = 2, parts: tuple[str, ...] = PARTS) -> dict:
    """The protocols in `parts` ({"modes": ..., "images": ...}); with both and jobs=2 they run in
    two processes side by side (each with `threads` torch threads); the image part alone
    with jobs > 1 trains InfoGAN's extra seeds in jobs - 1 processes beside the main one."""
    if len(parts) == 1:
        return {parts[0]: _part(parts[0], families, mnist, threads, workdir, quick, seeds, seed_jobs=jobs)}
    if jobs <= 1:
        return {p: _part(p, families, mnist, threads, workdir, quick, seeds) for p in parts}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {p: pool.submit(_part, p, families, mnist, threads, workdir, quick, seeds) for p in parts}
        return {p: f.result() for p, f in futures.items()}
