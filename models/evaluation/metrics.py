"""One-step-ahead forecast scores: MAE, MASE, interval coverage and the Winkler (interval) score.

Inputs are aligned float arrays: row t of `yhat`, `lower` and `upper` is the forecast of `y[t]` made
before `y[t]` was seen. A method that has no forecast yet (warm-up) writes NaN there, so every score
skips rows where what it needs is not finite instead of letting one NaN poison the mean; how many rows
were actually scored is reported beside the scores (`ForecastScores.n`), because a score over ten rows
and one over ten thousand must not be read alike.

MASE follows Hyndman & Koehler (2006): dividing by the series' in-sample naive one-step error makes
the score unit-free, so it can be summarised across series, and the naive (last value) forecast scores
about 1. The interval score follows Winkler (1972) and Gneiting & Raftery (2007): it is a proper
scoring rule for a central (1 - alpha) interval, so a method cannot improve it by widening or
narrowing its interval away from the honest quantiles, unlike coverage alone.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["ForecastScores", "coverage", "forecast_scores", "mae", "mase", "naive_scale", "winkler"]

_NAN = float("nan")


def _arrays(*xs: npt.ArrayLike) -> list[np.ndarray]:
    out = [np.asarray(x, dtype=np.float64).reshape(-1) for x in xs]
    if len({a.shape for a in out}) > 1:
        raise ValueError(f"arrays must be aligned, got lengths {[a.size for a in out]}")
    return out


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else _NAN


def mae(y: npt.ArrayLike, yhat: npt.ArrayLike) -> float:
    """Mean absolute error over the rows where both `y` and `yhat` are finite (NaN if there are none).

    >>> mae([1.0, 2.0, 4.0], [float("nan"), 1.0, 2.0])
    1.5
    """
    ya, pa = _arrays(y, yhat)
    ok = np.isfinite(ya) & np.isfinite(pa)
    return _mean(np.abs(ya[ok] - pa[ok]))


def naive_scale(y: npt.ArrayLike) -> float:
    """In-sample error of the naive one-step forecast: mean |y[t] - y[t-1]|.

    Non-finite values are dropped before differencing, so across a gap the naive forecast is the last
    value actually observed (what a streaming last-value forecaster would have said). NaN when fewer
    than two finite values remain; 0 for a constant series (the caller decides what MASE means then).

    >>> naive_scale([1.0, 3.0, float("nan"), 2.0])
    1.5
    """
    (ya,) = _arrays(y)
    finite = ya[np.isfinite(ya)]
    if finite.size < 2:
        return _NAN
    return float(np.mean(np.abs(np.diff(finite))))


def mase(y: npt.ArrayLike, yhat: npt.ArrayLike, scale: float) -> float:
    """MAE divided by `scale` (usually `naive_scale(y)`); NaN when the scale is 0 or not finite.

    >>> mase([1.0, 2.0, 4.0], [float("nan"), 1.0, 2.0], scale=1.5)
    1.0
    """
    if not np.isfinite(scale) or scale == 0:
        return _NAN
    return mae(y, yhat) / float(scale)


def _interval_rows(y: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike) -> list[np.ndarray]:
    ya, lo, hi = _arrays(y, lower, upper)
    ok = np.isfinite(ya) & np.isfinite(lo) & np.isfinite(hi)
    return [ya[ok], lo[ok], hi[ok]]


def coverage(y: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike) -> float:
    """Fraction of rows with lower <= y <= upper, over rows where all three are finite (NaN if none).

    >>> coverage([1.0, 5.0, 2.0, 3.0], [0.0, 0.0, float("nan"), 3.0], [2.0, 2.0, 9.0, 4.0])
    0.6666666666666666
    """
    ya, lo, hi = _interval_rows(y, lower, upper)
    return _mean(((ya >= lo) & (ya <= hi)).astype(np.float64))


def winkler(y: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike, alpha: float = 0.05) -> float:
    """Mean interval score of central (1 - alpha) intervals, over rows where y, lower, upper are finite.

    Each row scores its width plus (2/alpha) times how far y falls outside the interval, so a miss
    costs more the more confident (smaller alpha) the interval claimed to be. Lower is better.

    >>> winkler([1.0, 5.0], [0.0, 0.0], [2.0, 2.0], alpha=0.5)  # (2 + (2 + 4 * 3)) / 2
    8.0
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    ya, lo, hi = _interval_rows(y, lower, upper)
    penalty = (2.0 / alpha) * (np.maximum(lo - ya, 0.0) + np.maximum(ya - hi, 0.0))
    return _mean(hi - lo + penalty)


class ForecastScores(NamedTuple):
    """Scores of one method on one series; `n` is the number of rows the point scores used."""

    n: int
    mae: float
    mase: float
    coverage: float
    winkler: float


def forecast_scores(
    y: npt.ArrayLike,
    yhat: npt.ArrayLike,
    lower: npt.ArrayLike | None,
    upper: npt.ArrayLike | None,
    scale: float,
    start: int = 0,
    alpha: float = 0.05,
) -> ForecastScores:
    """All scores over rows `start:`, so every method is judged on the same stretch of the series.

    `n` counts the rows where `y` and `yhat` are both finite (the rows MAE and MASE use); coverage and
    Winkler use the rows where `y` and the interval are finite, and are NaN when there is no interval.

    >>> forecast_scores([1.0, 2.0, 4.0, 3.0], [9.0, 1.0, 2.0, 4.0], [0.0, 0.0, 1.0, 2.0],
    ...                 [9.0, 3.0, 3.0, 5.0], scale=1.0, start=1, alpha=0.5)
    ForecastScores(n=3, mae=1.3333333333333333, mase=1.3333333333333333, coverage=0.6666666666666666, winkler=4.0)
    """
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    ya, pa = _arrays(y, yhat)
    ya, pa = ya[start:], pa[start:]
    n = int(np.count_nonzero(np.isfinite(ya) & np.isfinite(pa)))
    if lower is None or upper is None:
        cov = wink = _NAN
    else:
        _, lo, hi = _arrays(y, lower, upper)
        cov = coverage(ya, lo[start:], hi[start:])
        wink = winkler(ya, lo[start:], hi[start:], alpha=alpha)
    return ForecastScores(n=n, mae=mae(ya, pa), mase=mase(ya, pa, scale), coverage=cov, winkler=wink)
