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


# --------------------------------------------------------------------------
# the block ELBO against the exact NLL
# --------------------------------------------------------------------------

NODES = 32  # midpoint rule in t per block (the integrand is a polynomial in t)
MASKING = PROCESSES["masking"]
EPS = MASKING.schedule.eps


def _nll_np(target) -> np.ndarray:
    """Exact -log p(x0) of every sequence (row-major order), float64."""
    return -np.log(np.asarray(target.probs, np.float64))


def _pairs(target):
    """Every x0 with every masking pattern: x0 rows, masks [S * 2^L, L]."""
    x0s = np.asarray(target.sequences)
    masks = np.array(list(itertools.product([False, True], repeat=L)))
    x0 = np.repeat(x0s, len(masks), 0)
    mask = np.tile(masks, (len(x0s), 1))
    return x0, mask, len(x0s), len(masks)


def exact_block_loss(target, block_size, denoiser, nodes=NODES, t_range=(0.0, 1.0)):
    """E over independent block times t_b ~ U(t_range) and x_t ~ q(x_t | x0) of
    block_masked_elbo with ``denoiser(x_t, x0, t_blocks)``, for every x0: float64[S].

    The expectation over x_t is an enumeration of every masking pattern weighted by
    q(x_t | x0) (float64, from alpha(t) = 1 - (1 - eps) t); over the times, a midpoint
    rule in which block b visits the nodes in its own order (node (p_b n + c_b) mod N),
    so different blocks see different times at every node.
    """
    from ddjax import losses

    nb = L // block_size
    x0, mask, s, p = _pairs(target)
    x_t = np.where(mask, K, x0)
    lo, hi = t_range
    mid = lo + (hi - lo) * (np.arange(nodes) + 0.5) / nodes
    fn = jax.jit(
        lambda xt, x, tb: losses.block_masked_elbo(
            denoiser(xt, x, tb), x, xt, tb, MASKING, block_size
        )
    )
    total = np.zeros(s)
    pos_block = np.arange(L) // block_size
    for n in range(nodes):
        tb = np.array([mid[((2 * b + 1) * n + 5 * b) % nodes] for b in range(nb)])
        a = 1.0 - (1.0 - EPS) * tb[pos_block]  # alpha per position
        q = np.prod(np.where(mask, 1.0 - a, a), axis=-1)  # q(x_t | x0), float64
        t_rows = jnp.asarray(np.broadcast_to(tb, (len(x0), nb)), jnp.float32)
        loss = np.asarray(fn(jnp.asarray(x_t), jnp.asarray(x0), t_rows), np.float64)
        total += (q * loss).reshape(s, p).sum(-1)
    return total / nodes


@pytest.fixture(scope="module")
def exact(target):
    return {bs: target.block_training_denoiser(MASKING, bs) for bs in (1, 2, 4)}


# The prior term that LogLinear's eps leaves (about eps * NLL) plus the midpoint rule's
# error: measured max |E - NLL| over every x0 is 7.7e-3 / 6.5e-3 / 6.1e-3 nats (block
# sizes 1 / 2 / 4).
NLL_TOL = 0.02


@pytest.mark.parametrize("block_size", [1, 2, 4])
def test_block_elbo_with_the_exact_block_denoiser_is_the_exact_nll(target, exact, block_size):
    got = exact_block_loss(target, block_size, exact[block_size])
    want = _nll_np(target)
    np.testing.assert_allclose(got, want, atol=NLL_TOL)


def _ar_nll(target, x0) -> float:
    """sum_i -log p(x0_i | x0_<i) from the target's table (marginalising the suffix)."""
    probs = np.asarray(target.probs, np.float64).reshape((K,) * L)
    total = 0.0
    for i in range(L):
        marg = probs[tuple(x0[:i])].sum(axis=tuple(range(1, L - i)))
        total -= np.log(marg[x0[i]] / marg.sum())
    return total


