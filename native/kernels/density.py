"""Kernel B: a small network trained online that outputs a Gaussian predictive density.

One hidden tanh layer maps the lag embedding to (mean, log sigma) of the next increment; each tick
takes one SGD step on the Gaussian negative log-likelihood (the heteroscedastic regression of Nix &
Weigend 1994), with the gradient norm clipped so one wild tick cannot wreck the weights. The entropy of
the predictive density, 0.5 log(2 pi e) + log sigma, says how unsure the network is.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

LOG_SIGMA_MIN, LOG_SIGMA_MAX = -4.0, 3.0


class MLPParams(NamedTuple):
    w1: Array
    b1: Array
    w2: Array
    b2: Array


class DensityOutput(NamedTuple):
    """prediction: mean of the next increment; scale: its sigma; entropy: of N(mean, sigma^2)."""

    prediction: Array
    scale: Array
    entropy: Array


def mlp_init(key: Array, n_in: int, hidden: int) -> MLPParams:
    """Glorot-scaled first layer; a near-zero output layer, so the first predictions are 'no change'."""
    k1, k2 = jax.random.split(key)
    return MLPParams(
        w1=jax.random.normal(k1, (n_in, hidden), dtype=jnp.float64) / jnp.sqrt(n_in),
        b1=jnp.zeros(hidden),
        w2=0.01 * jax.random.normal(k2, (hidden, 2), dtype=jnp.float64),
        b2=jnp.zeros(2),
    )


def mlp_forward(params: MLPParams, x: Array) -> tuple[Array, Array]:
    h = jnp.tanh(x @ params.w1 + params.b1)
    out = h @ params.w2 + params.b2
    return out[0], jnp.clip(out[1], LOG_SIGMA_MIN, LOG_SIGMA_MAX)


def gaussian_nll(params: MLPParams, x: Array, y: ArrayLike) -> Array:
    mu, log_sigma = mlp_forward(params, x)
    return 0.5 * ((jnp.asarray(y) - mu) * jnp.exp(-log_sigma)) ** 2 + log_sigma


def density_update(params: MLPParams, x: Array, y: ArrayLike, lr: ArrayLike, clip: ArrayLike = 1.0) -> MLPParams:
    """One SGD step on the NLL of the observed increment y given its inputs x."""
    grads = jax.grad(gaussian_nll)(params, x, y)
    norm = jnp.sqrt(sum(jnp.sum(g * g) for g in grads))
    factor = lr * jnp.minimum(1.0, clip / jnp.maximum(norm, 1e-12))
    return MLPParams(*(p - factor * g for p, g in zip(params, grads, strict=True)))


def density_predict(params: MLPParams, x: Array) -> DensityOutput:
    """Predictive density of the next increment.

    >>> import native
    >>> p = mlp_init(jax.random.PRNGKey(0), 3, 4)
    >>> out = density_predict(p, jnp.zeros(3))
    >>> abs(float(out.prediction)) < 0.1, round(float(out.entropy), 3)  # sigma starts near 1
    (True, 1.419)
    """
    mu, log_sigma = mlp_forward(params, x)
    return DensityOutput(prediction=mu, scale=jnp.exp(log_sigma),
                         entropy=0.5 * jnp.log(2.0 * jnp.pi * jnp.e) + log_sigma)
