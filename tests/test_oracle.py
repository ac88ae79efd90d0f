"""The exact oracle (ddjax.testing) against brute-force float64 enumerations."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddjax import processes, schedules, testing

K, L = 3, 3


@pytest.fixture(scope="module")
def log_p():
    return np.random.default_rng(0).normal(size=(K,) * L)


def probs_np(log_p):
    flat = log_p.reshape(-1)
    p = np.exp(flat - flat.max())
    return p / p.sum()


SEQS = np.array(list(itertools.product(range(K), repeat=L)))


def table_np(process, t):
    """q(x_t = n | x0 = k) in float64 from the closed forms: [K, N]."""
    n = process.num_states
    a = float(process.schedule.alpha(t))
    if isinstance(process, processes.Masking):
        pi = np.eye(n)[K]
    else:
        pi = np.full(n, 1.0 / n)
    return a * np.eye(n)[:K] + (1 - a) * pi


def brute_posterior(p, table, x_t):
    """p(x0 = each sequence | x_t): float64[K**L]."""
    lik = np.array([np.prod([table[s[i], x_t[i]] for i in range(L)]) for s in SEQS])
    post = p * lik
    return post / post.sum()


def test_probs_nll_and_order(log_p):
    target = testing.ExactTarget(log_p)
    p = probs_np(log_p)
    np.testing.assert_allclose(target.probs, p, rtol=1e-10)
    np.testing.assert_allclose(np.exp(np.asarray(target.log_probs, np.float64)), p, rtol=1e-5)
    np.testing.assert_array_equal(target.sequences, SEQS)
    np.testing.assert_array_equal(target.index(SEQS), np.arange(K**L))
    x = np.array([[0, 1, 2], [2, 2, 2], [1, 0, 0]])
    np.testing.assert_allclose(target.nll(x), [-math.log(p[5]), -math.log(p[26]), -math.log(p[9])])
    assert target.num_sequences == 27 and target.vocab_size == K and target.length == L


@pytest.mark.parametrize("kind", ["masking", "uniform"])
def test_denoiser_is_bayes(log_p, kind):
    process = processes.Masking(K) if kind == "masking" else processes.Uniform(K)
    target = testing.ExactTarget(log_p)
    p = probs_np(log_p)
    rng = np.random.default_rng(1)
    x_t = rng.integers(0, process.num_states, size=(6, L))
    t = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.95])
    den = np.exp(np.asarray(target.denoiser(process)(jnp.asarray(x_t), jnp.asarray(t))))
    for b in range(6):
        post = brute_posterior(p, table_np(process, t[b]), x_t[b])
        want = np.stack([[post[SEQS[:, i] == k].sum() for k in range(K)] for i in range(L)])
        np.testing.assert_allclose(den[b], want, atol=1e-5)
        np.testing.assert_allclose(
            target.posterior(process)(jnp.asarray(x_t[b : b + 1]), jnp.asarray(t[b : b + 1]))[0],
            post,
            atol=1e-5,
        )


def test_denoiser_d3pm(log_p):
    process = processes.D3PM.uniform(K, 5)
    target = testing.ExactTarget(log_p)
    p = probs_np(log_p)
    x_t = np.array([[0, 1, 2], [2, 2, 0]])
    t = np.array([2, 4])
    den = np.exp(np.asarray(target.denoiser(process)(jnp.asarray(x_t), jnp.asarray(t))))
    for b in range(2):
        table = np.asarray(process.qbar[t[b]], np.float64)
        post = brute_posterior(p, table, x_t[b])
        want = np.stack([[post[SEQS[:, i] == k].sum() for k in range(K)] for i in range(L)])
        np.testing.assert_allclose(den[b], want, atol=1e-5)


@pytest.mark.parametrize("kind", ["masking", "uniform"])
def test_marginal_and_score(log_p, kind):
    process = processes.Masking(K) if kind == "masking" else processes.Uniform(K)
    target = testing.ExactTarget(log_p)
    p = probs_np(log_p)
    t, n = 0.4, process.num_states
    table = table_np(process, t)
    states = list(itertools.product(range(n), repeat=L))
    brute = np.array(
        [sum(p[j] * np.prod(table[SEQS[j], x]) for j in range(len(SEQS))) for x in states]
    )
    marg = np.asarray(target.marginal(process, t), np.float64).reshape(-1)
    np.testing.assert_allclose(marg, brute, rtol=1e-5, atol=1e-9)
    assert marg.sum() == pytest.approx(1.0, abs=1e-5)
    x = np.array([[K - 1, 0, 1], [0, 0, 0]])
    if kind == "masking":
        x[1] = [K, 1, K]
    score = np.asarray(target.score(process)(jnp.asarray(x), jnp.full((2,), t)), np.float64)
    log_brute = np.log(brute.reshape((n,) * L))
    for b, i, y in itertools.product(range(2), range(L), range(n)):
        nb = x[b].copy()
        nb[i] = y
        want = log_brute[tuple(nb)] - log_brute[tuple(x[b])]
        if np.isfinite(want):
            assert score[b, i, y] == pytest.approx(want, abs=1e-4)
        else:
            assert score[b, i, y] == -np.inf


def test_sample_frequencies(log_p):
    target = testing.ExactTarget(log_p)
    n = 30000
    samples = np.asarray(target.sample(jax.random.key(0), n))
    assert samples.shape == (n, L)
    counts = np.bincount(np.ravel_multi_index(samples.T, (K,) * L), minlength=K**L)
    expected = n * probs_np(log_p)
    stat = ((counts - expected) ** 2 / expected).sum()
    df = K**L - 1
    z = 4.753424308822899  # upper 1e-6 normal quantile, Wilson-Hilferty
    assert stat < df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3
    np.testing.assert_allclose(testing.empirical_probs(samples, K), counts / n)


def test_conditional(log_p):
    target = testing.ExactTarget(log_p)
    p = probs_np(log_p)
    cond = target.conditional([-1, 2, -1])
    want = np.where(SEQS[:, 1] == 2, p, 0.0)
    np.testing.assert_allclose(cond, want / want.sum(), rtol=1e-10)


def test_total_variation_and_kl_hand_values():
    p = np.array([0.1, 0.2, 0.3, 0.4])  # K = 2, L = 2
    samples = np.array([[0, 0], [0, 1], [0, 1], [1, 1]])  # histogram [.25, .5, 0, .25]
    tv = testing.total_variation(samples, p, vocab_size=2)
    assert tv == pytest.approx(0.5 * (0.15 + 0.3 + 0.3 + 0.15))
    target = testing.ExactTarget(np.log(p).reshape(2, 2))
    assert testing.total_variation(samples, target) == pytest.approx(0.45)
    assert testing.kl([0.5, 0.5], [0.25, 0.75]) == pytest.approx(
        0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    )
    assert testing.kl([0.5, 0.5, 0.0], [0.5, 0.0, 0.5]) == math.inf
    assert testing.kl([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2))


def test_tv_floor():
    assert testing.tv_floor(np.array([0.5, 0.5]), 100) == pytest.approx(
        math.sqrt(2 * 0.25 / (math.pi * 100))
    )
    # it is the mean TV of exact samples (normal approximation, cells with n p >> 1)
    p = np.array([0.1, 0.15, 0.2, 0.25, 0.3])
    n, reps = 2000, 400
    draws = np.random.default_rng(0).multinomial(n, p, size=reps) / n
    mean_tv = 0.5 * np.abs(draws - p).sum(-1).mean()
    assert mean_tv == pytest.approx(testing.tv_floor(p, n), rel=0.08)


def test_random_target_and_validation():
    target = testing.random_target(jax.random.key(0), 3, 2)
    assert target.probs.shape == (9,) and target.probs.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="log_p"):
        testing.ExactTarget(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="K >= 2"):
        testing.ExactTarget(np.zeros((1, 1)))
    with pytest.raises(ValueError, match="x0"):
        target.nll(np.zeros((2, 3), np.int32))


def test_random_target_coupling_scales_the_dependence():
    """coupling = 0 gives a product of marginals; a small coupling stays near one."""
    key = jax.random.key(3)

    def dependence(coupling: float) -> float:
        p = testing.random_target(key, 3, 3, coupling=coupling).probs.reshape(3, 3, 3)
        product = np.einsum("i,j,k->ijk", p.sum((1, 2)), p.sum((0, 2)), p.sum((0, 1)))
        return float(np.abs(np.log(p / product)).max())

    assert dependence(0.0) < 1e-5
    assert 0.0 < dependence(0.15) < dependence(1.0)


def test_schedule_does_not_change_masking_denoiser(log_p):
    """For masking the posterior p(x0_i | x_t) does not depend on t or the schedule."""
    target = testing.ExactTarget(log_p)
    x_t = jnp.array([[K, 1, K], [0, K, K]])
    a = target.denoiser(processes.Masking(K, schedules.LogLinear()))(x_t, jnp.array([0.2, 0.3]))
    b = target.denoiser(processes.Masking(K, schedules.Cosine()))(x_t, jnp.array([0.9, 0.6]))
    np.testing.assert_allclose(np.exp(a), np.exp(b), atol=1e-5)


def test_tilted_law_is_the_reweighted_target():
    target = testing.random_target(jax.random.key(3), 3, 3)
    seqs = np.asarray(target.sequences)
    reward = seqs.sum(-1).astype(np.float64)  # r(x) = sum of tokens
    tilted = target.tilted(lambda x: np.asarray(x).sum(-1), alpha=0.5)
    want = target.probs * np.exp(reward / 0.5)
    np.testing.assert_allclose(tilted.probs, want / want.sum(), rtol=1e-6)
    # -inf removes sequences: the posterior given "first token is 0"
    post = target.tilted(np.where(seqs[:, 0] == 0, 0.0, -np.inf))
    np.testing.assert_allclose(post.probs, target.conditional([0, -1, -1]), atol=1e-7)
    with pytest.raises(ValueError, match="one value per sequence"):
        target.tilted(np.zeros(5))
    with pytest.raises(ValueError, match="mass 0"):
        target.tilted(np.full(27, -np.inf))
