"""Kernel D: robust recursive regression on the log-signature of the recent path.

The signature of a path (Lyons 1998; Chevyrev & Kormilitzin 2016, "A primer on the signature method")
summarises its shape by iterated integrals; its logarithm removes the redundancy. For the 2-d path
(time, value) over the last m points, depth 1 is the net change, depth 2 adds the Lévy area (did the
path rise early or late), depth 3 two third-order terms. The signature of a piecewise-linear path is the
tensor product of exp(increment) over its segments (Chen's identity); its truncated logarithm is read at
the Lyndon words 1, 2, 12, 112, 122 (a triangular change of basis from the Lyndon bracket basis, so the
linear regression on top is unaffected).

The regression is recursive least squares with forgetting, and the error that drives each update is
clipped (a Huber-style bound), which is what makes this kernel the robust fallback: one wild tick moves
its weights by a bounded amount. The covariance trace is capped against wind-up on flat stretches.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

#: Log-signature coordinates kept per depth, time increment excluded (it is the same every tick).
LOGSIG_DIM = {1: 1, 2: 2, 3: 4}


class RLSState(NamedTuple):
    w: Array
    P: Array


class LogSigOutput(NamedTuple):
    prediction: Array
    scale: Array


def _outer(a: Array, b: Array) -> Array:
    return jnp.tensordot(a, b, axes=0)


def signature(path: ArrayLike, depth: int) -> tuple[Array, ...]:
    """Levels 1..depth (shapes (d,), (d, d), (d, d, d)) of the signature of a piecewise-linear path (n, d)."""
    p = jnp.asarray(path)
    inc = jnp.diff(p, axis=0)
    levels: list[Array] = []
    for k in range(inc.shape[0]):
        e1 = inc[k]
        seg = [e1, _outer(e1, e1) / 2.0, _outer(_outer(e1, e1), e1) / 6.0][:depth]
        if not levels:
            levels = seg
            continue
        new = [levels[0] + seg[0]]
        if depth >= 2:
            new.append(levels[1] + _outer(levels[0], seg[0]) + seg[1])
        if depth >= 3:
            new.append(levels[2] + _outer(levels[1], seg[0]) + _outer(levels[0], seg[1]) + seg[2])
        levels = new
    return tuple(levels)


def log_signature(path: ArrayLike, depth: int) -> Array:
    """Truncated log-signature of a 2-d path read at the Lyndon words 1, 2, 12, 112, 122.

    >>> import native, numpy as np
    >>> log_signature(np.array([[0.0, 0.0], [1.0, 2.0]]), 2).tolist()  # a straight line has no area
    [1.0, 2.0, 0.0]
    >>> log_signature(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]), 2).tolist()  # right then up
    [1.0, 1.0, 0.5]
    """
    s = signature(path, depth)
    x1 = s[0]
    out = [x1[0], x1[1]]
    if depth >= 2:
        l2 = s[1] - _outer(x1, x1) / 2.0
        out.append(l2[0, 1])
    if depth >= 3:
        l3 = (s[2] - (_outer(x1, s[1]) + _outer(s[1], x1)) / 2.0 + _outer(_outer(x1, x1), x1) / 3.0)
        out.extend([l3[0, 0, 1], l3[0, 1, 1]])
    return jnp.stack(out)


def logsig_features(window: ArrayLike, scale: ArrayLike, points: int, depth: int) -> Array:
    """[1, log-signature without the time increment] of the last `points` values, time scaled to [0, 1]."""
    w = jnp.asarray(window)[-points:]
    x = (w - w[-1]) / scale
    t = jnp.linspace(0.0, 1.0, points)
    ls = log_signature(jnp.stack([t, x], axis=1), depth)
    return jnp.concatenate([jnp.ones(1), ls[1:]])


def rls_init(n_features: int, prior_var: float = 1.0) -> RLSState:
    return RLSState(w=jnp.zeros(n_features), P=prior_var * jnp.eye(n_features))


def rls_update(state: RLSState, x: Array, y: ArrayLike, forgetting: ArrayLike, clip: ArrayLike,
               max_trace: float = 1e4) -> RLSState:
    """Exponentially weighted RLS step with the prediction error clipped to [-clip, clip]."""
    Px = state.P @ x
    gain = Px / (forgetting + x @ Px)
    bound = jnp.asarray(clip)
    err = jnp.clip(y - state.w @ x, -bound, bound)
    P = (state.P - _outer(gain, Px)) / forgetting
    P = 0.5 * (P + P.T)
    tr = jnp.trace(P)
    P = jnp.where(tr > max_trace, P * (max_trace / jnp.where(tr > 0, tr, 1.0)), P)
    return RLSState(w=state.w + gain * err, P=P)


def logsig_predict(state: RLSState, x: Array) -> LogSigOutput:
    """Next increment from the features, with the model's own variance x^T P x as its spread."""
    return LogSigOutput(prediction=state.w @ x, scale=jnp.sqrt(1.0 + x @ state.P @ x))
