"""Exponentially weighted moments, updated one observation at a time.

`ewm_update` is the incremental form of Finch (2009), "Incremental calculation of weighted mean and
variance", sec. 9: with delta = x - mean, mean += alpha * delta and
var = (1 - alpha) * (var + alpha * delta**2). It needs no window, so state is two numbers per series,
and it weights the current observation in the same step (no lag), as DESIGN.md asks.

An EWMA started from zero is biased towards zero for its first ~1/alpha updates; `ewm_debias`
divides by the weight actually accumulated, 1 - (1 - alpha)**n (the correction Adam uses for its
moment estimates), so early intervals are not too narrow.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike


class EwmMoments(NamedTuple):
    """Exponentially weighted first two moments of a stream."""

    mean: Array
    var: Array


def ewm_init(value: ArrayLike) -> EwmMoments:
    """Moments of a stream that has seen exactly one value."""
    v = jnp.asarray(value, dtype=jnp.float64)
    return EwmMoments(mean=v, var=jnp.zeros_like(v))


def ewm_mean(mean: ArrayLike, x: ArrayLike, alpha: ArrayLike) -> Array:
    """One EWMA step of the mean alone: mean + alpha * (x - mean).

    >>> import native
    >>> float(ewm_mean(0.0, 1.0, 0.25))
    0.25
    """
    m = jnp.asarray(mean)
    return m + alpha * (jnp.asarray(x) - m)


def ewm_update(moments: EwmMoments, x: ArrayLike, alpha: ArrayLike) -> EwmMoments:
    """Fold `x` into `moments` with weight `alpha` in (0, 1].

    >>> import native  # float64
    >>> m = ewm_update(ewm_init(0.0), 1.0, 0.5)
    >>> float(m.mean), float(m.var)
    (0.5, 0.25)
    """
    delta = x - moments.mean
    var = (1.0 - alpha) * (moments.var + alpha * delta * delta)
    return EwmMoments(mean=ewm_mean(moments.mean, x, alpha), var=jnp.asarray(var))


def ewm_debias(value: ArrayLike, n: ArrayLike, alpha: float) -> Array:
    """Bias-correct an EWMA started at zero after `n` updates; 0 when n == 0.

    >>> import native
    >>> float(ewm_debias(0.5, 1, 0.5))  # one update of 1.0 from 0 with alpha 0.5
    1.0
    """
    weight = 1.0 - (1.0 - alpha) ** jnp.asarray(n, dtype=jnp.float64)
    return jnp.where(weight > 0, jnp.asarray(value) / jnp.where(weight > 0, weight, 1.0), 0.0)


class EwmKurtosis(NamedTuple):
    """Exponentially weighted second and fourth moments of a zero-mean stream (e.g. residuals)."""

    m2: Array
    m4: Array


def ewm_kurtosis_update(moments: EwmKurtosis, z: ArrayLike, alpha: ArrayLike) -> EwmKurtosis:
    """Fold a residual into the moments; residuals are already centred, so no mean is tracked.

    >>> import native
    >>> m = ewm_kurtosis_update(EwmKurtosis(jnp.float64(1.0), jnp.float64(3.0)), 2.0, 0.5)
    >>> float(m.m2), float(m.m4)
    (2.5, 9.5)
    """
    zz = jnp.asarray(z)
    z2 = zz * zz
    return EwmKurtosis(m2=ewm_mean(moments.m2, z2, alpha), m4=ewm_mean(moments.m4, z2 * z2, alpha))


def ewm_kurtosis(moments: EwmKurtosis) -> Array:
    """m4 / m2^2; 3 (Gaussian) while there is no variance to measure.

    >>> import native
    >>> float(ewm_kurtosis(EwmKurtosis(jnp.float64(2.0), jnp.float64(12.0))))
    3.0
    """
    m2 = jnp.asarray(moments.m2)
    ok = m2 > 0
    return jnp.where(ok, moments.m4 / jnp.where(ok, m2 * m2, 1.0), 3.0)
