import numpy as np
import pytest

from models.batching import BUCKETS, bucket_for, run_round
from models.config import OrchestrationConfig
from models.state import init_state
from models.step import Observation, orchestrate_step

CFG = OrchestrationConfig()


def test_bucket_for_picks_the_smallest_bucket_that_fits() -> None:
    for n in range(1, BUCKETS[-1] + 1):
        b = bucket_for(n)
        assert b >= n
        assert all(smaller < n for smaller in BUCKETS if smaller < b)


def test_round_over_more_series_than_the_largest_bucket_matches_single_steps() -> None:
    n = BUCKETS[-1] + 3
    rng = np.random.default_rng(1)
    states = [init_state() for _ in range(n)]
    for t in range(3):
        values = rng.normal(size=n).tolist()
        expected = [orchestrate_step(s, Observation(np.int64(t + 1), np.float64(v)), CFG)
                    for s, v in zip(states, values, strict=True)]
        states, outcomes = run_round(states, [t + 1] * n, values, CFG)
        for (exp_state, exp_result), got_state, got in zip(expected, states, outcomes, strict=True):
            assert got.prediction == pytest.approx(float(exp_result.prediction), rel=1e-12)
            assert got.upper == pytest.approx(float(exp_result.upper), rel=1e-12)
            assert int(got_state.n_obs) == int(exp_state.n_obs)
