"""Posterior and planned samplers against their exact targets.

split_gibbs and aps on small enumerable inverse problems (the exact posterior is
``target.tilted(log_likelihood)``), ddpd with the oracle's exact planner and denoiser,
the DDPD planner loss at its exact minimum, and the defining properties of PC-Sampler.
Expected values come from the oracle or from NumPy enumerations written here from the
definitions, never from the code under test.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ddjax as dd
from ddjax.samplers import driver
from ddjax.samplers.aps import guided_log_probs
from ddjax.testing import (
    ExactTarget,
    ddpd_law,
    exact_planner,
    random_target,
    smoothed_log_likelihood,
    total_variation,
    tv,
    tv_floor,
)

FAST = {"xla_backend_optimization_level": 0}
EPS = 1e-3  # LogLinear's default eps


def jitted(fn, *args, **kwargs):
    """fn(key, *args, **kwargs) compiled (fast compile) and called on key 0 folded with seed."""
    seed = kwargs.pop("seed", 0)
    run = jax.jit(lambda key: fn(key, *args, **kwargs), compiler_options=FAST)
    return np.asarray(run(jax.random.key(seed)))


def kernel(t: float, k: int) -> np.ndarray:
    """Uniform noise q_t(z | x0 = j) as [j, z], float64: a_t I + (1 - a_t) / K."""
    a = 1.0 - (1.0 - EPS) * t
    return a * np.eye(k) + (1.0 - a) / k


# --------------------------------------------------------------------------
# split_gibbs
# --------------------------------------------------------------------------

SG_K, SG_L, SG_N = 3, 3, 12_000
Y_OBS = jnp.array([0, 2, 1])


def noisy_observation(x):
    """log p(y | x): each position observed correctly w.p. 0.8, else one of the other two."""
    return jnp.where(x == Y_OBS, jnp.log(0.8), jnp.log(0.1)).sum(-1)


@pytest.fixture(scope="module")
def sg_problem():
    target = random_target(jax.random.key(0), SG_K, SG_L)
    process = dd.processes.Uniform(vocab_size=SG_K)
    return target, process, target.denoiser(process), target.tilted(noisy_observation)


def test_smoothed_likelihood_is_the_split_marginal_and_tends_to_the_posterior(sg_problem):
    """The oracle: log E_{z ~ q_t(.|x)} e^{l(z)} by a NumPy sum over z, and -> l as t -> 0."""
    target, process, _, posterior = sg_problem
    t = 0.4
    got = smoothed_log_likelihood(target, process, noisy_observation, t)
    q = kernel(t, SG_K)
    seqs = np.asarray(target.sequences)
    ll = np.asarray(noisy_observation(target.sequences), np.float64)
    want = [
        math.log(sum(np.prod(q[x, z]) * math.exp(ll[b]) for b, z in enumerate(seqs))) for x in seqs
    ]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    near = target.tilted(smoothed_log_likelihood(target, process, noisy_observation, 1e-5))
    assert tv(near.probs, posterior.probs) < 1e-3


def test_split_gibbs_at_a_fixed_level_samples_the_exact_split_marginal(sg_problem):
    """At a constant coupling level t the x-law of the chain is p(x) E_{q_t(z|x)} e^{l(z)} / Z
    (the Gibbs sampler's stationary marginal), distinct from the posterior."""
    target, process, den, posterior = sg_problem
    t = 0.4
    marginal = target.tilted(smoothed_log_likelihood(target, process, noisy_observation, t))
    assert tv(marginal.probs, posterior.probs) > 0.1  # the test tells the two apart
    x = jitted(
        dd.samplers.split_gibbs, denoiser=den, process=process, shape=(SG_N, SG_L),
        log_likelihood=noisy_observation, num_rounds=6, t_max=t, t_min=t, prior_steps=24,
    )  # fmt: skip
    floor = tv_floor(marginal, SG_N)
    assert total_variation(x, marginal) <= floor + 0.015, (total_variation(x, marginal), floor)


@pytest.mark.slow
def test_split_gibbs_under_a_marginal_prior_samples_the_exact_split_marginal(sg_problem):
    """Noise towards data marginals pi: the coupling is a token-weighted Hamming distance,
    and the fixed-level chain still samples the exact split marginal."""
    target, _, _, posterior = sg_problem
    pi = jnp.array([0.5, 0.3, 0.2])
    process = dd.processes.MarginalPrior(probs=pi, schedule=dd.schedules.LogLinear())
    t = 0.4
    marginal = target.tilted(smoothed_log_likelihood(target, process, noisy_observation, t))
    assert tv(marginal.probs, posterior.probs) > 0.05
    x = jitted(
        dd.samplers.split_gibbs, denoiser=target.denoiser(process), process=process,
        shape=(SG_N, SG_L), log_likelihood=noisy_observation, num_rounds=12, t_max=t, t_min=t,
        prior_steps=24,
    )  # fmt: skip
    assert total_variation(x, marginal) <= tv_floor(marginal, SG_N) + 0.015


def test_split_gibbs_annealed_reaches_the_posterior(sg_problem):
    """Annealed from t = 0.6 to 0.02 the TV to p(x | y) falls with rounds (2 -> 24) to
    below 0.06 (measured 0.04 at N = 12k; the smoothing bias at t = 0.02 is 0.02)."""
    target, process, den, posterior = sg_problem
    tvs = {}
    for rounds in (2, 24):
        x = jitted(
            dd.samplers.split_gibbs, denoiser=den, process=process, shape=(SG_N, SG_L),
            log_likelihood=noisy_observation, num_rounds=rounds, t_max=0.6, t_min=0.02, seed=1,
        )  # fmt: skip
        tvs[rounds] = total_variation(x, posterior)
    assert tvs[24] <= 0.06, tvs
    assert tvs[2] >= tvs[24] + 0.1, tvs
    assert tv(target.probs, posterior.probs) > 0.5  # the prior alone is far off


def test_split_gibbs_info_and_levels(sg_problem):
    _, process, den, _ = sg_problem
    run = jax.jit(
        lambda k: dd.samplers.split_gibbs(
            k, den, process, (8, SG_L), log_likelihood=noisy_observation, num_rounds=4,
            t_max=0.5, t_min=0.05, prior_steps=2, return_info=True,
        ),
        compiler_options=FAST,
    )  # fmt: skip
    x, info = run(jax.random.key(0))
    np.testing.assert_allclose(info["t"], 0.5 * 0.1 ** (np.arange(4) / 3), rtol=1e-5)
    acc = np.asarray(info["acceptance"])
    assert acc.shape == (4,) and np.all((acc >= 0) & (acc <= 1))
    assert x.shape == (8, SG_L) and x.dtype == jnp.int32


def test_split_gibbs_bad_input(sg_problem):
    _, process, den, _ = sg_problem
    call = functools.partial(dd.samplers.split_gibbs, jax.random.key(0), den)
    with pytest.raises(ValueError, match="log_likelihood"):
        call(process, (4, SG_L), log_likelihood=lambda x: x.astype(jnp.float32), num_rounds=2)
    with pytest.raises(ValueError, match="num_rounds"):
        call(process, (4, SG_L), log_likelihood=noisy_observation, num_rounds=0)
    with pytest.raises(ValueError, match="t_max"):
        call(process, (4, SG_L), log_likelihood=noisy_observation, num_rounds=2, t_max=0.01)
    with pytest.raises(TypeError, match="split_gibbs"):
        call(dd.processes.Masking(SG_K), (4, SG_L), log_likelihood=noisy_observation, num_rounds=2)


# --------------------------------------------------------------------------
# aps
# --------------------------------------------------------------------------


def test_guided_log_probs_is_the_tilt_through_the_quantized_expectation():
    """log p'(k) = log p(k) - scale * g_i * c_k + const at masked positions, with g_i the
    loss gradient at the expected value (rounded to the codebook with quantize), and no
    change at decoded positions. Written here from the definition for a quadratic loss."""
    rng = np.random.default_rng(0)
    k, length, mask_id = 4, 3, 4
    codebook = np.array([0.0, 0.5, 2.0, 3.0])
    lp = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(2, length, k)) * 1.5, jnp.float32))
    x = jnp.array([[mask_id, 1, mask_id], [mask_id, mask_id, mask_id]])
    y = np.array([1.7, 0.4, 2.6])

    def loss(v):
        return ((v - jnp.asarray(y)) ** 2).sum(-1) / 0.5

    p = np.exp(np.asarray(lp, np.float64))
    for quantize in (False, True):
        got = np.asarray(
            guided_log_probs(lp, x, mask_id, jnp.asarray(codebook), loss, 0.3, 1, quantize)
        )
        for b, i in itertools.product(range(2), range(length)):
            if int(x[b, i]) != mask_id:
                np.testing.assert_allclose(got[b, i], lp[b, i], atol=1e-6)
                continue
            v = p[b, i] @ codebook
            if quantize:
                v = codebook[np.argmin(np.abs(v - codebook))]
            g = 2.0 * (v - y[i]) / 0.5
            want = np.log(p[b, i]) - 0.3 * g * codebook
            want -= np.log(np.exp(want).sum())
            np.testing.assert_allclose(got[b, i], want, atol=1e-5)


