"""Wavelet-leader Hölder exponent: smooth ~1, Brownian ~0.5, white noise rougher than Brownian."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import native  # noqa: F401  (float64)
from native.holder import haar_coefficients, holder_exponent

batch_holder = jax.jit(jax.vmap(holder_exponent))


@pytest.mark.parametrize("n", [32, 64])
def test_straight_line_is_smooth(n: int) -> None:
    for slope in (1.0, -37.5, 1e-6):
        assert float(holder_exponent(slope * np.arange(n) + 4.0)) == pytest.approx(1.0, abs=0.02)


def test_constant_window_is_called_smooth() -> None:
    assert float(holder_exponent(np.zeros(32))) == 1.0
    assert float(holder_exponent(np.full(32, 1e300))) == 1.0


@pytest.mark.parametrize("n", [32, 64])
def test_brownian_is_about_one_half_and_white_noise_is_rougher(n: int) -> None:
    rng = np.random.default_rng(n)
    brownian = np.asarray(batch_holder(np.cumsum(rng.standard_normal((200, n)), axis=1)))
    noise = np.asarray(batch_holder(rng.standard_normal((200, n))))
    assert 0.3 <= brownian.mean() <= 0.7, brownian.mean()
    assert noise.mean() < brownian.mean() - 0.1, (noise.mean(), brownian.mean())
    assert np.all((brownian >= 0) & (brownian <= 1.5))
    assert np.all((noise >= 0) & (noise <= 1.5))


def test_scale_and_offset_invariance() -> None:
    w = np.cumsum(np.random.default_rng(7).standard_normal(32))
    h = float(holder_exponent(w))
    assert float(holder_exponent(1e6 * w + 3e8)) == pytest.approx(h, abs=1e-6)


def test_haar_coefficients_match_numpy() -> None:
    w = np.random.default_rng(8).standard_normal(32)
    for j in (1, 2, 3, 4):
        blocks = w.reshape(-1, 2 ** j)
        half = 2 ** (j - 1)
        expected = np.abs(blocks[:, half:].mean(1) - blocks[:, :half].mean(1))
        np.testing.assert_allclose(np.asarray(haar_coefficients(w, j)), expected, atol=1e-14)
