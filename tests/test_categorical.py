"""The tail-exact categorical draw (design.md 5.4)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddjax.random import gumbel_from_uniform, uniform_from_words
from ddjax.samplers import categorical, gumbel

Z_1E6 = 4.753424308822899  # standard normal upper 1e-6 quantile


def chi2_threshold(df: int, z: float = Z_1E6) -> float:
    """Wilson-Hilferty upper quantile of the chi-square distribution."""
    return df * (1.0 - 2.0 / (9.0 * df) + z * math.sqrt(2.0 / (9.0 * df))) ** 3


def chi2_stat(counts, probs) -> float:
    counts, probs = np.asarray(counts, np.float64), np.asarray(probs, np.float64)
    expected = counts.sum() * probs
    return float(((counts - expected) ** 2 / expected).sum())


# --------------------------------------------------------------------------
# the tail: 0.1% of the mass over 50,000 classes, one head class
# --------------------------------------------------------------------------

TAIL_CLASSES = 50_000
TAIL_MASS = 1e-3
CHUNK = 250


def _tail_logits() -> jax.Array:
    head = jnp.log(jnp.array([1.0 - TAIL_MASS]))
    tail = jnp.full((TAIL_CLASSES,), math.log(TAIL_MASS / TAIL_CLASSES))
    return jnp.concatenate([head, tail]).astype(jnp.float32)


def _tail_count(sampler, key, draws: int) -> int:
    """How many of ``draws`` draws land in the tail (class index > 0)."""
    logits = _tail_logits()

    @jax.jit
    def run(key):
        def body(count, k):
            x = sampler(k, jnp.broadcast_to(logits, (CHUNK, TAIL_CLASSES + 1)))
            return count + jnp.sum(x > 0), None

        return jax.lax.scan(body, jnp.int32(0), jax.random.split(key, draws // CHUNK))[0]

    return int(run(key))


@pytest.mark.slow
def test_tail_is_sampled_exactly():
    """Each tail class trails the head by 17.7 nats, beyond float32 Gumbel's ~16 cap.

    20,000 draws of 50,001 classes (1e9 Gumbels, about a minute on 2 CPU cores per
    sampler): the exact expectation is 20 tail draws, sd 4.5.
    """
    draws = 20_000
    mean = draws * TAIL_MASS
    sd = math.sqrt(draws * TAIL_MASS * (1 - TAIL_MASS))
    ours = _tail_count(lambda k, x: categorical(k, x), jax.random.key(0), draws)
    assert mean - 4 * sd <= ours <= mean + 4 * sd, (ours, mean, sd)
    assert mean - 4 * sd > 0
    theirs = _tail_count(lambda k, x: jax.random.categorical(k, x), jax.random.key(0), draws)
    # jax's float32 Gumbel gives about 2% of the exact rate here (about 0.4 draws)
    assert theirs < mean - 4 * sd, (theirs, mean)


def _exact_tail_count(g: float, total_bits: int) -> float:
    """2**bits P(G > g) for a standard Gumbel."""
    return 2.0**total_bits * -math.expm1(-math.exp(-g))


def test_tail_resolution_32_bits():
    """Every 32-bit word, enumerated where the upper tail is decided: the number of words
    whose Gumbel exceeds g is 2**32 P(G > g) up to rounding, far beyond 16 nats."""
    words = jnp.arange(2**24, dtype=jnp.uint32)  # V < 2**-8, every G > 5.5
    v = uniform_from_words(words)
    np.testing.assert_array_equal(v[: 2**23], (np.arange(2**23) + 0.5) * 2.0**-32)
    g = np.asarray(gumbel_from_uniform(v), np.float64)
    assert np.all(np.diff(g) <= 0)
    assert g[0] > 22.8  # the cap: -log(2**-33)
    for level in (6.0, 10.0, 14.0, 16.0, 18.0, 20.0, 22.0):
        count = np.count_nonzero(g > level)
        exact = _exact_tail_count(level, 32)
        assert abs(count - exact) <= max(2.0, 1e-5 * exact), (level, count, exact)


def test_tail_resolution_64_bits():
    lo = jnp.arange(2**24, dtype=jnp.uint32)
    v = uniform_from_words(jnp.zeros_like(lo), lo)
    g = np.asarray(gumbel_from_uniform(v), np.float64)
    assert g[0] > 45.0  # -log(2**-65)
    for level in (30.0, 35.0, 40.0, 44.0):
        count = np.count_nonzero(g > level)
        exact = _exact_tail_count(level, 64)
        assert abs(count - exact) <= max(2.0, 1e-5 * exact), (level, count, exact)


def test_moderate_tail_by_sampling():
    """A statistical check that the draw follows the tail: 50 classes 12 nats below the
    head (within every sampler's reach), 100,000 draws, about 30 expected tail draws."""
    draws, classes, gap = 100_000, 50, 12.0
    logits = jnp.concatenate([jnp.zeros(1), jnp.full((classes,), -gap)])
    p_tail = classes * math.exp(-gap) / (1 + classes * math.exp(-gap))
    for bits in (32, 64):
        x = categorical(
            jax.random.key(bits), jnp.broadcast_to(logits, (draws, classes + 1)), bits=bits
        )
        count = int(jnp.sum(x > 0))
        mean, sd = draws * p_tail, math.sqrt(draws * p_tail * (1 - p_tail))
        assert abs(count - mean) <= 4 * sd, (bits, count, mean)


# --------------------------------------------------------------------------
# small distributions
# --------------------------------------------------------------------------

PROBS = np.array([0.3, 0.25, 0.2, 0.15, 0.1, 0.0])


@pytest.mark.parametrize("bits", [32, 64])
def test_chi_square_small(bits):
    n = 40_000
    logits = jnp.log(jnp.asarray(PROBS, jnp.float32))  # the last class is -inf
    x = np.asarray(categorical(jax.random.key(bits), jnp.broadcast_to(logits, (n, 6)), bits=bits))
    assert x.dtype == np.int32 and x.shape == (n,)
    counts = np.bincount(x, minlength=6)
    assert counts[5] == 0  # -inf is never drawn
    assert chi2_stat(counts[:5], PROBS[:5]) < chi2_threshold(4)


def test_axis_and_batch_shape():
    n = 20_000
    logits = jnp.log(jnp.asarray(PROBS[:5], jnp.float32))
    x = np.asarray(
        categorical(jax.random.key(3), jnp.broadcast_to(logits[:, None, None], (5, n, 2)), axis=0)
    )
    assert x.shape == (n, 2)
    for col in range(2):
        counts = np.bincount(x[:, col], minlength=5)
        assert chi2_stat(counts, PROBS[:5]) < chi2_threshold(4)
    # the two columns use independent noise
    assert np.mean(x[:, 0] == x[:, 1]) == pytest.approx((PROBS[:5] ** 2).sum(), abs=0.02)


@pytest.mark.parametrize("bits", [32, 64])
def test_gumbel_distribution(bits):
    """exp(-exp(-G)) is uniform on (0, 1) for a standard Gumbel G."""
    n, bins = 200_000, 20
    g = np.asarray(gumbel(jax.random.key(7), (n,), bits=bits), np.float64)
    assert np.all(np.isfinite(g))
    u = np.exp(-np.exp(-g))
    counts = np.bincount(np.minimum((u * bins).astype(int), bins - 1), minlength=bins)
    assert chi2_stat(counts, np.full(bins, 1 / bins)) < chi2_threshold(bins - 1)
    # the upper tail: P(G > 6) = 1 - exp(-exp(-6))
    p6 = -math.expm1(-math.exp(-6.0))
    tail = (g > 6).sum()
    assert abs(tail - n * p6) <= 4 * math.sqrt(n * p6 * (1 - p6))


def test_bad_bits():
    with pytest.raises(ValueError, match="bits"):
        categorical(jax.random.key(0), jnp.zeros(3), bits=16)
