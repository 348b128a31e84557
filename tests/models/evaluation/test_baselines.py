"""Baselines: leak-free one-step runs that never crash, ACI coverage, drift detectors, anomaly scores."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from models.evaluation import baselines as B
from models.evaluation import datasets


def seasonal(n: int = 800, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10.0 + 3.0 * np.sin(2 * np.pi * t / 24) + 0.5 * rng.standard_normal(n)


def walk(n: int = 600, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10.0 + np.cumsum(rng.standard_normal(n)) + 3.0 * np.sin(2 * np.pi * t / 24)


class EchoLast:
    """Forecasts the last value it learned: must reproduce naive exactly if the runner is aligned."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def forecast(self) -> float:
        return self.seen[-1] if self.seen else math.nan

    def learn(self, y: float) -> None:
        self.seen.append(y)


def test_naive_and_echo_are_the_last_value() -> None:
    y = walk()
    naive = B.run_forecaster(B.Naive, y)
    assert math.isnan(naive[0])
    np.testing.assert_array_equal(naive[1:], y[:-1])
    np.testing.assert_array_equal(B.run_forecaster(EchoLast, y), naive)


@pytest.mark.parametrize("method", B.FORECASTERS)
def test_forecasters_are_leak_free(method: str) -> None:
    y = walk(400)
    cut = 250
    changed = y.copy()
    changed[cut:] += np.random.default_rng(1).normal(0, 50, len(y) - cut)
    factory = B.forecaster_factory(method, 24, len(y))
    a, b = B.run_forecaster(factory, y), B.run_forecaster(factory, changed)
    np.testing.assert_array_equal(a[: cut + 1], b[: cut + 1])  # row cut is forecast from rows < cut only
    assert not np.array_equal(a[cut + 1 :], b[cut + 1 :])
    assert math.isnan(a[0]) and np.all(np.isfinite(a[1:]))


@pytest.mark.parametrize("method", B.FORECASTERS)
def test_forecasters_beat_naive_on_a_noisy_seasonal_series(method: str) -> None:
    y = seasonal()
    err = {m: np.mean(np.abs(y[100:] - B.run_forecaster(B.forecaster_factory(m, 24, len(y)), y)[100:]))
           for m in ("naive", method)}
    assert err[method] <= (1.0 if method == "naive" else 0.9) * err["naive"], err


def test_forecasters_survive_spikes_and_constants() -> None:
    y = np.r_[np.zeros(50), np.full(50, 5.0), walk(300)]
    y[[120, 200, 260]] = [1e6, -1e6, 1e7]
    for method in B.FORECASTERS:
        run = B.forecast_run(B.forecaster_factory(method, 24), y)
        assert np.all(np.isfinite(run.prediction[1:])), method


class Flaky:
    """Raises on every 5th forecast, returns inf on every 7th, diverges on every 11th."""

    def __init__(self) -> None:
        self.n = 0
        self.last = 0.0

    def forecast(self) -> float:
        self.n += 1
        if self.n % 5 == 0:
            raise RuntimeError("boom")
        if self.n % 7 == 0:
            return math.inf
        if self.n % 11 == 0:
            return 1e30
        return self.last + 0.5

    def learn(self, y: float) -> None:
        if self.n % 13 == 0:
            raise ValueError("bad learn")
        self.last = y


def test_bad_steps_fall_back_to_the_last_value_and_are_counted() -> None:
    y = walk(200)
    run = B.forecast_run(Flaky, y)
    assert np.all(np.isfinite(run.prediction[1:]))
    rows = set(run.failed_rows.tolist())
    for t in range(1, 200):  # forecast call t is the t-th
        if t % 5 == 0 or t % 7 == 0 or (t % 11 == 0 and t > 1):
            assert run.prediction[t] == y[t - 1] and t in rows, t
        elif t % 13 != 0:
            assert run.prediction[t] == y[t - 1] + 0.5 or (t - 1) % 13 == 0


def test_warm_up_is_not_a_failure() -> None:
    y = walk(300)
    run = B.forecast_run(B.forecaster_factory("holt_winters", 24, len(y)), y)
    assert len(run.failed_rows) == 0
    np.testing.assert_array_equal(run.prediction[1:24], y[:23])  # last value until Holt-Winters has a season


