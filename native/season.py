"""A seasonal profile read from the clock: the typical increment at each phase of a day, week or year.

The series' own timestamps say which season it can have: five-minute rows have a daily cycle of 288
rows, daily rows a weekly one of 7, monthly rows a yearly one of 12. So the season is chosen once per
series from its sampling interval (the shortest of day, week and year that holds at least
`MIN_BINS` rows and at most `MAX_ROWS` rows, except that a week the profile holds at nearly full
resolution is preferred to a day: half-hourly and hourly rows of human activity, such as taxi rides,
web traffic or water use, repeat by the week, and a daily profile reads every weekend as an anomaly;
a series with only a daily cycle still learns it from a weekly profile, seven times more slowly),
and each phase bin keeps an EWMA of the increments seen
in it, across seasons, as Holt-Winters' additive seasonal term does (Winters 1960). Phase comes from
the timestamp, not from a row count, so gaps in a stream do not shift it. When a season holds more rows
than there are bins, a bin spans several rows and keeps their mean increment (a slope), which still
carries a smooth daily shape.

The profile is an input, not a forecast: kernels B and D regress the next increment on it next to
their other inputs, so a series with no season (or one the profile misreads) learns a small
coefficient for it; kernel C adds it as a periodic drift with coefficient 1, and the fusion weighs C
down where that does not pay.

Everything is a pure array function: no branching on traced values, so it jits, vmaps and scans.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

NS_PER_S = 1_000_000_000
#: Candidate seasons in seconds, shortest first: a day, a week, a (Gregorian mean) year.
SEASONS_S = (86_400, 7 * 86_400, 31_556_952)
#: A season needs this many rows to say anything (quarterly data has a yearly season of 4).
MIN_BINS = 4
#: A season longer than this many rows is not used: a bin would span too many rows to mean much, and a
#: series would need to be very long to see it twice (one-minute rows: a day is 1,440 rows, kept).
MAX_ROWS = 2016
#: A week is preferred to a day when it spans at most this many rows per bin (so at most 576 rows, i.e.
#: rows at least 17.5 minutes apart, with 288 bins): half-hourly rows give 336 rows on 288 bins.
WEEK_ROWS_PER_BIN = 2.0
#: The sampling interval is fixed for the season after this many increments (the choice must not flip
#: while the profile fills, or it would mix phases).
LOCK_AFTER = 8
#: A step longer than this many sampling intervals is a gap: its increment spans too many bins to say
#: which one it belongs to, and is not learnt. Shorter ones are learnt at the bin they end in: after a
#: run of refused (say, frozen) rows, the increment that ends it is the step that really happened there.
GAP = 16.0
#: Bound on a bin's increment over the series' scale: float32 holds it, and a move of a million times
#: the series' magnitude says nothing more.
RATIO_MAX = 1e6
#: Below this mean square of the seasonal input (volatility units) the season's gain is 0.
GAIN_MIN_SS = 1e-12


class SeasonState(NamedTuple):
    """profile: (bins_max,) EWMA of the increment in each phase bin, over `scale` (float32 holds that
    ratio for series of any magnitude; values stay in value units in the arithmetic). dt:
    sampling-interval estimate in ns (0 before the second tick). period: the season in ns (0: not
    chosen yet, -1: chosen, none fits). bins: phase bins in use (<= bins_max; 0 without a season).
    updates: profile updates so far. scale: the series' magnitude when the season was chosen."""

    profile: Array
    dt: Array
    period: Array
    bins: Array
    updates: Array
    scale: Array


def season_init(bins_max: int) -> SeasonState:
    """A series with no season yet.

    >>> import native
    >>> s = season_init(4)
    >>> s.profile.tolist(), int(s.period), int(s.bins)
    ([0.0, 0.0, 0.0, 0.0], 0, 0)
    """
    return SeasonState(profile=jnp.zeros(bins_max, jnp.float32), dt=jnp.float64(0.0), period=jnp.int64(0),
                       bins=jnp.int32(0), updates=jnp.int64(0), scale=jnp.float64(1.0))