def test_aps_is_exact_for_a_product_prior_and_a_linear_loss():
    """With independent positions and loss = sum_i a_i c[x_i] the guided law is the exact
    posterior of each position, so APS (random anchors) samples p(x | y) exactly."""
    k, length, n = 4, 3, 15_000
    margs = np.asarray(jax.random.normal(jax.random.key(3), (length, k)))
    log_p = sum(
        margs[i].reshape([k if j == i else 1 for j in range(length)]) for i in range(length)
    )
    prior = ExactTarget(log_p)
    codebook = jnp.array([0.0, 1.0, 2.0, 3.0])
    a = jnp.array([0.7, -0.4, 0.3])

    def loss(v):
        return (a * v).sum(-1)

    posterior = prior.tilted(lambda x: -loss(codebook[x]))
    assert tv(prior.probs, posterior.probs) > 0.2
    process = dd.processes.Masking(vocab_size=k)
    x = jitted(
        dd.samplers.aps, prior.denoiser(process), process, (n, length), steps=length,
        measurement_loss=loss, codebook=codebook, anchor="random",
    )  # fmt: skip
    assert total_variation(x, posterior) <= tv_floor(posterior, n) + 0.01


@pytest.fixture(scope="module")
def binary_problem():
    """Binary pixels (codebook 0, 1), each observed through a flip with probability 0.15:
    the log-likelihood is linear in the values, so the tilt of one position is exact."""
    k, length = 2, 4
    target = random_target(jax.random.key(1), k, length)
    y = jnp.array([1, 0, 1, 1])
    log_p1 = jnp.where(y == 1, jnp.log(0.85), jnp.log(0.15))  # log p(y_i | pixel 1)
    log_p0 = jnp.where(y == 0, jnp.log(0.85), jnp.log(0.15))

    def loss(v):
        return -(v * log_p1 + (1.0 - v) * log_p0).sum(-1)

    codebook = jnp.array([0.0, 1.0])
    return target, loss, codebook, target.tilted(lambda x: -loss(codebook[x]))


