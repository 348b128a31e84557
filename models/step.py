"""`orchestrate_step`: one tick of one series, a pure function of (state, observation, config).

Steps 1-7 of DESIGN.md, in order, for observation x_t:

1. ingest checks (stale, out of range, frozen, outlier); degraded mode starts on any refusal and ends
   after `recovery_steps` clean ticks. A refused observation leaves the predictive state as it was.
2. residual of the previous prediction; volatility (short and long EWMA of squared increments) and the
   kernels' losses updated with this tick (no lag).
3. kernels A-D are trained on the step they just saw and predict the next increment, in units of the
   long-run volatility; the Hölder exponent of the window sets kernel C's stiffness threshold and
   decides the robustness switch to kernel D.
4. fusion: losses -> target weights; a volatility-coupled, warm-started Sinkhorn between the current
   and target weights gives the transport cost that bounds the JKO step.
5. CUSUM on the standardised residual with a kurtosis-adapted threshold; an alarm resets the weights to
   uniform and starts a grace period in which the weights are frozen and no alarm fires.
6. the interval: the fused predictive spread times a width multiplier updated online from the
   interval's own hits and misses (adaptive conformal inference, Gibbs & Candes 2021), so empirical
   coverage tracks the nominal level.
7. the operating mode as an int code; a numeric safety gate keeps any non-finite or out-of-bounds value
   out of state (the series keeps its last good state and reports diagnostic mode).

Everything is jnp with `jnp.where` in place of branches, so the step jits, vmaps over series and scans
over time. Float64 throughout: variances of values near 1e100 and Sinkhorn potentials at small epsilon
both need it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from models.config import OrchestrationConfig, PredictorConfig
from models.state import N_KERNELS, IngestState, Leaf, SeriesState
from native.cusum import cusum_update, kurtosis_threshold
from native.ewma import ewm_debias, ewm_kurtosis, ewm_kurtosis_update, ewm_mean
from native.holder import holder_exponent
from native.jko import confidence_target, jko_step, simplex_check
from native.kernels.density import density_predict, density_update
from native.kernels.features import lag_embedding
from native.kernels.jump_diffusion import jd_predict, jd_update
from native.kernels.krr import krr_step
from native.kernels.logsig import logsig_features, logsig_predict, rls_update
from native.season import season_feature, season_gain, season_rows, season_support, season_update, soft_threshold
from native.sinkhorn import OTProblem, sinkhorn, volatility_epsilon

MODE_INFERENCE, MODE_CALIBRATION, MODE_DIAGNOSTIC = 0, 1, 2
MODE_NAMES = ("inference", "calibration", "diagnostic")

REASON_OK, REASON_STALE, REASON_NUMERIC, REASON_FROZEN, REASON_OUTLIER, REASON_RANGE = 0, 1, 2, 3, 4, 5
REASON_NAMES = ("ok", "stale", "non_finite", "frozen", "outlier", "out_of_range")

KERNEL_NAMES = ("A_krr", "B_density", "C_jump_diffusion", "D_logsig")
KERNEL_D = 3

#: No float in an accepted state may exceed this in magnitude (squares must stay finite).
STATE_BOUND = 1e250
#: Normalised quantities (increments, standardised residuals) are clipped here: a 1e6-sigma jump says
#: nothing more than a 50-sigma one, and the clip keeps every kernel's arithmetic tame.
Z_CLIP = 50.0
#: After its first season, the seasonal profile learns an increment's deviation from what it expected
#: clipped to this many volatility units (robust Holt-Winters): an anomalous day is not learnt as normal.
SEASON_BOUND = 3.0
#: A flat spell is frozen once it runs this many times longer than the longest one the series has come
#: out of by itself: spells of a regular shape repeat at about their length, a stuck sensor does not stop.
FLAT_REPEAT_MARGIN = 1.5
#: The interval's half-width is at least this many float64 epsilons of the prediction (see `_advance`).
HALF_WIDTH_ULPS = 8.0
EPS = float(jnp.finfo(jnp.float64).eps)
#: anomaly_score of a value beyond the series' whole range (see `_range_check`): that of CUSUM evidence
#: at its alarm threshold rising from a quiet envelope, o = 1, so o / (1 + o).
RANGE_SCORE = 0.5


class Observation(NamedTuple):
    """One tick: `ts` in epoch ns (int64) and a finite `value` (float64)."""

    ts: Leaf
    value: Leaf


class StepResult(NamedTuple):
    """What a tick produced. prediction/lower/upper/weights are for the next tick of the series.

    accepted, reason: whether the observation entered state, and why not (REASON_NAMES).
    residual: observation minus the previous prediction (0 when refused).
    mode: MODE_NAMES code. anomaly_score: in [0, 1]. regime_change: a CUSUM alarm this tick.
    cusum, cusum_threshold: the statistic and h_t. degraded: degraded mode after this tick.
    kernel_predictions: each kernel's forecast of the next value. holder: the window's Hölder exponent.
    entropy: kernel B's predictive entropy (nats, value units). epsilon, sinkhorn_iterations,
    sinkhorn_error: the fusion solve.
    """

    accepted: Array
    reason: Array
    residual: Array
    prediction: Array
    lower: Array
    upper: Array
    weights: Array
    mode: Array
    anomaly_score: Array
    regime_change: Array
    cusum: Array
    cusum_threshold: Array
    degraded: Array
    kernel_predictions: Array
    holder: Array
    entropy: Array
    epsilon: Array
    sinkhorn_iterations: Array
    sinkhorn_error: Array


def _ingest(state: SeriesState, ts: Array, x: Array,
            config: PredictorConfig) -> tuple[Array, Array, Array, Array]:
    """(reason code, frozen_run, outlier_run, flat_max) for x against the state's history; outlier_run > 0
    with reason ok is a level shift accepted after `outlier_patience` ticks."""
    o = config.orchestration
    first = state.n_obs == 0
    stale = jnp.logical_and(~first, ts <= state.last_ts)
    out_of_range = jnp.logical_or(~jnp.isfinite(x), jnp.abs(x) > o.max_abs_value)
    same = jnp.logical_and(~first, x == state.last_value)
    # An unusable value (NaN, out of range) says nothing about whether the signal is stuck: it neither
    # extends nor ends a flat spell.
    frozen_run = jnp.where(out_of_range, state.ingest.frozen_run, jnp.where(same, state.ingest.frozen_run + 1, 0))
    # A flat run shorter than part of the series' season can be the season's own shape (a quiet night of
    # a daily pattern, half a square wave): a value is frozen once stuck for longer than both. So can a
    # flat spell as long as one the series has already come out of by itself (a square wave low for
    # 180 of its 288 rows): a spell is frozen once it is more than FLAT_REPEAT_MARGIN times as long as
    # that one (frozen_run counts repeats, so value number frozen_run + 1 > margin x length).
    rows = season_rows(state.season)
    allowance = jnp.floor(o.frozen_season_fraction * rows).astype(frozen_run.dtype)
    known = jnp.minimum(jnp.floor(FLAT_REPEAT_MARGIN * state.ingest.flat_max), rows).astype(frozen_run.dtype)
    frozen = jnp.logical_and(o.frozen_steps > 0,
                             frozen_run >= jnp.maximum(o.frozen_steps, jnp.maximum(allowance, known)))
    sigma = (state.upper - state.prediction) / config.orchestration.interval_z
    candidate = (o.outlier_z > 0) & (state.n_obs > o.warmup_steps) & (sigma > 0) & \
        (jnp.abs(x - state.prediction) > o.outlier_z * sigma)
    outlier_run = jnp.where(candidate, state.ingest.outlier_run + 1, 0)
    outlier = jnp.logical_and(candidate, outlier_run < o.outlier_patience)
    reason = jnp.select([stale, out_of_range, frozen, outlier],
                        [REASON_STALE, REASON_RANGE, REASON_FROZEN, REASON_OUTLIER], REASON_OK)
    # A spell that ends by itself (a usable, different value), shorter than a season, becomes a shape
    # the series is known to have; a spell as long as the whole season is no shape of it, so a long
    # outage is never learnt. flat_max is a length in values.
    spell = state.ingest.frozen_run + 1
    ended = (~first) & (~same) & (~out_of_range) & (state.ingest.frozen_run > 0) & (spell < rows)
    flat_max = jnp.where(ended, jnp.maximum(state.ingest.flat_max, spell), state.ingest.flat_max)
    return reason, frozen_run, outlier_run, flat_max


def _advance(state: SeriesState, obs: Observation, x: Array, learn_at: Array,
             config: PredictorConfig) -> tuple[SeriesState, StepResult]:
    """Steps 2-7 as if x were accepted; the caller decides whether the result may enter state.
    `learn_at`: the time whose seasonal phase this tick's move belongs to (see orchestrate_step)."""
    o, kc, cc = config.orchestration, config.kernels, config.cusum
    first = state.n_obs == 0
    n_obs = state.n_obs + 1
    x_prev = jnp.where(first, x, state.last_value)
    inc = x - x_prev
    residual = jnp.where(first, 0.0, x - state.prediction)

    # 2. Volatility, in value units; `unit` is the long-run volatility kernels work in.
    vol_short = ewm_mean(state.vol_short, inc * inc, o.volatility_alpha)
    vol_long = ewm_mean(state.vol_long, inc * inc, o.volatility_long_alpha)
    var_short = ewm_debias(vol_short, n_obs - 1, o.volatility_alpha)
    var_long = ewm_debias(vol_long, n_obs - 1, o.volatility_long_alpha)
    # The floor keeps a flat series' unit above 0. Its part relative to the value stays far below the
    # moves float64 resolves on it (2e-16 of it), so small moves on a large value (a clock or a counter
    # read at 1e12) keep their own unit: at 1e-9 of the value they were thousandths of it, the kernels'
    # loss prior of 1 unit took hundreds of ticks to decay, and the interval was 40 times too wide.
    floor = 1e-9 + 1e-12 * jnp.abs(x)
    unit = jnp.maximum(jnp.sqrt(var_long), floor)
    ratio = jnp.where(var_long > 0, jnp.sqrt(var_short / jnp.where(var_long > 0, var_long, 1.0)), 1.0)
    vol_excess = jnp.maximum(ratio - 1.0, 0.0)

    u = jnp.clip(inc / state.unit, -Z_CLIP, Z_CLIP)  # the increment in the unit it was predicted in
    err = u - state.kernel_pred
    # The unit is known once one increment has been seen; before that, errors in it mean nothing.
    learn = state.n_obs >= 2
    loss_alpha = jnp.minimum(o.loss_alpha * (1.0 + vol_excess), 0.5)
    kernel_loss = jnp.where(~learn, state.kernel_loss,
                            ewm_mean(state.kernel_loss, jnp.minimum(err * err, Z_CLIP ** 2), loss_alpha))

    # 3. Train on the step just seen, then predict the next one.
    learn_b = learn & (state.n_obs > kc.krr_lags + 1)
    learn_d = learn & (state.n_obs > kc.logsig_points)
    # A zero learning rate is the cheap way to skip an update (no select per parameter leaf).
    # Kernels A, B and D forecast the increment left after the share of the seasonal profile the series
    # has been following (classical decomposition: deseasonalise, forecast, reseasonalise); B and D still
    # see the profile as an input, so they can correct that share.
    s_prev = state.feat_d[-1]
    gain_prev = season_gain(state.season_fit)
    u_rest = u - gain_prev * s_prev
    season_fit = jnp.where(learn, ewm_mean(state.season_fit, jnp.stack([s_prev * u, s_prev * s_prev]),
                                           o.season_gain_alpha), state.season_fit)
    mlp = density_update(state.mlp, state.feat_b, u_rest, kc.density_lr * learn_b)
    rls = rls_update(state.rls, state.feat_d, u_rest, kc.logsig_forgetting, kc.logsig_clip)
    rls = jax.tree_util.tree_map(lambda new, old: jnp.where(learn_d, new, old), rls, state.rls)
    # Kernel C's periodic drift for this move is the seasonal input the kernels were given last tick.
    jd = jd_update(state.jd, x_prev, x, state.unit, kc.jd_alpha * learn, kc.jd_theta_alpha * learn, kc.jump_z,
                   seasonal=state.feat_d[-1])
    jd = jd._replace(theta=jnp.where(first, x, jd.theta))

    # The seasonal profile learns this move at its phase and offers the next phase's increment as an input
    # to kernels B and D (their regressions weigh it) and as kernel C's drift. The step is measured from
    # the last tick seen, refused or not: a run of frozen (refused, identical) values ends with a one-tick
    # move, not a gap. The profile works in value units, not volatility units: the unit drifts within a
    # day of a daily series, and a shape learnt in one hour's unit would be misread in another's.
    season = season_update(state.season, learn_at, obs.ts - state.ingest.seen_ts, inc, n_obs - 1, o.season_alpha,
                           learn=~first & (o.season_bins > 0), bound=SEASON_BOUND * state.unit,
                           scale=jnp.abs(x_prev) + state.unit)
    # The profile's bins average few increments early on, so each carries noise of about one unit over
    # the square root of the increments behind it: shrinking by that (soft threshold) keeps a daily step
    # of ten units and drops a bin that only averaged noise.
    seasonal = soft_threshold(jnp.clip(season_feature(season, obs.ts) / unit, -Z_CLIP, Z_CLIP),
                              o.season_shrink / jnp.sqrt(season_support(season, o.season_alpha)))

    window = jnp.where(first, jnp.full_like(state.window, x), jnp.concatenate([state.window[1:], x[None]]))
    holder = holder_exponent(window)
    full = n_obs >= o.window
    rough = jnp.logical_and(full, holder < o.rough_holder)
    stiffness_threshold = kc.stiffness_threshold * (jnp.maximum(holder, 0.05) / 0.5) ** kc.stiffness_holder_gain

    emb = lag_embedding(window, unit, kc.krr_lags)
    krr, a = krr_step(state.krr, emb, kc.krr_bandwidth, kc.krr_ridge, kc.krr_cg_iters)
    feat_b = jnp.concatenate([emb.x_new, seasonal[None]])
    b = density_predict(mlp, feat_b)
    c = jd_predict(jd, x, unit, stiffness_threshold, seasonal)
    feat_d = jnp.concatenate([logsig_features(window, unit, kc.logsig_points, kc.logsig_depth), seasonal[None]])
    d = logsig_predict(rls, feat_d)
    base = season_gain(season_fit) * seasonal
    preds = jnp.clip(jnp.stack([a.prediction + base, b.prediction + base, c.prediction, d.prediction + base]),
                     -Z_CLIP, Z_CLIP)

    # 4. Fusion: target weights from losses; Sinkhorn prices the move; JKO takes a bounded step.
    target = confidence_target(kernel_loss, o.fusion_beta)
    # The cost of moving weight from kernel i to j is how much they have disagreed lately (EWMA of the
    # squared difference of their predictions): it changes slowly, so last tick's potentials are a good
    # start. It is scaled by its largest entry (ott-jax's scale_cost="max_cost"), so epsilon is unit-free
    # and every tick's problem is equally well conditioned; potentials are kept in units of epsilon,
    # which is what stays comparable from one tick to the next for the warm start.
    disagreement = jnp.where(learn, ewm_mean(state.disagreement, (preds[:, None] - preds[None, :]) ** 2,
                                             loss_alpha), state.disagreement)
    cost = disagreement
    cost_scale = jnp.maximum(jnp.max(cost), 1e-12)
    eps = volatility_epsilon(o.sinkhorn_eps0, o.sinkhorn_eps_min, o.sinkhorn_vol_coupling, vol_excess)
    sk = sinkhorn(OTProblem(state.rho, target, cost / cost_scale), eps, state.f * eps, state.g * eps,
                  tol=o.sinkhorn_tol, max_iter=o.sinkhorn_max_iter)
    tau = o.jko_tau / (1.0 + vol_excess)
    rho = jko_step(state.rho, sk.plan.sum(axis=0), tau, sk.reg_cost * cost_scale, o.jko_radius)

    # 5. CUSUM on the residual standardised by the spread predicted for this tick.
    warm = state.n_obs > o.warmup_steps
    sigma_prev = state.spread * state.unit
    z = jnp.where(warm & (sigma_prev > 0), jnp.clip(residual / jnp.where(sigma_prev > 0, sigma_prev, 1.0),
                                                     -Z_CLIP, Z_CLIP), 0.0)
    # h_t comes from the kurtosis *before* this tick: a large z must not raise its own threshold.
    threshold = kurtosis_threshold(cc.h, ewm_kurtosis(state.resid), cc.kurtosis_gain)
    cus = cusum_update(state.cusum, z, cc.k, threshold, cc.grace_period_steps)
    # Nor may it raise the threshold for the ticks that follow it: the tails are learnt only from ticks
    # that leave the CUSUM calm (below half its threshold), so the start of a shift cannot hide the rest
    # of it; heavy tails still show in the calm ticks' fourth moment. An alarm's tick and the grace
    # period after it count as calm (the sums are reset and held at 0), so a spike large enough to
    # alarm does raise the threshold: on the NAB subset that keeps 232 regime changes where excluding
    # those ticks gave 318.
    calm = jnp.maximum(cus.state.pos, cus.state.neg) < 0.5 * threshold
    resid = ewm_kurtosis_update(state.resid, z, cc.kurtosis_alpha)
    resid = jax.tree_util.tree_map(lambda new, old: jnp.where(warm & calm, new, old), resid, state.resid)
    alarm = jnp.logical_and(cus.alarm, warm)
    cusum_state = jax.tree_util.tree_map(lambda new, old: jnp.where(warm, new, old), cus.state, state.cusum)
    uniform = jnp.full(N_KERNELS, 1.0 / N_KERNELS)
    in_grace = state.cusum.grace > 0
    rho = jnp.where(alarm, uniform, jnp.where(in_grace, state.rho, rho))
    kernel_loss = jnp.where(alarm, jnp.full(N_KERNELS, jnp.mean(kernel_loss)), kernel_loss)
    jd = jd._replace(theta=jnp.where(alarm, x, jd.theta))

    # Robustness switch: on a path too rough to trust the others, kernel D alone predicts.
    weights = jnp.where(rough, jax.nn.one_hot(KERNEL_D, N_KERNELS, dtype=rho.dtype), rho)
    fused = weights @ preds
    spread = jnp.sqrt(jnp.maximum(weights @ (kernel_loss + (preds - fused) ** 2), 1e-12))
    # A predicted move is no surer than a fraction of its size: on a series whose ticks are mostly
    # exactly predicted (flats between daily steps), the kernels' losses are about 0, and without this
    # floor the interval around a predicted step of 80 would be as narrow as on the flats, so a step
    # that comes as 79.1 would read as a 25-sigma surprise.
    spread = jnp.maximum(spread, o.spread_move_fraction * jnp.abs(fused))

    # 6. Interval: ACI-style update of the log width multiplier from whether x fell in last interval.
    miss = jnp.logical_or(x < state.lower, x > state.upper).astype(jnp.float64)
    miss_rate = 1.0 - o.interval_level
    log_mult = jnp.where(warm, state.log_mult + o.conformal_gamma * (miss - miss_rate) / miss_rate ** 0.5, 0.0)
    log_mult = jnp.clip(log_mult, -5.0, 5.0)
    prediction = x + unit * fused
    # At least a few float64 steps of the prediction, so the interval stays an interval: on a long flat
    # spell the spread, the unit and the width multiplier all reach their floors, and a half-width
    # below the spacing of floats near the value would make upper == prediction, which turns the
    # outlier check off (it needs a width) and lets a spike into state.
    half = jnp.maximum(o.interval_z * spread * unit * jnp.exp(log_mult), HALF_WIDTH_ULPS * EPS * jnp.abs(prediction))
    lower = jnp.minimum(prediction - half, prediction)
    upper = jnp.maximum(prediction + half, prediction)

    # Anomaly evidence, in units where 1 is "as unusual as we alarm on": the CUSUM statistic over its
    # threshold. The CUSUM accumulates the residual standardised by the predictive spread, so one huge
    # residual and a run of moderate ones both count, while a single heavy-tailed residual is weighed
    # against the kurtosis-adapted threshold rather than a Gaussian tail. The score is the evidence's
    # rise above a slowly decaying envelope s of recent evidence, relative to 1 + s, mapped o/(1+o): an
    # episode scores high once, when it starts (an on-call page per incident, not per row), and a series
    # whose large errors recur (regular spikes, a step the predictor cannot anticipate) stops scoring
    # them, however large they are. On the NAB subset it beat the Gaussian tail surprisal of the
    # calibrated interval, alone or combined with it (README, "Evaluation", for `usp evaluate --suite
    # anomaly` figures).
    evidence = cus.statistic / threshold
    onset = jnp.maximum(evidence - state.surprise, 0.0) / (1.0 + state.surprise)
    # Until warm-up ends no alarm can fire, so there is no evidence to score yet.
    anomaly = jnp.where(warm, onset / (1.0 + onset), 0.0)
    surprise = jnp.where(warm, jnp.maximum(state.surprise * o.anomaly_decay, evidence), 0.0)

    new = state._replace(
        n_obs=n_obs, last_ts=obs.ts, last_value=x, window=window, vol_short=vol_short, vol_long=vol_long,
        krr=krr, mlp=mlp, jd=jd, rls=rls, feat_b=feat_b, feat_d=feat_d, kernel_pred=preds,
        kernel_loss=kernel_loss, disagreement=disagreement, rho=rho, f=sk.f / eps, g=sk.g / eps, resid=resid,
        cusum=cusum_state,
        log_mult=log_mult, surprise=surprise, season=season, season_fit=season_fit, unit=unit, spread=spread,
        prediction=prediction, lower=lower, upper=upper,
        alarms=state.alarms + alarm.astype(state.alarms.dtype),
    )
    result = StepResult(
        accepted=jnp.bool_(True), reason=jnp.int32(REASON_OK), residual=residual, prediction=prediction,
        lower=lower, upper=upper, weights=weights, mode=jnp.int32(MODE_INFERENCE), anomaly_score=anomaly,
        regime_change=alarm, cusum=cus.statistic, cusum_threshold=threshold, degraded=jnp.bool_(False),
        kernel_predictions=x + unit * preds, holder=holder,
        entropy=b.entropy + jnp.log(unit), epsilon=sk.epsilon, sinkhorn_iterations=sk.iterations,
        sinkhorn_error=sk.marginal_error,
    )
    return new, result