def test_block_size_one_is_the_ar_nll_at_every_time(target, exact):
    """Block size 1: for every t, E_{x_t}[loss] = (1 - eps) sum_i -log p(x0_i | x0_<i)."""
    from ddjax import losses

    x0, mask, s, p = _pairs(target)
    x_t = np.where(mask, K, x0)
    fn = jax.jit(
        lambda xt, x, tb: losses.block_masked_elbo(exact[1](xt, x, tb), x, xt, tb, MASKING, 1)
    )
    ar = np.array([_ar_nll(target, np.asarray(x)) for x in np.asarray(target.sequences)])
    for tb in ([0.1, 0.5, 0.9, 0.3], [0.7, 0.2, 0.05, 0.95]):
        tb = np.asarray(tb)
        a = 1.0 - (1.0 - EPS) * tb
        q = np.prod(np.where(mask, 1.0 - a, a), axis=-1)
        t_rows = jnp.asarray(np.broadcast_to(tb, (len(x0), L)), jnp.float32)
        loss = np.asarray(fn(jnp.asarray(x_t), jnp.asarray(x0), t_rows), np.float64)
        got = (q * loss).reshape(s, p).sum(-1)
        np.testing.assert_allclose(got, (1.0 - EPS) * ar, rtol=1e-5, atol=1e-5)


def test_block_size_l_is_masked_elbo():
    from ddjax import losses

    rng = np.random.default_rng(0)
    x0 = rng.integers(0, K, size=(6, L))
    x_t = np.where(rng.uniform(size=(6, L)) < 0.6, K, x0)
    lp = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(6, L, K)), jnp.float32))
    t = jnp.asarray(rng.uniform(0.01, 1.0, size=6), jnp.float32)
    got = losses.block_masked_elbo(lp, x0, x_t, t[:, None], MASKING, L)
    want = losses.masked_elbo(lp, x0, x_t, t, MASKING)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # and each block of a smaller size is the masked ELBO of that block at its own time
    tb = jnp.asarray(rng.uniform(0.01, 1.0, size=(6, 2)), jnp.float32)
    got = losses.block_masked_elbo(lp, x0, x_t, tb, MASKING, 2)
    parts = [
        losses.masked_elbo(
            lp[:, 2 * b : 2 * b + 2],
            x0[:, 2 * b : 2 * b + 2],
            x_t[:, 2 * b : 2 * b + 2],
            tb[:, b],
            MASKING,
        )
        for b in range(2)
    ]
    np.testing.assert_allclose(got, parts[0] + parts[1], rtol=1e-6)


def _data_average(target, values) -> float:
    return float(np.asarray(target.probs, np.float64) @ values)


def test_a_wrong_denoiser_gives_a_strictly_larger_value(target, exact):
    """Averaged over the data, any other denoiser's bound exceeds the entropy (the exact
    block denoiser's value): the non-block exact denoiser (it sees the noisy, not the
    clean, earlier blocks) and a perturbed exact block denoiser."""
    entropy = _data_average(target, _nll_np(target))
    exact_value = _data_average(target, exact_block_loss(target, 2, exact[2]))
    full = target.denoiser(MASKING)
    non_block = exact_block_loss(target, 2, lambda xt, x, tb: full(xt, tb[:, 0]))
    noise = jnp.asarray(np.random.default_rng(1).normal(size=(L, K)), jnp.float32)
    perturbed = exact_block_loss(
        target, 2, lambda xt, x, tb: jax.nn.log_softmax(exact[2](xt, x, tb) + 0.3 * noise)
    )
    assert abs(exact_value - entropy) < NLL_TOL
    # measured gaps above the exact value: 0.027 (non-block) and 0.052 (perturbed); the
    # shared quadrature's error cancels in the difference
    assert _data_average(target, non_block) > exact_value + 0.01
    assert _data_average(target, perturbed) > exact_value + 0.02


