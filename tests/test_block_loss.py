"""Block diffusion (BD3-LM): the oracle's exact block denoisers and the block ELBO.

The oracle's block denoisers are checked against a brute-force float64 enumeration
written here from the definition p(x0_i | clean earlier blocks, noisy block at time t).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddjax import processes, schedules, testing

K, L = 3, 4


@pytest.fixture(scope="module")
def target() -> testing.ExactTarget:
    return testing.random_target(jax.random.PRNGKey(3), K, L)


def _q_np(process: processes.Interpolating, x: int, s: int, t: float) -> float:
    """q(x_t = x | x0 = s) at time t, float64, from design.md 5.1."""
    a = 1.0 - (1.0 - process.schedule.eps) * t  # LogLinear
    pi = np.asarray(process.prior_probs(), np.float64)
    return a * (x == s) + (1.0 - a) * pi[x]


def brute_block(target, process, block_size, x, t, block) -> np.ndarray:
    """p(x0_i | x before the block clean, x's block noisy at t): float64[bs, K]."""
    probs = np.asarray(target.probs, np.float64)
    lo, hi = block * block_size, (block + 1) * block_size
    out = np.zeros((block_size, K))
    for idx, seq in enumerate(itertools.product(range(K), repeat=L)):
        w = probs[idx]
        w *= all(seq[j] == x[j] for j in range(lo))
        for j in range(lo, hi):
            w *= _q_np(process, int(x[j]), seq[j], t)
        for j in range(lo, hi):
            out[j - lo, seq[j]] += w
    return out / out.sum(-1, keepdims=True)


PROCESSES = {
    "masking": processes.Masking(vocab_size=K, schedule=schedules.LogLinear()),
    "uniform": processes.Uniform(vocab_size=K, schedule=schedules.LogLinear()),
}


@pytest.mark.parametrize("name", sorted(PROCESSES))
@pytest.mark.parametrize("block_size", [1, 2, 4])
def test_block_denoiser_matches_brute_force(target, name, block_size):
    process = PROCESSES[name]
    fn = jax.jit(target.block_denoiser(process, block_size))
    rng = np.random.default_rng(block_size)
    n = process.num_states
    for block in range(L // block_size):
        x = rng.integers(0, K, size=(5, L))  # clean prefix
        lo, hi = block * block_size, (block + 1) * block_size
        x[:, lo:hi] = rng.integers(0, n, size=(5, block_size))  # noisy block
        x[:, hi:] = rng.integers(0, n, size=(5, L - hi))  # ignored
        t = rng.uniform(0.05, 0.95, size=5)
        got = np.asarray(fn(jnp.asarray(x), jnp.asarray(t, jnp.float32), jnp.int32(block)))
        for r in range(5):
            want = brute_block(target, process, block_size, x[r], t[r], block)
            np.testing.assert_allclose(np.exp(got[r]), want, atol=2e-5)


@pytest.mark.parametrize("block_size", [1, 2])
def test_block_training_denoiser_matches_brute_force(target, block_size):
    process = PROCESSES["masking"]
    fn = jax.jit(target.block_training_denoiser(process, block_size))
    rng = np.random.default_rng(7)
    nb = L // block_size
    x0 = rng.integers(0, K, size=(6, L))
    x_t = np.where(rng.uniform(size=(6, L)) < 0.5, K, x0)
    t = rng.uniform(0.05, 0.95, size=(6, nb))
    got = np.asarray(fn(jnp.asarray(x_t), jnp.asarray(x0), jnp.asarray(t, jnp.float32)))
    assert got.shape == (6, L, K)
    for r in range(6):
        for b in range(nb):
            x = np.where(np.arange(L) < b * block_size, x0[r], x_t[r])
            want = brute_block(target, process, block_size, x, t[r, b], b)
            got_b = got[r, b * block_size : (b + 1) * block_size]
            np.testing.assert_allclose(np.exp(got_b), want, atol=2e-5)


def test_block_denoiser_edge_cases(target):
    process = PROCESSES["masking"]
    # block size L, block 0: the ordinary exact denoiser
    x = jnp.asarray([[K, 1, K, 0], [2, K, K, K]])
    t = jnp.asarray([0.4, 0.8])
    full = target.denoiser(process)(x, t)
    blk = target.block_denoiser(process, L)(x, t, jnp.int32(0))
    np.testing.assert_allclose(np.exp(blk), np.exp(full), atol=1e-6)
    # block size 1: the exact AR conditional p(x_i | x_<i) at a masked position
    x0 = np.asarray([1, 0, 2, 1])
    fn = target.block_denoiser(process, 1)
    probs = np.asarray(target.probs).reshape((K,) * L)
    for i in range(L):
        x = jnp.asarray(np.where(np.arange(L) < i, x0, K)[None])
        got = np.exp(np.asarray(fn(x, jnp.float32(0.7), jnp.int32(i)))[0, 0])
        marg = probs[tuple(x0[:i])].reshape((K,) + (K,) * (L - i - 1)).sum(tuple(range(1, L - i)))
        np.testing.assert_allclose(got, marg / marg.sum(), atol=1e-6)
    with pytest.raises(ValueError, match="divide"):
        target.block_denoiser(process, 3)
