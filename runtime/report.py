"""`gen report`: one self-contained HTML page about a bundle and, given rows, about their
anomalies. No network fetch: styles, the table-sorting script and the pictures (PNG as data
URIs, charts as SVG) are inline, so the file opens from disk or from a mail attachment.
torch-free; the page is rendered by Jinja2 (`gen[report]`) with autoescaping on, so names from
a user's files (feature names, paths) reach the page as text, never as markup.

Sections: the model card (family, options as resolved, data, version, signature and digest
status, parity at export, training figures); calibration (the held-out normal scores against the
threshold); samples (a grid for images, a scatter for 2-D points, a table otherwise); and with
rows: their scores against the normal ones, the flagged share and the drift test, the top rows
with their anomaly maps (images) or largest per-feature errors (tables), and a sortable table
of the highest scores.
"""

from __future__ import annotations

import base64
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .drift import LEVEL, flagged_share_test
from .errors import InputError, MissingDependency, OutputError
from .model import GenModel, TopRows, describe
from .outputs import anomaly_maps, atomic_path, png_bytes, sample_image
from .readers import iter_rows
from .signing import SIGNATURE

TEMPLATE = "report.html.j2"
HIST_BINS = 40
MAX_SAMPLES = 256
MAX_TABLE_ROWS = 1000
MAX_TOP_K = 64
TOP_FEATURES = 5  # per row of a table, in the top rows and the sortable table
KEEP_FEATURES = 4096  # tables up to this wide keep the table's rows for their largest errors
USERS_SHOWN = 5  # a completion bundle's page ranks items for the first users of the ratings file


def _environment():
    try:
        import jinja2
    except ModuleNotFoundError:
        raise MissingDependency("gen report renders its page with Jinja2: pip install 'gen[report]'") from None
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["g4"] = lambda v: "-" if v is None else f"{v:.4g}"
    env.filters["pct"] = lambda v: "-" if v is None else f"{v:.1%}"
    env.filters["thousands"] = lambda v: f"{v:,}"
    return env


def _png(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def _signature(model: GenModel, public_key) -> str:
    """What the page says of the bundle's signature (its digests were checked by `load`)."""
    signed = (model.bundle.folder / SIGNATURE).exists()
    if public_key is not None:
        return "signed, and the signature verified against the public key given"
    return ("signed (model.sig); not verified here: give --public-key to verify it" if signed else "not signed")


def _bars(lo: float, hi: float, series: list[tuple[str, list[tuple[float, float, float]]]],
          marks: list[tuple[str, float]], ticks: list[tuple[float, str]] | None = None) -> dict:
    """An SVG bar chart over [lo, hi]: for each (name, [(start, end, share), ...]) series its
    bars, vertical lines at (label, value) marks, and `ticks` ((value, label); default five
    evenly spaced values); geometry in a 640 x 220 view box."""
    width, height, left, bottom, top = 640.0, 220.0, 48.0, 28.0, 10.0
    span = hi - lo or 1.0
    peak = max((share for _, bars in series for *_, share in bars), default=0.0) or 1.0
    x = lambda v: left + (float(v) - lo) / span * (width - left - 8)  # noqa: E731
    y = lambda share: height - bottom - share / peak * (height - bottom - top)  # noqa: E731
    out = []
    for k, (name, bars) in enumerate(series):
        shown = [{"x": x(a) + 1 + k * 2, "w": max(1.0, x(b) - x(a) - 2), "y": y(s), "h": height - bottom - y(s),
                  "title": f"{a:.4g} to {b:.4g}: {s:.1%}"} for a, b, s in bars if s > 0]
        out.append({"name": name, "css": f"series{k}", "bars": shown})
    ticks = ticks if ticks is not None else [(v, f"{v:.3g}") for v in np.linspace(lo, hi, 5)]
    return {"series": out, "ticks": [{"x": x(v), "label": label} for v, label in ticks],
            "marks": [{"x": x(v), "label": label} for label, v in marks if lo <= v <= hi], "peak": f"{peak:.1%}",
            "width": width, "height": height, "base": height - bottom, "left": left, "top": top}


def _histogram(edges: np.ndarray, series: list[tuple[str, np.ndarray]], threshold: float) -> dict:
    """_bars of shares per bin of `edges`, the threshold marked."""
    bins = list(zip(edges[:-1].tolist(), edges[1:].tolist()))
    return _bars(float(edges[0]), float(edges[-1]),
                 [(name, [(a, b, float(s)) for (a, b), s in zip(bins, shares)]) for name, shares in series],
                 [("threshold", threshold)])


def _calibration_shares(edges: np.ndarray, scoring) -> np.ndarray:
    """The share of held-out normal scores in each bin, from the manifest's quantiles (their
    empirical distribution function, linear between the recorded quantiles)."""
    cdf = np.interp(edges, scoring.quantile_values, scoring.quantile_levels, left=0.0, right=1.0)
    return np.diff(cdf)


def _edges(lo: float, hi: float) -> np.ndarray:
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, HIST_BINS + 1)


