"""Baselines for `usp evaluate`: river's one-step forecasters, drift detectors and HalfSpaceTrees, each
driven strictly online (forecast, then learn) so they see exactly what USP sees, plus the shared
conformal machinery that gives every point forecaster an interval and an anomaly score the same way.

Parameters are river's defaults or one global setting per method chosen once on the bundled series,
never tuned per series: a baseline tuned on the test file would flatter it, a crippled one would flatter
USP.

>>> import numpy as np
>>> y = np.array([1.0, 2.0, 4.0, 7.0])
>>> run_forecaster(Naive, y).tolist()
[nan, 1.0, 2.0, 4.0]
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import numpy as np

log = logging.getLogger(__name__)

FORECASTERS = ("naive", "snarimax", "holt_winters", "linear_lags")
DETECTORS = ("adwin", "page_hinkley", "kswin")
MIN_RESIDUALS = 10  # a conformal quantile from fewer past residuals is noise
SNARIMAX_MAX_PERIOD = 288  # a day of 5-minute rows; each forecast copies a period-long history
HOLT_WINTERS_MIN_SEASONS = 3  # seasonal Holt-Winters only when the series holds this many full seasons
FEATURE_CLIP = 5.0  # standardised regression features are clipped to this many sd
DIVERGED_STEPS = 1e3  # a forecast this many largest-steps-so-far away from the last value has diverged


class Forecaster(Protocol):
    """A one-step forecaster fed one value at a time: `forecast()` predicts the next value from what it
    has learned so far, `learn(y)` then reveals it."""

    def forecast(self) -> float: ...

    def learn(self, y: float) -> None: ...


# ---------------------------------------------------------------------------------------------------- forecasters

class Naive:
    """The last value: the yardstick of MASE, and the fallback of every other forecaster."""

    def __init__(self) -> None:
        self._last = math.nan

    def forecast(self) -> float:
        return self._last

    def learn(self, y: float) -> None:
        self._last = y


def _clip_features(x: dict[str, float]) -> dict[str, float]:
    return {k: min(FEATURE_CLIP, max(-FEATURE_CLIP, v)) for k, v in x.items()}


def _robust_regressor() -> Any:
    """Online linear regression that survives spikes: standardised target and features, features
    clipped to +-FEATURE_CLIP sd, Huber loss (quadratic within 1 sd of the target)."""
    from river import compose, linear_model, optim, preprocessing

    regression = linear_model.LinearRegression(optimizer=optim.SGD(0.01), loss=optim.losses.Huber(epsilon=1.0))
    pipeline: Any = preprocessing.StandardScaler() | compose.FuncTransformer(_clip_features) | regression
    return preprocessing.TargetStandardScaler(pipeline)  # a Pipeline ending in a regressor is one


class SnarimaxForecaster:
    """river's SNARIMAX: ARIMA(p, d, q) fitted online by SGD, plus one seasonal AR and one seasonal MA
    term (lag `period` of the differenced series and of the errors) when the period is known and at most
    SNARIMAX_MAX_PERIOD rows.

    river's default regressor (StandardScaler into LinearRegression on squared loss) diverged on 11 of
    the 17 non-constant NAB files (MASE up to 6e11), so the regressor is
    made robust the same way as `LinearLagsForecaster`'s: target standardised, features clipped to
    +-5 sd, Huber loss. Seasonal differencing was tried too: better on the smooth monthly series,
    much worse on NAB's spiky ones.
    """

    def __init__(self, period: int | None = None, p: int = 2, d: int = 1, q: int = 1) -> None:
        from river import time_series

        seasonal = period is not None and 2 <= period <= SNARIMAX_MAX_PERIOD
        self.model = time_series.SNARIMAX(p=p, d=d, q=q, m=period if seasonal and period else 1,
                                          sp=1 if seasonal else 0, sq=1 if seasonal else 0,
                                          regressor=_robust_regressor())
        self._seen = 0

    @property
    def warming_up(self) -> bool:
        return self._seen <= self.model.d  # no difference seen yet: SNARIMAX would forecast 0

    def forecast(self) -> float:
        if self.warming_up:
            return math.nan
        return float(self.model.forecast(horizon=1)[0])

    def learn(self, y: float) -> None:
        self.model.learn_one(y)
        self._seen += 1


class HoltWintersForecaster:
    """river's additive Holt-Winters, seasonal when a period is given, else level and trend only.

    River initialises from the first max(2, period) values and cannot forecast before; until then this
    returns NaN and the runner's last-value fallback covers the gap. River 0.26's initial state is then
    corrected once: its additive seasonal indices are y / level (the multiplicative form: about 1 whatever
    the data, a bias that gamma takes many seasons to wash out), so they become y - mean; and its trend
    is the mean step of the first window, which without a season is a single noisy difference that a
    small beta keeps for a hundred rows (MASE 2.6 on macrodata infl), so it starts at 0. The smoothing
    constants are one setting from a 36-point grid, by median MASE over the bundled and NAB series.
    """

    def __init__(self, period: int | None = None, alpha: float = 0.5, beta: float = 0.01,
                 gamma: float = 0.1) -> None:
        from river import time_series

        seasonal = period is not None and period >= 2
        self.model = time_series.HoltWinters(alpha=alpha, beta=beta, gamma=gamma if seasonal else None,
                                             seasonality=period if seasonal and period else 0)
        self._ready = False

    @property
    def warming_up(self) -> bool:
        return not self._ready

    def forecast(self) -> float:
        if not self._ready:
            return math.nan
        return float(self.model.forecast(horizon=1)[0])

    def learn(self, y: float) -> None:
        self.model.learn_one(y)
        if not self._ready and self.model._initialized:
            self._ready = True
            self._fix_initialisation(list(self.model._first_values))  # the window river just used

    def _fix_initialisation(self, window: list[float]) -> None:
        model = self.model
        mean = sum(window) / len(window)
        model.level[-1] = mean if model.season is not None else window[-1]
        if model.trend is not None:
            model.trend[-1] = 0.0
        if model.season is not None:
            model.season.clear()
            model.season.extend(y - mean for y in window)


class LinearLagsForecaster:
    """river LinearRegression on the last `lags` differences, predicting the next difference.

    Differences rather than levels: a linear model on raw levels must learn the level through its
    intercept, which SGD does slowly and forgets badly after a shift, whereas on differences the last
    value carries the level and the model only learns the short-term dynamics (all-zero weights, its
    starting point, is the no-change forecast); on the bundled and NAB series the level form had a median
    MASE of 1.04 against 0.92 for differences. Features and target are standardised online so one
    learning rate suits every unit; features are clipped to +-5 sd and the loss is Huber, because plain
    SGD on squared loss diverged on NAB's spiky files (MASE 1e10 on rogue_agent_key_updown).
    """

    def __init__(self, lags: int = 8) -> None:
        self.model = _robust_regressor()
        self._diffs: deque[float] = deque(maxlen=lags)
        self._last = math.nan

    def _features(self) -> dict[str, float]:
        return {f"d{i}": d for i, d in enumerate(self._diffs)}

    def forecast(self) -> float:
        if len(self._diffs) < (self._diffs.maxlen or 0):
            return self._last
        return self._last + float(self.model.predict_one(self._features()))

    def learn(self, y: float) -> None:
        if not math.isnan(self._last):
            diff = y - self._last
            if len(self._diffs) == self._diffs.maxlen:
                self.model.learn_one(self._features(), diff)
            self._diffs.appendleft(diff)
        self._last = y


def forecaster_factory(method: str, period: int | None = None, n_rows: int | None = None) -> Callable[[], Forecaster]:
    """A zero-argument constructor for `method`, so every run starts from a fresh model.

    `n_rows`, when given, drops Holt-Winters' season for series shorter than a few seasons, where the
    seasonal indices would be fitted from one or two noisy cycles.
    """
    if method == "naive":
        return Naive
    if method == "snarimax":
        return lambda: SnarimaxForecaster(period)
    if method == "holt_winters":
        seasonal = period if period and (n_rows is None or n_rows >= HOLT_WINTERS_MIN_SEASONS * period) else None
        return lambda: HoltWintersForecaster(seasonal)
    if method == "linear_lags":
        return LinearLagsForecaster
    raise ValueError(f"unknown forecaster {method!r}; known: {', '.join(FORECASTERS)}")


class ForecastRun(NamedTuple):
    prediction: np.ndarray  # row t: the forecast of values[t] from values[:t]; NaN at t = 0
    failed_rows: np.ndarray  # rows where the model raised, or gave a non-finite forecast after warm-up


def forecast_run(factory: Callable[[], Forecaster], values: np.ndarray) -> ForecastRun:
    """Drive a forecaster through `values`, forecasting each row before learning it, and substitute the
    last value whenever the model raises, returns a non-finite number, or has plainly diverged (more
    than DIVERGED_STEPS times the largest step seen so far from the last value): one bad step must cost
    one row, not the run or the series' average error. Such rows are recorded, warm-up rows are not."""
    y = np.asarray(values, dtype=np.float64)
    prediction = np.full(len(y), np.nan)
    failed: list[int] = []
    model = factory()
    last, max_step = math.nan, 0.0
    for t in range(len(y)):
        if t > 0:
            try:
                p = float(model.forecast())
            except Exception:
                p = math.nan
            diverged = math.isfinite(p) and max_step > 0 and abs(p - last) > DIVERGED_STEPS * max_step
            if not math.isfinite(p) or diverged:
                if diverged or not _warming_up(model):
                    failed.append(t)
                p = last
            prediction[t] = p
        if math.isfinite(y[t]):
            try:
                model.learn(float(y[t]))
            except Exception:
                failed.append(t)
            if math.isfinite(last):
                max_step = max(max_step, abs(y[t] - last))
            last = float(y[t])
    return ForecastRun(prediction, np.unique(np.asarray(failed, dtype=np.int64)))


