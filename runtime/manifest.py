"""The artifact bundle's manifest: the contract between the exporter and the runtime.

Small typed dataclasses, written as JSON (`manifest.json`) and read back with every field
checked, so that a bundle that does not match the contract is refused at load time.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VERBS = ("sample", "reconstruct", "encode", "score", "complete")
# The graphs each verb runs (any one of a tuple); checked at load, so a verb never fails later.
VERB_GRAPHS = {"sample": (("decoder", "generator"),), "encode": (("encoder",),),
               "reconstruct": (("encoder",), ("decoder",)), "score": (("score",),)}
DATA_ROLES = ("encoder", "score", "discriminator", "critic")
LATENT_ROLES = ("decoder", "generator")


@dataclass
class TensorSpec:
    """One graph input or output. `shape` uses the string "batch" for the dynamic axis."""

    name: str
    shape: list[Any]
    dtype: str = "float32"


@dataclass
class GraphSpec:
    """One ONNX file of the bundle, named for its role (`decoder`, `score`, ...)."""

    role: str
    file: str
    sha256: str
    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


@dataclass
class DataSpec:
    """What a row looks like, and how raw values become model inputs.

    model = (raw - offset) / scale, elementwise (offset and scale are scalars or one value
    per feature); samples go back through raw = model * scale + offset.
    """

    source: str
    shape: list[int]
    dtype: str = "float32"
    raw_range: list[float] | None = None
    model_range: list[float] | None = None
    offset: Any = 0.0
    scale: Any = 1.0
    image_shape: list[int] | None = None
    n_train: int = 0
    normal_class: int | None = None


@dataclass
class LatentSpec:
    """How the runtime draws latent codes. prior: `normal` (N(0, I)) or `gaussian`
    (a Gaussian fitted to the training codes, with `mean` and `cov`)."""

    dim: int
    prior: str = "normal"
    mean: list[float] | None = None
    cov: list[list[float]] | None = None


@dataclass
class ScoringSpec:
    """Score semantics and the calibration that turns a score into a flag."""

    kind: str
    threshold: float
    contamination: float
    calibration: str
    n_calibration: int
    quantile_levels: list[float]
    quantile_values: list[float]
    expected_false_alarm_rate: float | None = None


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
    latent: LatentSpec | None = None
    scoring: ScoringSpec | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, folder: Path) -> Path:
        path = Path(folder) / MANIFEST
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return path

    @classmethod
    def from_dict(cls, raw: Any, where: str = MANIFEST) -> "Manifest":
        """Build a manifest from parsed JSON, refusing anything that breaks the contract."""
        if not isinstance(raw, dict):
            raise BundleError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        version = raw.get("format_version")
        if not isinstance(version, int):
            raise BundleError(f"{where}: missing or non-integer format_version")
        if version > FORMAT_VERSION:
            raise BundleError(
                f"{where}: format_version {version} is newer than this gen reads "
                f"({FORMAT_VERSION}); upgrade gen"
            )
        if version < 1:
            raise BundleError(f"{where}: invalid format_version {version}")
        try:
            graphs = {
                role: GraphSpec(
                    role=g["role"], file=g["file"], sha256=g["sha256"], opset=int(g["opset"]),
                    inputs=[TensorSpec(**t) for t in g["inputs"]],
                    outputs=[TensorSpec(**t) for t in g["outputs"]],
                )
                for role, g in raw["graphs"].items()
            }
            manifest = cls(
                family=raw["family"], variant=raw["variant"], gen_version=raw["gen_version"],
                created=raw["created"], seed=int(raw["seed"]), config=dict(raw["config"]),
                data=DataSpec(**raw["data"]), graphs=graphs,
                capabilities=list(raw["capabilities"]),
                latent=LatentSpec(**raw["latent"]) if raw.get("latent") else None,
                scoring=ScoringSpec(**raw["scoring"]) if raw.get("scoring") else None,
                metrics=dict(raw.get("metrics", {})), parity=dict(raw.get("parity", {})),
                format_version=version,
            )
        except KeyError as exc:
            raise BundleError(f"{where}: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise BundleError(f"{where}: malformed field ({exc})") from None
        unknown = [v for v in manifest.capabilities if v not in VERBS]
        if unknown:
            raise BundleError(f"{where}: unknown capabilities {unknown}")
        if "score" in manifest.capabilities and manifest.scoring is None:
            raise BundleError(f"{where}: capability 'score' without a scoring spec")
        if "sample" in manifest.capabilities and manifest.latent is None:
            raise BundleError(f"{where}: capability 'sample' without a latent spec")
        for verb in manifest.capabilities:
            for options in VERB_GRAPHS.get(verb, ()):
                if not any(role in manifest.graphs for role in options):
                    raise BundleError(f"{where}: capability {verb!r} needs a graph {' or '.join(options)}")
        manifest._check_widths(where)
        return manifest

    def _check_widths(self, where: str) -> None:
        """Data graphs take rows of data.shape; latent graphs take codes of latent.dim."""
        width = int(np.prod(self.data.shape))
        for role, graph in self.graphs.items():
            want = width if role in DATA_ROLES else self.latent.dim if role in LATENT_ROLES and self.latent else None
            got = graph.inputs[0].shape[1:] if graph.inputs else None
            if want is not None and got != [want] and got != list(self.data.shape):
                raise BundleError(f"{where}: graph {role!r} takes rows of shape {got}, expected [{want}]")

    @classmethod
    def read(cls, folder: Path) -> "Manifest":
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise BundleError(f"{path}: no manifest.json (not a gen bundle?)")
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(raw, where=str(path))
