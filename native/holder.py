"""Hölder (roughness) exponent of a short window from Haar wavelet leaders.

Wavelet leaders (Jaffard 2004; Wendt, Abry & Jaffard 2007, "Bootstrap for empirical multifractal
analysis"): with L1-normalised Haar coefficients d_{j,k} (mean of the right half minus mean of the left
half of the k-th dyadic block of length 2^j), the leader L_{j,k} is the largest |d| over the block, its
finer sub-blocks, and its two neighbours. For a path with uniform Hölder exponent h, mean_k L_{j,k}
grows like 2^{j h}, so h is the least-squares slope of log2(mean leader) against the scale j.

A smooth path gives h near 1 (Haar has one vanishing moment, so 1 is the ceiling), Brownian motion
about 0.5, white noise about 0 (on a 32-value window the estimates come out near 0.43 and 0.22).
A window with no variation at all is called smooth (h = 1).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike


def haar_coefficients(window: ArrayLike, scale: int) -> Array:
    """|d_{j,k}| for j = `scale` over a window whose length is a multiple of 2^scale."""
    w = jnp.asarray(window)
    block = 2 ** scale
    blocks = w.reshape(-1, block)
    half = block // 2
    return jnp.abs(blocks[:, half:].mean(axis=1) - blocks[:, :half].mean(axis=1))


def holder_exponent(window: ArrayLike, scales: int = 4) -> Array:
    """Wavelet-leader estimate of the Hölder exponent of `window` (length 2^n, n > scales), in [0, 1.5].

    >>> import native, numpy as np
    >>> t = np.linspace(0, 1, 32)
    >>> round(float(holder_exponent(t)), 2)  # a straight line is smooth
    1.0
    """
    w = jnp.asarray(window)
    finer: Array | None = None
    means = []
    for j in range(1, scales + 1):
        d = haar_coefficients(w, j)
        # Sup over the block and all its finer sub-blocks ...
        m = d if finer is None else jnp.maximum(d, finer.reshape(-1, 2).max(axis=1))
        finer = m
        # ... then over its neighbours (edge blocks use what exists).
        padded = jnp.pad(m, 1)
        leaders = jnp.maximum(jnp.maximum(padded[:-2], padded[1:-1]), padded[2:])
        means.append(leaders.mean())
    mean_leaders = jnp.stack(means)
    js = jnp.arange(1, scales + 1, dtype=jnp.float64)
    flat = jnp.max(mean_leaders) <= 1e-12 * (1.0 + jnp.max(jnp.abs(w)))
    logs = jnp.log2(jnp.maximum(mean_leaders, 1e-300))
    jc = js - js.mean()
    slope = jnp.sum(jc * (logs - logs.mean())) / jnp.sum(jc * jc)
    return jnp.where(flat, 1.0, jnp.clip(slope, 0.0, 1.5))
