"""orchestrate_step: ingest checks, numeric safety, regime changes, batching, coverage on real data.

The step is compiled once for the module (a compile costs seconds on the CI machine; a compiled tick
costs well under a millisecond), and every test uses the default PredictorConfig through it.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from models.config import OrchestrationConfig, PredictorConfig
from models.state import N_KERNELS, SeriesState, init_state, stack_states, unstack_state
from models.step import (
    MODE_CALIBRATION,
    MODE_DIAGNOSTIC,
    MODE_INFERENCE,
    MODE_NAMES,
    REASON_FROZEN,
    REASON_NAMES,
    REASON_NUMERIC,
    REASON_OK,
    REASON_RANGE,
    REASON_STALE,
    Observation,
    StepResult,
    orchestrate_step,
    orchestrate_step_batch,
)
from native.season import season_gain

CFG = PredictorConfig()
ORCH = CFG.orchestration
STEP = jax.jit(functools.partial(orchestrate_step, config=CFG))
UNIFORM = np.full(N_KERNELS, 1.0 / N_KERNELS)
NAB_TAXI = Path(__file__).resolve().parents[3] / "shared/data/nab/data/realKnownCause/nyc_taxi.csv"
BUNDLED_TAXI = Path(__file__).resolve().parents[2] / "streams/data/nyc_taxi.csv"  # the same file


def step(state: SeriesState, ts: int, value: float) -> tuple[SeriesState, StepResult]:
    new, result = STEP(state, Observation(np.int64(ts), np.float64(value)))
    return new, result


def run(values: Sequence[float], state: SeriesState | None = None,
        start_ts: int = 1) -> tuple[SeriesState, list[StepResult]]:
    s = init_state(CFG) if state is None else state
    results = []
    for i, v in enumerate(values):
        s, r = step(s, start_ts + i, v)
        results.append(r)
    return s, results


def leaves(tree: Any) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def assert_same_predictive_state(a: SeriesState, b: SeriesState) -> None:
    """Every leaf equal, except the refusal bookkeeping (rejected count and ingest counters).
    (A refused *outlier* also updates the anomaly envelope `surprise` and the conformal `log_mult`; no
    caller here refuses one.)"""
    strip = {"rejected": a.rejected, "ingest": a.ingest}
    for x, y in zip(leaves(a), leaves(b._replace(**strip)), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y, equal_nan=True)


def assert_sound(state: SeriesState, results: Sequence[StepResult]) -> None:
    for leaf in leaves(state):
        assert np.all(np.isfinite(leaf.astype(np.float64)))
    for r in results:
        for name, field in zip(r._fields, r, strict=True):
            assert np.all(np.isfinite(np.asarray(field, dtype=np.float64))), name
        w = np.asarray(r.weights)
        assert np.all(w >= 0) and abs(w.sum() - 1.0) <= 1e-9
        assert float(r.lower) <= float(r.prediction) <= float(r.upper)
        assert 0.0 <= float(r.anomaly_score) <= 1.0
    rho = np.asarray(state.rho)
    assert np.all(rho >= 0) and abs(rho.sum() - 1.0) <= 1e-9


# --- properties over arbitrary input ---

finite = st.floats(-1e6, 1e6, allow_nan=False)
value_lists = st.one_of(
    st.lists(finite, min_size=1, max_size=60),
    st.tuples(finite, st.integers(1, 60)).map(lambda c: [c[0]] * c[1]),  # constant
    st.lists(st.one_of(finite, st.sampled_from([1e300, -1e300, 1e101, 1e100, 1e-300, -1e-300, 5e-324])),
             min_size=1, max_size=60),  # huge (refused), tiny and subnormal (accepted)
    st.integers(1, 60).map(lambda n: [1e50 * (-1) ** i for i in range(n)]),  # sign-flipping +-1e50
    st.lists(st.floats(-1e100, 1e100, allow_nan=False), min_size=1, max_size=40),  # anything in range
)


@settings(max_examples=50, deadline=None)
@given(value_lists)
@example([1e300] * 5)
@example([1.0, 1e300, 2.0, -1e300, 3.0])
@example([1e-300] * 10)
@example([2.2250738585e-313, 1.0, 2.2250738585e-313])  # subnormal: XLA flushes it in arithmetic
@example([1e50 * (-1) ** i for i in range(60)])
@example([1e100, -1e100] * 30)
def test_any_input_keeps_state_and_results_sound(values: list[float]) -> None:
    state, results = run(values)
    assert_sound(state, results)
    for v, r in zip(values, results, strict=True):
        if abs(v) > ORCH.max_abs_value:
            assert not bool(r.accepted)
            assert REASON_NAMES[int(r.reason)] == "out_of_range"
    accepted = sum(bool(r.accepted) for r in results)
    assert int(state.n_obs) == accepted
    assert int(state.rejected) == len(values) - accepted
    # The range is exactly that of the accepted values (as the step reads them: subnormals flushed).
    kept = [0.0 if abs(v) < np.finfo(np.float64).tiny else v
            for v, r in zip(values, results, strict=True) if bool(r.accepted)]
    if kept:
        assert float(state.range_lo) == min(kept) and float(state.range_hi) == max(kept)


def test_identical_input_gives_identical_output() -> None:
    rng = np.random.default_rng(5)
    values = list(np.cumsum(rng.standard_normal(150)) + 20.0)
    values[80] = 1e300  # a refusal on the way
    s1, r1 = run(values)
    s2, r2 = run(values)
    for a, b in zip(leaves((s1, r1)), leaves((s2, r2)), strict=True):
        assert np.array_equal(a, b)


def test_mode_is_calibration_during_warmup_then_inference() -> None:
    values = list(np.random.default_rng(0).standard_normal(ORCH.warmup_steps + 5))
    _, results = run(values)
    modes = [MODE_NAMES[int(r.mode)] for r in results]
    assert modes == ["calibration"] * ORCH.warmup_steps + ["inference"] * 5


# --- refusals ---


def test_stale_observation_is_refused_and_leaves_state_unchanged() -> None:
    state, _ = run(list(np.random.default_rng(1).standard_normal(60)), start_ts=100)
    last_ts = int(state.last_ts)
    for ts in (last_ts, last_ts - 1, 0):
        new, r = step(state, ts, 0.5)
        assert not bool(r.accepted)
        assert int(r.reason) == REASON_STALE
        assert not bool(r.degraded)  # a replay is no fault of the series
        assert int(r.mode) == MODE_INFERENCE
        assert float(r.residual) == 0.0
        assert not bool(r.regime_change)
        # Nothing changes at all, counters included: redelivery is idempotent.
        for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(new), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        # What it publishes is the forecast it already had.
        assert float(r.prediction) == float(state.prediction)
        assert float(r.upper) == float(state.upper)
        np.testing.assert_array_equal(np.asarray(r.weights), np.asarray(state.rho))


def test_out_of_range_value_is_refused_without_nan() -> None:
    state, _ = run(list(np.random.default_rng(2).standard_normal(50)))
    for bad in (1e300, -1e300, np.inf, -np.inf, np.nan, 2 * ORCH.max_abs_value):
        new, r = step(state, 1000, bad)
        assert int(r.reason) == REASON_RANGE
        assert_same_predictive_state(state, new)
        assert_sound(new, [r])


def frozen_run(n_same: int) -> tuple[list[float], list[StepResult], SeriesState]:
    noise = list(np.random.default_rng(3).standard_normal(60))
    values = noise + [7.25] * n_same
    state, results = run(values)
    return values, results[len(noise):], state


def test_frozen_input_is_refused_and_enters_degraded_mode() -> None:
    _, tail, _ = frozen_run(ORCH.frozen_steps + 10)
    reasons = [int(r.reason) for r in tail]
    first = reasons.index(REASON_FROZEN)
    assert ORCH.frozen_steps <= first <= ORCH.frozen_steps + 1  # the docstring's count or one later (see below)
    assert all(r == REASON_OK for r in reasons[:first])
    assert all(r == REASON_FROZEN for r in reasons[first:])  # every further repeat is refused too
    for r in tail[first:]:
        assert bool(r.degraded)
        assert int(r.mode) == MODE_CALIBRATION
        assert REASON_NAMES[int(r.reason)] == "frozen"


def test_frozen_count_matches_the_config_docstring() -> None:
    """OrchestrationConfig: 'frozen_steps: this many identical values in a row make the next identical one
    frozen'. So of frozen_steps + 1 identical values, exactly the last is refused."""
    _, tail, _ = frozen_run(ORCH.frozen_steps + 1)
    assert [bool(r.accepted) for r in tail] == [True] * ORCH.frozen_steps + [False]