def test_block_masked_elbo_input_checks():
    from ddjax import losses

    x0 = np.zeros((2, L), np.int32)
    lp = jnp.zeros((2, L, K))
    with pytest.raises(ValueError, match="divide"):
        losses.block_masked_elbo(lp, x0, x0, jnp.zeros((2, 1)), MASKING, 3)
    with pytest.raises(ValueError, match="one time per block"):
        losses.block_masked_elbo(lp, x0, x0, jnp.zeros((2,)), MASKING, 2)
    with pytest.raises(ValueError, match="one time per block"):
        losses.block_masked_elbo(lp, x0, x0, jnp.zeros((2, 4)), MASKING, 2)
    with pytest.raises(TypeError, match="mask"):
        losses.block_masked_elbo(lp, x0, x0, jnp.zeros((2, 2)), PROCESSES["uniform"], 2)


# --------------------------------------------------------------------------
# the training objective: per-block times, one pass, the clipped schedule
# --------------------------------------------------------------------------


def _oracle_objective(target, block_size, mask_rate=None):
    """An Objective whose network is the exact block denoiser, called the way BD3-LM's
    one pass is (``apply_fn(params, x_t, None, labels, x0=x0)``); for masking the exact
    posterior does not depend on the time, so the oracle gets a fixed one."""
    from ddjax.training import Objective

    exact = target.block_training_denoiser(MASKING, block_size)
    nb = L // block_size

    def apply_fn(params, x, t, labels, x0=None, dropout_key=None):
        assert t is None and x0 is not None
        return exact(x, x0, jnp.full((x.shape[0], nb), 0.5))

    return Objective(
        "block_masked_elbo",
        MASKING,
        apply_fn,
        time_conditioning=False,
        block_size=block_size,
        mask_rate=mask_rate,
    )


def _monte_carlo(fn, target, n=16384, seed=0):
    from ddjax.training.steps import antithetic_uniforms

    key = jax.random.PRNGKey(seed)
    x0 = target.sample(jax.random.fold_in(key, 1), n)
    u = antithetic_uniforms(jax.random.fold_in(key, 2), n)
    keys = jax.random.split(jax.random.fold_in(key, 3), n)
    v = np.asarray(jax.jit(fn)(None, x0, None, u, keys), np.float64)
    return v.mean(), v.std() / np.sqrt(n)


def test_block_objective_with_the_oracle_network_estimates_the_entropy(target, exact):
    """Objective('block_masked_elbo'): x_t per block at its own time, the network's one
    pass and the loss; its Monte Carlo mean over data x0 ~ p is the exact value
    (the entropy up to eps's prior term) within 4 standard errors (measured 1.1)."""
    obj = _oracle_objective(target, 2)
    exact_value = _data_average(target, exact_block_loss(target, 2, exact[2]))
    mean, se = _monte_carlo(obj.nelbo, target)
    assert abs(mean - exact_value) < 4 * se, (mean, exact_value, se)


def test_clipped_schedule_trains_on_its_mask_rates_and_evaluates_the_full_bound(target, exact):
    """mask_rate=(beta, omega): loss() draws mask rates 1 - alpha(t) ~ U[beta, omega] with
    the weight unchanged (BD3-LM), so its mean is the exact expectation over block times
    uniform on [t(beta), t(omega)]; nelbo() ignores the clipping."""
    from ddjax import losses

    beta, omega = 0.6, 0.95
    obj = _oracle_objective(target, 2, mask_rate=(beta, omega))
    lo, hi = beta / (1 - EPS), omega / (1 - EPS)
    clipped = _data_average(target, exact_block_loss(target, 2, exact[2], t_range=(lo, hi)))
    full = _data_average(target, exact_block_loss(target, 2, exact[2]))
    assert clipped > full + 0.1  # measured 3.903 against 3.763: the test can tell them apart
    mean, se = _monte_carlo(obj.loss, target, n=8192)
    assert abs(mean - clipped) < 4 * se, (mean, clipped, se)
    plain = _oracle_objective(target, 2)
    np.testing.assert_allclose(
        _monte_carlo(obj.nelbo, target, n=512)[0], _monte_carlo(plain.nelbo, target, n=512)[0]
    )
    # the times themselves: mask rates fill [beta, omega] uniformly, strata per row
    # u_i = (i + 0.5) / 256 with offsets j / 4 visits every one of 256 strata once
    u = (jnp.arange(64) + 0.5) / 256
    keys = jax.random.split(jax.random.PRNGKey(5), 64)
    t = obj.block_times(u, keys, 4, train=True)
    rate = np.sort(np.asarray(MASKING.schedule.one_minus_alpha(t)).ravel())
    np.testing.assert_allclose(
        rate, beta + (omega - beta) * (np.arange(256) + 0.5) / 256, atol=1e-5
    )
    free = np.asarray(obj.block_times(u, keys, 4, train=False))
    strata = np.sort(((free - np.asarray(u)[:, None]) * 4) % 4, axis=-1)
    np.testing.assert_allclose(strata, np.broadcast_to(np.arange(4.0), (64, 4)), atol=1e-3)
    # mask_rate_times on its own, for a schedule that is not linear in the mask rate
    cosine = processes.Masking(vocab_size=K, schedule=schedules.Cosine()).schedule
    m = np.asarray(cosine.one_minus_alpha(losses.mask_rate_times(u, cosine, (beta, omega))))
    np.testing.assert_allclose(m, beta + (omega - beta) * np.asarray(u), atol=1e-5)


