"""Simplex helpers and the trust-region JKO step against NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import native  # noqa: F401  (float64)
from native.jko import confidence_target, jko_step, simplex_check, simplex_clean

jko = jax.jit(jko_step)


def reference_jko(rho: np.ndarray, target: np.ndarray, tau: float, cost: float, radius: float) -> np.ndarray:
    tau_eff = min(tau, radius / cost) if cost > 0 else tau
    tau_eff = min(max(tau_eff, 0.0), 1.0)
    out = rho + tau_eff * (target - rho)
    out = np.maximum(out, 0.0)
    return out / out.sum()


def simplex(size: int) -> st.SearchStrategy[np.ndarray]:
    """Points of the simplex, corners and faces included (some weights exactly 0)."""
    weights = st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1.0)), min_size=size, max_size=size)
    return weights.filter(lambda w: sum(w) > 0).map(lambda w: np.array(w) / np.sum(w))


@st.composite
def jko_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    n = draw(st.integers(2, 6))
    return (draw(simplex(n)), draw(simplex(n)), draw(st.floats(0.0, 2.0)),
            draw(st.one_of(st.just(0.0), st.floats(0.0, 1e6))), draw(st.floats(1e-6, 10.0)))


@pytest.mark.parametrize(
    ("tau", "cost", "radius"),
    [(0.5, 1.0, 10.0), (0.5, 1.0, 0.1), (0.3, 0.0, 0.1), (1.7, 0.01, 1.0), (0.2, 2.0, 0.3), (0.0, 5.0, 1.0)],
)
def test_matches_numpy_reference(tau: float, cost: float, radius: float) -> None:
    rng = np.random.default_rng(int(tau * 100 + cost * 10))
    rho, target = rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(4))
    got = np.asarray(jko(rho, target, tau, cost, radius))
    np.testing.assert_allclose(got, reference_jko(rho, target, tau, cost, radius), rtol=0, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(jko_cases())
def test_step_matches_reference_and_stays_on_the_simplex(case: tuple[np.ndarray, np.ndarray, float, float,
                                                                     float]) -> None:
    rho, target, tau, cost, radius = case
    got = np.asarray(jko(rho, target, tau, cost, radius))
    assert bool(simplex_check(got).valid)
    assert np.all(got >= 0)
    np.testing.assert_allclose(got, reference_jko(rho, target, tau, cost, radius), rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(jko_cases())
def test_trust_region_bounds_the_move(case: tuple[np.ndarray, np.ndarray, float, float, float]) -> None:
    """The step moves a fraction tau_eff <= radius / cost of the way, so the move costs at most radius."""
    rho, target, tau, cost, radius = case
    got = np.asarray(jko(rho, target, tau, cost, radius))
    gap = np.abs(target - rho).sum()
    moved = np.abs(got - rho).sum()
    assert moved <= min(tau, 1.0) * gap + 1e-12
    if cost > 0:
        assert moved * cost <= radius * gap + 1e-9 * (1 + cost)


def test_confidence_target_is_normalised_inverse_power_of_loss() -> None:
    rng = np.random.default_rng(0)
    for beta in (0.0, 0.5, 1.0, 3.0):
        losses = rng.uniform(0.01, 10.0, size=4)
        expected = losses ** -beta / np.sum(losses ** -beta)
        np.testing.assert_allclose(np.asarray(confidence_target(losses, beta)), expected, rtol=1e-12)


def test_confidence_target_survives_extreme_losses() -> None:
    t = np.asarray(confidence_target(np.array([1e-300, 1e300, 0.0, 1.0]), 20.0))
    assert np.all(np.isfinite(t))
    assert bool(simplex_check(t).valid)
    assert t[1] < 1e-300  # a huge loss gets no weight


@pytest.mark.parametrize(
    "rho",
    [
        [0.5, np.nan, 0.5],
        [0.5, 0.5, np.inf],
        [1.2, -0.2, 0.0],  # sums to 1 but has a negative weight
        [0.5, 0.5, 0.5],  # sums to 1.5
        [0.2, 0.2, 0.2],  # sums to 0.6
        [0.0, 0.0, 0.0],
    ],
)
def test_simplex_check_flags_invalid_weights(rho: list[float]) -> None:
    check = simplex_check(jnp.array(rho))
    assert not bool(check.valid)
    assert float(check.violation) > 1e-9


def test_simplex_check_reports_the_worst_error() -> None:
    assert float(simplex_check(jnp.array([1.2, -0.2, 0.0])).violation) == pytest.approx(0.2)
    assert float(simplex_check(jnp.array([0.5, 0.5, 0.5])).violation) == pytest.approx(0.5)
    assert float(simplex_check(jnp.array([0.5, np.nan])).violation) == np.inf
    assert bool(simplex_check(jnp.array([0.25, 0.25, 0.5])).valid)
    assert bool(simplex_check(jnp.array([1.0 + 1e-10, 0.0]), tol=1e-9).valid)
    assert not bool(simplex_check(jnp.array([1.0 + 1e-8, 0.0]), tol=1e-9).valid)


def test_simplex_clean() -> None:
    np.testing.assert_allclose(np.asarray(simplex_clean(jnp.array([2.0, -0.1, 2.0]))), [0.5, 0.0, 0.5])
    np.testing.assert_allclose(np.asarray(simplex_clean(jnp.array([-1.0, -1.0]))), [0.5, 0.5])
    np.testing.assert_allclose(np.asarray(simplex_clean(jnp.array([0.0, 0.0, 0.0, 0.0]))), [0.25] * 4)
