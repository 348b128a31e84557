"""The seasonal profile: season choice from the clock, phase bins, and the per-bin EWMA against NumPy."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import native  # noqa: F401
from native.season import (
    GAIN_MIN_SS,
    LOCK_AFTER,
    MAX_ROWS,
    MIN_BINS,
    NS_PER_S,
    SEASONS_S,
    WEEK_ROWS_PER_BIN,
    SeasonState,
    choose_season,
    phase_bin,
    season_feature,
    season_gain,
    season_init,
    season_support,
    season_update,
    soft_threshold,
)

UPDATE = jax.jit(season_update)
HOUR = 3600 * NS_PER_S


def feed(values: np.ndarray, step_ns: int, alpha: float, bins_max: int = 288,
         start_ns: int = 19_676 * 86_400 * NS_PER_S) -> tuple[SeasonState, np.ndarray]:
    """Feed increments of `values` on a regular clock; returns the state and the timestamps."""
    s = season_init(bins_max)
    ts = start_ns + step_ns * np.arange(len(values), dtype=np.int64)
    for i in range(1, len(values)):
        s = UPDATE(s, np.int64(ts[i]), np.int64(step_ns), values[i] - values[i - 1], i, alpha)
    return s, ts


@given(st.floats(1.0, 5e8))
def test_season_choice_follows_the_rules(dt_s: float) -> None:
    """Shortest candidate season with between MIN_BINS and MAX_ROWS rows, except a week of at most
    WEEK_ROWS_PER_BIN rows per bin; bins capped at bins_max."""
    period, bins = choose_season(dt_s * NS_PER_S, 288)
    expected = [(s, s / dt_s) for s in SEASONS_S if MIN_BINS - 0.5 <= s / dt_s <= MAX_ROWS]
    week_rows = SEASONS_S[1] / dt_s
    if MIN_BINS - 0.5 <= week_rows <= WEEK_ROWS_PER_BIN * 288:
        expected = [(SEASONS_S[1], week_rows)]
    if not expected:
        assert int(period) == -1 and int(bins) == 0
    else:
        season, rows = expected[0]
        assert int(period) == season * NS_PER_S
        assert int(bins) == min(round(rows), 288)


@settings(deadline=None)
@given(st.integers(-(2**62), 2**62), st.sampled_from([4, 7, 12, 24, 288]))
def test_phase_bin_in_range_and_periodic(ts: int, bins: int) -> None:
    s = season_init(288)._replace(period=np.int64(86_400 * NS_PER_S), bins=np.int32(bins))
    b = int(phase_bin(s, np.int64(ts)))
    assert 0 <= b < bins
    assert int(phase_bin(s, np.int64(ts) - np.int64(86_400 * NS_PER_S))) == b


def test_calendar_months_and_quarters_keep_their_bins() -> None:
    """Monthly stamps (the first of each month) wander about a day around the mean year's twelfths,
    and leap years shift them: each month must still map to its own bin, every year, from 1950 on."""
    import pandas as pd

    year = season_init(12)._replace(period=np.int64(SEASONS_S[2] * NS_PER_S), bins=np.int32(12))
    quarters = year._replace(bins=np.int32(4))
    for y in (1950, 1999, 2023, 2024):
        months = pd.date_range(f"{y}-01-01", periods=12, freq="MS").as_unit("ns").asi8.astype(np.int64)
        got = [int(phase_bin(year, np.int64(t))) for t in months]
        assert sorted(got) == list(range(12)) and got == sorted(got), (y, got)
        starts = months[::3]
        assert sorted(int(phase_bin(quarters, np.int64(t))) for t in starts) == [0, 1, 2, 3], y


def test_profile_matches_a_numpy_reference() -> None:
    """Hourly rows over 20 days: every bin's value equals an explicit per-bin EWMA, whose weight is
    max(alpha, 1/(1 + seasons seen)) (seasons counted from the profile's updates)."""
    rng = np.random.default_rng(3)
    n, alpha = 24 * 20, 0.2
    hours = np.arange(n)
    values = np.cumsum(np.sin(2 * np.pi * hours / 24) + 0.3 * rng.standard_normal(n))
    s, ts = feed(values, HOUR, alpha, bins_max=24)
    ref = np.zeros(24)
    updates = 0
    for i in range(LOCK_AFTER + 1, n):  # learning starts once the season is chosen
        b = int((ts[i] // NS_PER_S) % 86_400 // 3600)
        w = max(alpha, 1.0 / (1 + updates // 24))
        ref[b] += w * ((values[i] - values[i - 1]) - ref[b])
        updates += 1
    assert int(s.bins) == 24 and int(s.updates) == updates
    np.testing.assert_allclose(np.asarray(s.profile), ref, rtol=1e-5, atol=1e-5)  # float32 profile


def test_feature_predicts_a_repeating_daily_step() -> None:
    """A step up at 06:00 and down at 18:00 every day: after a few days the feature for the row before
    each step is the step, and 0 elsewhere."""
    n = 24 * 6
    hour_of_day = np.arange(n) % 24
    values = np.where((hour_of_day >= 6) & (hour_of_day < 18), 10.0, 0.0)
    s, ts = feed(values, HOUR, 0.2, bins_max=288)
    features = {int((t // NS_PER_S) % 86_400 // 3600): float(season_feature(s, np.int64(t))) for t in ts[-24:]}
    assert abs(features[5] - 10.0) < 1e-3 and abs(features[17] + 10.0) < 1e-3
    assert all(abs(v) < 1e-3 for h, v in features.items() if h not in (5, 17))


def test_hourly_rows_learn_a_weekly_step_that_a_daily_profile_would_average_away() -> None:
    """Hourly rows whose level rises by 10 at 08:00 on weekdays only: the season is the week, so the
    feature before a weekday's 08:00 is the step and before the weekend's 08:00 it is 0. A daily
    profile could only offer the average (about 7) on every day."""
    n = 24 * 7 * 4
    t0_days = 19_676  # a Thursday: the epoch day 0 (1970-01-01) was one
    day = t0_days + np.arange(n) // 24
    weekday = (day + 3) % 7 < 5  # Monday = 0
    hour = np.arange(n) % 24
    values = np.where(weekday & (hour >= 8) & (hour < 18), 10.0, 0.0)
    s, ts = feed(values, HOUR, 0.2, bins_max=288, start_ns=t0_days * 86_400 * NS_PER_S)
    assert int(s.period) == 7 * 86_400 * NS_PER_S and int(s.bins) == 168
    last_week = slice(n - 168, n)
    before_eight = (hour[last_week] == 7)
    feats = np.array([float(season_feature(s, np.int64(t))) for t in ts[last_week][before_eight]])
    on_weekday = weekday[last_week][before_eight]
    np.testing.assert_allclose(feats[on_weekday], 10.0, atol=1e-3)
    np.testing.assert_allclose(feats[~on_weekday], 0.0, atol=1e-3)


def test_gaps_are_not_learnt_and_do_not_shift_the_phase() -> None:
    """A long gap (more than 16 steps) teaches nothing; after it, phases still come from the clock."""
    s, ts = feed(np.zeros(40), HOUR, 0.2, bins_max=24)
    before = s.updates
    later = np.int64(ts[-1] + 30 * HOUR)
    s2 = UPDATE(s, later, np.int64(30 * HOUR), 5.0, 40, 0.2)
    assert int(s2.updates) == int(before)
    assert np.array_equal(np.asarray(s2.profile), np.asarray(s.profile))
    s3 = UPDATE(s2, later + HOUR, np.int64(HOUR), 5.0, 41, 0.2)
    b = int(phase_bin(s3, later + HOUR))
    assert b == int(((later + HOUR) // NS_PER_S) % 86_400 // 3600)
    assert float(s3.profile[b]) > 0


def test_series_without_a_season_has_a_zero_feature() -> None:
    """One-second rows: no candidate season fits (period -1: decided, none), nothing is learnt, the
    feature is 0."""
    rng = np.random.default_rng(0)
    s, ts = feed(np.cumsum(rng.standard_normal(100)), NS_PER_S, 0.2)
    assert int(s.period) == -1 and int(s.bins) == 0 and int(s.updates) == 0
    assert float(season_feature(s, np.int64(ts[-1]))) == 0.0


def test_vmaps_over_series() -> None:
    """Two series in one batch give the same states as one at a time."""
    rng = np.random.default_rng(1)
    incs = rng.standard_normal((2, 60))
    batched = jax.vmap(functools.partial(season_update, alpha=0.2))
    states = [season_init(24), season_init(24)]
    stacked = jax.tree_util.tree_map(lambda *x: np.stack(x), *states)
    for i in range(1, 60):
        ts = np.int64(i * HOUR)
        stacked = batched(stacked, np.array([ts, ts]), np.array([HOUR, HOUR]), incs[:, i], np.array([i, i]))
        states = [UPDATE(st_, ts, np.int64(HOUR), incs[k, i], i, 0.2) for k, st_ in enumerate(states)]
    for k in range(2):
        np.testing.assert_array_equal(np.asarray(stacked.profile[k]), np.asarray(states[k].profile))


def test_an_anomalous_season_moves_a_bin_by_at_most_weight_times_bound() -> None:
    """After the first season, a deviation is clipped to +-bound before it is learnt (robust
    Holt-Winters): one day with a huge step moves its bin by alpha * bound, not by alpha * step."""
    s = season_init(24)
    alpha, bound = 0.2, 1.0
    for i in range(1, 24 * 12):  # twelve ordinary days: +1 at 06:00
        s = UPDATE(s, np.int64(i * HOUR), np.int64(HOUR), 1.0 if i % 24 == 6 else 0.0, i, alpha, True, bound)
    before = float(s.profile[6])
    i = 24 * 12 + 6
    s = UPDATE(s, np.int64(i * HOUR), np.int64(HOUR), 100.0, i, alpha, True, bound)
    assert abs(before - 1.0) < 1e-3
    assert abs(float(s.profile[6]) - before - alpha * bound) < 1e-5


def test_the_season_is_chosen_even_when_the_lock_tick_teaches_nothing() -> None:
    """If the LOCK_AFTER-th increment cannot be learnt from (no step since the last tick seen), the
    season is chosen on the next one that can."""
    s = season_init(24)
    for i in range(1, LOCK_AFTER):
        s = UPDATE(s, np.int64(i * HOUR), np.int64(HOUR), 0.0, i, 0.2)
    s = UPDATE(s, np.int64(LOCK_AFTER * HOUR), np.int64(0), 0.0, LOCK_AFTER, 0.2)  # no step
    assert int(s.period) == 0
    s = UPDATE(s, np.int64((LOCK_AFTER + 1) * HOUR), np.int64(HOUR), 0.0, LOCK_AFTER + 1, 0.2)
    assert int(s.period) == 86_400 * NS_PER_S and int(s.bins) == 24


def test_profile_keeps_value_units_at_any_scale() -> None:
    """The same daily shape at 1 and at 1e45: the feature scales with the series (the float32 bins
    hold ratios to the series' magnitude, so nothing overflows)."""
    n = 24 * 5
    shape = np.where((np.arange(n) % 24 >= 6) & (np.arange(n) % 24 < 18), 10.0, 0.0)
    feats = []
    for mag in (1.0, 1e45):
        s = season_init(24)
        ts = 19_676 * 86_400 * NS_PER_S + HOUR * np.arange(n, dtype=np.int64)
        v = mag * (100.0 + shape)
        for i in range(1, n):
            s = UPDATE(s, np.int64(ts[i]), np.int64(HOUR), v[i] - v[i - 1], i, 0.2, True, np.inf,
                       abs(v[i - 1]) + mag)
        assert np.all(np.isfinite(np.asarray(s.profile)))
        feats.append(float(season_feature(s, np.int64(ts[24 * 4 + 5]))) / mag)  # 05:00: next comes the step
    assert feats[0] == pytest.approx(10.0, rel=1e-5) and feats[1] == pytest.approx(10.0, rel=1e-5)


finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(x=finite, t=st.floats(0, 1e6, allow_nan=False))
def test_soft_threshold_shrinks_towards_zero_by_t(x: float, t: float) -> None:
    out = float(soft_threshold(x, t))
    assert out == pytest.approx(np.sign(x) * max(abs(x) - t, 0.0), abs=1e-9 * (1 + abs(x)))
    assert abs(out) <= abs(x) and out * x >= 0


@given(su=finite, ss=st.floats(0, 1e6, allow_nan=False))
@example(su=1.0, ss=2.225073858507e-311)  # subnormal: XLA's CPU code flushes it to zero
def test_season_gain_is_the_least_squares_slope_kept_in_the_unit_interval(su: float, ss: float) -> None:
    g = float(season_gain(np.array([su, ss])))
    assert 0.0 <= g <= 1.0
    if ss > GAIN_MIN_SS:
        assert g == pytest.approx(min(max(su / ss, 0.0), 1.0))
    else:
        assert g == 0.0


def test_season_gain_from_running_means_matches_numpy_regression() -> None:
    """Running means of s*u and s*s over a series u = 0.6 s + noise give NumPy's least-squares slope."""
    rng = np.random.default_rng(1)
    s = rng.standard_normal(5000)
    u = 0.6 * s + 0.5 * rng.standard_normal(5000)
    slope = float(np.linalg.lstsq(s[:, None], u, rcond=None)[0][0])
    g = float(season_gain(np.array([np.mean(s * u), np.mean(s * s)])))
    assert g == pytest.approx(slope, rel=1e-9) and abs(g - 0.6) < 0.03


def test_support_counts_seasons_up_to_the_ewma_sample_size() -> None:
    """Five-minute rows (288 a day): the support is the days seen, at least 1, at most (2 - a) / a."""
    s, _ = feed(np.zeros(288 * 4), 300 * NS_PER_S, 0.2)
    assert int(s.bins) == 288
    assert float(season_support(s, 0.2)) == pytest.approx(int(s.updates) // 288)
    assert float(season_support(s, 0.9)) == pytest.approx(max(min(int(s.updates) // 288, 1.1 / 0.9), 1.0))
    assert float(season_support(season_init(288), 0.2)) == 1.0
