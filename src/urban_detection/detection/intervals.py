"""Percentile intervals and paired differences from trip-bootstrap draws.

The draws come from :mod:`.bootstrap` (one value per draw and metric, every experiment
scored on the same trip draws when it saw the same frames). A 95% percentile interval
is the 2.5th and 97.5th percentile of a metric over the draws. A paired difference
takes, draw by draw, an experiment's value minus the reference's: the trips that make
one experiment look good make the other look good too, so the paired interval is much
narrower than two separate intervals suggest. The verdict is *better* when the whole
interval of the difference lies above 0, *worse* when below, else *not distinguishable*
(for losses, lower is better). Draws where a metric is undefined (a class with no
ground truth in the drawn trips) are left out and counted.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

LEVEL = 0.95
BETTER, WORSE, SAME = "better", "worse", "not distinguishable"


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` percentile interval of the defined (finite) values; NaNs when none is."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def intervals(draws: Mapping[str, np.ndarray], level: float = LEVEL) -> dict[str, dict[str, float | int]]:
    """Per metric: ``{"low", "high", "undefined_draws"}``."""
    out = {}
    for name, values in draws.items():
        low, high = percentile_interval(values, level)
        out[name] = {"low": low, "high": high, "undefined_draws": int(np.count_nonzero(~np.isfinite(values)))}
    return out


def lower_is_better(metric: str) -> bool:
    """Losses are better low; AP and AR high."""
    return metric.startswith("loss/") or "/loss/" in metric


def verdict(low: float, high: float, metric: str = "") -> str:
    """*better* / *worse* / *not distinguishable* from the interval of (experiment - reference)."""
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0.0 <= high:
        return SAME
    above = low > 0.0
    return (WORSE if above else BETTER) if lower_is_better(metric) else (BETTER if above else WORSE)


def paired_differences(draws: Mapping[str, np.ndarray], reference_draws: Mapping[str, np.ndarray],
                       point: Mapping[str, float], reference_point: Mapping[str, float],
                       level: float = LEVEL) -> dict[str, dict[str, float | str]]:
    """Per metric both have: ``{"difference" (point values), "low", "high" (interval of the per-draw
    difference over the draws where both are defined), "verdict"}``. Both draw sets must come
    from the same trip draws (same trips, seed and number of draws)."""
    out = {}
    for name in draws:
        if name not in reference_draws:
            continue
        a, b = np.asarray(draws[name], float), np.asarray(reference_draws[name], float)
        if a.shape != b.shape:
            raise ValueError(f"{name}: {a.size} draws against the reference's {b.size}: not the same trip draws")
        low, high = percentile_interval(a - b, level)
        value, ref = point.get(name), reference_point.get(name)
        difference = float(value) - float(ref) if value is not None and ref is not None else math.nan
        out[name] = {"difference": difference, "low": low, "high": high, "verdict": verdict(low, high, name)}
    return out


def format_interval(value: float | None, low: float | None, high: float | None, digits: int = 3) -> str:
    """``0.585 [0.502, 0.667]``; ``n/a`` for an undefined value, the value alone without an interval."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    text = f"{float(value):.{digits}f}"
    if low is None or high is None or not (math.isfinite(float(low)) and math.isfinite(float(high))):
        return text
    return f"{text} [{float(low):.{digits}f}, {float(high):.{digits}f}]"


def error_bar_extents(value, low, high) -> np.ndarray:
    """Whisker lengths (2, N) from each value to its interval's ends, for matplotlib's ``xerr``.

    A percentile interval need not contain the point value (a skewed metric, or a rounding of
    1e-20 when every draw equals the point): that side's whisker is then drawn with length 0,
    never negative. Missing values give zero-length whiskers.
    """
    value, low, high = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (value, low, high))
    below = np.nan_to_num(value - low)
    above = np.nan_to_num(high - value)
    return np.clip(np.vstack([below, above]), 0.0, None)
