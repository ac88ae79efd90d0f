"""Steering samplers (smc, svdd, edlm) against their exact targets, from the oracle.

Targets are enumerable (K = 3, L = 3 under masking, 27 sequences); rewards are a fixed
random table over the sequences. The exact tilted law, soft value (smc's exact twist,
svdd's exact value) and log p (edlm's log_joint) come from ``ddjax.testing.steering``;
the ancestral proposal's own exact law from ``ExactLaw``. With a finite step count the
proposal is not exact, so smc's large-particle limit is the tilt of the ancestral law
q(x) exp(r(x)) / Z_q (computed exactly here); its distance to p(x) exp(r(x)) / Z is
reported by the oracle table (experiments/tables/steering_oracle.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from test_samplers_common import tabulate

import ddjax as dd
from ddjax.testing import ExactLaw, random_target, steering, total_variation, tv, tv_floor

K, L = 3, 3
N = 2000  # output rows per MC law test
FAST = {"xla_backend_optimization_level": 0}  # compile time dominates at these sizes


def run(fn, denoiser, process, shape, key=0, **options):
    """``fn`` under jit (fast compile), the denoiser passed as an argument."""
    jitted = jax.jit(lambda k, d: fn(k, d, process, shape, **options), compiler_options=FAST)
    return jitted(jax.random.key(key), denoiser)


@pytest.fixture(scope="module")
def masking():
    return dd.processes.Masking(K)


@pytest.fixture(scope="module")
def target():
    return random_target(jax.random.key(0), K, L, coupling=2.0)


@pytest.fixture(scope="module")
def rewards(target):
    return 1.5 * np.random.default_rng(0).normal(size=target.num_sequences)


@pytest.fixture(scope="module")
def reward_fn(target, rewards):
    table = jnp.asarray(rewards, jnp.float32)
    return lambda x: table[target.index(x)]


@pytest.fixture(scope="module")
def denoiser(target, masking):
    return tabulate(target, masking)


def ancestral_law(target, process, steps):
    return ExactLaw("ancestral", process, target)(steps)


# --------------------------------------------------------------------------
# the oracle itself
# --------------------------------------------------------------------------


def test_soft_value_is_the_reward_at_zero_and_log_z_at_the_prior(target, masking, rewards):
    """v_0 = r; at the all-mask state v_1 = alpha log E_p[exp(r / alpha)] (brute force)."""
    for alpha in (1.0, 0.5):
        v = jax.jit(steering.soft_value(target, masking, rewards, alpha))
        got = np.asarray(v(target.sequences, jnp.zeros(target.num_sequences)))
        np.testing.assert_allclose(got, rewards, atol=1e-4)
        full = jnp.full((1, L), K)
        brute = alpha * np.log(np.sum(target.probs * np.exp(rewards / alpha)))
        np.testing.assert_allclose(float(v(full, jnp.ones(1))[0]), brute, atol=1e-4)
        assert steering.log_normalizer(target, rewards, alpha) == pytest.approx(brute / alpha)
    # a half-masked state: the conditional expectation by enumeration
    x = np.array([[1, K, K]])
    seqs = np.asarray(target.sequences)
    keep = seqs[:, 0] == 1
    p = target.probs * keep
    want = np.log(np.sum(p / p.sum() * np.exp(rewards)))
    v = jax.jit(steering.soft_value(target, masking, rewards))
    np.testing.assert_allclose(float(v(jnp.asarray(x), jnp.full(1, 0.5))[0]), want, atol=1e-4)


# --------------------------------------------------------------------------
# smc
# --------------------------------------------------------------------------


def smc_twists(target, masking, rewards, reward_fn):
    return {
        "exact": steering.soft_value(target, masking, rewards),
        "none": lambda x, t: jnp.where(t == 0, reward_fn(x), 0.0),
    }


@pytest.mark.parametrize("twist", ["exact", "none"])
def test_smc_reaches_the_tilted_law(target, masking, rewards, reward_fn, denoiser, twist):
    """32 particles: TV to the tilted proposal law near the MC floor; 1 particle: far off
    (it is the ancestral law).
    The log normaliser estimate is unbiased for Z_q = E_q[exp r] (mean of exp, within
    5 standard errors)."""
    steps = 8
    q = ancestral_law(target, masking, steps)
    want = steering.tilted_law(q, rewards)
    floor = tv_floor(want, N)
    g = smc_twists(target, masking, rewards, reward_fn)[twist]
    out = {}
    for particles in (1, 32):
        x, info = run(
            dd.samplers.smc, denoiser, masking, (N, L), key=particles, steps=steps,
            log_potential=g, num_particles=particles, return_info=True,
        )  # fmt: skip
        out[particles] = total_variation(x, want, K)
        if particles == 1:  # the weights do nothing: the ancestral law itself
            assert total_variation(x, q, K) <= 1.6 * tv_floor(q, N)
        if particles == 32:
            z = np.exp(np.asarray(info.log_normalizer, np.float64))
            z_q = np.exp(steering.log_normalizer(q, rewards))
            assert abs(z.mean() - z_q) <= 5 * z.std() / np.sqrt(N) + 1e-3, (z.mean(), z_q)
            ess = np.asarray(info.ess)
            assert ess.shape == (steps, N) and np.all((ess >= 1 - 1e-4) & (ess <= 32 + 1e-3))
            assert np.asarray(info.resampled).shape == (steps, N)
    assert out[32] <= 1.6 * floor + 0.005, (out, floor)
    assert out[1] >= 10 * floor, (out, floor)


def test_smc_common_options(target, masking, denoiser, reward_fn):
    """fixed holds tokens in every particle; the trajectory holds every particle; svdd and
    edlm run with fixed, t_max, final_step and top_k."""
    fixed = jnp.full((4, L), -1).at[:, 1].set(2)
    x, traj = run(
        dd.samplers.smc, denoiser, masking, (4, L), steps=3, num_particles=4,
        particle_batches=2,
        log_potential=lambda x, t: reward_fn(jnp.minimum(x, K - 1)), fixed=fixed,
        return_trajectory=True, temperature=0.7,
    )  # fmt: skip
    assert x.shape == (4, L) and traj.shape == (3, 16, L)
    assert np.all(np.asarray(x)[:, 1] == 2) and np.all(np.asarray(traj)[:, :, 1] == 2)
    assert np.all(np.asarray(x) < K)
    # svdd and edlm take the common options too
    value = lambda x, t: reward_fn(jnp.minimum(x, K - 1))
    for fn, options in (
        (dd.samplers.svdd, {"value_fn": value, "num_candidates": 3, "alpha": 1.0}),
        (dd.samplers.edlm, {"log_joint": reward_fn, "num_candidates": 3, "t_stop": 0.3}),
    ):
        x = run(fn, denoiser, masking, (4, L), steps=3, fixed=fixed, t_max=0.8,
                final_step="argmax", top_k=2, **options)  # fmt: skip
        assert np.all(np.asarray(x)[:, 1] == 2) and np.all(np.asarray(x) < K)


@pytest.mark.slow
def test_smc_many_particles_and_steps_reach_p_tilted(target, masking, rewards, denoiser):
    """64 particles, 32 steps, 8000 rows: TV to p(x) exp(r(x)) / Z itself near the floor
    (plus the proposal's remaining bias, exact from ExactLaw)."""
    steps, n = 32, 8000
    want = target.tilted(rewards)
    bias = tv(steering.tilted_law(ancestral_law(target, masking, steps), rewards), want.probs)
    x = run(dd.samplers.smc, denoiser, masking, (n, L), steps=steps, num_particles=64,
            log_potential=steering.soft_value(target, masking, rewards))  # fmt: skip
    assert total_variation(x, want) <= 1.5 * tv_floor(want, n) + bias


# --------------------------------------------------------------------------
# svdd
# --------------------------------------------------------------------------


def test_svdd_approaches_the_tilted_law_as_candidates_grow(target, masking, rewards, denoiser):
    alpha, steps = 0.5, 8
    want = target.tilted(rewards, alpha)
    v = steering.soft_value(target, masking, rewards, alpha)
    tvs = []
    for m in (1, 4, 32):
        x = run(dd.samplers.svdd, denoiser, masking, (N, L), key=m, steps=steps, value_fn=v,
                num_candidates=m, alpha=alpha)  # fmt: skip
        tvs.append(total_variation(x, want))
    floor = tv_floor(want, N)
    # the proposal's own bias at 8 steps (exact): what M -> infinity cannot remove
    bias = tv(
        steering.tilted_law(ancestral_law(target, masking, steps), rewards, alpha), want.probs
    )
    assert tvs[0] > 2 * tvs[1] > 4 * tvs[2] / 1.5, tvs
    assert tvs[2] <= 2 * floor + bias + 0.01, (tvs, floor, bias)


@pytest.mark.slow
def test_svdd_many_candidates_and_steps(target, masking, rewards, denoiser):
    alpha, steps, n = 0.5, 32, 8000
    want = target.tilted(rewards, alpha)
    v = steering.soft_value(target, masking, rewards, alpha)
    x = run(dd.samplers.svdd, denoiser, masking, (n, L), steps=steps, value_fn=v,
            num_candidates=64, alpha=alpha)  # fmt: skip
    assert total_variation(x, want) <= 2 * tv_floor(want, n) + 0.005


def test_svdd_value_shares_the_denoiser_calls(target, masking, reward_fn):
    """With svdd_value of the sampler's own denoiser: steps calls on B * M rows, one on B."""
    calls = []
    base = target.denoiser(masking)

    def den(x, t):
        calls.append(x.shape[0])
        return base(x, t)

    value = dd.samplers.svdd_value(den, reward_fn)
    x = jax.jit(
        lambda k: dd.samplers.svdd(k, den, masking, (3, L), steps=4, value_fn=value,
                                   num_candidates=5, alpha=1.0),
        compiler_options=FAST,
    )(jax.random.key(0))  # fmt: skip
    assert x.shape == (3, L) and np.all(np.asarray(x) < K)
    # traced once: init (B rows), the scan body and the last step (B * M rows each)
    assert calls == [3, 15, 15], calls
    # the cheap value is r of the argmax prediction
    xs = jnp.asarray([[0, K, K], [K, K, K]])
    t = jnp.full((2,), 0.5)
    pred = jnp.argmax(base(xs, t), -1)
    np.testing.assert_allclose(value(xs, t), reward_fn(pred))


# --------------------------------------------------------------------------
# edlm
# --------------------------------------------------------------------------


def test_edlm_two_steps_reach_a_dependent_target(masking):
    """A strongly dependent target: ancestral at 2 steps is far off (exact law), edlm with
    the exact log p and 256 candidates lands near the MC floor."""
    target = random_target(jax.random.key(3), K, L, temperature=0.35)
    anc = ExactLaw("ancestral", masking, target).tv(2)
    assert anc >= 0.25, anc
    x = run(dd.samplers.edlm, tabulate(target, masking), masking, (N, L), steps=2,
            log_joint=steering.log_joint(target), num_candidates=256)  # fmt: skip
    floor = tv_floor(target, N)
    assert total_variation(x, target) <= 1.6 * floor + 0.005, floor
    # t_stop = 1: no corrected step, the ancestral law
    x = run(dd.samplers.edlm, tabulate(target, masking), masking, (N, L), steps=2,
            log_joint=steering.log_joint(target), num_candidates=4, t_stop=1.0)  # fmt: skip
    want = ExactLaw("ancestral", masking, target)(2)
    assert total_variation(x, want, K) <= 1.6 * tv_floor(want, N)


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------


def bad_cases(reward_fn):
    two = lambda x, t: jnp.zeros((x.shape[0], 2))
    return [
        (dd.samplers.smc, {"log_potential": two, "num_particles": 2}, "log_potential must return"),
        (dd.samplers.smc, {"log_potential": reward_fn, "num_particles": 0}, "num_particles"),
        (dd.samplers.smc, {"log_potential": reward_fn, "num_particles": 2.0}, "num_particles"),
        (dd.samplers.smc,
         {"log_potential": reward_fn, "num_particles": 2, "ess_threshold": 1.5}, "ess_threshold"),
        (dd.samplers.smc,
         {"log_potential": reward_fn, "num_particles": 2, "ess_threshold": -0.1}, "ess_threshold"),
        (dd.samplers.smc, {"log_potential": 3.0, "num_particles": 2}, "log_potential must be"),
        (dd.samplers.smc,
         {"log_potential": reward_fn, "num_particles": 4, "particle_batches": 3},
         "particle_batches"),
        (dd.samplers.svdd, {"value_fn": two, "num_candidates": 2, "alpha": 1.0}, "value_fn must"),
        (dd.samplers.svdd, {"value_fn": two, "num_candidates": 0, "alpha": 1.0}, "num_candidates"),
        (dd.samplers.svdd, {"value_fn": two, "num_candidates": 2, "alpha": 0.0}, "alpha"),
        (dd.samplers.svdd, {"value_fn": two, "num_candidates": 2, "alpha": -1.0}, "alpha"),
        (dd.samplers.edlm, {"log_joint": lambda x: x.sum(), "num_candidates": 2}, "log_joint must"),
        (dd.samplers.edlm, {"log_joint": reward_fn, "num_candidates": 0}, "num_candidates"),
        (dd.samplers.edlm, {"log_joint": reward_fn, "num_candidates": 2, "t_stop": 2.0}, "t_stop"),
    ]  # fmt: skip


def test_bad_input_is_a_clear_error(masking, denoiser, reward_fn):
    for fn, options, match in bad_cases(reward_fn):
        with pytest.raises(ValueError, match=match):
            fn(jax.random.key(0), denoiser, masking, (2, L), steps=2, **options)
    with pytest.raises(TypeError, match="log_potential"):
        dd.samplers.smc(jax.random.key(0), denoiser, masking, (2, L), steps=2, num_particles=2)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        steering.soft_value(random_target(jax.random.key(0), K, L), masking, np.zeros(27), 0.0)


def test_non_finite_reward_is_named_in_debug_mode(masking, denoiser, reward_fn):
    """NaN / +inf: a checkify error naming the function (debug=True); -inf is allowed."""
    nan_at_zero = lambda x, t: jnp.where(t == 0, jnp.nan, 0.0)
    cases = [
        (dd.samplers.smc, {"log_potential": nan_at_zero, "num_particles": 2}, "log_potential"),
        (dd.samplers.svdd, {"value_fn": lambda x, t: jnp.full(x.shape[:1], jnp.inf),
                            "num_candidates": 2, "alpha": 1.0}, "value_fn"),
        (dd.samplers.edlm, {"log_joint": lambda x: jnp.full(x.shape[:1], jnp.nan),
                            "num_candidates": 2}, "log_joint"),
    ]  # fmt: skip
    for fn, options, name in cases:  # under jit the caller's checkify reports it
        err, _ = jax.jit(checkify.checkify(
            lambda k, fn=fn, options=options: fn(k, denoiser, masking, (2, L), steps=2,
                                                 debug=True, **options)
        ), compiler_options=FAST)(jax.random.key(0))  # fmt: skip
        assert f"{name} returned NaN or +inf" in str(err.get()), name
    # without debug: documented policy, NaN shows in the log normaliser
    _, info = run(dd.samplers.smc, denoiser, masking, (2, L), steps=2,
                  log_potential=nan_at_zero, num_particles=2, return_info=True)  # fmt: skip
    assert np.all(np.isnan(np.asarray(info.log_normalizer)))
    # -inf (a hard constraint) is fine: the forbidden sequences never come out
    allowed = lambda x, t: jnp.where((t == 0) & (x[:, 0] == 0), -jnp.inf, 0.0)
    x = run(dd.samplers.smc, denoiser, masking, (64, L), key=1, steps=4,
            log_potential=allowed, num_particles=8)  # fmt: skip
    assert np.all(np.asarray(x)[:, 0] != 0)


def test_ess_and_systematic_resampling_are_their_definitions():
    """ESS = (sum w)^2 / sum w^2 (a system with every weight 0 counts as uniform: N);
    systematic resampling gives particle i floor or ceil of N w_i copies, N w_i on
    average over keys."""
    w = np.array([[1.0, 1.0, 2.0, 4.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    with np.errstate(divide="ignore"):
        log_w = jnp.asarray(np.log(w), jnp.float32)
    np.testing.assert_allclose(dd.samplers.weights.ess(log_w), [64 / 22, 1.0, 4.0], rtol=1e-6)
    keys = jax.random.split(jax.random.key(0), 4000)
    idx = np.asarray(jax.vmap(lambda k: dd.samplers.weights.systematic(k, log_w[:1]))(keys))
    counts = np.stack([(idx[:, 0] == i).sum(-1) for i in range(4)], -1)  # [keys, 4]
    want = 4 * w[0] / w[0].sum()  # 0.5, 0.5, 1, 2
    assert np.all((counts == np.floor(want)) | (counts == np.ceil(want)))
    np.testing.assert_allclose(counts.mean(0), want, atol=0.03)
