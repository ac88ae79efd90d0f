"""Forward processes against dense float64 NumPy matrices built from design.md 5.1.

Every expected value here is computed from the formulas, not by the code under test:
q(x_t | x0) = a_t onehot(x0) + (1 - a_t) pi, q(x_t | x_s) = r I + (1 - r) 1 pi^T with
r = a_t / a_s, posteriors by Bayes' rule, forward rates by differentiating the
transition matrix (jax.grad of alpha), D3PM matrices from their definitions.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddjax import processes, schedules, testing

K = 4
Z_1E6 = 4.753424308822899  # standard normal upper 1e-6 quantile


def chi2_threshold(df: int, z: float = Z_1E6) -> float:
    """Wilson-Hilferty upper quantile of the chi-square distribution (conservative here)."""
    return df * (1.0 - 2.0 / (9.0 * df) + z * math.sqrt(2.0 / (9.0 * df))) ** 3


def chi2_test(counts: np.ndarray, expected_probs: np.ndarray) -> None:
    """Chi-square goodness of fit; cells expecting < 5 are pooled; impossible cells stay empty."""
    counts, p = np.asarray(counts, np.float64).ravel(), np.asarray(expected_probs).ravel()
    n = counts.sum()
    assert np.all(counts[p == 0] == 0), "a state with probability 0 was drawn"
    exp = n * p
    big = exp >= 5
    obs_cells, exp_cells = list(counts[big]), list(exp[big])
    if exp[~big].sum() > 0:
        obs_cells.append(counts[~big].sum())
        exp_cells.append(exp[~big].sum())
    obs_cells, exp_cells = np.array(obs_cells), np.array(exp_cells)
    stat = float(((obs_cells - exp_cells) ** 2 / exp_cells).sum())
    df = len(exp_cells) - 1
    if df == 0:  # a point mass: every draw must be that state (checked above)
        return
    assert stat < chi2_threshold(df), (stat, df, chi2_threshold(df))


# --------------------------------------------------------------------------
# dense reference
# --------------------------------------------------------------------------

PI_MARGINAL = np.array([0.1, 0.2, 0.3, 0.4])


def make(kind: str, schedule=None, k: int = K):
    schedule = schedule or schedules.LogLinear()
    if kind == "masking":
        return processes.Masking(k, schedule)
    if kind == "uniform":
        return processes.Uniform(k, schedule)
    pi = PI_MARGINAL if k == K else np.arange(1, k + 1) / (k * (k + 1) / 2)
    return processes.MarginalPrior(probs=jnp.asarray(pi, jnp.float32), schedule=schedule)


INTERPOLATING = ["masking", "uniform", "marginal"]


def prior_np(process) -> np.ndarray:
    k = process.vocab_size
    if isinstance(process, processes.Masking):
        return np.eye(k + 1)[k]
    if isinstance(process, processes.Uniform):
        return np.full(k, 1.0 / k)
    return np.asarray(process.probs, np.float64)


def alpha(process, t) -> float:
    return float(process.schedule.alpha(jnp.float32(t)))


def marginal_table(process, t) -> np.ndarray:
    """q(x_t = n | x0 = k): float64[K, N]."""
    n, k = process.num_states, process.vocab_size
    a = alpha(process, t)
    return a * np.eye(n)[:k] + (1 - a) * prior_np(process)


def step_matrix(process, s, t) -> np.ndarray:
    """q(x_t = n | x_s = m): float64[N, N]."""
    r = alpha(process, t) / alpha(process, s)
    return r * np.eye(process.num_states) + (1 - r) * prior_np(process)[None, :]


def restrict(p: np.ndarray, lik: np.ndarray) -> np.ndarray:
    """p restricted to the x0 values with q(x_t | x0) > 0 and renormalised; uniform over
    them when p gives them no mass (the documented fallback)."""
    pt = np.where(lik > 0, p, 0.0)
    return pt / pt.sum() if pt.sum() > 0 else (lik > 0) / (lik > 0).sum()


def bayes_posterior(p, x, m_s0, m_ts, m_t0, plugin=False) -> np.ndarray:
    """q(x_s | x_t = x) for one position from dense matrices.

    m_s0 = q(x_s | x0) [K, N], m_ts = q(x_t | x_s) [N, N], m_t0 = q(x_t | x0) [K, N].
    Mixture: sum_k p~(k) q(x_s | x_t, k), p~ = p restricted to q(x_t = x | k) > 0 and
    renormalised (uniform over those k when p gives them no mass: the documented
    fallback). Plug-in: proportional to q(x_t = x | x_s) (p q(x_s | x0)).
    """
    if plugin:
        u = m_ts[:, x] * (p @ m_s0)
        return u / u.sum()
    lik = m_t0[:, x]
    pt = restrict(p, lik)
    out = np.zeros(m_ts.shape[0])
    for k in range(len(p)):
        if pt[k] > 0:
            out += pt[k] * m_ts[:, x] * m_s0[k] / lik[k]
    return out


def random_probs(key, shape, k, zeros=False):
    p = jax.random.dirichlet(key, jnp.ones(k), shape)
    if zeros:  # exercise values of x0 with probability 0
        p = p.at[..., 0].set(0.0)
        p = p / p.sum(-1, keepdims=True)
    return p


def all_states(n, length):
    return np.array(list(itertools.product(range(n), repeat=length)), np.int32)


# --------------------------------------------------------------------------
# normalisation, Chapman-Kolmogorov, dense matrices
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", INTERPOLATING)
def test_marginal_and_transition_match_dense(kind):
    process = make(kind, schedules.Cosine())
    x0_probs = random_probs(jax.random.key(0), (3, 2), K)
    t = jnp.array([0.2, 0.5, 0.9])
    marg = np.asarray(process.marginal_probs(x0_probs, t), np.float64)
    for b in range(3):
        expected = np.asarray(x0_probs[b], np.float64) @ marginal_table(process, float(t[b]))
        np.testing.assert_allclose(marg[b], expected, atol=1e-6)
    assert np.all(marg >= 0)
    np.testing.assert_allclose(marg.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(
        process.dense_transition_matrix(0.3, 0.7), step_matrix(process, 0.3, 0.7), atol=1e-6
    )
    x_s = jnp.arange(process.num_states)[None]
    trans = process.transition_probs(x_s, 0.3, 0.7)[0]
    np.testing.assert_allclose(trans, step_matrix(process, 0.3, 0.7), atol=1e-6)


@pytest.mark.parametrize("kind", INTERPOLATING)
def test_chapman_kolmogorov_interpolating(kind):
    process = make(kind, schedules.Polynomial(power=1.5))
    eye = jnp.eye(K)[None]
    for r, s, t in [(0.0, 0.3, 0.8), (0.1, 0.5, 0.95)]:
        direct = np.asarray(process.marginal_probs(eye, t)[0], np.float64)
        via_s = np.asarray(process.marginal_probs(eye, s)[0], np.float64) @ np.asarray(
            process.dense_transition_matrix(s, t), np.float64
        )
        np.testing.assert_allclose(direct, via_s, atol=1e-6)
        # q(x_t | x_r) = sum_s q(x_t | x_s) q(x_s | x_r) for transition_probs too
        states = jnp.arange(process.num_states)[None]
        m_rt = np.asarray(process.transition_probs(states, r, t)[0], np.float64)
        m_rs = np.asarray(process.transition_probs(states, r, s)[0], np.float64)
        m_st = np.asarray(process.transition_probs(states, s, t)[0], np.float64)
        np.testing.assert_allclose(m_rt, m_rs @ m_st, atol=1e-6)


@pytest.mark.parametrize("kind", INTERPOLATING)
@pytest.mark.parametrize("plugin", [False, True])
def test_posterior_is_bayes_rule(kind, plugin):
    process = make(kind, schedules.LogLinear(eps=1e-2))
    n, length = process.num_states, 2
    x_t = all_states(n, length)  # every x_t
    # zeros in p exercise the restriction to consistent x0 (the plug-in form needs p > 0)
    x0_probs = random_probs(jax.random.key(1), (len(x_t), length), K, zeros=not plugin)
    s, t = 0.35, 0.8
    post = np.asarray(process.posterior_probs(x_t, x0_probs, s, t, plugin=plugin), np.float64)
    m_s0, m_ts, m_t0 = (
        marginal_table(process, s),
        step_matrix(process, s, t),
        marginal_table(process, t),
    )
    p = np.asarray(x0_probs, np.float64)
    for b, i in itertools.product(range(len(x_t)), range(length)):
        expected = bayes_posterior(p[b, i], x_t[b, i], m_s0, m_ts, m_t0, plugin)
        np.testing.assert_allclose(post[b, i], expected, atol=2e-6, err_msg=f"{x_t[b]}, {i}")
    assert np.all(post >= -1e-7)
    np.testing.assert_allclose(post.sum(-1), 1.0, atol=1e-5)


def test_masking_posterior_and_rates_equal_generic_forms():
    process = processes.Masking(K, schedules.Cosine())
    x_t = jnp.asarray(all_states(K + 1, 2))
    x0_probs = random_probs(jax.random.key(2), x_t.shape, K)
    s, t = 0.3, 0.6
    fast = process.posterior_probs(x_t, x0_probs, s, t)
    generic = processes.Interpolating.posterior_probs(process, x_t, x0_probs, s, t)
    np.testing.assert_allclose(fast, generic, atol=1e-6)
    plug = process.posterior_probs(x_t, x0_probs, s, t, plugin=True)
    generic_plug = processes.Interpolating.posterior_probs(
        process, x_t, x0_probs, s, t, plugin=True
    )
    np.testing.assert_allclose(plug, generic_plug, atol=1e-6)
    # dense: masked tokens unmask to v w.p. (a_s - a_t) / (1 - a_t) p(v)
    a_s, a_t = alpha(process, s), alpha(process, t)
    p = np.asarray(x0_probs, np.float64)
    for b, i in itertools.product(range(x_t.shape[0]), range(2)):
        x = int(x_t[b, i])
        if x == K:
            expected = np.append((a_s - a_t) / (1 - a_t) * p[b, i], (1 - a_s) / (1 - a_t))
        else:
            expected = np.eye(K + 1)[x]
        np.testing.assert_allclose(fast[b, i], expected, atol=1e-6)
    rates = process.reverse_rates(x_t, x0_probs, 0.6)
    generic_rates = processes.Interpolating.reverse_rates(process, x_t, x0_probs, 0.6)
    np.testing.assert_allclose(rates, generic_rates, rtol=1e-5, atol=1e-6)
    neg_da = -float(jax.grad(process.schedule.alpha)(0.6))
    masked = np.asarray(x_t) == K
    expected = np.where(masked[..., None], neg_da / (1 - a_t) * p, 0.0)
    expected = np.concatenate([expected, np.zeros((*x_t.shape, 1))], -1)
    np.testing.assert_allclose(rates, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", INTERPOLATING)
def test_reverse_rates_dense(kind):
    """R^(x -> y) = R_t(y -> x) s_y, the generator from d/dh q(x_{t+h} | x_t) at h = 0."""
    process = make(kind, schedules.LogLinear())
    n, t = process.num_states, 0.45
    x_t = jnp.asarray(all_states(n, 2))
    x0_probs = random_probs(jax.random.key(3), x_t.shape, K, zeros=True)
    rates = np.asarray(process.reverse_rates(x_t, x0_probs, t), np.float64)
    a = alpha(process, t)
    rate = -float(jax.grad(process.schedule.alpha)(t)) / a  # -a'/a
    pi = prior_np(process)
    gen = rate * (np.ones((n, 1)) * pi[None, :] - np.eye(n))  # G[y, x]
    m_t0 = marginal_table(process, t)
    p = np.asarray(x0_probs, np.float64)
    for b, i in itertools.product(range(x_t.shape[0]), range(2)):
        x = int(x_t[b, i])
        lik = m_t0[:, x]
        pt = restrict(p[b, i], lik)
        score = sum(pt[k] * m_t0[k] / lik[k] for k in range(K) if pt[k] > 0)
        expected = gen[:, x] * score
        expected[x] = 0.0
        np.testing.assert_allclose(rates[b, i], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", INTERPOLATING)
def test_reverse_rates_from_exact_marginal(kind):
    """With the exact denoiser, R^(x -> y) = R_t(y -> x) p_t(y) / p_t(x) (enumerated p_t)."""
    process = make(kind, schedules.LogLinear())
    rng = np.random.default_rng(4)
    target = testing.ExactTarget(rng.normal(size=(K, K, K)))
    n = process.num_states
    x_t = jnp.asarray(all_states(n, 3))
    pi = prior_np(process)
    for t in (0.15, 0.6, 0.9):
        tt = jnp.full((x_t.shape[0],), t)
        den = target.denoiser(process)(x_t, tt)
        rates = np.asarray(process.reverse_rates(x_t, jnp.exp(den), tt), np.float64)
        ratio = np.exp(np.asarray(target.score(process)(x_t, tt), np.float64))
        rate_in = (-float(jax.grad(process.schedule.alpha)(t)) / alpha(process, t)) * pi[x_t]
        expected = np.where(rate_in[..., None] > 0, rate_in[..., None] * ratio, 0.0)
        expected = np.where(np.eye(n)[np.asarray(x_t)] > 0, 0.0, expected)
        np.testing.assert_allclose(rates, expected, rtol=2e-4, atol=1e-5)


# --------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", INTERPOLATING)
def test_sample_frequencies(kind):
    process = make(kind, schedules.LogLinear())
    n, draws = process.num_states, 20000
    x0 = np.array([1, 3])
    t = 0.55
    x = process.sample(jax.random.key(5), jnp.broadcast_to(jnp.asarray(x0), (draws, 2)), t)
    x = np.asarray(x)
    assert x.dtype == np.int32 and x.shape == (draws, 2)
    table = marginal_table(process, t)
    joint = np.outer(table[x0[0]], table[x0[1]])
    counts = np.bincount(x[:, 0] * n + x[:, 1], minlength=n * n)
    chi2_test(counts, joint)


@pytest.mark.parametrize("kind", INTERPOLATING)
def test_prior_sample(kind):
    process = make(kind)
    x = np.asarray(process.prior_sample(jax.random.key(6), (4000, 3)))
    assert x.shape == (4000, 3) and x.dtype == np.int32
    counts = np.bincount(x.ravel(), minlength=process.num_states)
    pi = prior_np(process)
    if kind == "masking":
        assert np.all(x == K)
    else:
        chi2_test(counts, pi)


def test_sample_per_sequence_times():
    """Each row uses its own t: at t = 0 nothing is noised; near t = 1 (Linear) everything."""
    process = processes.Masking(K, schedules.Linear())
    x0 = jnp.tile(jnp.arange(K), (2, 5))
    x = np.asarray(process.sample(jax.random.key(7), x0, jnp.array([0.0, 1.0])))
    assert np.all(x[0] == np.asarray(x0[0])) and np.all(x[1] == K)


# --------------------------------------------------------------------------
# jit: processes are jit arguments
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [*INTERPOLATING, "d3pm"])
def test_process_as_jit_argument(kind):
    process = processes.D3PM.uniform(K, 6) if kind == "d3pm" else make(kind)
    t = jnp.array([3, 5]) if kind == "d3pm" else jnp.array([0.3, 0.7])
    s = t - 1 if kind == "d3pm" else t - 0.2
    x0_probs = random_probs(jax.random.key(8), (2, 3), K)
    x_t = process.sample(jax.random.key(9), jnp.ones((2, 3), jnp.int32), t)

    @jax.jit
    def fn(proc, x_t, p, s, t):
        return proc.marginal_probs(p, t), proc.posterior_probs(x_t, p, s, t)

    got = fn(process, x_t, x0_probs, s, t)
    want = (process.marginal_probs(x0_probs, t), process.posterior_probs(x_t, x0_probs, s, t))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-6)
    leaves = jax.tree_util.tree_leaves(process)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)


def test_static_schedule_is_part_of_the_jit_key():
    fn = jax.jit(lambda proc, t: proc.marginal_probs(jnp.eye(K)[None], t))
    a = fn(processes.Masking(K, schedules.LogLinear(eps=1e-3)), jnp.array([1.0]))
    b = fn(processes.Masking(K, schedules.LogLinear(eps=0.25)), jnp.array([1.0]))
    np.testing.assert_allclose(a[0, 0, 0], 1e-3, rtol=1e-4)
    np.testing.assert_allclose(b[0, 0, 0], 0.25, rtol=1e-5)


# --------------------------------------------------------------------------
# D3PM family
# --------------------------------------------------------------------------


def test_d3pm_matrices_match_definitions():
    t = np.arange(1, 7, dtype=np.float64)
    b_mi = 1.0 / (6 - t + 1)
    absorbing = processes.D3PM.absorbing(K, 6)
    for i, b in enumerate(b_mi):
        expected = (1 - b) * np.eye(K + 1)
        expected[:, K] += b
        np.testing.assert_allclose(absorbing.q[i + 1], expected, atol=1e-7)
    np.testing.assert_allclose(absorbing.q[0], np.eye(K + 1))
    np.testing.assert_allclose(absorbing.prior, np.eye(K + 1)[K], atol=1e-7)
    betas = np.array([0.1, 0.3, 0.5, 0.2, 0.9, 1.0])
    uniform = processes.D3PM.uniform(K, 6, betas=betas)
    for i, b in enumerate(betas):
        np.testing.assert_allclose(uniform.q[i + 1], (1 - b) * np.eye(K) + b / K, atol=1e-7)
    for proc in (absorbing, uniform):
        qbar = np.eye(proc.num_states)
        for i in range(1, 7):
            qbar = qbar @ np.asarray(proc.q[i], np.float64)
            np.testing.assert_allclose(proc.qbar[i], qbar, atol=1e-6)
        assert np.all(np.asarray(proc.q) >= 0)
        np.testing.assert_allclose(np.asarray(proc.q).sum(-1), 1.0, atol=1e-6)
        np.testing.assert_allclose(np.asarray(proc.qbar).sum(-1), 1.0, atol=1e-6)


def test_d3pm_gaussian():
    k, band = 9, 2
    proc = processes.D3PM.gaussian(k, 5, bandwidth=band)
    betas = np.linspace(0.02, 1.0, 5)
    for i, b in enumerate(betas):
        m = np.zeros((k, k))
        z = sum(math.exp(-((2 * d / (k - 1)) ** 2) / b) for d in range(-band, band + 1))
        for r, c in itertools.product(range(k), range(k)):
            if r != c and abs(r - c) <= band:
                m[r, c] = math.exp(-((2 * (r - c) / (k - 1)) ** 2) / b) / z
        m[np.diag_indices(k)] = 1 - m.sum(1)
        np.testing.assert_allclose(proc.q[i + 1], m, atol=1e-6)
    q = np.asarray(proc.q[1:])
    far = np.abs(np.arange(k)[:, None] - np.arange(k)[None, :]) > band
    assert np.all(q[:, far] == 0)
    assert np.all(q[:, ~far] > 0)
    np.testing.assert_allclose(q.sum(-1), 1.0, atol=1e-6)


def test_d3pm_nearest_neighbor():
    emb = np.random.default_rng(0).normal(size=(12, 3))
    proc = processes.D3PM.nearest_neighbor(emb, 4, k=3)
    q = np.asarray(proc.q[1:], np.float64)
    assert np.all(q >= 0)
    np.testing.assert_allclose(q.sum(-1), 1.0, atol=1e-5)  # rows
    np.testing.assert_allclose(q.sum(-2), 1.0, atol=1e-4)  # columns: doubly stochastic
    # off-diagonal support is the symmetrised 3-NN graph
    dist = ((emb[:, None] - emb[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    adj = np.zeros((12, 12), bool)
    adj[np.arange(12)[:, None], np.argsort(dist, 1)[:, :3]] = True
    adj |= adj.T
    off = ~np.eye(12, dtype=bool)
    assert np.all((q[-1][off] > 0) == adj[off])
    # b_T = 1: Q_T = M is symmetric
    np.testing.assert_allclose(q[-1], q[-1].T, atol=1e-5)


@pytest.mark.parametrize("kind", ["uniform", "absorbing", "gaussian"])
def test_d3pm_chapman_kolmogorov_and_posterior(kind):
    ctor = getattr(processes.D3PM, kind)
    proc = ctor(K, 6, bandwidth=2) if kind == "gaussian" else ctor(K, 6)
    q = np.asarray(proc.q, np.float64)
    for s, t in [(0, 3), (2, 6), (4, 5)]:
        between = np.linalg.multi_dot([np.eye(proc.num_states), *q[s + 1 : t + 1]])
        np.testing.assert_allclose(proc.dense_transition_matrix(s, t), between, atol=1e-6)
        np.testing.assert_allclose(
            proc.qbar[t], np.asarray(proc.qbar[s], np.float64) @ between, atol=1e-6
        )
        states = jnp.arange(proc.num_states)[None]
        np.testing.assert_allclose(proc.transition_probs(states, s, t)[0], between, atol=1e-6)
    # posterior vs Bayes with dense matrices, every x_t, both forms
    n = proc.num_states
    x_t = all_states(n, 2)
    qbar = np.asarray(proc.qbar, np.float64)
    for s, t in [(0, 1), (2, 5), (5, 6)]:
        step = np.linalg.multi_dot([np.eye(n), *q[s + 1 : t + 1]])
        for plugin in (False, True):
            x0_probs = random_probs(jax.random.key(10 + s), (len(x_t), 2), K, zeros=not plugin)
            p = np.asarray(x0_probs, np.float64)
            post = np.asarray(proc.posterior_probs(x_t, x0_probs, s, t, plugin=plugin))
            for b, i in itertools.product(range(len(x_t)), range(2)):
                x = x_t[b, i]
                if qbar[t][:K, x].max() == 0:
                    continue  # no data token reaches x (the mask at t = 0)
                expected = bayes_posterior(p[b, i], x, qbar[s][:K], step, qbar[t][:K], plugin)
                np.testing.assert_allclose(post[b, i], expected, atol=2e-5)
            assert np.all(post >= -1e-7)


@pytest.mark.parametrize("kind", ["uniform", "absorbing"])
def test_d3pm_sample_frequencies(kind):
    proc = getattr(processes.D3PM, kind)(K, 8)
    draws, t = 20000, 3
    x0 = jnp.broadcast_to(jnp.array([0, 2]), (draws, 2))
    x = np.asarray(proc.sample(jax.random.key(11), x0, jnp.full((draws,), t, jnp.int32)))
    n = proc.num_states
    qbar = np.linalg.multi_dot([np.eye(n), *np.asarray(proc.q[1 : t + 1], np.float64)])
    joint = np.outer(qbar[0], qbar[2])
    chi2_test(np.bincount(x[:, 0] * n + x[:, 1], minlength=n * n), joint)
    prior_draws = np.asarray(proc.prior_sample(jax.random.key(12), (3000,)))
    chi2_test(np.bincount(prior_draws, minlength=n), np.asarray(proc.prior, np.float64))


# --------------------------------------------------------------------------
# property tests
# --------------------------------------------------------------------------


@jax.jit
def _marginal_and_posteriors(process, x_t, p, s, t):
    return (
        process.marginal_probs(p, jnp.full(x_t.shape[:-1], t)),
        process.posterior_probs(x_t, p, s, t),
        process.posterior_probs(x_t, p, s, t, plugin=True),
    )


# One jitted call per example, inputs drawn with NumPy: each example costs one compile.
@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    kind=st.sampled_from(INTERPOLATING),
    k=st.integers(2, 5),
    length=st.integers(1, 3),
    times=st.tuples(st.floats(0.01, 0.99), st.floats(0.01, 0.99)).map(sorted),
    seed=st.integers(0, 2**16),
)
def test_property_interpolating(kind, k, length, times, seed):
    s, t = times
    t = max(t, s + 1e-3)
    process = make(kind, schedules.LogLinear(), k=k)
    n = process.num_states
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k), (3, length)).astype(np.float32)
    x_t = rng.integers(0, n, (3, length)).astype(np.int32)
    marg, mixture, plug = _marginal_and_posteriors(process, x_t, p, s, t)
    marg = np.asarray(marg, np.float64)
    assert np.all(marg >= 0)
    np.testing.assert_allclose(marg.sum(-1), 1.0, atol=1e-5)
    for post in (mixture, plug):
        post = np.asarray(post, np.float64)
        assert np.all(post >= -1e-7)
        np.testing.assert_allclose(post.sum(-1), 1.0, atol=1e-5)
    # Chapman-Kolmogorov against the dense formulas
    via_s = np.asarray(p, np.float64) @ marginal_table(process, s) @ step_matrix(process, s, t)
    np.testing.assert_allclose(marg, via_s, atol=1e-5)


@jax.jit
def _d3pm_posterior(process, x_t, p, s, t):
    return process.posterior_probs(x_t, p, s, t)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(
    kind=st.sampled_from(["uniform", "absorbing"]),
    k=st.integers(2, 5),
    steps=st.tuples(st.integers(0, 7), st.integers(1, 8)).filter(lambda v: v[0] < v[1]),
    seed=st.integers(0, 2**16),
)
def test_property_d3pm(kind, k, steps, seed):
    s, t = steps
    proc = getattr(processes.D3PM, kind)(k, 8)
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k), (2, 3)).astype(np.float32)
    qbar = np.asarray(proc.qbar, np.float64)
    x0 = rng.integers(0, k, (2, 3))
    rows = qbar[t][x0]  # q(x_t | x0): x_t drawn from the forward process
    x_t = (rows.cumsum(-1) > rng.random((2, 3, 1))).argmax(-1).astype(np.int32)
    post = np.asarray(_d3pm_posterior(proc, x_t, p, jnp.full((2,), s), jnp.full((2,), t)))
    assert np.all(post >= -1e-7)
    np.testing.assert_allclose(post.sum(-1), 1.0, atol=1e-5)
    q = np.asarray(proc.q, np.float64)
    between = np.linalg.multi_dot([np.eye(proc.num_states), *q[s + 1 : t + 1]])
    np.testing.assert_allclose(qbar[t], qbar[s] @ between, atol=1e-5)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: processes.Masking(vocab_size=5, schedule="loglinear"), "Masking"),
        (lambda: processes.Uniform(vocab_size=5, schedule="cosine"), "Uniform"),
        (lambda: processes.MarginalPrior(probs=[0.5, 0.5], schedule="linear"), "MarginalPrior"),
    ],
)
def test_a_schedule_given_by_name_is_a_type_error_listing_the_classes(make, name):
    """A str schedule used to construct fine and fail later inside a sampler
    (AttributeError: 'str' object has no attribute 'alpha')."""
    with pytest.raises(TypeError) as e:
        make()
    msg = str(e.value)
    assert msg.startswith(f"{name}(schedule=") and "must be a schedule object, not a str" in msg
    for cls in ("LogLinear", "Linear", "Cosine", "Polynomial", "Geometric"):
        assert f"dd.schedules.{cls}" in msg
    with pytest.raises(TypeError, match=r"use betas=dd.schedules.d3pm_betas\(10, 'linear'\)"):
        processes.D3PM.uniform(5, 10, betas="linear")