def _card(model: GenModel, public_key, label: str | None) -> dict:
    m = model.manifest
    info = describe(model)
    data = info["data"]
    return {
        "family": m.family, "variant": m.variant, "capabilities": m.capabilities, "gen_version": m.gen_version,
        "format_version": m.format_version, "created": m.created, "seed": m.seed,
        "bundle": label or str(model.bundle.folder),
        "provider": model.provider, "signature": _signature(model, public_key),
        "data": [("source", data["source"]), ("kind", data["kind"]), ("shape", " x ".join(map(str, data["shape"]))),
                 ("raw range", data["raw_range"]), ("normal class", data["normal_class"]),
                 ("training rows", data["n_train"])],
        "config": sorted((str(k), v) for k, v in m.config.items()),
        "parity": [(role, p.max_abs_diff, p.max_abs_output) for role, p in sorted(m.parity.graphs.items())],
        "tolerance": m.parity.tolerance, "probe_rows": m.parity.probe_rows,
        "metrics": [("epochs", m.metrics.epochs), ("fitting rows", m.metrics.n_fit),
                    ("calibration rows", m.metrics.n_calibration), ("test rows", m.metrics.n_test),
                    ("trained on", m.metrics.device), ("training seconds", m.metrics.train_seconds),
                    ("trained at", m.metrics.trained_at),
                    *((f"held-out {k}", v) for k, v in sorted(m.metrics.evaluation.items())),
                    *((f"stopping: {k}", v) for k, v in sorted(m.metrics.stopping.items()))],
        "quantization": None if m.quantization is None else sorted(asdict(m.quantization).items()),
    }


def _calibration(model: GenModel) -> dict | None:
    spec = model.manifest.scoring
    if spec is None or not spec.quantile_values:
        return None
    edges = _edges(float(spec.quantile_values[0]), max(float(spec.quantile_values[-1]), spec.threshold))
    return {"kind": spec.kind, "threshold": spec.threshold, "contamination": spec.contamination,
            "expected": spec.expected_false_alarm_rate, "n": spec.n_calibration,
            "chart": _histogram(edges, [("held-out normal rows", _calibration_shares(edges, spec))], spec.threshold)}


def _samples(model: GenModel, n: int, seed: int) -> dict | None:
    if "sample" not in model.capabilities or n == 0:
        return None
    data = model.manifest.data
    samples = model.sample(n, seed=seed)
    if data.kind == "image" or data.size == 2:
        return {"n": n, "seed": seed, "image": _png(sample_image(samples, data)),
                "what": "a grid of samples" if data.kind == "image" else "a scatter of the samples",
                "components": _components(model, n, seed)}
    flat = samples.reshape(n, -1)[:20]
    names = model.feature_names
    shown = min(len(names), 12)
    return {"n": n, "seed": seed, "image": None, "what": "the first samples, in raw units",
            "columns": names[:shown] + (["..."] if shown < len(names) else []),
            "rows": [[f"{v:.4g}" for v in row[:shown]] + (["..."] if shown < len(names) else []) for row in flat]}


