"""Losses against exact answers.

The main tests compute the expectation of a loss over ``t`` and ``x_t`` exactly:
Gauss-Legendre quadrature in ``t`` (D3PM: the average over every step) and an
enumeration of every ``x_t``, weighted by ``q(x_t | x0)`` built here in float64
NumPy from the formulas of design.md section 5.1. With the oracle's exact denoiser
every continuous-time loss must then equal the exact NLL of every ``x0``, which is
computed here from the target's table.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddjax import losses, parameterizations, processes, schedules, testing

K, L = 4, 3
NODES = 64
TOL = 0.02  # nats per sequence
# About 3x the measured quadrature / left-out-prior error of each exact check (nats per
# sequence, this target): uniform_elbo 3.5e-4 (uniform) and 6.4e-4 (marginal prior);
# score_entropy 5.0e-3 (masking: LogLinear's eps leaves a prior term) and 3.5e-4 (uniform).
UNIFORM_ELBO_TOL = 2e-3
SCORE_ENTROPY_TOL = {"masking": 0.015, "uniform": 1.2e-3}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


class Target:
    """A random target with its exact NLL computed in float64 NumPy."""

    def __init__(self, vocab_size: int, length: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        log_p = rng.normal(size=(vocab_size,) * length)
        flat = log_p.reshape(-1)
        log_z = np.log(np.exp(flat).sum())
        self.k, self.length = vocab_size, length
        self.nll = -(flat - log_z)  # row-major order, as itertools.product
        self.probs = np.exp(-self.nll)
        self.entropy = float(self.probs @ self.nll)
        self.x0 = np.array(list(itertools.product(range(vocab_size), repeat=length)), np.int32)
        self.oracle = testing.ExactTarget(log_p)

    def states(self, num_states: int) -> np.ndarray:
        return np.array(list(itertools.product(range(num_states), repeat=self.length)), np.int32)


@pytest.fixture(scope="module")
def target() -> Target:
    return Target(K, L, seed=0)


def prior_np(process: processes.Interpolating, k: int) -> np.ndarray:
    if isinstance(process, processes.Masking):
        return np.eye(k + 1)[k]
    if isinstance(process, processes.Uniform):
        return np.full(k, 1.0 / k)
    return np.asarray(process.probs, np.float64)


def pair_rows(tgt: Target, num_states: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (x0, x_t) pair: x_t states [Nt, L], x0 rows and x_t rows [S * Nt, L]."""
    xt = tgt.states(num_states)
    return xt, np.repeat(tgt.x0, len(xt), 0), np.tile(xt, (len(tgt.x0), 1))


def exact_continuous(loss, process, model, tgt: Target, nodes: int = NODES, **kwargs):
    """E_{t ~ U(0,1)} E_{x_t ~ q(x_t | x0)} loss, for every x0: float64[S].

    ``model(x_t, t)`` gives the loss's first argument for every x_t state.
    """
    n, k = process.num_states, tgt.k
    xt, x0_rows, xt_rows = pair_rows(tgt, n)
    ns, nt = len(tgt.x0), len(xt)
    onehot = np.eye(n)[:k]  # x0 as a state
    pi = prior_np(process, k)

    def at(t):
        a = process.schedule.alpha(t)
        table = a * onehot + (1.0 - a) * pi  # q(x_t = n | x0 = k), [K, N]
        weight = jnp.prod(table[tgt.x0[:, None, :], xt[None, :, :]], -1)  # [S, Nt]
        out = jnp.tile(model(jnp.asarray(xt), jnp.full((nt,), t)), (ns, 1, 1))
        vals = loss(out, x0_rows, xt_rows, jnp.full((ns * nt,), t), process, **kwargs)
        vals = vals.reshape(ns, nt)
        return jnp.where(weight > 0, weight * vals, 0.0).sum(1)

    u, w = np.polynomial.legendre.leggauss(nodes)
    per_node = jax.jit(jax.vmap(at))(jnp.asarray(0.5 * (u + 1.0), jnp.float32))
    return np.asarray(per_node, np.float64).T @ (0.5 * w)