def test_holt_winters_learns_a_clean_season() -> None:
    t = np.arange(24 * 20, dtype=np.float64)
    y = 50.0 + 0.01 * t + 5.0 * np.sin(2 * np.pi * t / 24)
    p = B.run_forecaster(B.forecaster_factory("holt_winters", 24), y)
    naive = B.run_forecaster(B.Naive, y)
    late = slice(24 * 10, None)
    assert np.mean(np.abs(y[late] - p[late])) < 0.2 * np.mean(np.abs(y[late] - naive[late]))


def test_factory_rejects_unknown_and_drops_short_seasons() -> None:
    with pytest.raises(ValueError, match="unknown forecaster"):
        B.forecaster_factory("prophet")
    model = B.forecaster_factory("holt_winters", 52, n_rows=100)()
    assert isinstance(model, B.HoltWintersForecaster) and model.model.seasonality == 0


def test_conformal_coverage_on_iid_gaussian() -> None:
    rng = np.random.default_rng(7)
    y = rng.standard_normal(5000)
    lower, upper = B.conformal_interval(y, np.zeros_like(y), level=0.95)
    assert np.all(np.isnan(lower[: B.MIN_RESIDUALS])) and np.all(np.isfinite(lower[B.MIN_RESIDUALS :]))
    ok = np.isfinite(lower)
    coverage = np.mean((y[ok] >= lower[ok]) & (y[ok] <= upper[ok]))
    assert 0.93 <= coverage <= 0.97
    assert np.all(upper[ok] >= lower[ok])
    # The half-width settles on the 95% quantile of |residual|: the data's own (NumPy) and, within the
    # ACI step's jitter, the Gaussian 1.96.
    half = np.median((upper - lower)[1000:]) / 2
    assert half == pytest.approx(np.quantile(np.abs(y), 0.95), abs=0.06)
    assert half == pytest.approx(NormalDist().inv_cdf(0.975), abs=0.1)


def test_conformal_interval_skips_missing_forecasts() -> None:
    y = walk(300)
    p = B.run_forecaster(B.Naive, y)
    p[100:110] = np.nan
    lower, _ = B.conformal_interval(y, p)
    assert np.all(np.isnan(lower[100:110])) and np.isfinite(lower[110])


def test_conformal_anomaly_score() -> None:
    rng = np.random.default_rng(3)
    y = rng.standard_normal(1000)
    y[700] = 25.0
    score = B.conformal_anomaly_score(y, np.zeros_like(y))
    assert np.all((score >= 0) & (score <= 1))
    assert np.all(score[: B.MIN_RESIDUALS] == 0)
    # 25 beats every past residual: rank 1 (half the score) plus how far past the window's largest
    # residual it lies (the other half), so it outranks a residual that only just beats the window.
    past = np.abs(y[200:700])
    assert score[700] == pytest.approx(0.5 + 0.5 * (1.0 - past.max() / 25.0))
    assert score[700] == score.max() and score[700] > 0.9
    assert 0.2 < score[100:].mean() < 0.3  # half a p-value, uniform on exchangeable residuals


@pytest.mark.parametrize("name", B.DETECTORS)
def test_detectors_find_a_big_mean_shift(name: str) -> None:
    rng = np.random.default_rng(0)
    r = np.r_[rng.standard_normal(1000), 8.0 + rng.standard_normal(1000)]
    r[::9] = np.nan  # skipped, and rows keep their index
    alarms = B.run_detector(name, r, seed=0)
    assert alarms.dtype == np.int64 and np.all(np.diff(alarms) > 0)
    assert np.any((alarms >= 1000) & (alarms < 1100)), alarms
    assert np.all(np.isfinite(r[alarms]))


def test_unknown_detector() -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        B.run_detector("cusum", np.zeros(3))


def test_half_space_trees_scores() -> None:
    y = seasonal(1200)
    y[900] += 15.0
    score = B.river_anomaly_scores(y)
    assert score.shape == y.shape and np.all((score >= 0) & (score <= 1))
    # the spike is in the features of rows 900..903 (the last 4 values)
    assert score[900:904].max() > np.quantile(score[300:900], 0.99)
    np.testing.assert_array_equal(score, B.river_anomaly_scores(y))  # seeded


def test_runs_on_every_package_series() -> None:
    """Smoke: each river forecaster on each bundled series (about 8k rows in all) gives finite output."""
    for s in datasets.package_series():
        for method in ("snarimax", "holt_winters", "linear_lags"):
            run = B.forecast_run(B.forecaster_factory(method, s.period, len(s.values)), s.values[:400])
            assert len(run.failed_rows) == 0 and np.all(np.isfinite(run.prediction[1:])), (s.name, method)