def _components(model: GenModel, n: int, seed: int) -> list[dict]:
    """A mixture's (AdaGAN's) components one by one: `n` samples of each generator, same codes."""
    spec = model.manifest.sampler
    if spec is None or spec.kind != "mixture":
        return []
    from .samplers.ancestral import draw_latent

    z = draw_latent(model.manifest.latent, n, np.random.default_rng(seed))
    total = float(sum(spec.weights))
    return [{"k": k, "weight": w / total,
             "image": _png(sample_image(model.run_batched(role, {spec.input: z}, spec.output), model.manifest.data))}
            for k, (role, w) in enumerate(zip(spec.graphs, spec.weights))]


def _features(model: GenModel, errors: np.ndarray) -> list[str]:
    if errors.size == 0:
        return [""] * len(errors)
    k = min(TOP_FEATURES, int(np.prod(errors.shape[1:])))
    top = model._top_features(errors, k, np.asarray(model.feature_names))
    return [", ".join(f"{name} ({err:.3g})" for name, err in zip(names, errs))
            for names, errs in zip(top.features, top.errors)]


def _rows(model: GenModel, path, top_k: int, table_rows: int, chunk_rows: int, name: str) -> dict:
    """Score the rows of `path` chunk by chunk. Memory: the scores (8 bytes a row) and the rows
    with their errors of the top_k (and, for tables of up to KEEP_FEATURES features, of the
    table's rows too, for their largest errors)."""
    spec = model.manifest.scoring
    has_errors = spec.errors is not None
    image = model.manifest.data.kind == "image"
    features_shown = has_errors and not image
    keep = max(top_k, table_rows) if features_shown and model.manifest.data.size <= KEEP_FEATURES else top_k
    top = TopRows(max(keep, 1))
    parts, first = [], 0
    for chunk in iter_rows(path, model.shape, chunk_rows, narrow=True):
        if has_errors:
            scores, errors = model._score_and_errors(chunk)
        else:
            scores, errors = model.score(chunk), np.zeros((len(chunk), 0), dtype=np.float32)
        top.add(first, scores, chunk, errors)
        parts.append(scores)
        first += len(chunk)
    if first == 0:
        raise InputError(f"{name}: no rows to report on")
    scores = np.concatenate(parts)
    del parts
    finite = np.isfinite(scores)
    good = scores[finite] if not finite.all() else scores
    flagged = int((scores > spec.threshold).sum())
    test = flagged_share_test(len(scores), flagged, spec)
    lo, hi = float(spec.quantile_values[0]), max(float(spec.quantile_values[-1]), spec.threshold)
    if len(good):
        lo, hi = min(lo, float(good.min())), max(hi, float(np.quantile(good, 0.99)))
    edges = _edges(lo, hi)
    counts = np.histogram(np.clip(good, lo, hi), bins=edges)[0] / len(scores)
    # the table: the highest scores, ties to the earlier row (not-a-number scores last)
    n_table = min(max(top_k, table_rows), len(scores))
    ranked = np.lexsort((np.arange(len(scores)), -np.nan_to_num(scores, nan=-np.inf)))[:n_table]
    errors_of = dict(zip(top.index.tolist(), _features(model, top.errors))) if features_shown else {}
    table = [{"row": int(i), "score": float(scores[i]), "quantile": float(q), "flagged": bool(scores[i] > spec.threshold),
              "features": errors_of.get(int(i), "") if features_shown else None}
             for i, q in zip(ranked, model.normal_quantile(scores[ranked]))]
    shown = None
    if top_k and image and has_errors:
        rows = top.rows[:top_k]
        recon = model.reconstruct(rows) if "reconstruct" in model.capabilities else None
        raw = model.manifest.data.raw_range or (float(rows.min()), float(rows.max()))
        shown = {"image": _png(anomaly_maps(rows.astype(np.float32), top.errors[:top_k], tuple(raw), recon)),
                 "columns": "input, reconstruction and error map" if recon is not None else "input and error map",
                 "rows": table[:top_k]}
    elif top_k:
        shown = {"image": None, "rows": table[:top_k]}
    return {"path": name, "n": len(scores), "flagged": flagged, "share": flagged / len(scores),
            "median": float(np.median(good)) if len(good) else None, "not_finite": int(len(scores) - len(good)),
            "test": test, "level": LEVEL, "threshold": spec.threshold,
            "chart": _histogram(edges, [("these rows", counts), ("held-out normal rows",
                                                                _calibration_shares(edges, spec))], spec.threshold),
            "top": shown, "table": table[:table_rows], "has_features": features_shown}


