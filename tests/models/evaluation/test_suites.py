"""The evaluation suites on small hand-made series: what each one reports is what its scorer says about
the runs it made, every method is judged on the same rows, and the Runner computes each run once.

Every series here has N rows, so the USP back-test compiles once for the whole file.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from models.config import PredictorConfig
from models.evaluation import baselines, changepoint_metrics, metrics, nab
from models.evaluation.anomaly_suite import ANOMALY_METHODS, run_anomaly
from models.evaluation.changepoint_suite import CHANGEPOINT_METHODS, MARGIN, run_changepoint
from models.evaluation.datasets import Series
from models.evaluation.forecast_suite import ForecastReport, run_forecast, score_start
from models.evaluation.runs import FORECAST_METHODS, KERNEL_METHODS, Runner

N = 300
SHIFT_AT = 150


def make(name: str, values: np.ndarray, change_points: tuple[int, ...] = (),
         anomaly_windows: tuple[tuple[int, int], ...] = (), period: int | None = None) -> Series:
    return Series(name, "synthetic", np.arange(len(values), dtype=np.float64), np.asarray(values, np.float64),
                  change_points, anomaly_windows, period)


def random_walk(seed: int = 1) -> Series:
    return make("random_walk", np.cumsum(np.random.default_rng(seed).standard_normal(N)))


def constant() -> Series:
    return make("constant", np.full(N, 3.0))


def seasonal(seed: int = 2) -> Series:
    rng = np.random.default_rng(seed)
    return make("seasonal", 5.0 * np.sin(2 * np.pi * np.arange(N) / 12) + rng.standard_normal(N), period=12)


def mean_shift(sd: float = 12.0, seed: int = 3) -> Series:
    v = np.random.default_rng(seed).standard_normal(N)
    v[SHIFT_AT:] += sd
    return make(f"mean_shift_{sd:g}sd", v, change_points=(SHIFT_AT,))


def spikes(seed: int = 4) -> Series:
    v = np.random.default_rng(seed).standard_normal(N)
    v[200] += 15.0
    v[250] -= 15.0
    return make("spikes", v, anomaly_windows=((195, 205), (245, 255)))


@pytest.fixture(scope="module")
def runner() -> Runner:
    """Shared by the tests that only read results (memoisation makes the file fast)."""
    return Runner(PredictorConfig())


# ---------------------------------------------------------------------------------------------------- forecast

@pytest.fixture(scope="module")
def forecast(runner: Runner) -> Iterator[tuple[ForecastReport, list[str], list[Series]]]:
    series = [random_walk(), constant(), seasonal()]
    done: list[str] = []
    report = run_forecast(runner, series, done=lambda s: done.append(s.name))
    yield report, done, series


def test_forecast_skips_a_constant_series_but_reports_it_done(
        forecast: tuple[ForecastReport, list[str], list[Series]]) -> None:
    report, done, _ = forecast
    assert [s.series for s in report.series] == ["random_walk", "seasonal"]
    assert done == ["random_walk", "constant", "seasonal"]
    assert report.methods == FORECAST_METHODS


def test_every_method_is_scored_on_the_same_rows(
        runner: Runner, forecast: tuple[ForecastReport, list[str], list[Series]]) -> None:
    report, _, _ = forecast
    start = score_start(runner, N)
    assert start == runner.config.orchestration.warmup_steps + 1
    for s in report.series:
        assert s.rows == N
        assert set(s.scores) == set(FORECAST_METHODS)
        # Every method has a finite forecast on every scored row: none is judged on an easier subset.
        assert {sc.n for sc in s.scores.values()} == {N - start}, s.series


def test_naive_mase_is_about_one_on_a_random_walk(
        runner: Runner, forecast: tuple[ForecastReport, list[str], list[Series]]) -> None:
    report, _, series = forecast
    y = series[0].values
    rw = report.series[0]
    assert rw.scale == pytest.approx(metrics.naive_scale(y))
    start = score_start(runner, N)
    # The naive error on rows start.. over the in-sample naive error on all rows.
    expected = float(np.mean(np.abs(np.diff(y)[start - 1:])) / np.mean(np.abs(np.diff(y))))
    assert rw.scores["naive"].mase == pytest.approx(expected, rel=1e-12)
    assert abs(rw.scores["naive"].mase - 1.0) < 0.15
    # On a random walk nothing should be much better than the last value, and nothing wildly worse.
    for m, sc in rw.scores.items():
        assert 0.8 < sc.mase < 1.5, (m, sc.mase)


def test_scores_match_the_metrics_on_the_runs(
        runner: Runner, forecast: tuple[ForecastReport, list[str], list[Series]]) -> None:
    report, _, series = forecast
    start = score_start(runner, N)
    by_name = {s.name: s for s in series}
    for s in report.series:
        y = by_name[s.series].values
        for m in FORECAST_METHODS:
            run = runner.forecast(by_name[s.series], m)
            expected = metrics.forecast_scores(y, run.prediction, run.lower, run.upper, s.scale, start=start,
                                               alpha=1.0 - runner.level)
            assert s.scores[m] == expected, (s.series, m)


def test_coverage_and_winkler_are_sane(forecast: tuple[ForecastReport, list[str], list[Series]]) -> None:
    report, _, _ = forecast
    for s in report.series:
        for m, sc in s.scores.items():
            assert 0.0 <= sc.coverage <= 1.0, (s.series, m)
            assert np.isfinite(sc.winkler) and sc.winkler > 0.0, (s.series, m)
        # A 95% interval that covers half the rows or fewer is broken, not just miscalibrated.
        assert s.scores["usp"].coverage > 0.5
    for m in FORECAST_METHODS:
        assert report.median_mase[m] == pytest.approx(float(np.median([s.scores[m].mase for s in report.series])))
        assert 0.0 <= report.median_coverage[m] <= 1.0
        assert report.in_band[m] in (0.0, 0.5, 1.0)  # a fraction of two series


def test_kernel_columns_are_the_backtests_kernel_forecasts(runner: Runner) -> None:
    s = random_walk()
    kp = runner.usp(s).kernel_predictions
    assert kp is not None and kp.shape == (N, len(KERNEL_METHODS))
    for j, m in enumerate(KERNEL_METHODS):
        np.testing.assert_array_equal(runner.forecast(s, m).prediction, kp[:, j])
    # The kernels are four different forecasters, not one column repeated.
    assert len({runner.forecast(s, m).prediction[-1] for m in KERNEL_METHODS}) == len(KERNEL_METHODS)


def test_forecast_on_only_constant_series_reports_nan_summaries(runner: Runner) -> None:
    report = run_forecast(runner, [constant()], methods=("naive",))
    assert report.series == []
    assert np.isnan(report.median_mase["naive"]) and np.isnan(report.in_band["naive"])


def test_unknown_forecast_method_is_refused(runner: Runner) -> None:
    with pytest.raises(ValueError, match="unknown method"):
        runner.forecast(random_walk(), "oracle")


# ---------------------------------------------------------------------------------------------------- change points

def test_usp_raises_a_regime_change_at_a_large_mean_shift(runner: Runner) -> None:
    s = mean_shift(12.0)
    alarms = np.flatnonzero(runner.usp(s).regime_change)
    assert alarms.size >= 1
    assert np.min(np.abs(alarms - SHIFT_AT)) <= MARGIN, alarms
    report = run_changepoint(runner, [s], methods=("usp",))
    assert report.series[0].f1["usp"] > 0.6  # found the change (precision may lose to a stray alarm)


def test_changepoint_scores_are_the_metrics_on_the_reported_alarms(runner: Runner) -> None:
    series = [mean_shift(12.0), make("noise", np.random.default_rng(5).standard_normal(N))]
    done: list[str] = []
    report = run_changepoint(runner, series, done=lambda s: done.append(s.name))
    assert done == [s.name for s in series]
    assert report.methods == CHANGEPOINT_METHODS
    for s, sc in zip(series, report.series, strict=True):
        assert sc.series == s.name and sc.rows == N and sc.truth == s.change_points
        assert set(sc.alarms) == set(CHANGEPOINT_METHODS)
        assert sc.alarms["usp"] == [int(i) for i in np.flatnonzero(runner.usp(s).regime_change)]
        residuals = runner.residuals(s)
        for m in baselines.DETECTORS:
            assert sc.alarms[m] == baselines.run_detector(m, residuals).tolist(), (s.name, m)
        for m, alarms in sc.alarms.items():
            assert all(0 <= a < N for a in alarms)
            assert sc.f1[m] == changepoint_metrics.f1_score([list(s.change_points)], alarms, margin=MARGIN).f1
            assert sc.covering[m] == changepoint_metrics.covering([list(s.change_points)], alarms, N)
            assert 0.0 <= sc.f1[m] <= 1.0 and 0.0 <= sc.covering[m] <= 1.0
    for m in CHANGEPOINT_METHODS:
        assert report.mean_f1[m] == pytest.approx(np.mean([s.f1[m] for s in report.series]))
        assert report.mean_covering[m] == pytest.approx(np.mean([s.covering[m] for s in report.series]))


def test_residuals_are_values_minus_usp_forecast(runner: Runner) -> None:
    s = mean_shift(12.0)
    r = runner.residuals(s)
    assert np.isnan(r[0])  # no forecast before the first row
    np.testing.assert_array_equal(r[1:], s.values[1:] - runner.usp(s).prediction[1:])


# ---------------------------------------------------------------------------------------------------- anomalies

def test_anomaly_scores_are_nab_on_the_same_files(runner: Runner) -> None:
    series = [spikes(), seasonal()]
    report = run_anomaly(runner, series)
    assert report.methods == ANOMALY_METHODS
    assert report.files == 2 and report.windows == 2
    for m in ANOMALY_METHODS:
        files = []
        for s in series:
            score = runner.anomaly_score(s, m)
            assert score.shape == (N,) and np.all((score >= 0.0) & (score <= 1.0)), (s.name, m)
            files.append(nab.NabFile(s.name, score, list(s.anomaly_windows), nab.probation_rows(N)))
        assert set(report.scores[m]) == set(nab.PROFILES)
        for p, profile in nab.PROFILES.items():
            threshold, result = nab.optimize_threshold(files, profile)
            got = report.scores[m][p]
            assert got.threshold == threshold and got.normalized == result.normalized, (m, p)
            assert (got.tp, got.fp, got.fn) == (result.tp, result.fp, result.fn)
            assert got.tp + got.fn == report.windows
            # The silent detector is always a candidate, so the best threshold scores at least the null.
            assert 0.0 <= got.normalized <= 100.0, (m, p, got.normalized)
    # Two 15 sd spikes 50 rows apart in unit noise. USP's score is an episode's rise above a slowly
    # decaying envelope of recent evidence, and the first spike raises the kurtosis-adapted threshold:
    # the first spike is found at the best threshold with no false positive, the second scores lower.
    usp = report.scores["usp"]["standard"]
    assert usp.tp >= 1 and usp.fp == 0
    score = runner.anomaly_score(series[0], "usp")
    assert score[200] == score.max() and score[250] < score[200]


# ---------------------------------------------------------------------------------------------------- memoisation

def test_runner_memoises_every_run() -> None:
    labels: list[str] = []
    runner = Runner(PredictorConfig(), progress=labels.append)
    s = spikes()
    first = runner.usp(s)
    assert runner.usp(s) is first
    assert labels == ["usp spikes"]
    naive = runner.forecast(s, "naive")
    assert runner.forecast(s, "naive") is naive
    run_forecast(runner, [s])
    run_forecast(runner, [s])
    run_changepoint(runner, [s])
    run_anomaly(runner, [s])
    run_anomaly(runner, [s])
    assert len(labels) == len(set(labels)), labels
    # One label per computation: the back-test (which also yields every kernel and the change-point
    # residuals), each river/naive forecaster, and HalfSpaceTrees; nothing for kernels or detectors.
    assert sorted(labels) == sorted(f"{m} spikes" for m in ("usp", "naive", "snarimax", "holt_winters",
                                                             "linear_lags", "half_space_trees"))
    assert runner.anomaly_score(s, "snarimax") is runner.anomaly_score(s, "snarimax")


# ---------------------------------------------------------------------------------------------------- splits

def test_tune_and_test_splits_partition_the_scored_rows(runner: Runner) -> None:
    s = make("walk", np.cumsum(np.random.default_rng(11).standard_normal(N)))
    whole = run_forecast(runner, [s], methods=("usp", "naive")).series[0]
    tune = run_forecast(runner, [s], methods=("usp", "naive"), split="tune").series[0]
    test = run_forecast(runner, [s], methods=("usp", "naive"), split="test").series[0]
    for m in ("usp", "naive"):
        assert tune.scores[m].n + test.scores[m].n == whole.scores[m].n and test.scores[m].n == N - N // 2
        # MAE over all rows is the row-weighted mean of the two halves' MAEs.
        pooled = (tune.scores[m].mae * tune.scores[m].n + test.scores[m].mae * test.scores[m].n) / whole.scores[m].n
        assert pooled == pytest.approx(whole.scores[m].mae)


def test_a_split_scores_only_its_own_change_points_and_windows(runner: Runner) -> None:
    cp = mean_shift(12.0)  # one change point, in the second half
    test = run_changepoint(runner, [cp], methods=("usp",), split="test").series[0]
    tune = run_changepoint(runner, [cp], methods=("usp",), split="tune").series[0]
    assert test.rows == N - N // 2 and tune.rows == N // 2
    assert test.truth == tuple(c - N // 2 for c in cp.change_points) and tune.truth == ()
    assert all(0 <= a < test.rows for a in test.alarms["usp"])
    spiky = spikes()  # both windows in the second half
    assert run_anomaly(runner, [spiky], methods=("usp",), split="tune").windows == 0
    assert run_anomaly(runner, [spiky], methods=("usp",), split="test").windows == 2