def test_degraded_mode_exits_only_after_recovery_steps_clean_ticks() -> None:
    rng = np.random.default_rng(4)
    state, _ = run(list(rng.standard_normal(60)))
    ts = int(state.last_ts)
    state, r = step(state, ts + 1, 1e200)  # out of range: degraded starts
    assert bool(r.degraded)
    ts += 1
    # recovery_steps - 1 clean ticks are not enough ...
    for i in range(ORCH.recovery_steps - 1):
        state, r = step(state, ts + 1 + i, float(rng.standard_normal()))
        assert bool(r.accepted) and bool(r.degraded)
        assert int(r.mode) == MODE_CALIBRATION
    ts = int(state.last_ts) + 1
    # ... and a refusal on the way restarts the count.
    state, r = step(state, ts, 1e200)
    assert bool(r.degraded)
    for i in range(ORCH.recovery_steps):
        state, r = step(state, ts + 1 + i, float(rng.standard_normal()))
        assert bool(r.accepted)
        last = i == ORCH.recovery_steps - 1
        assert bool(r.degraded) is not last
        assert int(r.mode) == (MODE_INFERENCE if last else MODE_CALIBRATION)
    state, r = step(state, int(state.last_ts) + 1, 0.0)
    assert not bool(r.degraded)


def test_frozen_series_recovers_once_values_move_again() -> None:
    _, _, state = frozen_run(ORCH.frozen_steps + 3)
    rng = np.random.default_rng(6)
    ts = int(state.last_ts) + 10  # last_ts is the last *accepted* tick; refused ones left it
    results = []
    for i in range(ORCH.recovery_steps + 2):
        state, r = step(state, ts + i, 7.25 + float(rng.standard_normal()))
        results.append(r)
    assert all(bool(r.accepted) for r in results)
    assert [bool(r.degraded) for r in results] == [True] * (ORCH.recovery_steps - 1) + [False] * 3


