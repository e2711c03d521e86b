"""The artifact bundle's manifest: the contract between the exporter and the runtime.

Small typed dataclasses, written as JSON (`manifest.json`) and read back through one typed
parser that checks every field (type, range, unknown keys), so a bundle that does not match
the contract is refused at load time with one line naming the field.

Format history (bump FORMAT_VERSION on any change of meaning or layout):
- 1: graphs took model-space inputs (the host normalised rows); one input per graph; parity
  and metrics as free dictionaries.
- 2: graphs take and return raw units (preprocessing is the first/last nodes of a graph);
  named multi-input graphs with port kinds; the sampler is declared (`ancestral`, `gibbs`,
  `mixture`); typed parity and metrics. Format 1 cannot be migrated without torch (its graphs
  lack the preprocessing nodes), so it is refused with the command that re-exports it.
- 3: ratings data (`data.kind` "ratings" with `data.ratings`: id maps, orientation, global
  mean) for completion bundles; `scoring.errors` names the score graph's per-feature error
  output (anomaly maps); `fitted` holds closed-form facts (PCA components). Every new field
  is optional, so a format-2 manifest reads as format 3 unchanged (UPGRADES).
- 4: GAN descendants: `latent.codes` (InfoGAN's categorical and continuous codes, fed to the
  input `sampler.codes` of the generator), `refine` (the calibrated discriminator or critic
  that discriminator-guided sampling reads). Optional fields again: formats 2 and 3 read
  unchanged; a gen that reads only format 3 refuses a format-4 bundle rather than ignore
  what it cannot serve.
- 5: the bundle is verified as a whole: `SHA256SUMS` (sha256sum's format) lists the SHA-256
  of manifest.json and of every graph file, and the folder holds those files and nothing else
  (no sub-folder, no symbolic link). The manifest itself is unchanged, so formats 2 to 4 read
  as format 5; a bundle of those formats has no SHA256SUMS and loads with a warning.
- 6: `quantization` (optional): a graph exported with dynamic int8 weights (`gen export
  --quantize int8`) or in float16 (`gen export --precision fp16`, same field), its measured cost against the float graph and the threshold recalibrated
  on its own scores. Formats 2 to 5 read unchanged.
- 7: image bundles may hold a `widen` graph (uint8 rows -> float32 rows, one Cast), so uint8
  rows are widened where the graphs run (on the GPU under IOBinding). Its uint8 input is what
  a gen that reads format 6 cannot check, so it refuses the bundle by its version, clearly;
  formats 2 to 6 read unchanged (without it, uint8 rows are widened on the host).
- 8: each graph records its file's size in bytes (`file_bytes`), which the loader compares
  with the file's (by stat) before it hashes or reads anything, so a file that is not the one
  exported is refused at once, whatever its size. Formats 2 to 7 read unchanged: their graphs
  have no recorded size and are held only to the cap on any graph file (bundle.py).
- 9: `metrics.train_seconds` may be null: a reproducible export (SOURCE_DATE_EPOCH) leaves the
  training duration, which changes from run to run, in the run folder's run.json. A gen that
  reads format 8 refuses such a bundle by its version, not by a field; formats 2 to 8 read
  unchanged.

What a manifest.json may be, whatever its version: at most MAX_MANIFEST_BYTES (checked before
it is read), JSON with each key once per object, integers of at most MAX_INT_DIGITS digits and
values nested at most MAX_JSON_DEPTH levels (gen writes 6); anything else is refused in one line.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from .errors import BundleError, ExportError

FORMAT_VERSION = 9
# Bounds on manifest.json, far above what gen writes (tens of KB; a ratings bundle's id maps or
# PCA's components of wide rows reach a few MB) and low enough that parsing a hostile file
# cannot exhaust memory or the interpreter's stack.
MAX_MANIFEST_BYTES = 64 << 20
MAX_JSON_DEPTH = 32
MAX_INT_DIGITS = 20  # a signed 64-bit integer (a seed up to 2^63 - 1) has at most 19
DIGESTS = "SHA256SUMS"
MANIFEST = "manifest.json"
VERBS = ("sample", "reconstruct", "encode", "score", "complete")
PORT_KINDS = ("data", "latent", "codes", "noise", "mask", "state", "value")
DATA_KINDS = ("image", "tabular", "points", "ratings")
PRIORS = ("normal", "gaussian")
NOISE_DISTRIBUTIONS = ("normal", "uniform")

# What each verb runs, in one vocabulary for every family: (graph role, inputs it feeds, outputs
# it reads). Checked at load, so a verb never fails later for a missing graph or port. `score`
# runs the graph and output its scoring spec names; `sample` the graphs its sampler names.
VERB_IO: dict[str, tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]] = {
    "encode": (("encoder", ("x",), ("z",)),),
    "reconstruct": (("encoder", ("x",), ("z",)), ("decoder", ("z",), ("x",))),
    "complete": (("complete", ("x", "mask"), ("completed",)),),
}
# The graph of image bundles that widens uint8 rows (as MNIST files store pixels) to the float32
# rows the other graphs take: one Cast, so under IOBinding a batch crosses to the device as
# bytes, 4x fewer than float32, and is widened there. Optional (format 7; older bundles read without it).
WIDEN = ("widen", "x", "x_float32")
# Older formats this gen still reads: version -> function that brings the raw JSON one version up.
# 2 -> 3 only added optional fields, so a format-2 manifest is a format-3 one as it stands.
UPGRADES = {2: lambda raw: {**raw, "format_version": 3}, 3: lambda raw: {**raw, "format_version": 4},
            4: lambda raw: {**raw, "format_version": 5}, 5: lambda raw: {**raw, "format_version": 6},
            6: lambda raw: {**raw, "format_version": 7}, 7: lambda raw: {**raw, "format_version": 8},
            8: lambda raw: {**raw, "format_version": 9}}
# Format versions this gen refuses, with the reason a user reads.
REFUSED_VERSIONS = {
    1: "its graphs take model-space inputs and one input each; re-export the run folder with "
       "this gen (gen export RUN_DIR --out BUNDLE)",
}


@dataclass
class TensorSpec:
    """One graph input or output. `shape` uses the string "batch" for the dynamic axis; `kind`
    says what it carries: data rows (raw units), latent codes, InfoGAN codes, noise, a mask,
    a chain state, or a plain value (scores, logits)."""

    name: str
    shape: list[Any]
    dtype: str = "float32"
    kind: str = "value"


@dataclass
class GraphSpec:
    """One ONNX file of the bundle, named for its role (`decoder`, `score`, ...), with its
    SHA-256 and (format 8) its size in bytes."""

    role: str
    file: str
    sha256: str
    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    file_bytes: int | None = None  # the file's size (format 8; None when read from an older format)

    def port(self, name: str, outputs: bool = False) -> TensorSpec | None:
        return next((t for t in (self.outputs if outputs else self.inputs) if t.name == name), None)


@dataclass
class PreprocessSpec:
    """How raw values become model inputs, inside every graph that takes data:
    model = (raw - offset) / scale, then (optionally) model >= binarize -> 1 else 0. Graphs that
    return data return raw = model * scale + offset. offset and scale are scalars or one value
    per feature. Recorded here for humans; the host never applies it."""

    offset: float | list[float] = 0.0
    scale: float | list[float] = 1.0
    model_range: list[float] | None = None
    binarize: float | None = None


@dataclass
class RatingsSpec:
    """Ratings data (user, item, rating triples) as rows for completion: with orientation
    `item` each row is one item's ratings by every user (columns = users), with `user` one
    user's ratings of every item. `users` and `items` map column/row positions to the
    original ids (as strings; `id_type` says whether they were integers). Ratings lie in
    `rating_range` (predictions are clipped to it); `global_mean` is the mean training rating,
    the prediction for a row with no observed value."""

    orientation: str
    users: list[str]
    items: list[str]
    id_type: str
    rating_range: list[float]
    global_mean: float
    n_ratings: int

    @property
    def row_ids(self) -> list[str]:
        return self.items if self.orientation == "item" else self.users

    @property
    def column_ids(self) -> list[str]:
        return self.users if self.orientation == "item" else self.items


@dataclass
class DataSpec:
    """What a row looks like: its shape (C, H, W for images, D for tabular rows), its kind,
    its raw value range, its preprocessing, and where it came from."""

    source: str
    kind: str
    shape: list[int]
    dtype: str = "float32"
    raw_range: list[float] | None = None
    preprocessing: PreprocessSpec = field(default_factory=PreprocessSpec)
    feature_names: list[str] | None = None
    n_train: int = 0
    normal_class: int | None = None
    ratings: RatingsSpec | None = None

    @property
    def size(self) -> int:
        """Features per row (the product of the shape)."""
        return int(np.prod(self.shape))

    @property
    def unit_range(self) -> bool:
        """Whether model-space values lie in [0, 1] (sigmoid outputs, BCE, Bernoulli)."""
        return self.preprocessing.model_range == [0.0, 1.0]


@dataclass
class CodeSpec:
    """One InfoGAN latent code: `categorical` (one-hot over `size` classes, drawn uniformly)
    or `uniform` (one value drawn from U(low, high)). Codes are fed to the generator side by
    side in the order listed (a categorical code takes `size` columns, a uniform one 1)."""

    name: str
    kind: str
    size: int = 1
    low: float = -1.0
    high: float = 1.0

    @property
    def width(self) -> int:
        return self.size if self.kind == "categorical" else 1


CODE_KINDS = ("categorical", "uniform")


@dataclass
class LatentSpec:
    """How the runtime draws latent codes. prior: `normal` (N(0, I)) or `gaussian` (a Gaussian
    fitted to the training codes, with `mean` and `cov`). `codes`: InfoGAN's structured codes,
    drawn beside z (and fixed on request: `gen sample --code cat=3`)."""

    dim: int
    prior: str = "normal"
    mean: list[float] | None = None
    cov: list[list[float]] | None = None
    codes: list[CodeSpec] | None = None


@dataclass
class AncestralSampler:
    """Latent prior -> one graph (generator or decoder): z drawn by the runtime, x returned."""

    graph: str
    input: str = "z"
    output: str = "x"
    codes: str | None = None
    kind: str = "ancestral"


@dataclass
class NoiseSpec:
    """One noise input of a Gibbs step, drawn per step by the runtime."""

    name: str
    distribution: str = "uniform"


@dataclass
class GibbsSampler:
    """state + noise -> next state, repeated. `chain` maps each state input of the graph to
    the output that is its next value (one pair for an RBM's visible layer; v and the top
    hidden layer for a DBM). Each chain runs `steps` steps and keeps a sample every `thin`
    steps after `burn_in` (default: steps - thin, one sample per chain at its last step).
    `mean` names the output returned (the mean-field probabilities of the visible layer, in
    raw units); without it the first state is returned. These are defaults; callers may
    override steps, burn_in, thin, chains and init."""

    graph: str
    chain: dict[str, str]
    noise: list[NoiseSpec]
    mean: str | None = None
    init: str = "bernoulli"
    steps: int = 1000
    burn_in: int | None = None
    thin: int = 1
    kind: str = "gibbs"


@dataclass
class MixtureSampler:
    """Weights + one generator per component: each sample's component is drawn from the
    weights, each component runs on its sub-batch."""

    graphs: list[str]
    weights: list[float]
    input: str = "z"
    output: str = "x"
    kind: str = "mixture"


SamplerSpec = Union[AncestralSampler, GibbsSampler, MixtureSampler]
# The sampler kinds a manifest may declare are the ones gen.runtime.samplers implements (its
# MODULES, each naming its spec class as SPEC): one list, read when a manifest is parsed.


@dataclass
class RefineSpec:
    """The discriminator or critic that discriminator-guided sampling reads (`--refine drs|mh`):
    graph `graph`, output `output` (one value per row). Training calibrated it on held-out real
    rows against as many generated ones (Platt scaling: logit = scale * value + offset, so that
    exp(logit) estimates p_data(x) / p_model(x)); `max_logit` is the largest calibrated logit
    seen on the generated rows (DRS's initial D*_M); `accuracy` is the calibrated
    discriminator's accuracy on those rows (0.5: it cannot tell them apart)."""

    graph: str
    output: str
    scale: float
    offset: float
    max_logit: float
    accuracy: float
    n_real: int
    n_fake: int


@dataclass
class LogPartition:
    """log Z of an energy-based model, so that log p(v) = -F(v) - log Z: its value, the
    standard error of the estimate (0 when exact), and how it was obtained."""

    value: float
    std: float
    method: str
    detail: str = ""


@dataclass
class ScoringSpec:
    """Score semantics, the graph and output that compute it, and the calibration that turns
    a score into a flag. `log_partition`, when present, turns a free-energy score F(v) into a
    log-likelihood log p(v) = -F(v) - log Z."""

    kind: str
    threshold: float
    contamination: float
    calibration: str
    n_calibration: int
    quantile_levels: list[float]
    quantile_values: list[float]
    expected_false_alarm_rate: float | None = None
    graph: str = "score"
    output: str = "score"
    log_partition: LogPartition | None = None
    errors: str | None = None


@dataclass
class GraphParity:
    """torch vs onnxruntime on the probe batch, over the continuous outputs of one graph; for
    its discrete chain-state outputs (Bernoulli draws, where a probability within rounding of
    its uniform noise may fall either way) the share of entries that differ."""

    max_abs_diff: float
    max_abs_output: float
    state_mismatch: float = 0.0


@dataclass
class ParitySpec:
    """Export parity: the rule each graph passed, and its figures."""

    graphs: dict[str, GraphParity]
    probe_rows: int
    tolerance: float
    rule: str = "max_abs_diff <= tolerance * max(1, max_abs_output); state_mismatch <= state_tolerance"
    state_tolerance: float = 1e-3

    @property
    def max_abs_diff(self) -> float:
        return max((g.max_abs_diff for g in self.graphs.values()), default=0.0)


@dataclass
class QuantizationSpec:
    """Graphs exported narrow (`method`: int8 weights by onnxruntime's dynamic quantization, or
    float16 weights and activations) and what it costs,
    measured at export on the run's held-out rows against the float graph: the largest
    absolute and relative score difference, the share of test rows flagged alike (float graph
    with its threshold, narrow graph with the threshold recalibrated on its own scores), and the
    one-class AUROC of both where the run has labels. Export refuses past `max_auroc_drop`
    (or, without labels, a flag agreement under `min_flag_agreement`)."""

    method: str
    graphs: list[str]
    n_rows: int
    max_abs_score_diff: float
    max_rel_score_diff: float
    flag_agreement: float
    auroc_float: float | None = None
    auroc_quantized: float | None = None
    max_auroc_drop: float = 0.005
    min_flag_agreement: float = 0.99


@dataclass
class MetricsSpec:
    """What training measured: sizes, time, final losses and held-out evaluation figures."""

    epochs: int
    n_fit: int
    n_calibration: int
    n_test: int
    device: str
    train_seconds: float | None  # None in a reproducible export (SOURCE_DATE_EPOCH): not a fact of the model
    torch_version: str
    trained_at: str
    final: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, float] = field(default_factory=dict)
    # How long it trained and why it stopped (gen.trainer.budget): the rule, the ceiling and
    # patience, the epoch whose weights were kept, and `stopped` (patience, ceiling or done).
    stopping: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    family: str
    variant: str
    gen_version: str
    created: str
    seed: int
    config: dict[str, Any]
    data: DataSpec
    graphs: dict[str, GraphSpec]
    capabilities: list[str]
    metrics: MetricsSpec
    parity: ParitySpec
    sampler: SamplerSpec | None = None
    latent: LatentSpec | None = None
    scoring: ScoringSpec | None = None
    fitted: dict[str, Any] = field(default_factory=dict)
    refine: RefineSpec | None = None
    quantization: QuantizationSpec | None = None
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, folder: Path) -> Path:
        """Write manifest.json into `folder`, refusing one that no gen would read (too large)."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if len(text.encode("utf-8")) > MAX_MANIFEST_BYTES:
            raise ExportError(f"{Path(folder) / MANIFEST}: {len(text.encode('utf-8')):,} bytes, more than the "
                              f"{MAX_MANIFEST_BYTES:,} a bundle's manifest may hold")
        path = Path(folder) / MANIFEST
        path.write_text(text)
        return path

    @classmethod
    def from_dict(cls, raw: Any, where: str = MANIFEST) -> "Manifest":
        """Build a manifest from parsed JSON, refusing anything that breaks the contract."""
        if not isinstance(raw, dict):
            raise BundleError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        version = raw.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise BundleError(f"{where}: missing or non-integer format_version")
        if version > FORMAT_VERSION:
            raise BundleError(f"{where}: format_version {version} is newer than this gen reads "
                              f"({FORMAT_VERSION}); upgrade gen")
        if version in REFUSED_VERSIONS:
            raise BundleError(f"{where}: format_version {version} is no longer served: "
                              f"{REFUSED_VERSIONS[version]}")
        written = version
        while version in UPGRADES:
            raw = UPGRADES[version](raw)
            version = raw["format_version"]
        if version != FORMAT_VERSION:
            raise BundleError(f"{where}: invalid format_version {version}")
        manifest = parse(cls, raw, where)
        if written >= 8:  # a size that is missing cannot be checked: format 8 records one per graph
            unsized = [role for role, graph in manifest.graphs.items() if graph.file_bytes is None]
            if unsized:
                raise BundleError(f"{where}: missing field 'graphs.{unsized[0]}.file_bytes' (format {written} "
                                  "records every graph file's size)")
        manifest.check(where)
        return manifest

    def check(self, where: str) -> None:
        """Cross-field rules: capabilities have their graphs, ports and specs; widths agree."""
        unknown = [v for v in self.capabilities if v not in VERBS]
        if unknown:
            raise BundleError(f"{where}: unknown capabilities {unknown}")
        if self.data.kind not in DATA_KINDS:
            raise BundleError(f"{where}: data.kind {self.data.kind!r}: expected one of {', '.join(DATA_KINDS)}")
        if (self.data.kind == "ratings") != (self.data.ratings is not None):
            raise BundleError(f"{where}: data.ratings goes with data.kind 'ratings' (and only with it)")
        if self.data.ratings is not None:
            r = self.data.ratings
            if r.orientation not in ("item", "user") or r.id_type not in ("int", "str"):
                raise BundleError(f"{where}: data.ratings: orientation {r.orientation!r} (item|user), "
                                  f"id_type {r.id_type!r} (int|str)")
            if self.data.shape != [len(r.column_ids)]:
                raise BundleError(f"{where}: data.shape {self.data.shape} does not match the "
                                  f"{len(r.column_ids)} {'users' if r.orientation == 'item' else 'items'} of data.ratings")
            lo, hi = (r.rating_range + [0.0, 0.0])[:2]
            if len(r.rating_range) != 2 or not lo <= r.global_mean <= hi:
                raise BundleError(f"{where}: data.ratings: rating_range {r.rating_range} must be [low, high] "
                                  f"around global_mean {r.global_mean}")
        for role, graph in self.graphs.items():
            if graph.role != role:
                raise BundleError(f"{where}: graph {role!r} says its role is {graph.role!r}")
            for port in (*graph.inputs, *graph.outputs):
                if port.kind not in PORT_KINDS:
                    raise BundleError(f"{where}: graph {role!r} port {port.name!r} has unknown kind {port.kind!r}")
                if port.kind == "data" and port.shape[1:] != list(self.data.shape):
                    raise BundleError(f"{where}: graph {role!r} port {port.name!r} has rows of shape "
                                      f"{port.shape[1:]}, expected {self.data.shape}")
        if WIDEN[0] in self.graphs:
            self._check_widen(where)
        for verb in self.capabilities:
            for role, inputs, outputs in VERB_IO.get(verb, ()):
                self._need_ports(where, verb, role, inputs, outputs)
        if "score" in self.capabilities:
            self._check_scoring(where)
        if "sample" in self.capabilities:
            self._check_sampler(where)
        if self.refine is not None:
            self._check_refine(where)

    def _check_widen(self, where: str) -> None:
        role, source, target = WIDEN
        graph = self.graphs[role]
        x, y = graph.port(source), graph.port(target, outputs=True)
        if x is None or y is None or (x.dtype, y.dtype) != ("uint8", "float32") or x.kind != "data" \
                or y.kind != "data":
            raise BundleError(f"{where}: graph {role!r} must take uint8 data {source!r} and return float32 "
                              f"data {target!r}")

    def _check_gaussian(self, where: str) -> None:
        """A fitted Gaussian prior has a mean of the latent size and a symmetric positive
        semi-definite covariance (checked here, so sampling never fails later)."""
        dim = self.latent.dim
        try:  # a ragged list of lists is not an array
            mean = np.asarray(self.latent.mean if self.latent.mean is not None else [], dtype=np.float64)
            cov = np.asarray(self.latent.cov if self.latent.cov is not None else [], dtype=np.float64)
        except ValueError:
            raise BundleError(f"{where}: latent gaussian prior needs mean ({dim},) and cov ({dim}, {dim}); "
                              "got rows of different lengths") from None
        if mean.shape != (dim,) or cov.shape != (dim, dim):
            raise BundleError(f"{where}: latent gaussian prior needs mean ({dim},) and cov ({dim}, {dim}), "
                              f"got {mean.shape} and {cov.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(cov).all() and np.allclose(cov, cov.T)
                and np.linalg.eigvalsh(cov).min() >= -1e-6 * max(1.0, float(np.abs(cov).max()))):
            raise BundleError(f"{where}: latent.cov is not a finite symmetric positive semi-definite matrix")

    def _need_ports(self, where: str, verb: str, role: str, inputs, outputs) -> None:
        graph = self.graphs.get(role)
        if graph is None:
            raise BundleError(f"{where}: capability {verb!r} needs a graph {role!r}")
        for names, out in ((inputs, False), (outputs, True)):
            for name in names:
                if graph.port(name, outputs=out) is None:
                    side = "output" if out else "input"
                    raise BundleError(f"{where}: capability {verb!r} needs {side} {name!r} of graph {role!r}")

    def _check_scoring(self, where: str) -> None:
        s = self.scoring
        if s is None:
            raise BundleError(f"{where}: capability 'score' without a scoring spec")
        self._need_ports(where, "score", s.graph, ("x",), (s.output,) + ((s.errors,) if s.errors else ()))
        if s.errors and self.graphs[s.graph].port(s.errors, outputs=True).shape[1:] != list(self.data.shape):
            raise BundleError(f"{where}: scoring.errors output {s.errors!r} must have the rows' shape {self.data.shape}")
        if s.log_partition is not None and not (math.isfinite(s.log_partition.value)
                                                and math.isfinite(s.log_partition.std)):
            raise BundleError(f"{where}: scoring.log_partition must be finite")
        if not math.isfinite(s.threshold):
            raise BundleError(f"{where}: scoring.threshold must be finite, got {s.threshold}")
        if not s.quantile_levels or len(s.quantile_levels) != len(s.quantile_values):
            raise BundleError(f"{where}: scoring quantiles must be non-empty and of equal length")
        if np.any(np.diff(s.quantile_values) < 0) or np.any(np.diff(s.quantile_levels) <= 0):
            raise BundleError(f"{where}: scoring quantiles must be sorted")

    def _check_sampler(self, where: str) -> None:
        s = self.sampler
        if s is None:
            raise BundleError(f"{where}: capability 'sample' without a sampler spec")
        if isinstance(s, (AncestralSampler, MixtureSampler)):
            if self.latent is None:
                raise BundleError(f"{where}: sampler {s.kind!r} needs a latent spec")
            if self.latent.prior not in PRIORS:
                raise BundleError(f"{where}: latent.prior {self.latent.prior!r}: expected one of {', '.join(PRIORS)}")
            roles = [s.graph] if isinstance(s, AncestralSampler) else s.graphs
            if isinstance(s, MixtureSampler) and (len(s.weights) != len(s.graphs) or not s.graphs
                                                   or min(s.weights) < 0 or not math.isclose(sum(s.weights), 1.0, abs_tol=1e-6)):
                raise BundleError(f"{where}: mixture weights {s.weights} must be one non-negative weight per "
                                  f"graph, summing to 1")
            for role in roles:
                self._need_ports(where, "sample", role, (s.input,), (s.output,))
                z = self.graphs[role].port(s.input)
                if z.shape[1:] != [self.latent.dim]:
                    raise BundleError(f"{where}: graph {role!r} takes codes of shape {z.shape[1:]}, "
                                      f"expected [{self.latent.dim}]")
            if self.latent.prior == "gaussian":
                self._check_gaussian(where)
            self._check_codes(where, s, roles)
        else:
            if not s.chain:
                raise BundleError(f"{where}: gibbs sampler has an empty chain")
            outputs = (*s.chain.values(),) + ((s.mean,) if s.mean else ())
            self._need_ports(where, "sample", s.graph, (*s.chain, *(n.name for n in s.noise)), outputs)
            bad = [n.distribution for n in s.noise if n.distribution not in NOISE_DISTRIBUTIONS]
            if bad or s.init not in ("bernoulli", "normal") or s.thin < 1 or s.steps < 1:
                raise BundleError(f"{where}: gibbs sampler has invalid settings (noise {bad}, init {s.init!r}, "
                                  f"steps {s.steps}, thin {s.thin})")

    def _check_codes(self, where: str, s, roles: list[str]) -> None:
        """InfoGAN codes: valid kinds and ranges, unique names, and a codes input of their width."""
        codes = self.latent.codes
        if (codes is not None) != (getattr(s, "codes", None) is not None):
            raise BundleError(f"{where}: latent.codes goes with the sampler's codes input (and only with it)")
        if codes is None:
            return
        names = [c.name for c in codes]
        if not codes or len(set(names)) != len(names):
            raise BundleError(f"{where}: latent.codes must be a non-empty list with unique names, got {names}")
        for c in codes:
            if c.kind not in CODE_KINDS or c.size < 1 or (c.kind == "categorical" and c.size < 2) \
                    or not (math.isfinite(c.low) and math.isfinite(c.high) and c.low < c.high):
                raise BundleError(f"{where}: latent code {c.name!r}: kind {c.kind!r} ({'|'.join(CODE_KINDS)}), "
                                  f"size {c.size}, range [{c.low}, {c.high}] are not valid")
        width = sum(c.width for c in codes)
        for role in roles:
            self._need_ports(where, "sample", role, (s.codes,), ())
            if self.graphs[role].port(s.codes).shape[1:] != [width]:
                raise BundleError(f"{where}: graph {role!r} takes codes of shape "
                                  f"{self.graphs[role].port(s.codes).shape[1:]}, expected [{width}]")

    def _check_refine(self, where: str) -> None:
        r = self.refine
        if "sample" not in self.capabilities:
            raise BundleError(f"{where}: refine goes with the 'sample' capability")
        self._need_ports(where, "sample", r.graph, ("x",), (r.output,))
        if not all(math.isfinite(v) for v in (r.scale, r.offset, r.max_logit, r.accuracy)):
            raise BundleError(f"{where}: refine calibration must be finite")

    @classmethod
    def read(cls, folder: Path) -> "Manifest":
        return cls.read_versioned(folder)[0]

    @classmethod
    def read_versioned(cls, folder: Path) -> tuple["Manifest", int]:
        """The manifest of a bundle folder and the format version its file states (before
        upgrades); a symbolic link is refused, as in the rest of a bundle."""
        path = Path(folder) / MANIFEST
        if path.is_symlink():
            raise BundleError(f"{path}: symbolic link in the bundle (a bundle holds regular files only)")
        if not path.is_file():
            raise BundleError(f"{path}: no manifest.json (not a gen bundle?)")
        raw = parse_json(read_limited(path, MAX_MANIFEST_BYTES, "manifest"), str(path))
        return cls.from_dict(raw, where=str(path)), raw["format_version"]


# -- reading a bundle's files ----------------------------------------------------------------

def check_size(path: Path, limit: int, what: str, error: type[Exception] = BundleError) -> int:
    """The size of file `path` (by stat, nothing read), refused past `limit` bytes."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if size > limit:
        raise error(f"{path}: the {what} is {size:,} bytes, more than the {limit:,} it may be")
    return size


