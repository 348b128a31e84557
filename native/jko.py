"""Kernel weights on the probability simplex: validation, projection, and the JKO step.

The weights move towards a target histogram by the JKO (Jordan-Kinderlehrer-Otto) proximal step
rho <- rho + tau (target - rho): the minimiser of tau <rho, loss> + (transport cost of the move) for a
linear energy, taken along the transport plan. `jko_step` bounds tau by a trust region on that cost: the
move costs tau * W_eps(rho, target), so tau <= radius / W_eps keeps each tick's move within `radius`.
With the cost C_ij = (pred_i - pred_j)^2 this bounds the jump of the fused prediction caused by
re-weighting alone, since |sum_j (target_j - rho_j) pred_j| <= sqrt(W) by Cauchy-Schwarz over the plan.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike


class SimplexCheck(NamedTuple):
    """valid: finite, non-negative within tol and summing to 1 within tol; violation: the worst error."""

    valid: Array
    violation: Array


def simplex_check(rho: ArrayLike, tol: float = 1e-9) -> SimplexCheck:
    """How far `rho` is from the probability simplex.

    >>> import native
    >>> simplex_check(jnp.array([0.5, 0.5])).valid.item(), simplex_check(jnp.array([0.7, 0.7])).valid.item()
    (True, False)
    """
    r = jnp.asarray(rho)
    violation = jnp.maximum(jnp.abs(jnp.sum(r) - 1.0), jnp.max(jnp.maximum(-r, 0.0)))
    violation = jnp.where(jnp.all(jnp.isfinite(r)), violation, jnp.inf)
    return SimplexCheck(valid=violation <= tol, violation=violation)


def simplex_clean(rho: ArrayLike) -> Array:
    """Clip round-off negatives and renormalise; a vector with no mass becomes uniform.

    >>> import native
    >>> simplex_clean(jnp.array([1.0, -1e-17, 1.0])).tolist()
    [0.5, 0.0, 0.5]
    """
    r = jnp.maximum(jnp.asarray(rho), 0.0)
    total = jnp.sum(r)
    uniform = jnp.full_like(r, 1.0 / r.shape[-1])
    return jnp.where(total > 0, r / jnp.where(total > 0, total, 1.0), uniform)


def confidence_target(losses: ArrayLike, beta: ArrayLike) -> Array:
    """Target weights from per-kernel losses: softmax(-beta log loss), i.e. proportional to loss^-beta.

    beta = 1 is inverse-variance weighting when the losses are mean squared errors.

    >>> import native
    >>> confidence_target(jnp.array([1.0, 3.0]), 1.0).tolist()
    [0.75, 0.25]
    """
    logits = -jnp.asarray(beta) * jnp.log(jnp.maximum(jnp.asarray(losses), 1e-300))
    logits = logits - jnp.max(logits)
    w = jnp.exp(logits)
    return w / jnp.sum(w)


def jko_step(rho: ArrayLike, target: ArrayLike, tau: ArrayLike, transport_cost: ArrayLike,
             radius: ArrayLike) -> Array:
    """rho + tau_eff (target - rho) with tau_eff = min(tau, radius / transport_cost), cleaned onto the simplex.

    >>> import native
    >>> jko_step(jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]), 0.5, 1.0, 10.0).tolist()
    [0.5, 0.5]
    >>> jko_step(jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]), 0.5, 1.0, 0.1).tolist()  # trust region
    [0.9, 0.1]
    """
    cost = jnp.asarray(transport_cost)
    limit = jnp.where(cost > 0, radius / jnp.where(cost > 0, cost, 1.0), jnp.inf)
    tau_eff = jnp.clip(jnp.minimum(tau, limit), 0.0, 1.0)
    r = jnp.asarray(rho)
    return simplex_clean(r + tau_eff * (jnp.asarray(target) - r))
