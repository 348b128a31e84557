import functools

import jax
import numpy as np
import pytest

import models.batching as batching
from models.batching import BUCKETS, TickOutcome, bucket_for, run_round, run_round_rows, warm_up
from models.config import CusumConfig, OrchestrationConfig, PredictorConfig
from models.state import init_state, state_rows, state_to_bytes
from models.step import REASON_FROZEN, REASON_OK, REASON_STALE, Observation, orchestrate_step

CFG = PredictorConfig(OrchestrationConfig(warmup_steps=4, frozen_steps=3, recovery_steps=2),
                      cusum=CusumConfig(grace_period_steps=3))
# A small largest bucket exercises the split into several calls without compiling a 1024-row step.
SMALL_BUCKETS = (1, 4, 16)


@functools.cache
def single_step():  # the un-batched step, jitted once: the reference the batched rounds must match
    return jax.jit(orchestrate_step, static_argnames="config")


def test_bucket_for_picks_the_smallest_bucket_that_fits() -> None:
    for n in range(1, BUCKETS[-1] + 1):
        b = bucket_for(n)
        assert b >= n
        assert all(smaller < n for smaller in BUCKETS if smaller < b)


def test_stack_and_split_round_trip() -> None:
    rng = np.random.default_rng(0)
    states = [init_state(CFG)._replace(n_obs=np.int64(i), window=rng.normal(size=32)) for i in range(5)]
    back = batching._split(batching._stack(states, 16, CFG), 5)
    assert [state_to_bytes(s) for s in back] == [state_to_bytes(s) for s in states]


def expected_outcome(r) -> TickOutcome:
    return TickOutcome(bool(r.accepted), int(r.reason), float(r.prediction), float(r.lower), float(r.upper),
                       int(r.mode), float(r.anomaly_score), tuple(float(w) for w in r.weights),
                       bool(r.regime_change), float(r.cusum), float(r.cusum_threshold), bool(r.degraded))


def assert_same(got: TickOutcome, exp: TickOutcome) -> None:
    assert (got.accepted, got.reason, got.mode, got.regime_change, got.degraded) == \
        (exp.accepted, exp.reason, exp.mode, exp.regime_change, exp.degraded)
    for name in ("prediction", "lower", "upper", "anomaly_score", "cusum", "cusum_threshold"):
        assert getattr(got, name) == pytest.approx(getattr(exp, name), rel=1e-9, abs=1e-9), name
    assert got.weights == pytest.approx(exp.weights, abs=1e-9)
    assert all(isinstance(w, float) for w in got.weights)


def test_round_over_more_series_than_the_largest_bucket_matches_single_steps(monkeypatch) -> None:
    monkeypatch.setattr(batching, "BUCKETS", SMALL_BUCKETS)
    n = SMALL_BUCKETS[-1] + 3  # one full call and one padded call per round
    rng = np.random.default_rng(1)
    walks = 100.0 + np.cumsum(rng.normal(size=(30, n)), axis=0) * (1 + np.arange(n))
    walks[:, 0] = 7.0  # series 0 is frozen from the start
    walks[20:, 1] += 40.0 * (1 + 1)  # series 1 shifts its level (a regime change)
    ts = np.tile(np.arange(1, 31, dtype=np.int64)[:, None], (1, n))
    ts[12, 2] = ts[11, 2]  # series 2 repeats a timestamp: stale
    states = [init_state(CFG) for _ in range(n)]
    reasons: set[int] = set()
    for t in range(30):
        expected = [single_step()(s, Observation(np.int64(ts[t, i]), np.float64(walks[t, i])), config=CFG)
                    for i, s in enumerate(states)]
        states, outcomes = run_round(states, ts[t].tolist(), walks[t].tolist(), CFG)
        assert len(states) == len(outcomes) == n
        for (exp_state, exp_result), got_state, got in zip(expected, states, outcomes, strict=True):
            assert_same(got, expected_outcome(exp_result))
            assert int(got_state.n_obs) == int(exp_state.n_obs)
            assert int(got_state.ingest.degraded) == int(exp_state.ingest.degraded)
            assert float(got_state.prediction) == pytest.approx(float(exp_state.prediction), rel=1e-9)
            reasons.add(got.reason)
    assert {REASON_OK, REASON_FROZEN, REASON_STALE} <= reasons
    # the refused ticks left the series degraded at some point, and the frozen one still is
    assert outcomes[0].degraded and not outcomes[0].accepted


def test_rounds_on_encoded_rows_match_rounds_on_states(monkeypatch) -> None:
    """The worker's path (states as encoded rows, updated in place, some series idle in a round) gives
    the same outcomes and the same bytes as `run_round` on SeriesState objects."""
    monkeypatch.setattr(batching, "BUCKETS", SMALL_BUCKETS)
    n = SMALL_BUCKETS[-1] + 5
    rng = np.random.default_rng(3)
    states = [init_state(CFG) for _ in range(n)]
    rows, unusable = state_rows([None] * n, CFG)
    assert unusable == []
    for t in range(25):
        active = [i for i in range(n) if rng.random() < 0.7]
        ts = [1 + t] * len(active)
        values = [float(v) for v in 50 + 10 * rng.standard_normal(len(active))]
        new, expected = run_round([states[i] for i in active], ts, values, CFG)
        for i, s in zip(active, new, strict=True):
            states[i] = s
        assert run_round_rows(rows, active, ts, values, CFG) == expected
    assert [rows[i].tobytes() for i in range(n)] == [state_to_bytes(s) for s in states]


def test_refused_tick_still_returns_the_moved_ingest_counters() -> None:
    state = init_state(CFG)
    for t in range(6):  # frozen_steps = 3: the last ticks are refused as frozen
        [state], [out] = run_round([state], [t + 1], [3.0], CFG)
    assert not out.accepted and out.reason == REASON_FROZEN and out.degraded
    assert int(state.ingest.frozen_run) == 5 and int(state.ingest.degraded) == 1
    assert int(state.rejected) >= 2 and int(state.n_obs) + int(state.rejected) == 6


def test_warm_up_compiles_every_bucket(monkeypatch) -> None:
    monkeypatch.setattr(batching, "BUCKETS", SMALL_BUCKETS)
    seconds = warm_up(CFG)
    assert list(seconds) == list(SMALL_BUCKETS)
    assert all(s >= 0 for s in seconds.values())
