"""Log-domain Sinkhorn against an independent NumPy scaling-domain reference."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import native  # noqa: F401  (float64)
from native.sinkhorn import OTProblem, SinkhornOutput, sinkhorn, volatility_epsilon

TOL = 1e-10
MAX_ITER = 5000

# One compiled solver per (shape, tol, max_iter); eager while_loops would recompile on every call.
solve = jax.jit(sinkhorn, static_argnames=("tol", "max_iter"))


def reference_sinkhorn(a: np.ndarray, b: np.ndarray, cost: np.ndarray, eps: float,
                       iters: int = 200_000) -> tuple[np.ndarray, float]:
    """Plain scaling-domain Sinkhorn-Knopp (u = a / K v, v = b / K^T u) in float64, run to round-off."""
    K = np.exp(-cost / eps)
    u = np.ones_like(a)
    v = np.ones_like(b)
    for _ in range(iters):
        u = a / (K @ v)
        v = b / (K.T @ u)
        plan = u[:, None] * K * v[None, :]
        if np.max(np.abs(plan.sum(1) - a)) < 1e-15:
            break
    plan = u[:, None] * K * v[None, :]
    return plan, float(np.sum(plan * cost))


def random_problem(rng: np.random.Generator, n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = rng.dirichlet(np.ones(n))
    b = rng.dirichlet(np.ones(m))
    cost = rng.uniform(0.0, 1.0, size=(n, m))
    return a, b, cost


def problem_of(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> OTProblem:
    return OTProblem(jnp.asarray(a), jnp.asarray(b), jnp.asarray(cost))


CASES = [(n, m, seed) for seed, (n, m) in enumerate([(2, 2), (2, 6), (6, 2), (3, 5), (4, 4), (5, 3), (6, 6)])]


@pytest.mark.parametrize(("n", "m", "seed"), CASES)
@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_matches_numpy_scaling_reference(n: int, m: int, seed: int, eps: float) -> None:
    a, b, cost = random_problem(np.random.default_rng(seed), n, m)
    out = solve(problem_of(a, b, cost), eps, tol=TOL, max_iter=MAX_ITER)
    plan_ref, cost_ref = reference_sinkhorn(a, b, cost, eps)
    assert bool(out.converged)
    assert float(out.marginal_error) <= TOL
    assert int(out.iterations) < MAX_ITER
    np.testing.assert_allclose(np.asarray(out.plan), plan_ref, rtol=0, atol=1e-6)
    assert abs(float(out.reg_cost) - cost_ref) <= 1e-6
    # The reported marginal error is the real one of the returned plan.
    plan = np.asarray(out.plan)
    err = max(np.max(np.abs(plan.sum(1) - a)), np.max(np.abs(plan.sum(0) - b)))
    assert err <= TOL
    assert float(out.marginal_error) == pytest.approx(err, abs=1e-15)
    assert float(out.epsilon) == eps


def test_potentials_reproduce_the_plan() -> None:
    """plan = exp((f_i + g_j - C_ij) / eps): the returned potentials are the plan's duals."""
    a, b, cost = random_problem(np.random.default_rng(11), 4, 5)
    eps = 0.2
    out = solve(problem_of(a, b, cost), eps, tol=TOL, max_iter=MAX_ITER)
    f, g = np.asarray(out.f), np.asarray(out.g)
    np.testing.assert_allclose(np.exp((f[:, None] + g[None, :] - cost) / eps), np.asarray(out.plan), atol=1e-14)