def test_aps_on_a_noisy_binary_observation(binary_problem):
    """Dependent positions: APS is a heuristic; with random anchors its TV to p(x | y)
    falls with steps (1, 2, 4) and is below 0.11 at one token per step (measured 0.074,
    against 0.64 for the prior); confidence anchors stay below 0.45."""
    target, loss, codebook, posterior = binary_problem
    process = dd.processes.Masking(vocab_size=2)
    den = target.denoiser(process)
    n = 12_000
    tvs = []
    for steps in (1, 2, 4):
        x = jitted(
            dd.samplers.aps, den, process, (n, 4), steps=steps, measurement_loss=loss,
            codebook=codebook, anchor="random", seed=steps,
        )  # fmt: skip
        tvs.append(total_variation(x, posterior))
    assert tvs[0] > tvs[1] > tvs[2], tvs
    assert tvs[2] <= 0.11, tvs
    assert tv(target.probs, posterior.probs) > 0.5
    x = jitted(
        dd.samplers.aps, den, process, (n, 4), steps=4, measurement_loss=loss, codebook=codebook
    )
    assert total_variation(x, posterior) <= 0.45


def test_aps_anchors_follow_the_count_schedule(binary_problem):
    """Anchored remasking keeps the linear count: after step j of 3, floor(4 (1 - (j+1)/3))
    positions are masked (2, 1, 0), and the last state has no mask."""
    target, loss, codebook, _ = binary_problem
    process = dd.processes.Masking(vocab_size=2)
    run = jax.jit(
        lambda k: dd.samplers.aps(
            k, target.denoiser(process), process, (64, 4), steps=3, measurement_loss=loss,
            codebook=codebook, return_trajectory=True,
        ),
        compiler_options=FAST,
    )  # fmt: skip
    _, traj = run(jax.random.key(0))
    masked = (np.asarray(traj) == 2).sum(-1)
    np.testing.assert_array_equal(masked, np.broadcast_to([[2], [1], [0]], masked.shape))