def choose_season(dt_ns: ArrayLike, bins_max: int) -> tuple[Array, Array]:
    """(period in ns, bins) for a sampling interval: the shortest candidate season with at least
    MIN_BINS and at most MAX_ROWS rows, but the week where it has at most WEEK_ROWS_PER_BIN rows per
    bin; (-1, 0) when none fits.

    >>> import native
    >>> [(int(p) // NS_PER_S, int(b)) for p, b in [choose_season(300e9, 288), choose_season(86400e9, 288)]]
    [(86400, 288), (604800, 7)]
    >>> [int(b) for _, b in [choose_season(3600e9 * 24 * 30.4, 288), choose_season(1e9, 288)]]  # month, 1 s
    [12, 0]
    >>> [(int(p) // 86400 // NS_PER_S, int(b)) for p, b in [choose_season(1800e9, 288), choose_season(600e9, 288)]]
    [(7, 288), (1, 144)]
    """
    dt = jnp.asarray(dt_ns, jnp.float64)
    period = jnp.int64(-1)
    bins = jnp.int32(0)
    found = jnp.bool_(False)
    for season in SEASONS_S:
        rows = season * NS_PER_S / jnp.where(dt > 0, dt, jnp.inf)
        fits = (~found) & (rows >= MIN_BINS - 0.5) & (rows <= MAX_ROWS)
        period = jnp.where(fits, jnp.int64(season * NS_PER_S), period)
        bins = jnp.where(fits, jnp.minimum(jnp.round(rows), bins_max).astype(jnp.int32), bins)
        found = found | fits
    week = SEASONS_S[1]
    week_rows = week * NS_PER_S / jnp.where(dt > 0, dt, jnp.inf)
    weekly = (week_rows >= MIN_BINS - 0.5) & (week_rows <= WEEK_ROWS_PER_BIN * bins_max)
    period = jnp.where(weekly, jnp.int64(week * NS_PER_S), period)
    bins = jnp.where(weekly, jnp.minimum(jnp.round(week_rows), bins_max).astype(jnp.int32), bins)
    return period, bins


def phase_bin(state: SeasonState, ts: ArrayLike) -> Array:
    """The bin of epoch-ns time `ts` in the series' season (0 when it has none): the nearest bin start,
    so stamps that wander a little around a bin's start (calendar months against the mean year, a
    leap day) keep their bin.

    >>> import native, numpy as np
    >>> s = season_init(24)._replace(period=np.int64(86400 * NS_PER_S), bins=np.int32(24))
    >>> [int(phase_bin(s, np.int64(h * 3600 * NS_PER_S))) for h in (0, 1, 23, 24, 25, -1)]
    [0, 1, 23, 0, 1, 23]
    """
    period = jnp.maximum(state.period, 1)
    frac = jnp.mod(jnp.asarray(ts, jnp.int64), period).astype(jnp.float64) / period.astype(jnp.float64)
    bins = jnp.maximum(state.bins, 1)
    b = jnp.mod(jnp.round(frac * bins).astype(jnp.int32), bins)
    return jnp.where(state.bins > 0, b, 0)


def season_update(state: SeasonState, ts: ArrayLike, step_ns: ArrayLike, increment: ArrayLike,
                  n_increments: ArrayLike, alpha: ArrayLike, learn: ArrayLike = True,
                  bound: ArrayLike = jnp.inf, scale: ArrayLike = 1.0) -> SeasonState:
    """Learn one increment that arrived at `ts`, `step_ns` after the previous tick.

    Once a season has been seen, an increment's deviation from its bin's value is clipped to +-`bound`
    before it is learnt, as robust Holt-Winters variants do: one anomalous day must not
    teach the profile to expect it again tomorrow, while a lasting change still comes through, `bound`
    at a time.

    `n_increments` counts the series' increments including this one (0 for a series' first value, which
    has no increment and teaches nothing); the sampling interval is tracked over the first LOCK_AFTER
    of them, when the season is chosen (on the first learnt increment after, if that one was not), and
    `scale` (the series' magnitude then; value units) is kept to store the profile as ratios. The EWMA
    weight is at least 1/(seasons seen), so the first seasons are averaged rather than shrunk to zero.

    >>> import native, numpy as np
    >>> s, hour = season_init(24), 3600 * NS_PER_S
    >>> for i in range(1, 24 * 3):  # three days of hourly rows, +1 at 06:00, else 0
    ...     s = season_update(s, np.int64(i * hour), hour, 1.0 if i % 24 == 6 else 0.0, i, 0.1)
    >>> int(s.bins), round(float(s.profile[6]), 3), round(float(s.profile[7]), 3)
    (24, 1.0, 0.0)
    """
    step = jnp.asarray(step_ns, jnp.float64)
    n = jnp.asarray(n_increments)
    learn = jnp.asarray(learn) & (n >= 1) & (step > 0)
    undecided = state.period == 0

    # Two conds rather than selects: in a back-test scan the branch not taken costs nothing (the
    # interval is tracked for the first LOCK_AFTER ticks of a series' life, then only the profile is
    # learnt); under vmap they become selects.
    def track(s: SeasonState) -> SeasonState:
        # Median-like tracking: each step is clipped to [dt/2, 2 dt] before it enters the average, so a
        # gap or a burst moves the estimate a little, not to itself.
        seen = jnp.where(s.dt > 0, jnp.clip(step, 0.5 * s.dt, 2.0 * s.dt), step)
        dt = jnp.where(s.dt > 0, s.dt + 0.25 * (seen - s.dt), step)
        period, bins = choose_season(dt, s.profile.shape[0])
        # Chosen on the LOCK_AFTER-th increment learnt from, or the first after it.
        choose_now = n >= LOCK_AFTER
        return s._replace(dt=dt, period=jnp.where(choose_now, period, s.period),
                          bins=jnp.where(choose_now, bins, s.bins),
                          scale=jnp.where(choose_now, jnp.maximum(jnp.asarray(scale, jnp.float64), 1e-300), s.scale))

    fresh = jax.lax.cond(learn & undecided, track, lambda s: s, state)

    def learn_bin(s: SeasonState) -> SeasonState:
        b = phase_bin(s, ts)
        # Seasons seen, counted in rows (a bin spans several rows when a season has more rows than bins).
        seasons_seen = s.updates // jnp.maximum(season_rows(s), 1)
        weight = jnp.maximum(jnp.asarray(alpha, jnp.float64), 1.0 / (1.0 + seasons_seen))
        old = s.profile[b].astype(jnp.float64) * s.scale
        deviation = jnp.asarray(increment, jnp.float64) - old
        limit = jnp.asarray(bound, jnp.float64)
        deviation = jnp.where(seasons_seen >= 1, jnp.clip(deviation, -limit, limit), deviation)
        ratio = jnp.clip((old + weight * deviation) / s.scale, -RATIO_MAX, RATIO_MAX)
        profile = jnp.asarray(s.profile).at[b].set(ratio.astype(s.profile.dtype))
        return s._replace(profile=profile, updates=s.updates + 1)

    learn_now = learn & ~undecided & (fresh.bins > 0) & (step <= GAP * fresh.dt)
    out: SeasonState = jax.lax.cond(learn_now, learn_bin, lambda s: s, fresh)
    return out