def test_max_iter_stops_an_unconverged_solve() -> None:
    a, b, cost = random_problem(np.random.default_rng(3), 5, 5)
    out = solve(problem_of(a, b, cost), 0.01, tol=1e-14, max_iter=3)
    assert int(out.iterations) == 3
    assert not bool(out.converged)
    assert float(out.marginal_error) > 1e-14


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_warm_start_needs_far_fewer_iterations(seed: int) -> None:
    """Between ticks the problem moves a little (here 1e-4 relative); last tick's potentials then start
    close to the answer. Sinkhorn converges linearly, so the saving is the decades of error a cold start
    must first remove: at tol 1e-6 (production uses 1e-4) a warm start needs a third or less."""
    rng = np.random.default_rng(100 + seed)
    a, b, cost = random_problem(rng, 5, 5)
    eps, tol = 0.02, 1e-6
    first = solve(problem_of(a, b, cost), eps, tol=tol, max_iter=MAX_ITER)
    assert bool(first.converged)
    a2 = a * (1 + 1e-4 * rng.standard_normal(5))
    a2 /= a2.sum()
    b2 = b * (1 + 1e-4 * rng.standard_normal(5))
    b2 /= b2.sum()
    cost2 = cost + 1e-4 * rng.uniform(size=cost.shape)
    p2 = problem_of(a2, b2, cost2)
    cold = solve(p2, eps, tol=tol, max_iter=MAX_ITER)
    warm = solve(p2, eps, first.f, first.g, tol=tol, max_iter=MAX_ITER)
    assert bool(cold.converged) and bool(warm.converged)
    assert int(warm.iterations) <= int(cold.iterations) / 2, (int(warm.iterations), int(cold.iterations))
    # Both land on the same plan (each within tol of the exact one).
    np.testing.assert_allclose(np.asarray(warm.plan), np.asarray(cold.plan), atol=1e-5)


def test_vmap_over_a_batch_equals_per_problem_solves() -> None:
    rng = np.random.default_rng(5)
    probs = [random_problem(rng, 3, 4) for _ in range(6)]
    eps = jnp.array([0.05, 0.1, 0.2, 0.5, 1.0, 0.3])
    batch = OTProblem(*(jnp.stack([jnp.asarray(p[i]) for p in probs]) for i in range(3)))

    def one(p: OTProblem, e: Any) -> SinkhornOutput:
        return sinkhorn(p, e, tol=TOL, max_iter=MAX_ITER)

    batched = jax.jit(jax.vmap(one))(batch, eps)
    for i, (a, b, cost) in enumerate(probs):
        single = solve(problem_of(a, b, cost), eps[i], tol=TOL, max_iter=MAX_ITER)
        np.testing.assert_allclose(np.asarray(batched.plan[i]), np.asarray(single.plan), atol=1e-12)
        assert abs(float(batched.reg_cost[i]) - float(single.reg_cost)) <= 1e-12
        assert bool(batched.converged[i])
        assert int(batched.iterations[i]) == int(single.iterations)


def test_small_epsilon_does_not_underflow() -> None:
    """Log domain: eps = 1e-3 on costs of order 1 would underflow exp(-C/eps) in the scaling domain."""
    a, b, cost = random_problem(np.random.default_rng(9), 4, 4)
    out = solve(problem_of(a, b, cost), 1e-3, tol=1e-8, max_iter=MAX_ITER)
    assert np.all(np.isfinite(np.asarray(out.plan)))
    assert bool(out.converged)


def test_volatility_epsilon() -> None:
    assert float(volatility_epsilon(0.1, 0.05, 2.0, 0.0)) == pytest.approx(0.1)
    assert float(volatility_epsilon(0.1, 0.05, 2.0, 1.0)) == pytest.approx(0.3)
    assert float(volatility_epsilon(0.01, 0.05, 2.0, 1.0)) == pytest.approx(0.05)  # floor


def _simplex(size: int) -> st.SearchStrategy[np.ndarray]:
    return st.lists(st.floats(0.01, 1.0), min_size=size, max_size=size).map(lambda w: np.array(w) / np.sum(w))


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    n = draw(st.integers(2, 6))
    m = draw(st.integers(2, 6))
    a = draw(_simplex(n))
    b = draw(_simplex(m))
    cost = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=n * m, max_size=n * m))).reshape(n, m)
    # eps >= cost range / 10 keeps Sinkhorn's contraction rate (tanh(range / (4 eps))) away from 1; at
    # range / eps = 18 a 2x2 problem needs tens of thousands of sweeps (found by hypothesis).
    eps = draw(st.floats(0.1, 2.0))
    return a, b, cost, eps


@settings(max_examples=40, deadline=None)
@given(problems())
def test_plan_is_non_negative_with_marginals_within_tol(case: tuple[np.ndarray, np.ndarray, np.ndarray, float]) -> None:
    a, b, cost, eps = case
    tol = 1e-8
    out = solve(problem_of(a, b, cost), eps, tol=tol, max_iter=20_000)
    plan = np.asarray(out.plan)
    assert bool(out.converged)
    assert np.all(np.isfinite(plan))
    assert np.all(plan >= 0)
    assert np.max(np.abs(plan.sum(1) - a)) <= tol
    assert np.max(np.abs(plan.sum(0) - b)) <= tol