def test_block_objective_checks():
    from ddjax.training import Objective

    fn = lambda *a, **k: None  # noqa: E731
    with pytest.raises(ValueError, match="time_conditioning=False"):
        Objective("block_masked_elbo", MASKING, fn, block_size=4)
    with pytest.raises(ValueError, match="block_size >= 1"):
        Objective("block_masked_elbo", MASKING, fn, time_conditioning=False)
    with pytest.raises(TypeError, match="mask"):
        Objective(
            "block_masked_elbo", PROCESSES["uniform"], fn, time_conditioning=False, block_size=2
        )
    with pytest.raises(ValueError, match="block_size is for"):
        Objective("masked_elbo", MASKING, fn, block_size=2)
    with pytest.raises(ValueError, match="0 <= beta < omega <= 1"):
        Objective("masked_elbo", MASKING, fn, mask_rate=(0.8, 0.3))


def test_sample_times_and_masked_elbo_take_the_clipped_schedule_too():
    """sample_times(mask_rate=...) and Objective('masked_elbo', mask_rate=...): the
    network sees times whose mask rates are stratified over [beta, omega] in training and
    the full range in evaluation."""
    from ddjax import losses
    from ddjax.training import Objective

    sched = MASKING.schedule
    t = losses.sample_times(jax.random.PRNGKey(0), 256, mask_rate=(0.2, 0.7), schedule=sched)
    rate = np.sort(np.asarray(sched.one_minus_alpha(t)))
    assert 0.2 - 1e-6 <= rate[0] and rate[-1] <= 0.7 + 1e-6
    np.testing.assert_allclose(np.diff(rate), 0.5 / 256, atol=1e-5)  # one per stratum
    with pytest.raises(ValueError, match="schedule"):
        losses.sample_times(jax.random.PRNGKey(0), 4, mask_rate=(0.2, 0.7))
    seen = []

    def apply_fn(params, x, t, labels, dropout_key=None):
        seen.append(np.asarray(t))
        return jnp.zeros((*x.shape, K))

    obj = Objective("masked_elbo", MASKING, apply_fn, mask_rate=(0.2, 0.7))
    u = (jnp.arange(64) + 0.5) / 64
    keys = jax.random.split(jax.random.PRNGKey(1), 64)
    x0 = jnp.zeros((64, L), jnp.int32)
    obj.loss(None, x0, None, u, keys)
    obj.nelbo(None, x0, None, u, keys)
    train_rate = np.asarray(sched.one_minus_alpha(seen[0]))
    np.testing.assert_allclose(train_rate, 0.2 + 0.5 * np.asarray(u), atol=1e-5)
    np.testing.assert_allclose(seen[1], 1e-5 + (1 - 2e-5) * np.asarray(u), atol=1e-6)
