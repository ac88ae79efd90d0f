"""Bad input: a ValueError or TypeError whose message names the argument."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ddjax
from ddjax import processes, schedules

K = 3


@pytest.mark.parametrize(
    "ctor",
    [
        lambda k: processes.Masking(k),
        lambda k: processes.Uniform(k),
        lambda k: processes.D3PM.uniform(k, 4),
        lambda k: processes.D3PM.absorbing(k, 4),
        lambda k: processes.D3PM.gaussian(k, 4),
    ],
    ids=["masking", "uniform", "d3pm_uniform", "d3pm_absorbing", "d3pm_gaussian"],
)
def test_vocab_size(ctor):
    for bad in (1, 0, -3):
        with pytest.raises(ValueError, match="vocab_size"):
            ctor(bad)
    for bad in (2.5, "4", True):
        with pytest.raises(TypeError, match="vocab_size"):
            ctor(bad)
    assert ctor(2).num_states in (2, 3)


def test_vocab_size_of_marginal_prior_and_embeddings():
    with pytest.raises(ValueError, match="vocab_size"):
        processes.MarginalPrior(probs=np.array([1.0]))
    with pytest.raises(ValueError, match="vocab_size"):
        processes.D3PM.nearest_neighbor(np.zeros((1, 2)), 4, k=1)


@pytest.mark.parametrize("eps", [0.0, 1.0, -1e-3, 2.0])
def test_eps(eps):
    with pytest.raises(ValueError, match="eps"):
        processes.Masking(K, schedules.LogLinear(eps=eps))


@pytest.mark.parametrize("steps", [0, -2])
def test_num_steps(steps):
    for ctor in (processes.D3PM.uniform, processes.D3PM.absorbing, processes.D3PM.gaussian):
        with pytest.raises(ValueError, match="num_steps"):
            ctor(K, steps)
    with pytest.raises(ValueError, match="num_steps"):
        schedules.d3pm_betas(steps)


def test_betas_and_d3pm_options():
    with pytest.raises(ValueError, match="betas"):
        processes.D3PM.uniform(K, 4, betas=np.ones(3))
    with pytest.raises(ValueError, match="betas"):
        processes.D3PM.uniform(K, 2, betas=np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="bandwidth"):
        processes.D3PM.gaussian(K, 4, bandwidth=K)
    with pytest.raises(ValueError, match="bandwidth"):
        processes.D3PM.gaussian(K, 4, bandwidth=0)
    with pytest.raises(ValueError, match="k must"):
        processes.D3PM.nearest_neighbor(np.eye(4), 4, k=4)
    with pytest.raises(ValueError, match="embeddings"):
        processes.D3PM.nearest_neighbor(np.zeros(4), 4)


@pytest.mark.parametrize(
    "probs, message",
    [
        ([0.5, -0.1, 0.6], "negative"),
        ([0.2, 0.2, 0.2], "sum to 1"),
        ([0.5, np.nan, 0.5], "non-finite"),
        ([[0.5, 0.5], [0.5, 0.5]], "vector"),
    ],
)
def test_marginal_prior_probs(probs, message):
    with pytest.raises(ValueError, match=f"probs.*{message}|{message}.*probs"):
        processes.MarginalPrior(probs=np.asarray(probs))


def test_python_lists_are_checked_too():
    with pytest.raises(ValueError, match="probs"):
        processes.MarginalPrior(probs=[0.2, 0.2, 0.2])
    assert processes.MarginalPrior(probs=[0.25, 0.75]).vocab_size == 2
    with pytest.raises(ValueError, match="tokens"):
        ddjax.validate_tokens([[0, 1], [2, 7]], K)


def test_d3pm_from_matrices():
    good = np.stack([np.eye(K) * 0.5 + 0.5 / K] * 2)
    assert processes.D3PM.from_matrices(good, K).num_steps == 2
    bad = good.copy()
    bad[0, 0] = [1.2, -0.1, -0.1]
    with pytest.raises(ValueError, match="step_matrices.*negative"):
        processes.D3PM.from_matrices(bad, K)
    bad = good * 0.9
    with pytest.raises(ValueError, match="step_matrices.*sum to 1"):
        processes.D3PM.from_matrices(bad, K)
    with pytest.raises(ValueError, match="step_matrices"):
        processes.D3PM.from_matrices(np.ones((2, K, K + 1)) / (K + 1), K)


def test_token_ids():
    x = np.array([[0, 1, 3]])
    with pytest.raises(ValueError, match="batch"):
        ddjax.validate_tokens(x, K, name="batch")
    with pytest.raises(ValueError, match="tokens"):
        ddjax.validate_tokens(np.array([[-1, 0]]), K)
    with pytest.raises(TypeError, match="tokens"):
        ddjax.validate_tokens(np.array([[0.0, 1.0]]), K)
    out = ddjax.validate_tokens([[0, 2], [1, 1]], K)
    assert out.dtype == np.int32 and out.tolist() == [[0, 2], [1, 1]]
    masking, uniform = processes.Masking(K), processes.Uniform(K)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="x0"):
        masking.sample(key, np.array([[0, K]]), 0.5)  # the mask id is not a data token
    with pytest.raises(ValueError, match="x0"):
        uniform.sample(key, np.array([[0, -1]]), 0.5)
    with pytest.raises(ValueError, match="x_t"):
        masking.posterior_probs(np.array([[0, K + 1]]), np.full((1, 2, K), 1 / K), 0.2, 0.5)
    with pytest.raises(ValueError, match="x_t"):
        uniform.reverse_rates(np.array([[K]]), np.full((1, 1, K), 1 / K), 0.5)
    d3pm = processes.D3PM.absorbing(K, 4)
    with pytest.raises(ValueError, match="x0"):
        d3pm.sample(key, np.array([[K]]), np.array([2]))
    with pytest.raises(ValueError, match="t must be step indices"):
        d3pm.sample(key, np.array([[0]]), np.array([5]))


def test_mismatched_shapes():
    masking = processes.Masking(K)
    p = np.full((2, 4, K), 1 / K)
    x_t = np.zeros((2, 4), np.int32)
    with pytest.raises(ValueError, match="x0_probs"):
        masking.posterior_probs(x_t, p[:, :3], 0.2, 0.5)
    with pytest.raises(ValueError, match="x0_probs"):
        masking.marginal_probs(np.full((2, 4, K + 1), 1 / (K + 1)), 0.5)
    with pytest.raises(ValueError, match="t has shape"):
        masking.marginal_probs(p, np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="t has shape"):
        masking.sample(jax.random.key(0), x_t, np.array([0.5]))
    with pytest.raises(ValueError, match="x0"):
        masking.sample(jax.random.key(0), np.int32(1), 0.5)


def test_validate_probs():
    ddjax.validate_probs(np.array([[0.5, 0.5], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="weights"):
        ddjax.validate_probs(np.array([0.5, 0.6]), name="weights")


def test_no_host_checks_under_jit():
    """Inside jit the checks see tracers and skip: nothing syncs with the host."""
    masking = processes.Masking(K)

    @jax.jit
    def fn(x0, t):
        assert ddjax.validate_tokens(x0, K) is x0
        return masking.sample(jax.random.key(0), x0, t)

    out = fn(jnp.array([[0, 1, 2]]), jnp.array([0.0]))
    np.testing.assert_array_equal(out, [[0, 1, 2]])
