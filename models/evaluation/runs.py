"""One run of every method on one series, computed once and shared by the suites.

The forecast and anomaly suites both need, say, SNARIMAX on nyc_taxi, and the change-point suite needs
USP's residuals: a `Runner` memoises each (series, method) so an `all` evaluation pays for each once.
Every method is scored on the same rows: row t is the forecast of y[t] made from y[:t] only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from models.backtest import BacktestResult, backtest
from models.config import PredictorConfig
from models.evaluation import baselines
from models.evaluation.datasets import Series
from models.step import KERNEL_NAMES

RIVER_FORECASTERS = ("snarimax", "holt_winters", "linear_lags")
KERNEL_METHODS = tuple(f"kernel_{k[0].lower()}" for k in KERNEL_NAMES)  # kernel_a .. kernel_d
FORECAST_METHODS = ("usp", *KERNEL_METHODS, "naive", *RIVER_FORECASTERS)


SPLITS = ("all", "tune", "test")


def split_rows(n: int, split: str) -> tuple[int, int]:
    """The rows [lo, hi) a split scores: "tune" is the first half of a series, "test" the second half
    (every method still runs over the whole series, so the test half starts warm), "all" everything.
    Choosing parameters on "tune" and reporting "test" is the walk-forward protocol: no parameter is
    picked on the rows it is scored on.

    >>> split_rows(10, "tune"), split_rows(10, "test"), split_rows(10, "all")
    ((0, 5), (5, 10), (0, 10))
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    half = n // 2
    return {"all": (0, n), "tune": (0, half), "test": (half, n)}[split]


class MethodRun(NamedTuple):
    """A method's one-step forecasts with a 95% interval (NaN where it has none yet)."""

    prediction: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def _key(series: Series) -> tuple[str, int]:
    return series.name, len(series.values)


class Runner:
    """Memoised runs of USP (one back-test with every kernel's forecast) and of the baselines, keyed by
    series name and length (a name stands for one data set; `--max-rows` cuts give new lengths).

    `progress(label)` is called before each new computation, so a CLI can show what is running.
    """

    def __init__(self, config: PredictorConfig, progress: Callable[[str], None] | None = None) -> None:
        self.config = config
        self._progress = progress
        self._usp: dict[tuple[str, int], BacktestResult] = {}
        self._runs: dict[tuple[str, int, str], MethodRun] = {}
        self._scores: dict[tuple[str, int, str], np.ndarray] = {}

    def _note(self, label: str) -> None:
        if self._progress is not None:
            self._progress(label)

    @property
    def level(self) -> float:
        return self.config.orchestration.interval_level

    def usp(self, series: Series) -> BacktestResult:
        key = _key(series)
        if key not in self._usp:
            self._note(f"usp {series.name}")
            # The series' own clock, as a worker would see it: the seasonal profile reads its phase.
            ts = np.round(series.ts * 1e9).astype(np.int64)
            self._usp[key] = backtest(ts, series.values, self.config, kernels=True)
        return self._usp[key]

    def forecast(self, series: Series, method: str) -> MethodRun:
        key = (*_key(series), method)
        if key in self._runs:
            return self._runs[key]
        if method == "usp":
            r = self.usp(series)
            run = MethodRun(r.prediction, r.lower, r.upper)
        else:
            if method in KERNEL_METHODS:
                kp = self.usp(series).kernel_predictions
                assert kp is not None
                prediction = np.asarray(kp[:, KERNEL_METHODS.index(method)], dtype=np.float64)
            elif method == "naive" or method in RIVER_FORECASTERS:
                self._note(f"{method} {series.name}")
                factory = baselines.forecaster_factory(method, series.period, len(series.values))
                prediction = baselines.run_forecaster(factory, series.values)
            else:
                raise ValueError(f"unknown method {method!r}; known: {', '.join(FORECAST_METHODS)}")
            # Every baseline gets its interval the same way (online conformal on its own residuals).
            lower, upper = baselines.conformal_interval(series.values, prediction, level=self.level)
            run = MethodRun(prediction, lower, upper)
        self._runs[key] = run
        return run

    def residuals(self, series: Series) -> np.ndarray:
        """USP's one-step residuals (NaN where it had no forecast): what the drift detectors are fed."""
        return np.asarray(series.values - self.usp(series).prediction, dtype=np.float64)

    def anomaly_score(self, series: Series, method: str) -> np.ndarray:
        """Per-row score in [0, 1]: USP's own, a forecaster's conformal surprise, or river's HalfSpaceTrees."""
        key = (*_key(series), method)
        if key not in self._scores:
            if method == "usp":
                score = np.asarray(self.usp(series).anomaly_score, dtype=np.float64)
            elif method == "half_space_trees":
                self._note(f"{method} {series.name}")
                score = baselines.river_anomaly_scores(series.values)
            else:
                score = baselines.conformal_anomaly_score(series.values, self.forecast(series, method).prediction)
            self._scores[key] = np.clip(np.nan_to_num(score, nan=0.0), 0.0, 1.0)
        return self._scores[key]