def _warming_up(model: Any) -> bool:
    """A forecaster may say it has nothing to offer yet; its NaN then is not counted as a failure."""
    return bool(getattr(model, "warming_up", False))


def run_forecaster(factory: Callable[[], Forecaster], values: np.ndarray) -> np.ndarray:
    """One-step forecasts aligned to `values` (row t forecasts values[t] from values[:t]; NaN at t = 0)."""
    run = forecast_run(factory, values)
    if len(run.failed_rows):
        log.warning("forecaster fell back to the last value on %d of %d rows", len(run.failed_rows), len(values))
    return run.prediction


# ---------------------------------------------------------------------------------------------------- conformal

def conformal_interval(values: np.ndarray, predictions: np.ndarray, level: float = 0.95, gamma: float = 0.005,
                       window: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Online conformal interval around any point forecast: adaptive conformal inference (Gibbs & Candès
    2021), so every baseline gets an interval by one rule and coverage is judged on equal terms.

    At row t the half-width is the ceil((n + 1)(1 - alpha_t))-th smallest of the last `window` absolute
    residuals seen before t (n of them), and alpha_t moves by gamma (alpha - miss_t) after each scored
    row. Where that rank exceeds n the largest residual is used: ACI's infinite interval would make every
    interval score infinite. NaN until MIN_RESIDUALS residuals exist or where the forecast is NaN.
    """
    y = np.asarray(values, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    lower, upper = np.full(len(y), np.nan), np.full(len(y), np.nan)
    alpha = 1.0 - level
    alpha_t = alpha
    recent: deque[float] = deque()
    ordered: list[float] = []
    for t in range(len(y)):
        if not math.isfinite(p[t]):
            continue
        n = len(ordered)
        if n >= MIN_RESIDUALS:
            rank = math.ceil((n + 1) * (1.0 - alpha_t))
            half = ordered[min(rank, n) - 1] if rank >= 1 else 0.0
            lower[t], upper[t] = p[t] - half, p[t] + half
            if math.isfinite(y[t]):
                miss = float(not (lower[t] <= y[t] <= upper[t]))
                alpha_t += gamma * (alpha - miss)
        if math.isfinite(y[t]):
            _push(recent, ordered, abs(y[t] - p[t]), window)
    return lower, upper


def conformal_anomaly_score(values: np.ndarray, predictions: np.ndarray, window: int = 500) -> np.ndarray:
    """Per-row surprise in [0, 1]: half the fraction of the last `window` past absolute residuals
    strictly below the current one (one minus a conformal p-value), plus half of how far beyond the
    largest of them it lies (1 - max / r when r exceeds the max, else 0); 0 where there is no forecast
    or too little history to judge. The second half keeps residuals that beat the whole window apart:
    the rank alone gives them all exactly 1, and a corpus-wide threshold can then only fire on all of
    them (found in review: the tie cost the baselines 12-30 points of NAB score)."""
    y = np.asarray(values, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    score = np.zeros(len(y))
    recent: deque[float] = deque()
    ordered: list[float] = []
    for t in range(len(y)):
        if not (math.isfinite(p[t]) and math.isfinite(y[t])):
            continue
        r = abs(y[t] - p[t])
        if len(ordered) >= MIN_RESIDUALS:
            largest = ordered[-1]
            beyond = 1.0 - largest / r if r > largest > 0 else 0.0
            score[t] = 0.5 * bisect.bisect_left(ordered, r) / len(ordered) + 0.5 * beyond
        _push(recent, ordered, r, window)
    return score


def _push(recent: deque[float], ordered: list[float], r: float, window: int) -> None:
    """Slide a window of residuals kept both in arrival order and sorted (O(window) memmove, no sort)."""
    recent.append(r)
    bisect.insort(ordered, r)
    if len(recent) > window:
        del ordered[bisect.bisect_left(ordered, recent.popleft())]


# ---------------------------------------------------------------------------------------------------- detectors

def _detector(name: str, seed: int) -> Any:
    from river import drift

    if name == "adwin":
        return drift.ADWIN()
    if name == "page_hinkley":
        return drift.PageHinkley()
    if name == "kswin":
        return drift.KSWIN(seed=seed)
    raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")


def run_detector(name: str, residuals: np.ndarray, seed: int = 0) -> np.ndarray:
    """Rows where river's drift detector `name` (default parameters) fires on the residual stream.

    NaN residuals are skipped, not fed; rows keep their index in `residuals`. PageHinkley's threshold
    is in the residuals' own units (50 by default), so its alarm rate depends on the series' scale,
    which is how river ships it.
    """
    detector = _detector(name, seed)
    alarms = []
    for t, r in enumerate(np.asarray(residuals, dtype=np.float64)):
        if not math.isfinite(r):
            continue
        detector.update(float(r))
        if detector.drift_detected:
            alarms.append(t)
    return np.asarray(alarms, dtype=np.int64)


def river_anomaly_scores(values: np.ndarray, lags: int = 4, seed: int = 0) -> np.ndarray:
    """river's HalfSpaceTrees on the last `lags` values, each min-max scaled online: a standard river
    streaming anomaly detector, scored before it learns each row, clipped to [0, 1].

    HalfSpaceTrees assumes features in [0, 1], hence the scaler; the scaler learns each row before
    scaling it, so the current value never falls outside the range (a spike widens it for good, which
    is how the river recipe behaves).
    """
    from river import anomaly, preprocessing

    scaler = preprocessing.MinMaxScaler()
    detector = anomaly.HalfSpaceTrees(seed=seed)
    y = np.asarray(values, dtype=np.float64)
    scores = np.zeros(len(y))
    recent: deque[float] = deque(maxlen=lags)
    for t, v in enumerate(y):
        if not math.isfinite(v):
            continue
        recent.appendleft(float(v))
        x = {f"y{i}": recent[min(i, len(recent) - 1)] for i in range(lags)}  # pad the first rows
        scaler.learn_one(x)
        scaled = scaler.transform_one(x)
        scores[t] = detector.score_one(scaled)
        detector.learn_one(scaled)
    return np.clip(scores, 0.0, 1.0)
