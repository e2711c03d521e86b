"""Training configuration: one dataclass whose fields are both the CLI flags and the YAML keys."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import TrainError

FAMILIES = ("ae-naive", "ae", "ae-tied", "vae", "gan")


@dataclass
class TrainConfig:
    model: str = "ae"
    data: str = "digits"
    out: str = "runs/run"
    epochs: int = 30
    seed: int = 0
    device: str = "auto"
    batch_size: int = 64
    lr: float | None = None
    normal_class: int | None = None
    label_column: str | None = None
    hidden: list[int] | None = None
    latent_dim: int | None = None
    contamination: float = 0.01
    calibration_fraction: float = 0.1
    # autoencoders
    loss: str = "auto"
    # VAE
    decoder: str = "auto"
    kl_weight: float = 1.0
    # GAN
    gan_loss: str = "non_saturating"
    k: int = 1
    threads: int | None = None
    quiet: bool = False

    def validate(self) -> "TrainConfig":
        """Check every value once, at the boundary, naming the key and the value."""
        def bad(key: str, expected: str) -> TrainError:
            return TrainError(f"config {key}={getattr(self, key)!r}: expected {expected}")

        if self.model not in FAMILIES:
            raise bad("model", f"one of {', '.join(FAMILIES)}")
        for key in ("epochs", "batch_size", "k"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise bad(key, "an integer >= 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise bad("device", "auto, cpu or cuda")
        if self.lr is not None and not self.lr > 0:
            raise bad("lr", "a number > 0")
        if not 0 < self.contamination < 0.5:
            raise bad("contamination", "a share in (0, 0.5)")
        if not 0 < self.calibration_fraction < 0.5:
            raise bad("calibration_fraction", "a share in (0, 0.5)")
        if self.hidden is not None and (not isinstance(self.hidden, list)
                                        or not all(isinstance(h, int) and h > 0 for h in self.hidden)):
            raise bad("hidden", "a list of positive integers")
        if self.latent_dim is not None and (not isinstance(self.latent_dim, int) or self.latent_dim < 1):
            raise bad("latent_dim", "an integer >= 1")
        if self.loss not in ("auto", "mse", "bce"):
            raise bad("loss", "auto, mse or bce")
        if self.decoder not in ("auto", "bernoulli", "gaussian"):
            raise bad("decoder", "auto, bernoulli or gaussian")
        if not self.kl_weight > 0:
            raise bad("kl_weight", "a number > 0 (a VAE without its KL term is not a VAE)")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise bad("threads", "an integer >= 1")
        if self.gan_loss not in ("minimax", "non_saturating"):
            raise bad("gan_loss", "minimax or non_saturating")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "config") -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise TrainError(f"{where}: unknown keys {unknown}; known keys: {', '.join(sorted(names))}")
        return cls(**raw)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise TrainError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise TrainError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise TrainError(f"{path}: expected a mapping of keys to values")
        return cls.from_dict({k.replace("-", "_"): v for k, v in raw.items()}, where=str(path))

    def write_yaml(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