def d3pm_matrices(kind: str, k: int, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Q_1..Q_T and Qbar_0..Qbar_T in float64 from design.md 5.1: ([T, N, N], [T + 1, N, N])."""
    t = np.arange(1, num_steps + 1, dtype=np.float64)
    if kind == "absorbing":
        b = 1.0 / (num_steps - t + 1.0)
        n = k + 1
        to_mask = np.zeros((n, n))
        to_mask[:, k] = 1.0
        q = (1 - b)[:, None, None] * np.eye(n) + b[:, None, None] * to_mask
    else:  # uniform, D3PM's cosine grid with s = 0.008
        grid = np.arange(num_steps + 1) / num_steps
        abar = np.cos((grid + 0.008) / 1.008 * np.pi / 2) ** 2
        b = np.clip(1.0 - abar[1:] / abar[:-1], 0.0, 1.0)
        n = k
        q = (1 - b)[:, None, None] * np.eye(n) + b[:, None, None] / k
    qbar = [np.eye(n)]
    for m in q:
        qbar.append(qbar[-1] @ m)
    return q, np.stack(qbar)


def exact_discrete(loss, process, model, tgt: Target, qbar: np.ndarray, **kwargs):
    """(1/T) sum_t E_{x_t ~ q(x_t | x0)} loss, for every x0: float64[S]."""
    xt, x0_rows, xt_rows = pair_rows(tgt, process.num_states)
    ns, nt = len(tgt.x0), len(xt)
    qbar_j = jnp.asarray(qbar[:, : tgt.k], jnp.float32)

    def at(t):
        weight = jnp.prod(qbar_j[t][tgt.x0[:, None, :], xt[None, :, :]], -1)
        out = jnp.tile(model(jnp.asarray(xt), jnp.full((nt,), t)), (ns, 1, 1))
        vals = loss(out, x0_rows, xt_rows, jnp.full((ns * nt,), t), process, **kwargs)
        return jnp.where(weight > 0, weight * vals.reshape(ns, nt), 0.0).sum(1)

    steps = jnp.arange(1, process.num_steps + 1, dtype=jnp.int32)
    return np.asarray(jax.jit(jax.vmap(at))(steps), np.float64).mean(0)


def model_nll_d3pm(model, q: np.ndarray, qbar: np.ndarray, prior: np.ndarray, tgt: Target):
    """-log p_theta(x0) of the reverse chain whose steps are the posterior mixture.

    p(x_{t-1} | x_t) = prod_i sum_k p(k | x_t) q(x_{t-1,i} | x_{t,i}, k), all enumerated in
    float64 from the dense matrices; x_T ~ prior. Returns float64[S].
    """
    num_steps, n = q.shape[0], q.shape[-1]
    k = tgt.k
    xt = tgt.states(n)
    law = np.prod(prior[xt], -1)  # p(x_T) over all states
    for t in range(num_steps, 0, -1):
        den = np.exp(np.asarray(model(jnp.asarray(xt), jnp.full((len(xt),), t)), np.float64))
        lik = qbar[t][:k][:, xt]  # q(x_t,i | k): [K, Nt, L]
        p = np.where(lik > 0, den.transpose(2, 0, 1), 0.0)
        with np.errstate(invalid="ignore"):  # NaN at unreachable x_t, zeroed below
            p = p / p.sum(0, keepdims=True)
        w = p / np.where(lik > 0, lik, 1.0)  # [K, Nt, L]
        # post[m, i, j] = Q_t[j, x_t,i] sum_k w[k, m, i] Qbar_{t-1}[k, j]
        post = q[t - 1][:, xt].transpose(1, 2, 0) * np.einsum("kml,kj->mlj", w, qbar[t - 1][:k])
        step = np.prod(post[:, np.arange(tgt.length)[None, :], xt], -1)  # [Nt, Nt']
        step[law == 0] = 0.0  # the denoiser is undefined at unreachable states
        assert np.all(np.isfinite(step))
        law = law @ step
    index = np.ravel_multi_index(tgt.x0.T, (n,) * tgt.length)
    return -np.log(law[index])


# --------------------------------------------------------------------------
# continuous time: every loss equals the exact NLL with the exact denoiser
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        schedules.LogLinear(),
        schedules.Linear(),
        schedules.Cosine(),
        schedules.Polynomial(power=2.0),
        schedules.Geometric(),
    ],
    ids=lambda s: type(s).__name__,
)
def test_masked_elbo_equals_nll(target, schedule):
    process = processes.Masking(K, schedule)
    nelbo = exact_continuous(losses.masked_elbo, process, target.oracle.denoiser(process), target)
    np.testing.assert_allclose(nelbo, target.nll, atol=TOL)
    if isinstance(schedule, (schedules.Linear, schedules.Cosine, schedules.Polynomial)):
        # alpha(1) = 0: no prior term is left out, so only quadrature error remains.
        np.testing.assert_allclose(nelbo, target.nll, atol=1e-4)
    # The left-out prior term is non-negative: the estimate never exceeds the NLL.
    assert np.all(nelbo <= target.nll + 1e-4)


def test_masked_elbo_second_target():
    tgt = Target(3, 2, seed=7)
    process = processes.Masking(3, schedules.LogLinear())
    nelbo = exact_continuous(losses.masked_elbo, process, tgt.oracle.denoiser(process), tgt)
    np.testing.assert_allclose(nelbo, tgt.nll, atol=TOL)


def _uniform_processes():
    pi = np.array([0.1, 0.2, 0.3, 0.4])
    return [
        processes.Uniform(K, schedules.LogLinear()),
        processes.MarginalPrior(probs=jnp.asarray(pi, jnp.float32), schedule=schedules.Cosine()),
    ]


@pytest.mark.parametrize("process", _uniform_processes(), ids=["uniform", "marginal"])
def test_uniform_elbo_equals_nll(target, process):
    nelbo = exact_continuous(losses.uniform_elbo, process, target.oracle.denoiser(process), target)
    np.testing.assert_allclose(nelbo, target.nll, atol=UNIFORM_ELBO_TOL)


def _score_from_denoiser(tgt, process):
    den = tgt.oracle.denoiser(process)
    return lambda x, t: parameterizations.log_score_from_log_probs(den(x, t), x, t, process)


@pytest.mark.parametrize("kind", ["masking", "uniform"])
@pytest.mark.parametrize("source", ["from_denoiser", "oracle_score"])
def test_score_entropy_equals_nll(target, kind, source):
    process = (processes.Masking if kind == "masking" else processes.Uniform)(K)
    if source == "from_denoiser":
        model = _score_from_denoiser(target, process)
    else:
        model = target.oracle.score(process)
    nelbo = exact_continuous(losses.score_entropy, process, model, target)
    np.testing.assert_allclose(nelbo, target.nll, atol=SCORE_ENTROPY_TOL[kind])


def test_dfm_generalized_kl_equals_nll_for_masking(target):
    process = processes.Masking(K, schedules.LogLinear())
    den = target.oracle.denoiser(process)
    nelbo = exact_continuous(losses.dfm_generalized_kl, process, den, target)
    np.testing.assert_allclose(nelbo, target.nll, atol=TOL)


def test_any_order_nll_equals_nll(target):
    """Exact average over k in 1..L and every subset of k masked positions."""
    process = processes.Masking(K)
    den = target.oracle.denoiser(process)
    masks, weights = [], []
    for k in range(1, L + 1):
        subsets = list(itertools.combinations(range(L), k))
        for subset in subsets:
            mask = np.zeros(L, bool)
            mask[list(subset)] = True
            masks.append(mask)
            weights.append(1.0 / (L * len(subsets)))
    masks = np.array(masks)
    x0 = np.repeat(target.x0, len(masks), 0)
    mask_rows = np.tile(masks, (len(target.x0), 1))
    x_t = np.where(mask_rows, K, x0)
    # For masking the posterior does not depend on t; any t will do.
    log_probs = den(jnp.asarray(x_t), jnp.full((len(x_t),), 0.37))
    vals = np.asarray(losses.any_order_nll(log_probs, x0, mask_rows), np.float64)
    nll = vals.reshape(len(target.x0), len(masks)) @ np.array(weights)
    np.testing.assert_allclose(nll, target.nll, atol=1e-4)


# --------------------------------------------------------------------------
# a wrong denoiser gives a strictly larger value (averaged over x0 ~ target)
# --------------------------------------------------------------------------


def _perturbed(den, scale=1.0, seed=3):
    noise = jax.random.normal(jax.random.key(seed), (L, K))

    def fn(x, t):
        return jax.nn.log_softmax(den(x, t) + scale * noise, axis=-1)

    return fn


def _uniform_denoiser(x, t):
    return jnp.full((*x.shape, K), -math.log(K))


@pytest.mark.parametrize("loss", ["masked", "uniform", "score_entropy"])
def test_wrong_denoiser_is_worse(target, loss):
    if loss == "masked":
        process, fn = processes.Masking(K), losses.masked_elbo
    elif loss == "uniform":
        process, fn = processes.Uniform(K), losses.uniform_elbo
    else:
        process, fn = processes.Uniform(K), losses.score_entropy
    den = target.oracle.denoiser(process)

    def wrap(d):
        if loss != "score_entropy":
            return d
        return lambda x, t: parameterizations.log_score_from_log_probs(d(x, t), x, t, process)

    exact = target.probs @ exact_continuous(fn, process, wrap(den), target, nodes=32)
    for wrong in (_perturbed(den), _uniform_denoiser):
        value = target.probs @ exact_continuous(fn, process, wrap(wrong), target, nodes=32)
        assert value > exact + 0.01, (value, exact)
    # The exact denoiser's average is the entropy of the target.
    assert exact == pytest.approx(target.entropy, abs=TOL)


def test_any_order_nll_wrong_denoiser_is_worse(target):
    process = processes.Masking(K)
    good, bad = target.oracle.denoiser(process), _perturbed(target.oracle.denoiser(process))
    masks = np.array(list(itertools.product([False, True], repeat=L))[1:])
    x0 = np.repeat(target.x0, len(masks), 0)
    mask_rows = np.tile(masks, (len(target.x0), 1))
    x_t = jnp.asarray(np.where(mask_rows, K, x0))
    t = jnp.full((len(x0),), 0.5)
    # Weight each subset by P(k) P(subset | k) = 1 / (L * C(L, k)).
    w = np.array([1.0 / (L * math.comb(L, int(m.sum()))) for m in masks])

    def avg(den):
        vals = np.asarray(losses.any_order_nll(den(x_t, t), x0, mask_rows), np.float64)
        return target.probs @ (vals.reshape(len(target.x0), len(masks)) @ w)

    assert avg(bad) > avg(good) + 0.01
    assert avg(good) == pytest.approx(target.entropy, abs=1e-4)


# --------------------------------------------------------------------------
# plug-in forms: exact when the vector is p(x0_i | the rest); worse otherwise
# --------------------------------------------------------------------------


def test_uniform_plugin_exact_for_single_token():
    """L = 1: p(x0 | the other positions) is the target itself, and plugging it in gives
    the exact reverse process, so UDLM's published form equals the NLL."""
    tgt = Target(K, 1, seed=5)
    process = processes.Uniform(K, schedules.LogLinear())
    const = jnp.log(jnp.asarray(tgt.probs, jnp.float32))
    model = lambda x, t: jnp.broadcast_to(const, (*x.shape, K))  # noqa: E731
    plugin = exact_continuous(losses.uniform_elbo, process, model, tgt, plugin=True)
    np.testing.assert_allclose(plugin, tgt.nll, atol=TOL)
    # The mixture reading of the same constant vector is not the posterior: it is worse.
    mixture = exact_continuous(losses.uniform_elbo, process, model, tgt)
    assert tgt.probs @ mixture > tgt.probs @ plugin + 0.01


def test_uniform_plugin_with_posterior_is_worse(target):
    process = processes.Uniform(K, schedules.LogLinear())
    den = target.oracle.denoiser(process)
    plugin = exact_continuous(losses.uniform_elbo, process, den, target, nodes=32, plugin=True)
    assert target.probs @ plugin > target.entropy + 0.05


# --------------------------------------------------------------------------
# D3PM
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
def test_d3pm_vb_bounds_the_nll_and_tightens(target, kind):
    ctor = getattr(processes.D3PM, kind)
    avg_gaps, worst = [], []
    for num_steps in (4, 16, 64):
        process = ctor(K, num_steps)
        q, qbar = d3pm_matrices(kind, K, num_steps)
        np.testing.assert_allclose(np.asarray(process.qbar), qbar, atol=1e-5)
        den = target.oracle.denoiser(process)
        bound = exact_discrete(losses.d3pm_vb, process, den, target, qbar)
        # Per x0, the bound is an upper bound on the model's own NLL -log p_theta(x0).
        prior = qbar[-1][:K].mean(0)
        model_nll = model_nll_d3pm(den, q, qbar, prior, target)
        assert np.all(bound >= model_nll - 1e-4), (bound - model_nll).min()
        # Averaged over x0 ~ target it bounds the target's NLL (its entropy).
        avg_gaps.append(target.probs @ bound - target.entropy)
        worst.append(np.abs(bound - target.nll).max())
    assert avg_gaps[0] > 0
    for coarse, fine in itertools.pairwise(avg_gaps):
        assert 0 < fine < 0.5 * coarse, avg_gaps
    for coarse, fine in itertools.pairwise(worst):
        assert fine < 0.5 * coarse, worst
    assert worst[-1] < 0.2


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
def test_d3pm_vb_exact_for_single_token(kind):
    """L = 1: the exact posterior gives the exact reverse chain, so the bound is the NLL."""
    tgt = Target(K, 1, seed=11)
    process = getattr(processes.D3PM, kind)(K, 4)
    _, qbar = d3pm_matrices(kind, K, 4)
    bound = exact_discrete(losses.d3pm_vb, process, tgt.oracle.denoiser(process), tgt, qbar)
    np.testing.assert_allclose(bound, tgt.nll, atol=1e-4)


def test_d3pm_plugin(target):
    # Absorbing: the plug-in and mixture steps agree.
    process = processes.D3PM.absorbing(K, 8)
    _, qbar = d3pm_matrices("absorbing", K, 8)
    den = target.oracle.denoiser(process)
    mix = exact_discrete(losses.d3pm_vb, process, den, target, qbar)
    plug = exact_discrete(losses.d3pm_vb, process, den, target, qbar, plugin=True)
    np.testing.assert_allclose(plug, mix, atol=1e-4)
    # Uniform: plugging the posterior into the one-hot formula is worse on average.
    process = processes.D3PM.uniform(K, 8)
    _, qbar = d3pm_matrices("uniform", K, 8)
    den = target.oracle.denoiser(process)
    mix = exact_discrete(losses.d3pm_vb, process, den, target, qbar)
    plug = exact_discrete(losses.d3pm_vb, process, den, target, qbar, plugin=True)
    assert target.probs @ plug > target.probs @ mix + 0.1


def test_d3pm_wrong_denoiser_is_worse(target):
    process = processes.D3PM.uniform(K, 8)
    _, qbar = d3pm_matrices("uniform", K, 8)
    den = target.oracle.denoiser(process)
    good = target.probs @ exact_discrete(losses.d3pm_vb, process, den, target, qbar)
    bad = target.probs @ exact_discrete(losses.d3pm_vb, process, _perturbed(den), target, qbar)
    assert bad > good + 0.01


def test_d3pm_hybrid_is_vb_plus_aux_ce():
    process = processes.D3PM.absorbing(K, 10)
    rng = np.random.default_rng(0)
    x0 = rng.integers(0, K, (5, L)).astype(np.int32)
    t = rng.integers(1, 11, 5).astype(np.int32)
    x_t = np.where(rng.random((5, L)) < 0.5, x0, K).astype(np.int32)
    lp = rng.normal(size=(5, L, K))
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))

    @jax.jit
    def both(log_probs):
        return (
            losses.d3pm_vb(log_probs, x0, x_t, t, process),
            losses.d3pm_hybrid(log_probs, x0, x_t, t, process, aux_weight=0.3),
        )

    vb, hybrid = both(lp.astype(np.float32))
    ce = -np.take_along_axis(lp, x0[..., None], -1)[..., 0].sum(-1)
    np.testing.assert_allclose(hybrid, np.asarray(vb, np.float64) + 0.3 * ce, rtol=1e-5, atol=1e-5)
    assert np.all(ce > 0)


