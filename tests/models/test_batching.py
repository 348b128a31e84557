import functools

import jax
import numpy as np
import pytest

import models.batching as batching
from models.batching import BUCKETS, TickOutcome, bucket_for, run_round, run_round_rows, warm_up
from models.config import CusumConfig, OrchestrationConfig, PredictorConfig
from models.state import init_state, state_from_bytes, state_rows
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


def test_rounds_on_encoded_rows_match_single_steps_with_idle_series(monkeypatch) -> None:
    """The worker's path: states as encoded rows updated in place, a different range of series active in
    each round (slices of the matrix, in calls of the small buckets, the last padded in place by the
    rows after the range or by fresh rows past the matrix's end). Every outcome and every final state
    equals the un-batched step's; the rows of idle series are untouched; the rows handed back are
    exactly those of the refused or alarmed ticks, as they were before the round."""
    monkeypatch.setattr(batching, "BUCKETS", SMALL_BUCKETS)
    n = 2 * SMALL_BUCKETS[-1] + 5
    rng = np.random.default_rng(3)
    states = [init_state(CFG) for _ in range(n)]
    rows, unusable = state_rows([None] * n, CFG)
    assert unusable == []
    kept = 0
    for t in range(25):
        lo = int(rng.integers(0, n // 2))
        active = range(lo, int(rng.integers(lo + 1, n + 1)))
        values = [float(v) for v in 50 + 10 * rng.standard_normal(len(active))]
        if t % 6 == 5:
            values[0] = 1e6  # an outlier: refused, so its row comes back
        start = rows.copy()
        outcomes, fed = run_round_rows(rows, active, [1 + t] * len(active), values, CFG)
        refused_or_alarmed = {k for k, out in enumerate(outcomes) if not out.accepted or out.regime_change}
        assert set(fed) == refused_or_alarmed
        for k, row in fed.items():
            assert np.array_equal(row, start[active[k]])
        kept += len(fed)
        idle = np.setdiff1d(np.arange(n), np.asarray(active, dtype=int))
        assert np.array_equal(rows[idle], start[idle])
        for i, value, got in zip(active, values, outcomes, strict=True):
            states[i], result = single_step()(states[i], Observation(np.int64(1 + t), np.float64(value)), config=CFG)
            assert_same(got, expected_outcome(result))
    # vmapped and single steps may differ in the last bits of a reduction, so leaves are compared closely
    for i in range(n):
        got = jax.tree_util.tree_leaves(state_from_bytes(rows[i].tobytes(), CFG))
        for a, b in zip(got, jax.tree_util.tree_leaves(states[i]), strict=True):
            np.testing.assert_allclose(a, np.asarray(b), rtol=1e-9, atol=1e-12)
    assert kept > 0  # some rows did come back


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
    assert list(seconds) == [*SMALL_BUCKETS, -batching.SERIES_SCAN]  # the one-series scan too
    assert all(s >= 0 for s in seconds.values())


def test_a_series_scanned_in_one_call_matches_its_single_steps() -> None:
    """`run_series_rows` (one compiled scan per SERIES_SCAN ticks, padding masked) against the un-batched
    step tick by tick: a frozen run, a stale repeat and a level shift included, over two full scans and
    a padded one."""
    n = 2 * batching.SERIES_SCAN + 7
    rng = np.random.default_rng(4)
    values = 50.0 + np.cumsum(rng.normal(size=n))
    values[10:15] = values[10]  # frozen
    values[40:] += 30.0  # a level shift
    ts = np.arange(1, n + 1, dtype=np.int64)
    ts[20] = ts[19]  # stale
    state = init_state(CFG)
    expected = []
    for t in range(n):
        state, r = single_step()(state, Observation(np.int64(ts[t]), np.float64(values[t])), config=CFG)
        expected.append(expected_outcome(r))
    rows, _ = state_rows([None], CFG)  # a new series' row
    outcomes, before, after = batching.run_series_rows(rows[0], ts.tolist(), values.tolist(), CFG)
    assert len(outcomes) == n and before.shape == (n, rows.shape[1])
    for got, exp in zip(outcomes, expected, strict=True):
        assert_same(got, exp)
    assert {o.reason for o in outcomes} >= {REASON_OK, REASON_STALE, REASON_FROZEN}
    final = state_from_bytes(after.tobytes(), CFG)
    assert np.array_equal(before[0], rows[0])
    assert (int(final.n_obs), int(final.rejected), int(final.last_ts)) == \
        (int(state.n_obs), int(state.rejected), int(state.last_ts))
    assert float(final.prediction) == pytest.approx(float(state.prediction), rel=1e-9)


def test_a_scan_in_two_calls_is_the_scan_in_one() -> None:
    """Padding ticks leave the row as it was: five ticks then the rest give bit for bit what one call
    gives (the same compiled scan, so no rounding may differ)."""
    n = 40
    rng = np.random.default_rng(5)
    values = np.cumsum(rng.normal(size=n)).tolist()
    ts = list(range(1, n + 1))
    rows, _ = state_rows([None], CFG)
    whole, _, end = batching.run_series_rows(rows[0], ts, values, CFG)
    first, _, middle = batching.run_series_rows(rows[0], ts[:5], values[:5], CFG)
    rest, before, end2 = batching.run_series_rows(middle, ts[5:], values[5:], CFG)
    assert first + rest == whole and np.array_equal(end, end2) and np.array_equal(before[0], middle)
    none, no_rows, same = batching.run_series_rows(rows[0], [], [], CFG)
    assert none == [] and no_rows.shape == (0, rows.shape[1]) and np.array_equal(same, rows[0])


def _split_cost(sizes: tuple[int, ...]) -> int:
    return sum(sizes) + batching.CALL_COST_ROWS * len(sizes)


def _cheapest_split_cost(n: int, buckets: tuple[int, ...]) -> int:
    """Brute force: every multiset of buckets that holds n rows (the reference for the DP)."""
    best = None

    def walk(left: int, smallest_index: int, cost: int) -> None:
        nonlocal best
        if left <= 0:
            best = cost if best is None else min(best, cost)
            return
        for i in range(smallest_index, len(buckets)):
            walk(left - buckets[i], i, cost + buckets[i] + batching.CALL_COST_ROWS)

    walk(n, 0, 0)
    assert best is not None
    return best


@pytest.mark.parametrize("buckets", [SMALL_BUCKETS, (1, 4, 16, 64)])
def test_split_round_is_the_cheapest_split_and_pads_only_its_last_call(buckets: tuple[int, ...]) -> None:
    for n in range(1, 3 * buckets[-1] + 2):
        sizes = batching.split_round(n, buckets)
        assert all(size in buckets for size in sizes)
        assert list(sizes) == sorted(sizes, reverse=True)
        assert sum(sizes) >= n > sum(sizes[:-1])  # every call but the last is full of the round's rows
        whole = (n // buckets[-1]) * buckets[-1]  # whole largest buckets first, then the cheapest rest
        rest = n - whole
        assert _split_cost(sizes) == _split_cost(sizes[:n // buckets[-1]]) + (
            _cheapest_split_cost(rest, buckets) if rest else 0)


def test_round_chunks_write_each_chunk_back_as_it_is_handed_over(monkeypatch) -> None:
    monkeypatch.setattr(batching, "BUCKETS", SMALL_BUCKETS)
    n = 2 * SMALL_BUCKETS[-1] + 3  # calls of 16, 16 and 4 rows (the last padded by a fresh row)
    rows, _ = state_rows([None] * n, CFG)
    start = rows.copy()
    chunks = batching.round_chunks(rows, 0, n, [1] * n, [5.0] * n, CFG)
    seen = 0
    for chunk in chunks:
        assert chunk.start == seen
        seen += len(chunk.outcomes)
        assert not np.array_equal(rows[chunk.start], start[chunk.start])  # this chunk's rows: written
        assert np.array_equal(rows[seen:], start[seen:])  # the later chunks': not yet
    assert seen == n and batching.split_round(n) == (16, 16, 4)


def test_run_round_rows_refuses_rows_that_are_not_consecutive() -> None:
    rows, _ = state_rows([None] * 4, CFG)
    with pytest.raises(ValueError, match="consecutive"):
        run_round_rows(rows, range(0, 4, 2), [1, 1], [1.0, 1.0], CFG)