def test_aps_bad_input(binary_problem):
    target, loss, codebook, _ = binary_problem
    process = dd.processes.Masking(vocab_size=2)
    den = target.denoiser(process)
    call = functools.partial(dd.samplers.aps, jax.random.key(0), den)
    with pytest.raises(ValueError, match="codebook"):
        call(process, (4, 4), steps=2, measurement_loss=loss, codebook=jnp.zeros(3))
    with pytest.raises(ValueError, match="measurement_loss"):
        call(process, (4, 4), steps=2, measurement_loss=lambda v: v, codebook=codebook)
    with pytest.raises(ValueError, match="measurement_loss"):
        call(process, (4, 4), steps=2, codebook=codebook)
    with pytest.raises(ValueError, match="anchor"):
        call(process, (4, 4), steps=2, measurement_loss=loss, codebook=codebook, anchor="x")
    with pytest.raises(TypeError, match="aps"):
        call(dd.processes.Uniform(2), (4, 4), steps=2, measurement_loss=loss, codebook=codebook)


# --------------------------------------------------------------------------
# ddpd
# --------------------------------------------------------------------------


def exact_noise_probs(target: ExactTarget, t: float) -> np.ndarray:
    """P(x_t,i != x0_i | x_t) for every x_t (rows in target order), float64[S, L], and p_t."""
    q = kernel(t, target.vocab_size)
    seqs = np.asarray(target.sequences)
    joint = target.probs[:, None] * np.prod(q[seqs[:, None, :], seqs[None, :, :]], -1)  # [x0, xt]
    p_t = joint.sum(0)
    differ = seqs[:, None, :] != seqs[None, :, :]  # [x0, xt, L]
    return np.einsum("ab,abl->bl", joint, differ) / p_t[:, None], p_t, joint


def test_exact_planner_is_the_corruption_posterior():
    target = random_target(jax.random.key(2), 3, 3)
    process = dd.processes.Uniform(vocab_size=3)
    t = 0.45
    want, _, _ = exact_noise_probs(target, t)
    logits = exact_planner(target, process)(target.sequences, jnp.full((27,), t))
    np.testing.assert_allclose(jax.nn.sigmoid(logits), want, atol=2e-5)


def test_ddpd_planner_loss_is_minimised_by_the_exact_planner():
    """E over (x0, x_t) of the BCE with the exact planner is the conditional entropy
    sum_i H([x_t,i != x0_i] | x_t), by enumeration; a perturbed planner scores higher."""
    target = random_target(jax.random.key(2), 3, 3)
    process = dd.processes.Uniform(vocab_size=3)
    t = 0.45
    noise, p_t, joint = exact_noise_probs(target, t)
    h = -(noise * np.log(noise) + (1 - noise) * np.log1p(-noise))
    entropy = float((p_t[:, None] * h).sum())
    seqs = target.sequences
    s = seqs.shape[0]
    logits = exact_planner(target, process)(seqs, jnp.full((s,), t))
    x0 = jnp.repeat(seqs, s, axis=0)  # pairs (x0 = a, x_t = b), row a * S + b
    xt = jnp.tile(seqs, (s, 1))
    weights = joint.reshape(-1)

    def expected(lg):
        return float(
            (
                weights
                * np.asarray(dd.losses.ddpd_planner(jnp.tile(lg, (s, 1)), x0, xt), np.float64)
            ).sum()
        )

    np.testing.assert_allclose(expected(logits), entropy, rtol=1e-4)
    bumped = logits + 0.5 * jax.random.normal(jax.random.key(0), logits.shape)
    assert expected(bumped) > entropy + 1e-3