# --------------------------------------------------------------------------
# hand-computed values
# --------------------------------------------------------------------------


def test_masked_elbo_hand_value():
    # LogLinear: -alpha' / (1 - alpha) = 1 / t.
    process = processes.Masking(3, schedules.LogLinear(eps=0.01))
    probs = np.array([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    log_probs = jnp.log(jnp.asarray(probs[None], jnp.float32))
    x0 = jnp.array([[0, 1, 2]])
    x_t = jnp.array([[3, 1, 3]])  # positions 0 and 2 masked
    value = losses.masked_elbo(log_probs, x0, x_t, jnp.array([0.25]), process)
    expected = 4.0 * -(math.log(0.5) + math.log(0.6))
    np.testing.assert_allclose(value, [expected], rtol=1e-5)


def test_any_order_nll_hand_value():
    probs = np.array([[0.5, 0.5], [0.8, 0.2], [0.3, 0.7], [0.9, 0.1]])
    log_probs = jnp.log(jnp.asarray(np.stack([probs, probs]), jnp.float32))
    x0 = jnp.array([[0, 1, 1, 0], [0, 1, 1, 0]])
    mask = jnp.array([[True, True, False, False], [False, False, False, False]])
    value = losses.any_order_nll(log_probs, x0, mask)
    expected = 4 / 2 * -(math.log(0.5) + math.log(0.2))
    np.testing.assert_allclose(value, [expected, 0.0], rtol=1e-5)


def test_score_entropy_masking_hand_value():
    """SEDD's masked form, with e = expm1(sigma_bar) and r = 1 / e (design.md 5.2)."""
    sched = schedules.LogLinear(eps=1e-3)
    process = processes.Masking(3, sched)
    t = 0.4
    log_score = np.log(np.array([[[0.3, 0.5, 0.2, 1.0], [0.1, 0.2, 0.3, 0.4]]]))
    x0, x_t = jnp.array([[1, 2]]), jnp.array([[3, 2]])
    value = losses.score_entropy(log_score, x0, x_t, jnp.array([t]), process)
    alpha = 1.0 - (1.0 - 1e-3) * t
    sigma_prime = (1.0 - 1e-3) / alpha
    r = 1.0 / math.expm1(-math.log(alpha))
    ell = (0.3 + 0.5 + 0.2) - r * math.log(0.5) + r * (math.log(r) - 1.0)
    np.testing.assert_allclose(value, [sigma_prime * ell], rtol=1e-5)


def test_sample_times():
    t = np.asarray(losses.sample_times(jax.random.key(0), 8))
    assert t.shape == (8,) and t.dtype == np.float32
    assert np.all((t > 0) & (t < 1))
    # antithetic: one draw u, shifted by i / B (mod 1): sorted gaps are 1 / B
    gaps = np.diff(np.sort(t))
    np.testing.assert_allclose(gaps, (1 - 2e-5) / 8, atol=1e-6)
    t2 = np.asarray(losses.sample_times(jax.random.key(0), 8, antithetic=False))
    assert np.all((t2 > 0) & (t2 < 1)) and not np.allclose(np.diff(np.sort(t2)), gaps)


# --------------------------------------------------------------------------
# Monte Carlo estimate agrees with the exact expectation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["masking", "uniform"])
def test_monte_carlo_matches_exact(target, kind):
    if kind == "masking":
        process, fn = processes.Masking(K), losses.masked_elbo
    else:
        process, fn = processes.Uniform(K), losses.uniform_elbo
    den = target.oracle.denoiser(process)
    exact = exact_continuous(fn, process, den, target)
    rows = np.array([int(np.argmax(target.probs)), int(np.argmin(target.probs)), 17])
    batch, repeats = 64, 128

    @jax.jit
    def batch_means(key):
        def one(key, x0):
            k_t, k_x = jax.random.split(key)
            t = losses.sample_times(k_t, batch)
            x0b = jnp.broadcast_to(x0, (batch, L))
            x_t = process.sample(k_x, x0b, t)
            return fn(den(x_t, t), x0b, x_t, t, process).mean()

        keys = jax.random.split(key, (repeats, len(rows)))
        x0 = jnp.asarray(target.x0[rows])
        return jax.vmap(lambda ks: jax.vmap(one)(ks, x0))(keys)  # [repeats, rows]

    means = np.asarray(batch_means(jax.random.key(42)), np.float64)
    estimate = means.mean(0)
    stderr = means.std(0, ddof=1) / math.sqrt(repeats)
    assert np.all(stderr > 0)
    assert np.all(np.abs(estimate - exact[rows]) <= 4 * stderr), (estimate, exact[rows], stderr)


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------


def test_losses_reject_bad_tokens_and_shapes():
    process = processes.Masking(3)
    lp = jnp.zeros((2, 4, 3))
    x0 = jnp.zeros((2, 4), jnp.int32)
    t = jnp.full((2,), 0.5)
    with pytest.raises(ValueError, match="x0"):
        losses.masked_elbo(lp, x0.at[0, 0].set(3), x0, t, process)  # 3 is the mask, not data
    with pytest.raises(ValueError, match="x_t"):
        losses.masked_elbo(lp, x0, x0.at[1, 2].set(4), t, process)
    with pytest.raises(ValueError, match="x_t"):
        losses.masked_elbo(lp, x0, x0.at[1, 2].set(-1), t, process)
    with pytest.raises(ValueError, match="log_probs"):
        losses.masked_elbo(jnp.zeros((2, 5, 3)), x0, x0, t, process)
    with pytest.raises(ValueError, match="x_t"):
        losses.masked_elbo(lp, x0, jnp.zeros((2, 3), jnp.int32), t, process)
    with pytest.raises(ValueError, match="t has shape"):
        losses.masked_elbo(lp, x0, x0, jnp.full((3,), 0.5), process)
    with pytest.raises(ValueError, match="log_score"):
        losses.score_entropy(jnp.zeros((2, 4, 3)), x0, x0, t, process)  # needs K + 1 states
    with pytest.raises(TypeError, match="mask state"):
        losses.masked_elbo(lp, x0, x0, t, processes.Uniform(3))
    with pytest.raises(TypeError, match="mask"):
        losses.any_order_nll(lp, x0, jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(ValueError, match="mask"):
        losses.any_order_nll(lp, x0, jnp.zeros((2, 3), bool))
    d3pm = processes.D3PM.absorbing(3, 5)
    with pytest.raises(ValueError, match="t_index"):
        losses.d3pm_vb(lp, x0, x0, jnp.full((2,), 6, jnp.int32), d3pm)
    with pytest.raises(ValueError, match="t_index must be step indices in 1"):
        losses.d3pm_vb(lp, x0, x0, jnp.array([0, 1], jnp.int32), d3pm)
    with pytest.raises(TypeError, match="D3PM"):
        losses.d3pm_vb(lp, x0, x0, jnp.full((2,), 1, jnp.int32), process)


# --------------------------------------------------------------------------
# chunked evaluation (large vocabularies) gives the same values and gradients
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["masking", "uniform"])
def test_chunked_sums_match_single_pass(monkeypatch, kind):
    process = processes.Masking(5) if kind == "masking" else processes.Uniform(5)
    rng = np.random.default_rng(0)
    x0 = rng.integers(0, 5, (3, 7)).astype(np.int32)
    t = rng.uniform(0.05, 0.95, 3).astype(np.float32)
    noise = 5 if kind == "masking" else rng.integers(0, 5, (3, 7))  # a state x0 can reach
    x_t = np.where(rng.random((3, 7)) < 0.5, x0, noise).astype(np.int32)
    log_probs = np.asarray(jax.nn.log_softmax(2 * rng.normal(size=(3, 7, 5)), -1), np.float32)
    log_score = rng.normal(size=(3, 7, process.num_states)).astype(np.float32)

    def total(lp, ls):
        values = (
            losses.uniform_elbo(lp, x0, x_t, t, process),
            losses.score_entropy(ls, x0, x_t, t, process),
        )
        return sum(v.sum() for v in values), values

    def value_and_grads():
        return jax.jit(jax.grad(total, (0, 1), has_aux=True))(log_probs, log_score)

    whole = value_and_grads()
    # 3 sequences x 3 positions per chunk: L = 7 gives 3 chunks, the last one overlapping
    monkeypatch.setattr(losses, "_CHUNK_ELEMENTS", 9 * process.num_states)
    chunked = value_and_grads()
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(whole), leaves(chunked), strict=True):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
