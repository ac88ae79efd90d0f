"""Conversions between logits, x0 log-probs and concrete scores."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddjax import losses, parameterizations, processes, schedules, testing

K = 4


def _log_softmax_np(x):
    x = np.asarray(x, np.float64)
    return (
        x
        - x.max(-1, keepdims=True)
        - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1))[..., None]
    )


def make(kind, k=K, schedule=None):
    schedule = schedule or schedules.LogLinear()
    if kind == "masking":
        return processes.Masking(k, schedule)
    if kind == "uniform":
        return processes.Uniform(k, schedule)
    pi = np.arange(1, k + 1, dtype=np.float64)
    return processes.MarginalPrior(probs=jnp.asarray(pi / pi.sum(), jnp.float32), schedule=schedule)


def prior_np(process):
    k = process.vocab_size
    if isinstance(process, processes.Masking):
        return np.eye(k + 1)[k]
    if isinstance(process, processes.Uniform):
        return np.full(k, 1.0 / k)
    return np.asarray(process.probs, np.float64)


# --------------------------------------------------------------------------
# SUBS
# --------------------------------------------------------------------------


@pytest.mark.parametrize("with_mask_column", [True, False])
def test_subs(with_mask_column):
    logits = jax.random.normal(jax.random.key(0), (2, 5, K + int(with_mask_column))) * 3
    x_t = jnp.array([[K, 1, K, 3, 0], [2, K, K, K, 1]])
    out = np.asarray(parameterizations.subs(logits, x_t, K), np.float64)
    assert out.shape == (2, 5, K)  # the mask is never predicted
    want = _log_softmax_np(np.asarray(logits)[..., :K])
    masked = np.asarray(x_t) == K
    np.testing.assert_allclose(out[masked], want[masked], atol=1e-5)
    # unmasked tokens carry over: a point mass on x_t
    probs = np.exp(out)
    carried = np.eye(K)[np.where(masked, 0, np.asarray(x_t))]
    np.testing.assert_array_equal(probs[~masked], carried[~masked])
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)


def test_subs_ignores_mask_logit():
    logits = jax.random.normal(jax.random.key(1), (1, 3, K + 1))
    x_t = jnp.array([[K, K, 0]])
    a = parameterizations.subs(logits, x_t, K)
    b = parameterizations.subs(logits.at[..., K].set(50.0), x_t, K)
    np.testing.assert_array_equal(a, b)


def test_logits_to_log_probs():
    logits = jax.random.normal(jax.random.key(2), (2, 3, K))
    x_t = jnp.array([[0, K, 1], [K, K, 2]])
    masking = processes.Masking(K)
    np.testing.assert_array_equal(
        parameterizations.logits_to_log_probs(logits, x_t, masking),
        parameterizations.subs(logits, x_t, K),
    )
    uniform = processes.Uniform(K)
    np.testing.assert_allclose(
        parameterizations.logits_to_log_probs(logits, x_t % K, uniform),
        _log_softmax_np(logits),
        atol=1e-5,
    )


def test_subs_bad_shape():
    with pytest.raises(ValueError, match="logits"):
        parameterizations.subs(jnp.zeros((2, 3, K - 1)), jnp.zeros((2, 3), jnp.int32), K)


# --------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------


def dense_score(p, x, a, pi, k):
    """s_y = sum_k p~(k) q_t(y | k) / q_t(x | k) from the dense table, float64."""
    n = len(pi)
    table = a * np.eye(n)[:k] + (1 - a) * pi
    lik = table[:, x]
    pt = np.where(lik > 0, p, 0.0)
    pt = pt / pt.sum()
    return sum(pt[j] * table[j] / lik[j] for j in range(k) if pt[j] > 0)


@pytest.mark.parametrize("kind", ["masking", "uniform", "marginal"])
def test_log_score_from_log_probs_dense(kind):
    process = make(kind, schedule=schedules.Cosine())
    n = process.num_states
    x_t = jnp.asarray(np.array(list(itertools.product(range(n), repeat=2)), np.int32))
    p = jax.random.dirichlet(jax.random.key(3), jnp.ones(K), x_t.shape)
    t = 0.4
    log_score = parameterizations.log_score_from_log_probs(jnp.log(p), x_t, t, process)
    a = float(process.schedule.alpha(t))
    got = np.exp(np.asarray(log_score, np.float64))
    for b, i in itertools.product(range(x_t.shape[0]), range(2)):
        want = dense_score(np.asarray(p[b, i], np.float64), int(x_t[b, i]), a, prior_np(process), K)
        np.testing.assert_allclose(got[b, i], want, rtol=1e-5, atol=1e-7)
        assert got[b, i, int(x_t[b, i])] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("kind", ["masking", "uniform", "marginal"])
def test_log_probs_from_log_score_inverts(kind):
    process = make(kind, schedule=schedules.LogLinear())
    n = process.num_states
    rng = np.random.default_rng(4)
    x_t = rng.integers(0, n, (6, 5)).astype(np.int32)
    t = rng.uniform(0.05, 0.95, 6).astype(np.float32)
    p = rng.dirichlet(np.ones(K), x_t.shape)
    if kind == "masking":  # the score only sees x0 values consistent with x_t: SUBS
        p = np.where((x_t < K)[..., None], np.eye(K)[np.minimum(x_t, K - 1)], p)
    p = p.astype(np.float32)

    @jax.jit
    def round_trip(p, x_t, t):
        log_score = parameterizations.log_score_from_log_probs(jnp.log(p), x_t, t, process)
        return parameterizations.log_probs_from_log_score(log_score, x_t, t, process)

    back = round_trip(p, x_t, t)
    assert back.shape == p.shape
    np.testing.assert_allclose(np.exp(back), p, atol=2e-5)


@pytest.mark.parametrize("kind", ["masking", "uniform"])
def test_score_of_exact_denoiser_is_exact_score(kind):
    """The score implied by the exact denoiser equals p_t(y) / p_t(x) from the enumerated
    marginal (ExactTarget.score), an independent computation.

    Compared where the forward rate into x_t is positive (pi(x_t) > 0), the only entries
    that reverse rates and losses use. At an unmasked position of the masking process the
    true ratio also counts x0 values that cannot have produced x_t, which p(x0_i | x_t)
    says nothing about.
    """
    process = make(kind)
    target = testing.ExactTarget(np.random.default_rng(0).normal(size=(K, K, K)))
    n = process.num_states
    x_t = jnp.asarray(np.array(list(itertools.product(range(n), repeat=3)), np.int32))
    for t in (0.1, 0.5, 0.9):
        tt = jnp.full((x_t.shape[0],), t)
        den = target.denoiser(process)(x_t, tt)
        implied = np.exp(
            np.asarray(parameterizations.log_score_from_log_probs(den, x_t, tt, process))
        )
        exact = np.exp(np.asarray(target.score(process)(x_t, tt), np.float64))
        used = prior_np(process)[np.asarray(x_t)] > 0
        assert used.sum() >= x_t.size // 5
        np.testing.assert_allclose(implied[used], exact[used], rtol=2e-4, atol=1e-6)


def test_needs_continuous_time_process():
    d3pm = processes.D3PM.uniform(K, 4)
    with pytest.raises(TypeError, match="continuous-time"):
        parameterizations.log_score_from_log_probs(
            jnp.zeros((1, 2, K)), jnp.zeros((1, 2), jnp.int32), 0.5, d3pm
        )


# --------------------------------------------------------------------------
# pointwise identities between the losses (for any denoiser, not only the exact one)
# --------------------------------------------------------------------------


@jax.jit
def _all_losses(process, x0, x_t, t, logits):
    log_probs = parameterizations.logits_to_log_probs(logits, x_t, process)
    log_score = parameterizations.log_score_from_log_probs(log_probs, x_t, t, process)
    out = {
        "uniform_elbo": losses.uniform_elbo(log_probs, x0, x_t, t, process),
        "score_entropy": losses.score_entropy(log_score, x0, x_t, t, process),
    }
    if isinstance(process, processes.Masking):
        out["masked_elbo"] = losses.masked_elbo(log_probs, x0, x_t, t, process)
        out["dfm"] = losses.dfm_generalized_kl(log_probs, x0, x_t, t, process)
    return out


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    kind=st.sampled_from(["masking", "uniform", "marginal"]),
    k=st.integers(2, 5),
    length=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_property_loss_identities(kind, k, length, seed):
    """uniform_elbo(p) = score_entropy(score implied by p); for masking with SUBS both equal
    masked_elbo and dfm_generalized_kl (design.md 5.2)."""
    process = make(kind, k=k)
    rng = np.random.default_rng(seed)  # NumPy inputs: one compile per example
    x0 = rng.integers(0, k, (3, length)).astype(np.int32)
    t = rng.uniform(0.02, 0.98, 3).astype(np.float32)
    # x_t: x0 or noise (for masking the mask, the only state x0 can turn into)
    noise = k if kind == "masking" else rng.integers(0, process.num_states, (3, length))
    x_t = np.where(rng.random((3, length)) < 0.5, x0, noise).astype(np.int32)
    logits = (2 * rng.normal(size=(3, length, k))).astype(np.float32)
    out = {
        name: np.asarray(v, np.float64)
        for name, v in _all_losses(process, x0, x_t, t, logits).items()
    }
    elbo = out["uniform_elbo"]
    np.testing.assert_allclose(elbo, out["score_entropy"], rtol=1e-4, atol=1e-4)
    assert np.all(elbo >= -1e-5)
    if kind == "masking":
        np.testing.assert_allclose(elbo, out["masked_elbo"], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out["dfm"], out["masked_elbo"], rtol=1e-4, atol=1e-4)
