"""Kernel C: one-step prediction of a jump-diffusion, explicit or implicit by stiffness.

Model: dX = [s(t) + kappa (theta - X)] dt + sigma dW + J dN: a periodic drift s(t) (the series'
seasonal profile, given by the caller; 0 for a series without a season), an Ornstein-Uhlenbeck pull
towards a slow EWMA level theta, Brownian diffusion, and compound-Poisson jumps of rate lambda and mean
size mu_J (Merton 1976). The seasonal drift enters with coefficient 1, as in Holt-Winters, so this
kernel is the ensemble's plain seasonal predictor, where kernels B and D learn how far to trust it.
Parameters are estimated online, in units of the series' volatility: kappa by exponentially
weighted least squares of the increment on (theta - X); an increment whose drift-corrected size
exceeds `jump_z` diffusion sigmas counts as a jump and feeds (lambda, mu_J, E J^2) instead of sigma^2.

The drift step is explicit Euler, x + kappa (theta - x), while kappa dt is small, and backward
(implicit) Euler, x + kappa (theta - x) / (1 + kappa dt), when kappa dt passes the stiffness threshold:
the explicit step overshoots theta once kappa dt > 1, the implicit one never does. The threshold is
adapted by the caller from the Hölder exponent (rough paths switch to the stable step sooner).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

KAPPA_MAX = 2.0


class JumpDiffusionState(NamedTuple):
    """theta: the level drift pulls towards (in value units); the rest are in volatility units.
    sxy, sxx: EW sums for kappa; diff_var: diffusion variance; jump_rate, jump_mean, jump_m2."""

    theta: Array
    sxy: Array
    sxx: Array
    diff_var: Array
    jump_rate: Array
    jump_mean: Array
    jump_m2: Array


class JumpDiffusionOutput(NamedTuple):
    """prediction: next increment; scale: sqrt(diffusion + jump variance); stiffness: kappa dt;
    implicit: whether the implicit step was used; jump_rate: lambda."""

    prediction: Array
    scale: Array
    stiffness: Array
    implicit: Array
    jump_rate: Array


def jd_init(value: ArrayLike) -> JumpDiffusionState:
    z = jnp.float64(0.0)
    return JumpDiffusionState(theta=jnp.asarray(value, jnp.float64), sxy=z, sxx=z, diff_var=jnp.float64(1.0),
                              jump_rate=z, jump_mean=z, jump_m2=z)


def kappa(state: JumpDiffusionState) -> Array:
    ok = state.sxx > 1e-12
    return jnp.clip(jnp.where(ok, state.sxy / jnp.where(ok, state.sxx, 1.0), 0.0), 0.0, KAPPA_MAX)


def jd_update(state: JumpDiffusionState, x_prev: ArrayLike, x: ArrayLike, scale: ArrayLike, alpha: ArrayLike,
              theta_alpha: ArrayLike, jump_z: ArrayLike, clip: float = 50.0,
              seasonal: ArrayLike = 0.0) -> JumpDiffusionState:
    """Fold the move x_prev -> x (values) into the parameters; `scale` converts to volatility units, and
    normalised moves are clipped to +-`clip` so one absurd tick cannot dominate the estimates.
    `seasonal` is the periodic drift that was expected for this move (volatility units)."""
    gap = jnp.clip((state.theta - x_prev) / scale, -clip, clip)
    inc = jnp.clip((jnp.asarray(x) - x_prev) / scale - seasonal, -clip, clip)
    e = inc - kappa(state) * gap
    jump = jnp.abs(e) > jump_z * jnp.sqrt(state.diff_var)
    jf = jump.astype(jnp.float64)
    return JumpDiffusionState(
        theta=state.theta + theta_alpha * (x - state.theta),
        sxy=state.sxy + alpha * (inc * gap - state.sxy),
        sxx=state.sxx + alpha * (gap * gap - state.sxx),
        diff_var=jnp.where(jump, state.diff_var, state.diff_var + alpha * (e * e - state.diff_var)),
        jump_rate=state.jump_rate + alpha * (jf - state.jump_rate),
        jump_mean=jnp.where(jump, state.jump_mean + alpha * (e - state.jump_mean), state.jump_mean),
        jump_m2=jnp.where(jump, state.jump_m2 + alpha * (e * e - state.jump_m2), state.jump_m2),
    )


def jd_predict(state: JumpDiffusionState, x: ArrayLike, scale: ArrayLike,
               stiffness_threshold: ArrayLike, seasonal: ArrayLike = 0.0) -> JumpDiffusionOutput:
    """Expected next increment (volatility units) from value x, plus the periodic drift `seasonal`
    expected for the next tick.

    >>> import native
    >>> s = jd_init(0.0)._replace(sxy=jnp.float64(1.5), sxx=jnp.float64(1.0))  # kappa = 1.5
    >>> out = jd_predict(s, 1.0, 1.0, 1.0)
    >>> bool(out.implicit), float(out.prediction)  # -1.5 explicit would overshoot theta = 0
    (True, -0.6)
    """
    k = kappa(state)
    gap = (state.theta - x) / scale
    implicit = k > stiffness_threshold
    drift = jnp.where(implicit, k * gap / (1.0 + k), k * gap)
    return JumpDiffusionOutput(
        prediction=drift + seasonal + state.jump_rate * state.jump_mean,
        scale=jnp.sqrt(state.diff_var + state.jump_rate * state.jump_m2),
        stiffness=k,
        implicit=implicit,
        jump_rate=state.jump_rate,
    )