def read_limited(path: Path, limit: int, what: str, error: type[Exception] = BundleError) -> bytes:
    """The bytes of file `path`, refused by its size before any is read when over `limit`
    (and never read past it, should the file grow meanwhile)."""
    size = check_size(path, limit, what, error)
    try:
        with open(path, "rb") as f:
            # Read what stat said plus one byte, never `limit` + 1: a buffered read allocates the
            # count it is asked for up front (2 GiB for a graph, under an address-space cap a
            # MemoryError).
            data = f.read(size + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(data) > min(size, limit):
        raise error(f"{path}: the {what} grew while it was read (past the {size:,} bytes stat gave)")
    return data


def parse_json(data: bytes, where: str) -> Any:
    """Parse a manifest's bytes, refusing in one line what json.loads would accept silently
    (a key twice in one object: the last would win) or fail on with a traceback (integers past
    int()'s digit limit, nesting past the interpreter's recursion limit)."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                raise BundleError(f"{where}: key {_show(key)} appears twice in one object")
            obj[key] = value
        return obj

    def integer(text: str) -> int:
        digits = len(text.lstrip("-"))
        if digits > MAX_INT_DIGITS:
            raise BundleError(f"{where}: an integer of {digits:,} digits (at most {MAX_INT_DIGITS})")
        return int(text)

    try:
        raw = json.loads(data.decode("utf-8"), object_pairs_hook=unique, parse_int=integer)
    except RecursionError:
        raise BundleError(f"{where}: values nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{where}: not valid JSON ({exc})") from None
    if _depth(raw) > MAX_JSON_DEPTH:
        raise BundleError(f"{where}: values nested too deeply (at most {MAX_JSON_DEPTH} levels)")
    return raw


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in parsed JSON (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level <= MAX_JSON_DEPTH:  # deeper is refused anyway: stop counting there
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item)
                         if isinstance(child, (dict, list)))
    return deepest


# -- one typed parser for every record -------------------------------------------------------

def parse(kind: Any, raw: Any, where: str, path: str = "") -> Any:
    """Build `kind` (a dataclass, a builtin, list[X], dict[str, X], X | None, a union) from
    parsed JSON, refusing wrong types and unknown or missing fields with the field's path."""
    label = path or "manifest"
    origin = typing.get_origin(kind)
    if kind is Any:
        return raw
    if origin in (Union, types.UnionType):
        options = typing.get_args(kind)
        if raw is None and type(None) in options:
            return None
        if set(options) - {type(None)} == set(typing.get_args(SamplerSpec)):
            return _parse_sampler(raw, where, label)
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return parse(option, raw, where, path)
            except BundleError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is list:
        if not isinstance(raw, list):
            raise BundleError(f"{where}: {label}: expected a list, got {_show(raw)}")
        (item,) = typing.get_args(kind)
        return [parse(item, v, where, f"{label}[{i}]") for i, v in enumerate(raw)]
    if origin is dict:
        if not isinstance(raw, dict):
            raise BundleError(f"{where}: {label}: expected an object, got {_show(raw)}")
        _, item = typing.get_args(kind)
        return {str(k): parse(item, v, where, f"{label}.{k}") for k, v in raw.items()}
    if is_dataclass(kind):
        if not isinstance(raw, dict):
            raise BundleError(f"{where}: {label}: expected an object, got {_show(raw)}")
        hints = typing.get_type_hints(kind)
        names = {f.name for f in fields(kind)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise BundleError(f"{where}: {label}: unknown fields {unknown}")
        values = {}
        for f in fields(kind):
            if f.name not in raw:
                if f.default is MISSING and f.default_factory is MISSING:
                    raise BundleError(f"{where}: missing field {(path + '.' if path else '') + f.name!r}")
                continue
            values[f.name] = parse(hints[f.name], raw[f.name], where, f"{path}.{f.name}" if path else f.name)
        return kind(**values)
    if kind is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise BundleError(f"{where}: {label}: expected a number, got {_show(raw)}")
        return float(raw)
    if kind in (int, str, bool):
        if not isinstance(raw, kind) or (kind is int and isinstance(raw, bool)):
            raise BundleError(f"{where}: {label}: expected {kind.__name__}, got {_show(raw)}")
        return raw
    raise TypeError(f"no parser for {kind!r}")  # pragma: no cover - a programming error


def _parse_sampler(raw: Any, where: str, label: str) -> SamplerSpec:
    from .samplers import SPECS  # here: the samplers import this module's spec classes

    kind = raw.get("kind") if isinstance(raw, dict) else None
    if not isinstance(kind, str) or kind not in SPECS:
        raise BundleError(f"{where}: {label}.kind: expected one of {', '.join(SPECS)}, got {_show(kind)}")
    return parse(SPECS[kind], raw, where, label)


def _show(raw: Any) -> str:
    text = json.dumps(raw) if not isinstance(raw, str) else repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."
