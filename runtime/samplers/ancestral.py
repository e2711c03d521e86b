"""Ancestral sampling: z from the latent prior, then one generator or decoder graph."""

from __future__ import annotations

import numpy as np

from ..errors import BundleError, InputError
from ..manifest import AncestralSampler, CodeSpec, LatentSpec

SPEC = AncestralSampler  # the manifest's spec of this sampler kind


def draw_latent(spec: LatentSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw (n, dim) float32 codes from the bundle's latent prior. Training's preview.png
    draws through this same function, so it shows what `gen sample` returns for a seed."""
    eps = rng.standard_normal((n, spec.dim))
    if spec.prior == "normal":
        return eps.astype(np.float32)
    if spec.prior == "gaussian":
        mean = np.asarray(spec.mean, dtype=np.float64)
        cov = np.asarray(spec.cov, dtype=np.float64)
        if mean.shape != (spec.dim,) or cov.shape != (spec.dim, spec.dim):
            raise BundleError(f"latent gaussian has mean {mean.shape} / cov {cov.shape}, expected dim {spec.dim}")
        # Jitter keeps the Cholesky factor defined for a rank-deficient code covariance.
        jitter = 1e-6 * max(float(np.trace(cov)) / spec.dim, 1e-12)
        chol = np.linalg.cholesky(cov + jitter * np.eye(spec.dim))
        return (mean + eps @ chol.T).astype(np.float32)
    raise BundleError(f"unknown latent prior {spec.prior!r}")


def check_fixed_codes(codes: list[CodeSpec] | None, fixed: dict | None) -> dict[str, float]:
    """{code name: value} for InfoGAN codes held fixed, checked against the bundle's codes: a
    categorical code takes a class index in 0..size-1, a uniform one any finite number (values
    outside its training range extrapolate, as in the InfoGAN paper's figures)."""
    fixed = dict(fixed or {})
    if not fixed:
        return {}
    if not codes:
        raise InputError(f"this bundle has no latent codes to fix (got {', '.join(map(str, fixed))}); "
                         "only InfoGAN bundles take --code")
    by_name = {c.name: c for c in codes}
    out = {}
    for name, value in fixed.items():
        code = by_name.get(name)
        if code is None:
            raise InputError(f"unknown code {name!r}; this bundle's codes are: "
                             + ", ".join(f"{c.name} ({_describe(c)})" for c in codes))
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"code {name}={value!r}: expected a number") from None
        if not np.isfinite(number):
            raise InputError(f"code {name}={value!r}: expected a finite number")
        if code.kind == "categorical" and (number != int(number) or not 0 <= number < code.size):
            raise InputError(f"code {name}={value!r}: expected a class index in 0..{code.size - 1}")
        out[name] = number
    return out


def _describe(code: CodeSpec) -> str:
    if code.kind == "categorical":
        return f"categorical 0..{code.size - 1}"
    return f"uniform {code.low:g}..{code.high:g}"


def draw_codes(codes: list[CodeSpec], n: int, rng: np.random.Generator, fixed: dict | None = None) -> np.ndarray:
    """(n, width) float32 InfoGAN codes side by side: one-hot categories (uniform over the
    classes) and U(low, high) values, each code drawn for every row (so the draws, and the
    other codes, do not change when one code is fixed) and then replaced by its fixed value."""
    fixed = check_fixed_codes(codes, fixed)
    parts = []
    for code in codes:
        if code.kind == "categorical":
            index = rng.integers(code.size, size=n)
            if code.name in fixed:
                index[:] = int(fixed[code.name])
            parts.append(np.eye(code.size, dtype=np.float32)[index])
        else:
            value = rng.uniform(code.low, code.high, size=(n, 1))
            if code.name in fixed:
                value[:] = fixed[code.name]
            parts.append(value.astype(np.float32))
    return np.concatenate(parts, axis=1)


def sample(model, spec: AncestralSampler, n: int, rng: np.random.Generator, codes: dict | None = None,
           **options) -> np.ndarray:
    """n samples: z from the prior (and InfoGAN codes, some perhaps fixed by `codes`, e.g.
    {"cat": 3, "c1": 0.5}) through `spec.graph`, read from `spec.output`."""
    from . import refuse_options

    refuse_options(spec.kind, options)
    latent = model.manifest.latent
    if spec.codes is None and codes:
        check_fixed_codes(None, codes)
    z = draw_latent(latent, n, rng)
    feeds = {spec.input: z}
    if spec.codes is not None:
        feeds[spec.codes] = draw_codes(latent.codes, n, rng, codes)
    return model.run_batched(spec.graph, feeds, spec.output)