class DenseDDPD:
    """A fixed random denoiser and planner on K = 3, L = 2 uniform states, float64."""

    K, L = 3, 2

    def __init__(self):
        rng = np.random.default_rng(4)
        n = self.K**self.L
        self.A, self.B = rng.normal(size=(2, n, self.L, self.K)) * 1.5
        self.C, self.D = rng.normal(size=(2, n, self.L)) * 1.5
        self.states = np.array(list(itertools.product(range(self.K), repeat=self.L)))
        self.w = self.K ** np.arange(self.L - 1, -1, -1)

    def den(self, x, t):
        i = (x * jnp.asarray(self.w)).sum(-1)
        lg = (
            jnp.asarray(self.A, jnp.float32)[i]
            + t[:, None, None] * jnp.asarray(self.B, jnp.float32)[i]
        )
        return jax.nn.log_softmax(lg, -1)

    def planner(self, x, t):
        i = (x * jnp.asarray(self.w)).sum(-1)
        return (
            jnp.asarray(self.C, jnp.float32)[i] + t[:, None] * jnp.asarray(self.D, jnp.float32)[i]
        )

    def law(self, a, t, s, last):
        """The DDPD step law from state index a: [L, K], from the definition."""
        x = self.states[a]
        lg = self.A[a] + t * self.B[a]
        p = np.exp(lg - lg.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        noise = 1.0 / (1.0 + np.exp(-(self.C[a] + t * self.D[a])))
        alpha = lambda r: 1.0 - (1.0 - EPS) * r  # noqa: E731
        u = 1.0 if last else (alpha(s) - alpha(t)) / (1.0 - alpha(t))
        out = np.zeros((self.L, self.K))
        for i in range(self.L):
            for y in range(self.K):
                if y == x[i]:
                    out[i, y] = 1.0 - u * noise[i]
                else:
                    out[i, y] = u * noise[i] * p[i, y] / (1.0 - p[i, x[i]])
        return out


@pytest.mark.parametrize("t, s, last", [(0.7, 0.55, False), (1.0, 0.8, False), (0.3, 0.0, True)])
def test_ddpd_one_step_law(t, s, last):
    ref = DenseDDPD()
    process = dd.processes.Uniform(vocab_size=ref.K)
    n = len(ref.states)
    step = dd.samplers.DDPD(planner=ref.planner)
    ctx = driver.context(process, ref.den, (n, ref.L), 4)
    states = jnp.asarray(ref.states, jnp.int32)
    tv_, sv = jnp.full((n,), t, jnp.float32), jnp.full((n,), s, jnp.float32)
    got = np.asarray(step.transition_matrix(ctx, states, tv_, sv, last))
    want = np.zeros((n, n))
    for a in range(n):
        law = ref.law(a, t, s, last)
        for b, y in enumerate(ref.states):
            want[a, b] = np.prod([law[i, y[i]] for i in range(ref.L)])
    np.testing.assert_allclose(want.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_ddpd_reaches_the_target_as_steps_grow():
    """Exact laws (no Monte Carlo): TV to the data law falls with steps (first order),
    below 0.01 at 64 steps; a sampled run follows its exact law."""
    target = random_target(jax.random.key(0), 3, 3)
    process = dd.processes.Uniform(vocab_size=3)
    tvs = {steps: tv(ddpd_law(target, process, steps), target.probs) for steps in (4, 16, 64)}
    assert tvs[4] > tvs[16] > tvs[64], tvs
    assert tvs[64] <= 0.01, tvs
    assert tvs[16] / tvs[64] > 2.5, tvs  # about first order
    n = 12_000
    law16 = ddpd_law(target, process, 16)
    x = jitted(
        dd.samplers.ddpd, target.denoiser(process), exact_planner(target, process), process,
        (n, 3), steps=16,
    )  # fmt: skip
    assert total_variation(x, law16, 3) <= tv_floor(law16, n) + 0.008


def test_ddpd_bad_input():
    ref = DenseDDPD()
    process = dd.processes.Uniform(vocab_size=ref.K)
    with pytest.raises(ValueError, match="planner"):
        dd.samplers.ddpd(jax.random.key(0), ref.den, lambda x, t: t, process, (4, ref.L), steps=2)
    with pytest.raises(TypeError, match="ddpd"):
        dd.samplers.ddpd(
            jax.random.key(0),
            ref.den,
            ref.planner,
            dd.processes.Masking(ref.K),
            (4, ref.L),
            steps=2,
        )
    with pytest.raises(ValueError, match="planner_logits"):
        dd.losses.ddpd_planner(
            jnp.zeros((4, 3)), jnp.zeros((4, 2), jnp.int32), jnp.zeros((4, 2), jnp.int32)
        )


# --------------------------------------------------------------------------
# pc_sampler
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def masked_target():
    target = random_target(jax.random.key(0), 3, 3)
    process = dd.processes.Masking(vocab_size=3)
    return target, process, target.denoiser(process)


def test_pc_sampler_large_decay_decodes_left_to_right_exactly(masked_target):
    """decay -> inf, one token per step: position j is decoded at step j, from
    p(x_j | x_<j), so the law is the target's (the chain rule)."""
    target, process, den = masked_target
    n = 15_000
    run = jax.jit(
        lambda k: dd.samplers.pc_sampler(k, den, process, (n, 3), steps=3, decay=50.0,
                                         return_trajectory=True),
        compiler_options=FAST,
    )  # fmt: skip
    x, traj = run(jax.random.key(0))
    traj = np.asarray(traj)
    for j in range(3):
        assert np.all(traj[j, :, : j + 1] < 3) and np.all(traj[j, :, j + 1 :] == 3)
    assert total_variation(x, target) <= tv_floor(target, n) + 0.01


def test_pc_sampler_without_decay_or_calibration_is_the_confidence_order(masked_target):
    """decay 0, no frequencies, one token per step: the law of MaskGIT's pure confidence
    order (its cosine count also decodes one per step at L = steps = 3), which is biased."""
    target, process, den = masked_target
    n = 15_000
    a = jitted(dd.samplers.pc_sampler, den, process, (n, 3), steps=3, decay=0.0)
    b = jitted(dd.samplers.confidence, den, process, (n, 3), steps=3, seed=1)
    q = dd.testing.empirical_probs(b, 3)
    assert total_variation(a, q, 3) <= 2.0 * tv_floor(q, n) + 0.005
    assert total_variation(a, target) > 0.1  # the confidence order is biased


@pytest.mark.parametrize("steps", [2, 3, 5])
def test_pc_sampler_tokens_per_step(steps, masked_target):
    """After step j, floor(n (1 - (j+1)/steps)) of n = 5 free positions stay masked (at least
    one decoded per step), and with two positions fixed n = 3."""
    _, process, _ = masked_target
    length = 5
    den = lambda x, t: jnp.zeros((*x.shape, 3))  # noqa: E731
    fixed = np.full((2, length), -1, np.int32)
    fixed[1, [0, 3]] = 1
    run = jax.jit(
        lambda k: dd.samplers.pc_sampler(
            k, den, process, (2, length), steps=steps, fixed=jnp.asarray(fixed),
            return_trajectory=True,
        ),
        compiler_options=FAST,
    )  # fmt: skip
    _, traj = run(jax.random.key(0))
    masked = (np.asarray(traj) == 3).sum(-1)  # [steps, 2]
    for row, n in enumerate((5, 3)):
        want, left = [], n
        for j in range(steps):
            left = max(min(left - 1, (n * (steps - 1 - j)) // steps), 0)
            want.append(left)
        np.testing.assert_array_equal(masked[:, row], want)


def test_pc_sampler_bad_input(masked_target):
    _, process, den = masked_target
    with pytest.raises(ValueError, match="token_frequencies"):
        dd.samplers.pc_sampler(
            jax.random.key(0), den, process, (2, 3), steps=2, token_frequencies=np.ones(4)
        )
    with pytest.raises(ValueError, match="decay"):
        dd.samplers.pc_sampler(jax.random.key(0), den, process, (2, 3), steps=2, decay=-1.0)
    with pytest.raises(TypeError):
        dd.samplers.pc_sampler(jax.random.key(0), den, dd.processes.Uniform(3), (2, 3), steps=2)