def _ratings(model: GenModel, path, top_k: int, name: str) -> dict:
    """A completion bundle's page on a ratings file: the distribution of its ratings and the
    `top_k` unrated items the model ranks highest for its first few users."""
    from .completion import Completer
    from .ratings import read_ratings

    table = read_ratings(path)
    values, counts = np.unique(table.ratings, return_counts=True)
    width = float(np.min(np.diff(values))) if len(values) > 1 else 1.0
    shares = counts / counts.sum()
    # one bar per value the file holds, each `width` wide and centred on it, labelled by it
    chart = _bars(float(values[0] - width / 2), float(values[-1] + width / 2),
                  [("ratings in the file", [(v - width / 2, v + width / 2, s) for v, s in zip(values, shares)])], [],
                  ticks=[(v, f"{v:g}") for v in values])
    users = list(dict.fromkeys(table.users.astype(str).tolist()))[:USERS_SHOWN]
    # the whole file goes in: an item-based model predicts a user's rating of an item from that
    # item's ratings by everyone (what `gen complete --top-k` does); the page shows a few users
    top = Completer(model, table).top_k(top_k) if top_k else None
    ranked = [] if top is None else [
        {"user": u, "items": [(str(i), float(r)) for uu, i, r in zip(top.users, top.items, top.prediction)
                              if str(uu) == u]} for u in users]
    return {"path": name, "n": len(table), "n_users": len(set(table.users.astype(str).tolist())),
            "n_items": len(set(table.items.astype(str).tolist())), "chart": chart, "top": ranked}


def check_report_options(top_k: int, table_rows: int, samples: int) -> None:
    """The page's sizes, refused in one line before any work."""
    for name, value, most in (("--top-k", top_k, MAX_TOP_K), ("--table-rows", table_rows, MAX_TABLE_ROWS),
                              ("--samples", samples, MAX_SAMPLES)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value <= most:
            raise InputError(f"{name}: expected an integer from 0 to {most}, got {value!r}")


def report_html(model: GenModel, rows=None, *, top_k: int = 8, table_rows: int = 100, samples: int = 64,
                seed: int = 0, public_key=None, chunk_rows: int = 4096, rows_name: str | None = None,
                form: dict | None = None, bundle_name: str | None = None) -> str:
    """The page for `model` (a loaded bundle) and, given `rows` (a CSV, NPY or Parquet file of
    the bundle's rows), their anomalies: the top `top_k` with maps or features, a sortable table of
    the `table_rows` highest scores. `samples` drawn with `seed` for a family that samples.
    `rows_name`, `bundle_name`: what the page calls the rows and the bundle (default: their
    paths); `form`: the upload form of the page `gen serve` shows (serving.pages)."""
    check_report_options(top_k, table_rows, samples)
    env = _environment()
    ratings = rows is not None and model.manifest.data.ratings is not None
    if rows is not None and not ratings:
        model.require("score")
    name = rows_name or str(rows)
    page = {
        "card": _card(model, public_key, bundle_name),
        "calibration": _calibration(model),
        "samples": _samples(model, samples, seed),
        "rows": None if rows is None or ratings else _rows(model, rows, top_k, table_rows, chunk_rows, name),
        "ratings": _ratings(model, rows, top_k, name) if ratings else None,
        "completion": model.manifest.data.ratings,
        "form": form,
    }
    return env.get_template(TEMPLATE).render(page=page)


def write_report(model: GenModel, out: str | Path, rows=None, **options) -> Path:
    """Render the page (`report_html`) and write it to `out` atomically: it appears whole or
    not at all."""
    text = report_html(model, rows, **options)
    try:
        with atomic_path(out) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:  # a folder of that name, a full disk, no permission
        raise OutputError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return Path(out)
