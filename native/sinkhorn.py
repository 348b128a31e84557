"""Entropic optimal transport between two small histograms, log-domain Sinkhorn, warm-started.

Kept apart as in ott-jax: an `OTProblem` (marginals and cost) is data, `sinkhorn` is the solver, and
the answer is a `SinkhornOutput` NamedTuple. Iterations run in the log domain (Cuturi 2013; Peyre &
Cuturi 2019, "Computational Optimal Transport", sec. 4.4) so a small epsilon never underflows, start
from the previous tick's potentials (the problem changes little between ticks, so a warm start needs a
handful of iterations fewer than a cold one) and stop once the worst marginal error is below
`tol` or after `max_iter`. The loop is a `lax.while_loop` on a traced condition, so the solver stays jit-
and vmap-able (under vmap every problem of the batch runs until the slowest has converged).

The diagnostics (cost, errors, flags) go through `stop_gradient`: they describe the solve and must not
carry gradients into whatever differentiates through the plan.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.scipy.special import logsumexp
from jax.typing import ArrayLike


class OTProblem(NamedTuple):
    """Transport `a` (shape n, sums to 1) onto `b` (shape m, sums to 1) at `cost` (n, m)."""

    a: Array
    b: Array
    cost: Array


class SinkhornOutput(NamedTuple):
    """plan: the (n, m) coupling; f, g: dual potentials (warm start for the next solve);
    reg_cost: <plan, cost>, the transport cost of the regularised plan; converged: marginal error
    below tol; epsilon: the regularisation used; marginal_error: max |plan 1 - a|, |plan^T 1 - b|;
    iterations: Sinkhorn sweeps done (the last sweep follows the error check that stopped the loop)."""

    plan: Array
    f: Array
    g: Array
    reg_cost: Array
    converged: Array
    epsilon: Array
    marginal_error: Array
    iterations: Array


def volatility_epsilon(eps0: ArrayLike, eps_min: ArrayLike, alpha: ArrayLike, sigma: ArrayLike) -> Array:
    """epsilon_t = max(eps_min, eps0 (1 + alpha sigma_t)): a more volatile series gets a smoother plan.

    >>> import native
    >>> float(volatility_epsilon(0.1, 0.05, 2.0, 0.5))
    0.2
    """
    return jnp.maximum(eps_min, eps0 * (1.0 + alpha * jnp.asarray(sigma)))


def _log(x: Array) -> Array:
    # log 0 = -inf would make 0 * inf = nan in the cost; a floor keeps empty bins harmless.
    return jnp.log(jnp.maximum(x, 1e-300))


def _plan(problem: OTProblem, f: Array, g: Array, eps: Array) -> Array:
    return jnp.exp((f[:, None] + g[None, :] - problem.cost) / eps)


def _marginal_error(problem: OTProblem, plan: Array) -> Array:
    return jnp.maximum(jnp.max(jnp.abs(plan.sum(1) - problem.a)), jnp.max(jnp.abs(plan.sum(0) - problem.b)))


def sinkhorn(problem: OTProblem, epsilon: ArrayLike, f0: ArrayLike | None = None, g0: ArrayLike | None = None,
             tol: float = 1e-6, max_iter: int = 100) -> SinkhornOutput:
    """Solve min <P, C> - epsilon H(P) subject to P 1 = a, P^T 1 = b.

    >>> import native, numpy as np
    >>> p = OTProblem(jnp.array([0.5, 0.5]), jnp.array([0.25, 0.75]), jnp.array([[0.0, 1.0], [1.0, 0.0]]))
    >>> out = sinkhorn(p, 0.05, tol=1e-9, max_iter=1000)
    >>> bool(out.converged), np.round(np.asarray(out.plan), 3).tolist()
    (True, [[0.25, 0.25], [0.0, 0.5]])
    """
    eps = jnp.asarray(epsilon, dtype=jnp.float64)
    f = jnp.zeros_like(problem.a) if f0 is None else jnp.asarray(f0, dtype=jnp.float64)
    g = jnp.zeros_like(problem.b) if g0 is None else jnp.asarray(g0, dtype=jnp.float64)
    log_a, log_b = _log(problem.a), _log(problem.b)

    def cond(carry: tuple[Array, Array, Array, Array]) -> Array:
        _, _, err, it = carry
        return jnp.logical_and(err > tol, it < max_iter)

    def body(carry: tuple[Array, Array, Array, Array]) -> tuple[Array, Array, Array, Array]:
        f, g, _, it = carry
        # The f-update's log-sum-exp also gives the row marginal of the current (f, g): after a g-sweep
        # the columns are exact, so that row error is the whole marginal error, measured for free.
        lse = logsumexp((g[None, :] - problem.cost) / eps, axis=1)
        err = jnp.max(jnp.abs(problem.a * jnp.expm1(f / eps + lse - log_a)))
        f = eps * (log_a - lse)
        g = eps * log_b - eps * logsumexp((f[:, None] - problem.cost) / eps, axis=0)
        return f, g, err, it + 1

    f, g, _, iterations = jax.lax.while_loop(cond, body, (f, g, jnp.float64(jnp.inf), jnp.int32(0)))
    plan = _plan(problem, f, g, eps)
    err = _marginal_error(problem, plan)
    sg = jax.lax.stop_gradient
    return SinkhornOutput(
        plan=plan,
        f=f,
        g=g,
        reg_cost=sg(jnp.sum(plan * problem.cost)),
        converged=sg(err <= tol),
        epsilon=sg(eps),
        marginal_error=sg(err),
        iterations=sg(iterations),
    )