def season_rows(state: SeasonState) -> Array:
    """Rows in one season (0 without one): the length of the series' own cycle in ticks.

    >>> import native, numpy as np
    >>> int(season_rows(season_init(4)._replace(period=np.int64(86400 * NS_PER_S), dt=np.float64(300e9))))
    288
    """
    rows = jnp.maximum(state.period, 0).astype(jnp.float64) / jnp.where(state.dt > 0, state.dt, jnp.inf)
    return jnp.round(rows).astype(jnp.int64)


def season_feature(state: SeasonState, ts: ArrayLike) -> Array:
    """The profile's increment (value units) for the tick one sampling interval after `ts` (0 without a
    season).

    >>> import native, numpy as np
    >>> s = season_init(4)._replace(profile=np.array([0, 1, 2, 3], np.float32), period=np.int64(4),
    ...                             bins=np.int32(4), dt=np.float64(1.0))
    >>> [float(season_feature(s, np.int64(t))) for t in (0, 3)]
    [1.0, 0.0]
    """
    nxt = jnp.asarray(ts, jnp.int64) + jnp.round(state.dt).astype(jnp.int64)
    value = state.profile[phase_bin(state, nxt)].astype(jnp.float64) * state.scale
    return jnp.where(state.bins > 0, value, 0.0)


def season_support(state: SeasonState, alpha: ArrayLike) -> Array:
    """How many increments a bin's value rests on: the seasons seen, up to the EWMA's effective sample
    size (2 - alpha) / alpha; at least 1.

    >>> import native, numpy as np
    >>> s = season_init(4)._replace(period=np.int64(4), bins=np.int32(4), dt=np.float64(1.0))
    >>> [float(season_support(s._replace(updates=np.int64(u)), 0.2)) for u in (0, 9, 400)]
    [1.0, 2.0, 9.0]
    """
    seen = (state.updates // jnp.maximum(season_rows(state), 1)).astype(jnp.float64)
    effective = (2.0 - jnp.asarray(alpha, jnp.float64)) / jnp.asarray(alpha, jnp.float64)
    return jnp.clip(seen, 1.0, effective)


def soft_threshold(x: ArrayLike, t: ArrayLike) -> Array:
    """x moved towards 0 by t, and 0 within t of it (Donoho and Johnstone's shrinkage of noisy
    coefficients): small profile values, which are mostly noise, are dropped; large ones lose t.

    >>> [float(soft_threshold(v, 1.0)) for v in (-3.0, 0.5, 3.0)]
    [-2.0, 0.0, 2.0]
    """
    x = jnp.asarray(x)
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - t, 0.0)


def season_gain(fit: ArrayLike) -> Array:
    """The share of the profile a series follows: the least-squares slope of increments u on the
    seasonal inputs s given before them, from running means fit = (mean s*u, mean s*s), kept in
    [0, 1] (0 while mean s*s <= GAIN_MIN_SS). A series whose profile only averages noise gets about 0;
    one that repeats its season, 1.

    >>> import native, numpy as np
    >>> [float(season_gain(np.array(f))) for f in ([2.0, 4.0], [-1.0, 4.0], [9.0, 4.0], [0.0, 0.0])]
    [0.5, 0.0, 1.0, 0.0]
    """
    f = jnp.asarray(fit, jnp.float64)
    # s is in volatility units, so a mean square this small means no profile to follow (and keeps the
    # answer off subnormals, which XLA's CPU code flushes to zero).
    informative = f[1] > GAIN_MIN_SS
    return jnp.where(informative, jnp.clip(f[0] / jnp.where(informative, f[1], 1.0), 0.0, 1.0), 0.0)