def _within_bounds(state: SeriesState) -> Array:
    # One concatenated reduction instead of one per leaf: inside a scan each op has a fixed cost.
    leaves = [jnp.ravel(leaf) for leaf in jax.tree_util.tree_leaves(state)
              if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating)]
    largest = jnp.max(jnp.abs(jnp.concatenate(leaves)))  # NaN propagates, and NaN <= bound is False
    return jnp.logical_and(largest <= STATE_BOUND, simplex_check(state.rho, 1e-6).valid)


def _range_check(state: SeriesState, x: Array, accepted: Array, outlier: Array,
                 o: OrchestrationConfig) -> tuple[Array, Array, Array, Array]:
    """The range and the tick of the last value beyond it, updated by x, and whether x is news for
    anomaly_score: beyond the range of every value the series has had (by `range_margin` of its width)
    after a quiet spell.

    The CUSUM judges x against the forecast, which follows a slow drift (ambient_temperature's two
    NAB windows: the one-step errors stay small while the temperature leaves anything seen in the
    months before). Against a long history the range is the simpler test: with no change, the chance
    that a tick is beyond the i before it is about 2 / i. Only accepted values widen the range (a
    refused spike must not numb the test); a refused outlier beyond it still counts as news.
    """
    span = state.range_hi - state.range_lo
    ticks = state.n_obs + state.rejected
    watched = (o.range_history > 0) & (state.n_obs >= o.range_history) & (accepted | outlier)
    beyond = watched & ((x > state.range_hi + o.range_margin * span) | (x < state.range_lo - o.range_margin * span))
    # A run beyond the range (a trend making new highs) is one episode: news only after a quiet spell.
    news = beyond & (ticks - state.range_beyond_at > o.range_history // 8)
    first = state.n_obs == 0
    range_lo = jnp.where(accepted, jnp.where(first, x, jnp.minimum(state.range_lo, x)), state.range_lo)
    range_hi = jnp.where(accepted, jnp.where(first, x, jnp.maximum(state.range_hi, x)), state.range_hi)
    return range_lo, range_hi, jnp.where(beyond, ticks, state.range_beyond_at), news


def orchestrate_step(state: SeriesState, obs: Observation,
                     config: PredictorConfig) -> tuple[SeriesState, StepResult]:
    """Advance one series by one observation.

    >>> import numpy as np
    >>> from models.state import init_state
    >>> cfg = PredictorConfig()
    >>> s, r = orchestrate_step(init_state(cfg), Observation(np.int64(1), np.float64(10.0)), cfg)
    >>> float(r.prediction), bool(r.accepted), r.weights.tolist()
    (10.0, True, [0.25, 0.25, 0.25, 0.25])
    >>> s, r = orchestrate_step(s, Observation(np.int64(1), np.float64(11.0)), cfg)  # same ts
    >>> bool(r.accepted), REASON_NAMES[int(r.reason)], bool(r.degraded)  # a replay: nothing changes
    (False, 'stale', False)
    """
    o = config.orchestration
    # XLA on CPU flushes subnormals to zero inside arithmetic but not in a pass-through; flushing the
    # input once makes every derived number agree (found by hypothesis: value 2.2e-313).
    x = jnp.asarray(obs.value, jnp.float64)
    x = jnp.where(jnp.abs(x) < jnp.finfo(jnp.float64).tiny, 0.0, x)
    reason, frozen_run, outlier_run, flat_max = _ingest(state, obs.ts, x, config)
    safe_x = jnp.where(reason == REASON_RANGE, state.last_value, x)  # keep inf/huge out of the arithmetic
    # A level shift accepted after `outlier_patience` refused ticks began with the first of them: its move
    # is learnt at that phase, so a step that recurs daily is expected there next time instead of being
    # refused again (a lone spike is never accepted, so never learnt).
    shift = (outlier_run > 0) & (state.ingest.outlier_run > 0)
    learn_at = jnp.where(shift, state.ingest.outlier_ts, obs.ts)
    candidate, result = _advance(state, obs, safe_x, learn_at, config)

    # Refused input, or a candidate that fails the numeric gate, keeps the old state whole. A cond
    # costs one branch in a scan where a select would cost one op per leaf; under vmap it becomes that
    # select anyway.
    sound = _within_bounds(candidate)
    reason = jnp.where((reason == REASON_OK) & ~sound, REASON_NUMERIC, reason)
    accepted = reason == REASON_OK
    new = jax.lax.cond(accepted, lambda: candidate, lambda: state)

    # A stale tick is one the series has moved past (after a crash, a replay of one already applied):
    # it changes nothing at all, not even the ingest counters, so redelivery stays idempotent. Every
    # other refusal counts, and enters degraded mode.
    stale = reason == REASON_STALE
    clean_run = jnp.where(accepted, state.ingest.clean_run + 1, 0)
    degraded = jnp.where(accepted, (state.ingest.degraded > 0) & (clean_run < o.recovery_steps), True)
    degraded = jnp.where(stale, state.ingest.degraded > 0, degraded)
    ingest = IngestState(degraded=degraded.astype(state.ingest.degraded.dtype), clean_run=clean_run,
                         frozen_run=frozen_run, outlier_run=jnp.where(accepted, 0, outlier_run),
                         outlier_ts=jnp.where(state.ingest.outlier_run == 0, obs.ts, state.ingest.outlier_ts),
                         # The latest tick seen (a replayed older one must not move it back); the
                         # initial -1 is no tick at all (timestamps before 1970 are negative).
                         seen_ts=jnp.where((state.n_obs == 0) & (state.rejected == 0), obs.ts,
                                           jnp.maximum(state.ingest.seen_ts, obs.ts)),
                         flat_max=flat_max)
    # A refused outlier is still evidence of an episode: it is scored, and the anomaly envelope
    # remembers it (when finite), so a run of refused outliers scores once, not once per row. It is also
    # an observation the published interval missed, so the conformal width multiplier counts the miss:
    # coverage is promised over what the series sends, spikes included. Other
    # refusals score 0 and leave all state but the ingest counters alone (a stale tick is a replay; an
    # out-of-range or frozen value says nothing about the forecast's errors).
    outlier = reason == REASON_OUTLIER
    remembered = outlier & jnp.isfinite(candidate.surprise) & jnp.isfinite(result.anomaly_score)
    range_lo, range_hi, range_beyond_at, range_news = _range_check(state, safe_x, accepted, outlier, o)
    new = new._replace(
        range_lo=range_lo, range_hi=range_hi, range_beyond_at=range_beyond_at,
        surprise=jnp.where(remembered, candidate.surprise, new.surprise),
        log_mult=jnp.where(remembered, candidate.log_mult, new.log_mult),
        rejected=state.rejected + (~accepted & ~stale).astype(state.rejected.dtype),
        ingest=jax.tree_util.tree_map(lambda old, fresh: jnp.where(stale, old, fresh), state.ingest, ingest),
    )
    mode = jnp.where(reason == REASON_NUMERIC, MODE_DIAGNOSTIC,
                     jnp.where((new.n_obs > o.warmup_steps) & ~degraded, MODE_INFERENCE, MODE_CALIBRATION))
    kept = jnp.where(accepted, result.kernel_predictions, state.last_value + state.unit * state.kernel_pred)
    result = result._replace(
        accepted=accepted,
        reason=reason.astype(jnp.int32),
        residual=jnp.where(accepted, result.residual, 0.0),
        prediction=new.prediction,
        lower=new.lower,
        upper=new.upper,
        weights=jnp.where(accepted, result.weights, state.rho),
        mode=mode.astype(jnp.int32),
        anomaly_score=jnp.maximum(jnp.where(accepted | remembered, result.anomaly_score, 0.0),
                                  jnp.where(range_news, RANGE_SCORE, 0.0)),
        regime_change=jnp.logical_and(accepted, result.regime_change),
        cusum=jnp.where(accepted, result.cusum, jnp.maximum(state.cusum.pos, state.cusum.neg)),
        degraded=degraded,
        kernel_predictions=kept,
        # A refused candidate's diagnostics may be exactly what the gate caught (NaN): report zeros.
        holder=jnp.where(accepted, result.holder, 0.0),
        entropy=jnp.where(accepted, result.entropy, 0.0),
        epsilon=jnp.where(accepted, result.epsilon, 0.0),
        sinkhorn_iterations=jnp.where(accepted, result.sinkhorn_iterations, 0),
        sinkhorn_error=jnp.where(accepted, result.sinkhorn_error, 0.0),
    )
    return new, result


StepFn = Callable[[SeriesState, Observation], tuple[SeriesState, StepResult]]


@functools.cache
def _compiled_batch(config: PredictorConfig) -> StepFn:
    step = functools.partial(orchestrate_step, config=config)
    return jax.jit(jax.vmap(step))


def orchestrate_step_batch(states: SeriesState, obs: Observation,
                           config: PredictorConfig) -> tuple[SeriesState, StepResult]:
    """`orchestrate_step` vmapped over a leading batch axis; compiled once per (config, batch size)."""
    return _compiled_batch(config)(states, obs)
