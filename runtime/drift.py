"""Is a batch's flagged share what the calibration allows? The threshold is the
(1 - contamination) quantile of n_cal held-out normal scores, so a fresh normal row exceeds it
with a probability that is itself uncertain, Beta(m + 1, n_cal - m) with m the calibration
rows above it (about contamination x n_cal). The number flagged among n normal rows is then
beta-binomial; a share whose two-sided p-value under it falls below LEVEL is drift (or an
attack, or a broken upstream stage), reported as a warning, never an error.
"""

from __future__ import annotations

import math

LEVEL = 1e-3  # two-sided level of the flagged-share test
MIN_ROWS = 30  # fewer rows than this are not tested


def flagged_share_test(rows: int, flagged: int, scoring) -> dict | None:
    """{share, expected, p_value, drift} for `flagged` of `rows` under the bundle's scoring
    calibration, or None when there are too few rows to say anything."""
    if rows < MIN_ROWS:
        return None
    n_cal = max(1, int(scoring.n_calibration))
    above = min(n_cal - 1, max(0, round(scoring.contamination * n_cal)))
    alpha, beta = above + 1.0, float(n_cal - above)
    mean = alpha / (alpha + beta)
    var = rows * mean * (1 - mean) * (alpha + beta + rows) / (alpha + beta + 1)
    # normal approximation of the beta-binomial, with a continuity correction
    z = max(0.0, abs(flagged - rows * mean) - 0.5) / math.sqrt(max(var, 1e-12))
    p_value = math.erfc(z / math.sqrt(2.0))
    return {"share": flagged / rows, "expected": mean, "p_value": p_value, "drift": p_value < LEVEL}


def describe_drift(where: str, test: dict, median: float | None, scoring) -> str:
    """One line: the share against the calibration, and the median score beside the normal one."""
    normal_median = None
    levels, values = scoring.quantile_levels, scoring.quantile_values
    if levels and values:
        normal_median = min(zip(levels, values), key=lambda lv: abs(lv[0] - 0.5))[1]
    medians = (f"; median score {median:.4g} vs {normal_median:.4g} on held-out normal rows"
               if median is not None and normal_median is not None else "")
    return (f"{where}: {test['share']:.2%} of rows flagged where the calibration expects about "
            f"{test['expected']:.2%} (p = {test['p_value']:.1e} < {LEVEL:g}): the data may have drifted{medians}")


def check_drift(scoring, files: list[tuple[str, int, int, float | None]], warn: bool = True,
                stacklevel: int = 2) -> list[dict]:
    """Test each (name, rows, flagged, median score) against the calibration `scoring`; return
    the drifted ones ({file, share, expected, p_value, drift, median}) and, with `warn`, say so
    in one GenWarning naming the first and how many more (what `gen score` prints)."""
    import warnings

    from .errors import GenWarning

    drifted = []
    for name, rows, flagged, median in files:
        test = flagged_share_test(rows, flagged, scoring)
        if test is not None and test["drift"]:
            drifted.append({"file": name, **test, "median": median})
    if drifted and warn:
        first = drifted[0]
        more = f" (and {len(drifted) - 1} more: {', '.join(d['file'] for d in drifted[1:4])}" \
               f"{', ...' if len(drifted) > 4 else ''})" if len(drifted) > 1 else ""
        warnings.warn(describe_drift(first["file"], first, first["median"], scoring) + more, GenWarning,
                      stacklevel=stacklevel + 1)
    return drifted