# --- numeric safety gate ---


def poison(state: SeriesState, where: str) -> SeriesState:
    """`state` with one non-finite number planted in the named leaf."""
    if where == "mlp.w1":
        return state._replace(mlp=state.mlp._replace(w1=jnp.asarray(state.mlp.w1).at[0, 0].set(jnp.nan)))
    if where == "krr.alpha":
        return state._replace(krr=state.krr._replace(alpha=jnp.asarray(state.krr.alpha).at[3].set(jnp.nan)))
    if where == "jd.diff_var":
        return state._replace(jd=state.jd._replace(diff_var=jnp.asarray(jnp.inf)))
    if where == "kernel_loss":
        return state._replace(kernel_loss=jnp.asarray(state.kernel_loss).at[1].set(jnp.nan))
    if where.startswith("season.profile"):  # the one float32 leaf: inf there must not pass as in bounds
        bad = jnp.inf if where.endswith("inf") else jnp.nan
        return state._replace(season=state.season._replace(profile=jnp.asarray(state.season.profile).at[-1].set(bad)))
    raise AssertionError(where)


@pytest.fixture(scope="module")
def warm_state() -> SeriesState:
    state, _ = run(list(np.cumsum(np.random.default_rng(7).standard_normal(80))))
    return state


def test_a_refused_outlier_counts_as_an_interval_miss(warm_state: SeriesState) -> None:
    """A refused outlier leaves the forecast as it was, but the interval missed it: the conformal width
    multiplier grows by the ACI step for a miss, gamma (1 - miss rate) / sqrt(miss rate)."""
    sigma = (float(warm_state.upper) - float(warm_state.prediction)) / ORCH.interval_z
    x = float(warm_state.prediction) + 10 * ORCH.outlier_z * sigma
    new, r = step(warm_state, int(warm_state.last_ts) + 1, x)
    assert REASON_NAMES[int(r.reason)] == "outlier"
    assert float(new.prediction) == float(warm_state.prediction) and float(new.upper) == float(warm_state.upper)
    rate = 1 - ORCH.interval_level
    expected = min(float(warm_state.log_mult) + ORCH.conformal_gamma * (1 - rate) / rate ** 0.5, 5.0)
    assert float(new.log_mult) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("where", ["mlp.w1", "krr.alpha", "jd.diff_var", "kernel_loss", "season.profile:inf",
                                   "season.profile:nan"])
def test_non_finite_state_is_refused_in_diagnostic_mode(warm_state: SeriesState, where: str) -> None:
    bad = poison(warm_state, where)
    new, r = step(bad, int(bad.last_ts) + 1, float(bad.last_value) + 0.1)
    assert not bool(r.accepted)
    assert REASON_NAMES[int(r.reason)] == "non_finite"
    assert int(r.reason) == REASON_NUMERIC
    assert int(r.mode) == MODE_DIAGNOSTIC
    assert bool(r.degraded)
    assert_same_predictive_state(bad, new)  # nothing computed from the bad leaf entered state
    # The forecast it publishes is the last good one, and finite.
    for name in ("prediction", "lower", "upper", "weights", "residual", "anomaly_score", "kernel_predictions",
                 "cusum"):
        assert np.all(np.isfinite(np.asarray(getattr(r, name)))), name
    assert float(r.prediction) == float(warm_state.prediction)


