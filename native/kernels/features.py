"""Lag embedding of a window: what kernels A and B regress the next increment on."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike


class Embedding(NamedTuple):
    """X: (n, lags + 1) training inputs, y: (n,) their next increments, x_new: inputs for the next tick."""

    X: Array
    y: Array
    x_new: Array


def lag_embedding(window: ArrayLike, scale: ArrayLike, lags: int) -> Embedding:
    """Rows [u_{i-lags}, ..., u_{i-1}, dev_i] -> u_i, with u the increments of `window` over `scale` and
    dev_i the distance of value i from the window mean over `scale` (it carries mean reversion).

    >>> import native, numpy as np
    >>> e = lag_embedding(np.arange(6.0), 1.0, 2)
    >>> e.X.shape, e.y.tolist(), e.x_new.tolist()
    ((3, 3), [1.0, 1.0, 1.0], [1.0, 1.0, 2.5])
    """
    w = jnp.asarray(window)
    s = jnp.asarray(scale)
    u = jnp.diff(w) / s
    dev = (w - w.mean()) / s
    n = w.shape[0] - 1 - lags
    lagged = jnp.stack([u[j:j + n] for j in range(lags)], axis=1)
    X = jnp.concatenate([lagged, dev[lags:lags + n, None]], axis=1)
    y = u[lags:lags + n]
    x_new = jnp.concatenate([u[u.shape[0] - lags:], dev[-1:]])
    return Embedding(X=X, y=y, x_new=x_new)
