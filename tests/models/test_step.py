import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from models.config import OrchestrationConfig
from models.state import init_state, stack_states, unstack_state
from models.step import (
    MODE_CALIBRATION,
    MODE_INFERENCE,
    REASON_STALE,
    Observation,
    orchestrate_step,
    orchestrate_step_batch,
)

CFG = OrchestrationConfig(ewma_alpha=0.3, variance_alpha=0.05, warmup_steps=3)


def reference(values: list[float], cfg: OrchestrationConfig) -> list[tuple[float, float, float]]:
    """Plain-Python EWMA forecaster: (prediction, lower, upper) after each value."""
    out = []
    level = m2 = 0.0
    for i, x in enumerate(values):
        if i == 0:
            level, m2, r = x, 0.0, 0.0
        else:
            r = x - level
            level = level + cfg.ewma_alpha * (x - level)
            m2 = m2 + cfg.variance_alpha * (r * r - m2)
        weight = 1 - (1 - cfg.variance_alpha) ** i
        scale = math.sqrt(m2 / weight) if i > 0 else 0.0
        half = cfg.interval_z * scale
        out.append((level, level - half, level + half))
    return out


def run(values: list[float], cfg: OrchestrationConfig = CFG, start_ts: int = 1):
    state = init_state()
    results = []
    for i, v in enumerate(values):
        state, r = orchestrate_step(state, Observation(np.int64(start_ts + i), np.float64(v)), cfg)
        results.append(r)
    return state, results


def test_matches_plain_python_reference_on_real_data() -> None:
    rng = np.random.default_rng(7)
    values = list(np.cumsum(rng.normal(size=200)) + 50.0)
    _, results = run(values)
    for r, (p, lo, hi) in zip(results, reference(values, CFG), strict=True):
        assert abs(float(r.prediction) - p) < 1e-9
        assert abs(float(r.lower) - lo) < 1e-9
        assert abs(float(r.upper) - hi) < 1e-9


def test_stale_observation_is_refused_and_leaves_state_unchanged() -> None:
    state, _ = run([1.0, 2.0, 3.0])
    new_state, r = orchestrate_step(state, Observation(np.int64(2), np.float64(100.0)), CFG)
    assert not bool(r.accepted)
    assert int(r.reason) == REASON_STALE
    assert int(new_state.rejected) == int(state.rejected) + 1
    for a, b in zip(state._replace(rejected=new_state.rejected), new_state, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_mode_is_calibration_during_warmup_then_inference() -> None:
    _, results = run([1.0, 2.0, 3.0, 4.0, 5.0])
    assert [int(r.mode) for r in results] == [MODE_CALIBRATION] * 3 + [MODE_INFERENCE] * 2


@given(st.lists(st.floats(-1e300, 1e300, allow_nan=False), min_size=1, max_size=30))
@example(values=[2.2250738585e-313])  # subnormal: XLA flushes it to zero in arithmetic
def test_interval_brackets_prediction_and_state_stays_finite(values: list[float]) -> None:
    state, results = run(values)
    for r in results:
        if bool(r.accepted):
            assert float(r.lower) <= float(r.prediction) <= float(r.upper)
        assert 0.0 <= float(r.anomaly_score) <= 1.0
    for leaf in state:
        assert np.all(np.isfinite(np.asarray(leaf, dtype=np.float64)))


def test_overflowing_update_is_refused_not_propagated() -> None:
    state, results = run([1e308, -1e308, 1e308])
    assert bool(results[0].accepted)
    assert not all(bool(r.accepted) for r in results[1:])  # residual 2e308 overflows
    assert all(np.isfinite(np.asarray(leaf, dtype=np.float64)).all() for leaf in state)


def test_anomaly_score_ranks_a_spike_above_noise() -> None:
    rng = np.random.default_rng(0)
    values = list(rng.normal(size=100))
    values.append(20.0)
    _, results = run(values)
    scores = [float(r.anomaly_score) for r in results]
    assert scores[-1] > 0.999
    assert np.median(scores[10:-1]) < 0.8


def test_batch_equals_one_series_at_a_time() -> None:
    rng = np.random.default_rng(3)
    series = rng.normal(size=(5, 20)).cumsum(axis=1)
    batch = stack_states([init_state()] * 5)
    for t in range(20):
        batch, br = orchestrate_step_batch(
            batch, Observation(np.full(5, t + 1, np.int64), series[:, t]), CFG)
    for i in range(5):
        single, results = run(list(series[i]))
        # Same arithmetic; XLA may fuse the batched multiply-adds, so agree to rounding, not bits.
        assert float(results[-1].prediction) == pytest.approx(float(br.prediction[i]), rel=1e-12)
        for a, b in zip(single, unstack_state(batch, i), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)