def test_non_finite_state_puts_no_nan_in_any_result_field(warm_state: SeriesState) -> None:
    bad = poison(warm_state, "mlp.w1")
    _, r = step(bad, int(bad.last_ts) + 1, float(bad.last_value) + 0.1)
    for name, leaf in zip(r._fields, r, strict=True):
        assert np.all(np.isfinite(np.asarray(leaf, dtype=np.float64))), name


# --- regime change ---


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_level_shift_of_10_sigma_is_a_regime_change(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(400)
    values[300:] += 10.0
    state = init_state(CFG)
    alarm_ticks = []
    for i, v in enumerate(values):
        state, r = step(state, i + 1, float(v))
        assert bool(r.accepted)
        if bool(r.regime_change) and i >= 300:
            alarm_ticks.append(i)
            # The alarm resets the weights to uniform (entropy reset) on that very tick.
            np.testing.assert_allclose(np.asarray(state.rho), UNIFORM, atol=1e-15)
            if float(r.holder) >= ORCH.rough_holder:
                np.testing.assert_allclose(np.asarray(r.weights), UNIFORM, atol=1e-15)
    assert alarm_ticks and alarm_ticks[0] <= 303, alarm_ticks
    assert int(state.alarms) >= 1


def test_weights_are_frozen_during_the_grace_period() -> None:
    """Drive a real alarm with a shift large enough to beat the kurtosis-raised threshold, then check that
    rho does not move for grace_period_steps ticks and moves again afterwards."""
    rng = np.random.default_rng(8)
    state, _ = run(list(rng.standard_normal(200)))
    ts = int(state.last_ts)
    alarm_at = None
    for i in range(40):
        state, r = step(state, ts + 1 + i, 40.0 + float(rng.standard_normal()))
        if bool(r.regime_change):
            alarm_at = i
            break
    assert alarm_at is not None
    np.testing.assert_allclose(np.asarray(state.rho), UNIFORM, atol=1e-15)
    ts = int(state.last_ts)
    grace = CFG.cusum.grace_period_steps
    for i in range(grace):
        state, r = step(state, ts + 1 + i, 40.0 + float(rng.standard_normal()))
        assert not bool(r.regime_change)
        np.testing.assert_allclose(np.asarray(state.rho), UNIFORM, atol=1e-15)
    moved = False
    for i in range(5):
        state, r = step(state, ts + grace + 1 + i, 40.0 + float(rng.standard_normal()))
        moved = moved or not np.allclose(np.asarray(state.rho), UNIFORM, atol=1e-12)
    assert moved


# --- batching ---


def test_batch_equals_one_series_at_a_time() -> None:
    rng = np.random.default_rng(9)
    n_series, n_ticks = 4, 60
    series = rng.standard_normal((n_series, n_ticks)).cumsum(axis=1) * np.array([[1.0], [1e-3], [1e4], [5.0]])
    series[2, 30] = 1e300  # one refused value in one series
    ts = np.tile(np.arange(1, n_ticks + 1, dtype=np.int64), (n_series, 1))
    ts[1, 40] = ts[1, 39]  # and one stale timestamp in another
    batch = stack_states([], n_series, CFG)
    singles = [init_state(CFG) for _ in range(n_series)]
    for t in range(n_ticks):
        batch, br = orchestrate_step_batch(batch, Observation(ts[:, t], series[:, t]), CFG)
        for i in range(n_series):
            singles[i], r = step(singles[i], int(ts[i, t]), float(series[i, t]))
            for name, one, many in zip(r._fields, r, br, strict=True):
                np.testing.assert_allclose(np.asarray(many[i], dtype=np.float64), np.asarray(one, dtype=np.float64),
                                           rtol=1e-9, atol=1e-9 * max(1.0, abs(float(series[i, t]))), err_msg=name)
    for i in range(n_series):
        for a, b in zip(leaves(singles[i]), leaves(unstack_state(batch, i)), strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9)
    assert int(unstack_state(batch, 2).rejected) == 1
    assert int(unstack_state(batch, 1).rejected) == 0  # a stale tick is a no-op, counters included


def test_the_backtest_scan_runs_as_one_compiled_loop_and_matches_the_step() -> None:
    """native/__init__.py's XLA flags let the back-test's scan be emitted as one function (4x its
    ticks/s): an op that blocks that (a sort, a scatter, a custom fusion) would quietly undo it."""
    from models.backtest import _scan, backtest

    rng = np.random.default_rng(3)
    ts = np.arange(1, 81, dtype=np.int64) * 60 * 10**9
    values = 50.0 + rng.standard_normal(80).cumsum()
    text = _scan(CFG, False).lower(init_state(CFG), ts, values).compile().as_text()
    entry = text[text.index("ENTRY"):]
    entry = entry[:entry.index("\n}")]
    assert 'xla_cpu_small_call="true"' in entry and " while(" not in entry
    result = backtest(ts, values, CFG)
    state = init_state(CFG)
    for t in range(len(values) - 1):  # a back-test's row t + 1 holds the forecast made after row t
        state, r = step(state, int(ts[t]), float(values[t]))
        np.testing.assert_allclose(result.prediction[t + 1], float(r.prediction), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(result.upper[t + 1], float(r.upper), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(result.weights[t + 1], np.asarray(r.weights), rtol=1e-12, atol=1e-12)
        assert result.anomaly_score[t] == pytest.approx(float(r.anomaly_score), rel=1e-9, abs=1e-12)


# --- calibration on real data ---


def taxi_rows(limit: int) -> list[tuple[int, float]]:
    path = NAB_TAXI if NAB_TAXI.exists() else BUNDLED_TAXI
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            stamp = datetime.fromisoformat(row["timestamp"]).replace(tzinfo=UTC)
            rows.append((int(stamp.timestamp()) * 1_000_000_000, float(row["value"])))
            if len(rows) == limit:
                break
    return rows


def test_interval_coverage_on_nyc_taxi() -> None:
    """Empirical coverage of the interval published one tick earlier, after warm-up, first 2000 rows of
    NAB's nyc_taxi (a strongly seasonal count series); nominal level 0.95."""
    rows = taxi_rows(2000)
    assert len(rows) == 2000
    state = init_state(CFG)
    hits = []
    prev: tuple[float, float] | None = None
    for i, (ts, x) in enumerate(rows):
        if prev is not None and i > ORCH.warmup_steps:
            hits.append(prev[0] <= x <= prev[1])
        state, r = step(state, ts, x)
        assert bool(r.accepted)
        prev = (float(r.lower), float(r.upper))
    coverage = float(np.mean(hits))
    assert 0.90 <= coverage <= 0.99, coverage


# --- seasonality ---

MIDNIGHT_NS = 19_676 * 86_400 * 1_000_000_000  # 2023-11-15 00:00 UTC: bins line up with clock hours
FIVE_MIN_NS = 300 * 1_000_000_000
HOUR_NS = 3600 * 1_000_000_000
PLAIN = PredictorConfig(orchestration=OrchestrationConfig(season_bins=0))  # the same predictor, no season


@functools.cache
def stepper(cfg: PredictorConfig) -> Any:
    return jax.jit(functools.partial(orchestrate_step, config=cfg))


def replay(values: Sequence[float], cfg: PredictorConfig = CFG, every: int = FIVE_MIN_NS,
           start: int = MIDNIGHT_NS) -> tuple[SeriesState, list[StepResult]]:
    """A fresh series on a regular clock from a UTC midnight, through the step compiled for `cfg`."""
    one = stepper(cfg)
    s = init_state(cfg)
    results = []
    for i, v in enumerate(values):
        s, r = one(s, Observation(np.int64(start + i * every), np.float64(v)))
        results.append(r)
    return s, results


def daily_step(days: int, seed: int) -> list[float]:
    """Five-minute rows, flat but for a step of 100 from 08:00 to 20:00, with noise of 0.01."""
    rng = np.random.default_rng(seed)
    return [(100.0 if 96 <= i % 288 < 240 else 0.0) + 0.01 * rng.standard_normal() for i in range(288 * days)]


def test_a_predicted_step_that_comes_a_little_short_is_no_anomaly() -> None:
    """Daily steps of 100 between flats with noise of 0.01: the kernels' losses are about 0, so without
    the spread's floor (a fraction of the predicted move) the interval around a predicted step is as
    narrow as on the flats, and a step that comes as 97 is a huge surprise. With the default floor its
    anomaly score is low; the interval's half-width is at least the floor's share of the move."""
    days = 6
    values = daily_step(days, seed=3)
    step = (days - 1) * 288 + 96
    values[step:step + 144] = [v - 3.0 for v in values[step:step + 144]]
    scores = {}
    for name, fraction in (("floor", CFG.orchestration.spread_move_fraction), ("none", 0.0)):
        cfg = PredictorConfig(orchestration=OrchestrationConfig(spread_move_fraction=fraction))
        _, results = replay(values, cfg)
        before = results[step - 1]
        move = abs(float(before.prediction) - values[step - 1])
        assert move > 80.0  # the step is predicted
        if name == "floor":
            assert float(before.upper - before.prediction) >= 0.5 * fraction * move
        scores[name] = max(float(r.anomaly_score) for r in results[step:step + 5])
    assert scores["floor"] < 0.1 < scores["none"], scores  # measured 0.0 vs 0.42


def test_a_daily_pattern_is_forecast_better_with_the_seasonal_profile() -> None:
    """Hourly rows of a daily shape plus noise: the seasonal profile (a kernel input) must cut the
    one-step MAE of the last week clearly below the same predictor without it (season_bins = 0).
    Hourly rows get a weekly profile, which learns a daily shape seven times more slowly than a daily
    one would: eight weeks of rows."""
    from models.backtest import backtest

    rng = np.random.default_rng(5)
    n = 24 * 56
    hours = np.arange(n)
    values = 10 * np.sin(2 * np.pi * hours / 24) + 4 * (hours % 24 == 9) + 0.5 * rng.standard_normal(n)
    ts = MIDNIGHT_NS + HOUR_NS * hours
    mae = {}
    for name, cfg in (("season", CFG), ("plain", PLAIN)):
        r = backtest(ts, values, cfg)
        mae[name] = float(np.mean(np.abs(values[-168:] - r.prediction[-168:])))
    assert mae["season"] < 0.8 * mae["plain"], mae  # measured 0.60 vs 0.82


def test_the_fused_forecast_anticipates_a_daily_step() -> None:
    """Five-minute rows with a step of 100 at 08:00 and back at 20:00 every day: after a few days the
    series follows its profile (season gain near 1), so the forecast made at 07:55 already expects the
    step, where a predictor without the season (season_bins = 0) still forecasts the flat night."""
    days = 6
    values = daily_step(days, seed=3)
    before_step = (days - 1) * 288 + 95
    forecast = {}
    for name, cfg in (("season", CFG), ("plain", PLAIN)):
        s, results = replay(values, cfg)
        forecast[name] = float(results[before_step].prediction)
        if name == "season":
            assert float(season_gain(np.asarray(s.season_fit))) > 0.9
    assert forecast["season"] > 80.0 and forecast["plain"] < 20.0, forecast


def test_a_random_walk_takes_almost_nothing_from_its_profile() -> None:
    """A Gaussian random walk on five-minute rows has a profile that only averages noise: the soft
    threshold drops most bins and the gain fitted on the rest stays small, so the forecast is not
    pushed around by last days' noise."""
    rng = np.random.default_rng(11)
    values = list(np.cumsum(rng.standard_normal(288 * 8)))
    s, _ = replay(values)
    assert int(s.season.bins) == 288
    assert float(season_gain(np.asarray(s.season_fit))) < 0.3


def test_a_recurring_level_shift_is_learnt_where_it_starts() -> None:
    """Five-minute rows, flat but for a step up at 08:00 and down at 20:00 every day: after a long calm
    stretch the step is refused as an outlier (patience) and accepted on its third tick. With the
    seasonal profile that shift is learnt at the phase where the run began, so within days the step is
    expected and accepted on its first tick; without it (season_bins = 0) it is refused every day."""
    seen = {}
    for name, cfg in (("season", CFG), ("plain", PLAIN)):
        _, results = replay(daily_step(7, seed=2), cfg)
        seen[name] = [REASON_NAMES[int(results[day * 288 + 96].reason)] for day in range(7)]
    assert seen["season"][0] == "outlier" and seen["season"][-2:] == ["ok", "ok"], seen
    assert seen["plain"][1:] == ["outlier"] * 6, seen


def test_with_patience_one_a_shift_is_learnt_at_its_own_tick() -> None:
    """outlier_patience = 1 accepts a shift on its first tick: the seasonal profile must learn it at that
    tick's phase (the 08:00 bin, 96), not at the one before."""
    cfg = PredictorConfig(orchestration=OrchestrationConfig(outlier_patience=1))
    s, _ = replay(daily_step(3, seed=8), cfg)
    profile = np.asarray(s.season.profile) * float(s.season.scale)
    assert int(s.season.bins) == 288
    assert int(np.argmax(profile)) == 96 and int(np.argmin(profile)) == 240, np.flatnonzero(np.abs(profile) > 1)


def test_a_flat_night_is_not_frozen_but_a_stuck_value_is() -> None:
    """Five-minute rows (a daily season of 288): a run of 60 identical values is allowed, while the
    same value for 200 rows is refused from its 145th on (frozen_season_fraction = half a day; the
    night, 1.5 x 60 = 90 values, allows less); with frozen_season_fraction = 0 and no spell behind
    it, the plain frozen_steps = 100 applies."""
    rng = np.random.default_rng(4)
    values = [*np.cumsum(rng.standard_normal(50)), *[7.0] * 60, *np.cumsum(rng.standard_normal(30)), *[3.0] * 200]
    reasons = [REASON_NAMES[int(r.reason)] for r in replay(values)[1]]
    assert "frozen" not in reasons[50:140]
    assert reasons[140 + 143] == "ok" and reasons[140 + 144:] == ["frozen"] * (200 - 144)
    night = [*np.cumsum(rng.standard_normal(50)), *[7.0] * 120]
    _, results = replay(night, PredictorConfig(orchestration=OrchestrationConfig(frozen_season_fraction=0.0)))
    assert [REASON_NAMES[int(r.reason)] for r in results].index("frozen") == 50 + 100  # the 101st repeat


def square_wave(days: int) -> list[float]:
    """Five-minute rows, exactly 20 for 180 rows then 80 for 108, every day (NAB's perfect square wave)."""
    return [20.0 if i % 288 < 180 else 80.0 for i in range(288 * days)]


def test_a_flat_spell_the_series_came_out_of_is_not_frozen_again() -> None:
    """The square wave's low spell (180 rows) outlasts the seasonal allowance (144), so the first one is
    refused from its 145th row. It then ends by itself, so it is a shape of the series: later spells of
    that length are accepted. A value stuck for a whole day afterwards is refused from its 271st value
    (more than 1.5 x 180): a stuck sensor still is."""
    values = [*square_wave(4), *[20.0] * 288]
    state, results = replay(values)
    reasons = [REASON_NAMES[int(r.reason)] for r in results]
    first_low = reasons[:180]
    assert first_low[144] == "frozen" and "frozen" not in first_low[:144]
    assert "frozen" not in reasons[288:288 * 4]
    stuck = reasons[288 * 4:]  # continues the last day's 80 -> 20 at its row 0
    assert stuck.index("frozen") == 270 and set(stuck[270:]) == {"frozen"}
    assert int(state.ingest.flat_max) == 180


def test_a_spell_of_a_whole_season_is_never_learnt() -> None:
    """An outage of exactly a day (288 identical values) that ends is no shape of the series: a later
    flat spell is still refused at the seasonal allowance (its 145th row). A NaN inside a stuck run
    neither ends nor extends it."""
    rng = np.random.default_rng(5)
    walk = list(np.cumsum(rng.standard_normal(50)))
    values = [*walk, *[4.0] * 288, *np.cumsum(rng.standard_normal(50)), *[9.0] * 100, float("nan"),
              *[9.0] * 100]
    state, results = replay(values)
    reasons = [REASON_NAMES[int(r.reason)] for r in results]
    start = 50 + 288 + 50
    assert reasons[start + 100] == "out_of_range"
    assert "frozen" not in reasons[start:start + 100]
    assert reasons[start + 144] == "ok" and reasons[start + 145] == "frozen"  # the 145th 9.0, across the NaN
    assert int(state.ingest.flat_max) == 0


def test_a_seasonal_series_of_huge_scale_stays_sound() -> None:
    """Values near 1e45 (inside max_abs_value) on five-minute rows: the profile is stored as float32
    ratios to the series' magnitude, so its bins never overflow and every tick is accepted."""
    rng = np.random.default_rng(6)
    k = np.arange(600)
    values = 1e45 * (1 + 0.1 * np.sin(2 * np.pi * k / 288) + 0.001 * rng.standard_normal(600))
    s, results = replay(list(values))
    assert all(bool(r.accepted) for r in results)
    assert int(s.season.bins) == 288 and np.all(np.isfinite(np.asarray(s.season.profile)))
    assert_sound(s, results)


def test_a_series_from_before_1970_gets_its_season() -> None:
    """Monthly rows from 1949 (negative epoch timestamps, like the airline data): the yearly season of
    12 bins is chosen and learnt."""
    import pandas as pd

    stamps = pd.date_range("1949-01-01", periods=48, freq="MS").as_unit("ns").asi8.astype(np.int64)
    values = 100 + 10 * np.sin(2 * np.pi * np.arange(48) / 12)
    s = init_state(CFG)
    for t, v in zip(stamps, values, strict=True):
        s, r = step(s, int(t), float(v))
        assert bool(r.accepted)
    assert int(s.season.bins) == 12 and int(s.season.updates) > 30


def test_a_large_offset_does_not_change_the_forecast_much() -> None:
    """Noise of unit size read at level 0 and at 1e12 (a clock or counter reading: small moves on a
    large value). The volatility unit's floor is relative to the value only far below float64's
    resolution of it, so the kernels see the same moves: the errors and intervals match. With a floor
    of 1e-9 of the value (before stop 19) the 1e12 run's unit was 1,000 times its moves: its MAE was
    1.2 times and its interval 40 times as wide (4.4x and 4,000x at 1e14)."""
    from models.backtest import backtest

    noise = np.random.default_rng(11).standard_normal(400)
    stamps = (1_700_000_000 + 300 * np.arange(400)).astype(np.int64) * 10**9
    mae, width = [], []
    for offset in (0.0, 1e12):
        r = backtest(stamps, noise + offset, CFG)
        mae.append(float(np.mean(np.abs(r.prediction[41:] - (noise + offset)[41:]))))
        width.append(float(np.median((r.upper - r.lower)[41:])))
    assert mae[1] < 1.02 * mae[0] and width[1] < 1.1 * width[0]


@pytest.mark.parametrize("level", [10.0, 1e6])
def test_a_spike_after_a_long_flat_spell_is_refused(level: float) -> None:
    """500 identical minutes, then one value 50% off. On a flat spell the spread, the unit and the width
    multiplier reach their floors; the interval must still be wider than the spacing of floats near the
    value, or upper == prediction and the outlier check, which needs a width, lets the spike in (it did
    at 1e6 from tick 297, and at any level after about 520 flat ticks)."""
    from models.backtest import backtest

    n = 600
    values = np.full(n, level)
    values[550] = 1.5 * level
    stamps = (1_600_000_000 + 60 * np.arange(1, n + 1)).astype(np.int64) * 10**9
    r = backtest(stamps, values, CFG)
    assert np.all(r.upper[1:] > r.prediction[1:]) and np.all(r.lower[1:] < r.prediction[1:])
    assert REASON_NAMES[int(r.reason[550])] == "outlier"
    assert not bool(np.any(r.regime_change[545:]))
    assert abs(r.prediction[552] - level) < 1e-6 * level


def range_news_reference(values: np.ndarray, reason: np.ndarray, history: int,
                         margin: float) -> tuple[list[int], list[int]]:
    """Ticks whose value lies beyond the range of the accepted values before it (by `margin` of its
    width) once `history` values were accepted, and those of them at least history // 8 ticks after
    the previous one (news): written from the config's description, in plain Python."""
    beyond: list[int] = []
    news: list[int] = []
    lo, hi, accepted = np.inf, -np.inf, 0
    for i, (v, why) in enumerate(zip(values, reason, strict=True)):
        ok, outlier = why == REASON_OK, REASON_NAMES[int(why)] == "outlier"
        if accepted >= history and (ok or outlier) and (v > hi + margin * (hi - lo) or v < lo - margin * (hi - lo)):
            if not beyond or i - beyond[-1] > history // 8:
                news.append(i)
            beyond.append(i)
        if ok:
            lo, hi, accepted = min(lo, v), max(hi, v), accepted + 1
    return news, beyond


def test_a_value_beyond_the_whole_range_scores_once_per_episode() -> None:
    """Noise, a slow drift out of its range (the one-step forecast follows it, so the CUSUM sees little),
    noise again, then a spike below anything seen (refused as an outlier). With the range check the
    anomaly score differs from the same run without it exactly at the ticks the plain-Python reference
    names: never before `range_history` accepted values, though noise makes new highs early on (and,
    with chance about 2 / i, later too); in the drift, far fewer than its new highs; and the spike."""
    from models.backtest import backtest
    from models.step import RANGE_SCORE

    rng = np.random.default_rng(3)
    values = np.concatenate([rng.standard_normal(600), 0.1 * np.arange(1, 201) + rng.standard_normal(200),
                             rng.standard_normal(300)])
    values[1000] = -200.0
    stamps = (MIDNIGHT_NS + FIVE_MIN_NS * np.arange(len(values))).astype(np.int64)
    on_cfg = PredictorConfig(orchestration=OrchestrationConfig(range_history=300))
    off_cfg = PredictorConfig(orchestration=OrchestrationConfig(range_history=0))
    on, off = backtest(stamps, values, on_cfg), backtest(stamps, values, off_cfg)
    assert np.array_equal(on.prediction, off.prediction, equal_nan=True)  # the check never feeds the forecast
    assert REASON_NAMES[int(on.reason[1000])] == "outlier"
    expected, beyond = range_news_reference(values, on.reason, 300, on_cfg.orchestration.range_margin)
    drift = [i for i in expected if 600 <= i < 800]
    assert expected[0] >= 300 and expected[-1] == 1000 and drift
    assert len([i for i in beyond if 600 <= i < 800]) >= 5 * len(drift)  # a run of new highs pages once or so
    assert list(np.nonzero(on.anomaly_score != off.anomaly_score)[0]) == expected
    assert np.all(on.anomaly_score[expected] == RANGE_SCORE)
    assert float(np.max(off.anomaly_score[600:800])) < RANGE_SCORE  # the drift alone: no page
