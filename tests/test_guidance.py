"""Guidance against an enumerated joint law over (class, sequence)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ddjax as dd
from ddjax import guidance, testing
from ddjax.samplers import ancestral

N = 40_000
CLASS = 1


@pytest.fixture(scope="module")
def joint() -> testing.JointTarget:
    log_p = 1.5 * jax.random.normal(jax.random.key(0), (2, 3, 3, 3))
    return testing.JointTarget(np.asarray(log_p))


def _sample(denoiser, process, key=3, steps=48):
    return jax.jit(lambda k: ancestral(k, denoiser, process, (N, 3), steps=steps))(
        jax.random.key(key)
    )


def _tolerance(target):
    # Ancestral error at 64 steps is ~0.003 on these targets; floor ~0.008.
    return testing.tv_floor(target, N) + 0.01


def test_targets_differ(joint):
    # Otherwise every check below would pass trivially.
    cond, marg = joint.conditional(CLASS), joint.marginal()
    assert 0.5 * np.abs(cond.probs - marg.probs).sum() > 0.2


@pytest.mark.parametrize("gamma, which", [(1.0, "cond"), (0.0, "marg")])
def test_cfg_masking_endpoints(joint, gamma, which):
    proc = dd.processes.Masking(3)
    cond, marg = joint.conditional(CLASS), joint.marginal()
    den = guidance.cfg(cond.denoiser(proc), marg.denoiser(proc), gamma)
    x = _sample(den, proc)
    target = cond if which == "cond" else marg
    assert testing.total_variation(x, target) < _tolerance(target)


def test_cfg_uniform_posterior_mode_draws_conditional(joint):
    proc = dd.processes.Uniform(3)
    cond, marg = joint.conditional(CLASS), joint.marginal()
    den = guidance.cfg(cond.denoiser(proc), marg.denoiser(proc), 1.0, mode="posterior")
    x = _sample(den, proc)
    assert testing.total_variation(x, cond) < _tolerance(cond)


def test_cfg_posterior_mode_mixes_posteriors(joint):
    proc = dd.processes.Uniform(3)
    cond, marg = joint.conditional(CLASS), joint.marginal()
    den = guidance.cfg(cond.denoiser(proc), marg.denoiser(proc), 2.0, mode="posterior")
    x_t = jnp.array([[0, 1, 2], [2, 2, 0]])
    s, t = jnp.array([0.3, 0.3]), jnp.array([0.6, 0.6])
    got = den.posterior_probs(proc, x_t, s, t)
    pc = proc.posterior_probs(x_t, jnp.exp(cond.denoiser(proc)(x_t, t)), s, t)
    pu = proc.posterior_probs(x_t, jnp.exp(marg.denoiser(proc)(x_t, t)), s, t)
    want = pc**2 / pu
    want = want / want.sum(-1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # 45 s each on 2 cores; the denoiser-level identity below stays default
@pytest.mark.parametrize("gamma, which", [(1.0, "cond"), (0.0, "marg")])
def test_exact_classifier_guidance_endpoints(joint, gamma, which):
    proc = dd.processes.Masking(3)
    cond, marg = joint.conditional(CLASS), joint.marginal()
    den = guidance.classifier(
        marg.denoiser(proc), joint.log_classifier(proc, CLASS), gamma, exact=True, chunk=4
    )
    x = _sample(den, proc)
    target = cond if which == "cond" else marg
    assert testing.total_variation(x, target) < _tolerance(target)


def test_exact_classifier_equals_conditional_denoiser(joint):
    # With the exact time-t classifier, gamma = 1 gives p(x0_i | x_t, c) exactly.
    proc = dd.processes.Masking(3)
    cond, marg = joint.conditional(CLASS), joint.marginal()
    den = guidance.classifier(
        marg.denoiser(proc), joint.log_classifier(proc, CLASS), 1.0, exact=True
    )
    x_t = jnp.array([[3, 3, 3], [0, 3, 3], [3, 2, 3], [1, 3, 0]])
    t = jnp.full((4,), 0.7)
    masked = (x_t == 3)[..., None]
    got = jnp.where(masked, jnp.exp(den(x_t, t)), 0.0)
    want = jnp.where(masked, jnp.exp(cond.denoiser(proc)(x_t, t)), 0.0)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_taylor_equals_exact_for_affine_classifier():
    # For log p(c | x) affine in the one-hot input, the first-order form is exact.
    proc = dd.processes.Masking(4)
    weights = jax.random.normal(jax.random.key(1), (3, 5))

    def log_clf(x, t):
        onehot = x if x.ndim == 3 else jax.nn.one_hot(x, 5)
        return jnp.einsum("bln,ln->b", onehot, weights) + 0.0 * t

    base = dd.testing.random_target(jax.random.key(2), 4, 3).denoiser(proc)
    x_t = jnp.array([[4, 4, 4], [0, 4, 2], [4, 1, 4]])
    t = jnp.full((3,), 0.5)
    exact = guidance.classifier(base, log_clf, 1.7, exact=True, chunk=5)(x_t, t)
    taylor = guidance.classifier(base, log_clf, 1.7, process=proc)(x_t, t)
    np.testing.assert_allclose(jnp.exp(exact), jnp.exp(taylor), atol=1e-5)


def test_taylor_guidance_moves_towards_class(joint):
    proc = dd.processes.Masking(3)
    cond, marg = joint.conditional(CLASS), joint.marginal()
    den = guidance.classifier(
        marg.denoiser(proc), joint.log_classifier(proc, CLASS), 1.0, process=proc
    )
    x = _sample(den, proc)
    unguided = 0.5 * np.abs(cond.probs - marg.probs).sum()
    assert testing.total_variation(x, cond) < 0.75 * unguided
    # and the class probability of the samples rises
    p_class = joint.class_probs(np.asarray(x))[:, CLASS].mean()
    p_class_marg = (marg.probs * joint.class_probs(np.asarray(marg.sequences))[:, CLASS]).sum()
    assert p_class > p_class_marg + 0.05


def test_classifier_needs_process_for_taylor(joint):
    with pytest.raises(ValueError, match="process"):
        guidance.classifier(lambda x, t: x, lambda x, t: t, 1.0)


def test_cfg_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        guidance.cfg(lambda x, t: x, lambda x, t: x, 1.0, mode="logits")


def _guided_step_matrix(proc, cond, marg, gamma, temp, t, s, states):
    """Dense T[a, b] of one guided-posterior step from t to s over ``states`` [S, L]: the
    geometric mixture of the cond / marg posteriors of the tempered x0 laws, per position."""
    n = states.shape[0]
    tv, sv = jnp.full((n,), t), jnp.full((n,), s)

    def post(target):
        x0 = jax.nn.softmax(target.denoiser(proc)(states, tv) / temp, axis=-1)
        return np.asarray(proc.posterior_probs(states, x0, sv, tv), np.float64)

    mix = post(cond) ** gamma * post(marg) ** (1.0 - gamma)
    mix /= mix.sum(-1, keepdims=True)  # [S, L, N]
    pos = np.arange(states.shape[1])[None, None, :]
    return np.prod(mix[:, None][np.arange(n)[:, None, None], 0, pos, np.asarray(states)[None]], -1)


def test_wrapped_posterior_mode_keeps_the_guided_reverse_step(joint):
    """temperature(cfg(..., mode="posterior")) and cfg(mode="posterior") with the
    temperature option both keep Schiff et al.'s reverse step, with the temperature on
    each x0 law: the sampled two-step law is the dense product of the guided steps, which
    differs from the x0-mixing fallback that a wrapped denoiser used to get silently."""
    proc = dd.processes.Uniform(3)
    cond, marg = joint.conditional(CLASS), joint.marginal()
    gamma, temp = 4.0, 0.7
    guided = guidance.cfg(cond.denoiser(proc), marg.denoiser(proc), gamma, mode="posterior")
    x0_mode = guidance.cfg(cond.denoiser(proc), marg.denoiser(proc), gamma)
    states = cond.sequences
    law = np.full(len(states), 1.0 / len(states))  # the uniform prior
    for t, s in ((1.0, 0.5), (0.5, 0.0)):
        law = law @ _guided_step_matrix(proc, cond, marg, gamma, temp, t, s, states)
    floor = testing.tv_floor(law, N) + 0.01

    def tv(denoiser, **options):
        run = jax.jit(lambda k: ancestral(k, denoiser, proc, (N, 3), steps=2, **options))
        return testing.total_variation(run(jax.random.key(5)), law, vocab_size=3)

    assert tv(dd.samplers.temperature(guided, temp)) < floor
    assert tv(guided, temperature=temp) < floor
    assert tv(dd.samplers.temperature(x0_mode, temp)) > 3 * floor  # the mode matters here


@pytest.mark.parametrize("wrap", [False, True])
def test_samplers_that_cannot_use_the_own_reverse_step_refuse_it(joint, wrap):
    """A denoiser's own reverse step is a declared capability: every sampler but the one
    that uses it (ancestral) raises TypeError, also through transforms."""
    proc = dd.processes.Uniform(3)
    cond, marg = joint.conditional(CLASS), joint.marginal()
    den = guidance.cfg(cond.denoiser(proc), marg.denoiser(proc), 2.0, mode="posterior")
    if wrap:
        den = dd.samplers.top_k(dd.samplers.temperature(den, 0.8), 2)
    key = jax.random.key(0)
    for name in ("euler", "tau_leaping", "tweedie"):
        with pytest.raises(TypeError, match=f"{name} cannot use the denoiser's own reverse"):
            dd.samplers.SAMPLERS[name](key, den, proc, (2, 3), steps=2)
    with pytest.raises(TypeError, match="smc cannot use the denoiser's own reverse"):
        potential = lambda x, t: jnp.zeros(x.shape[:1])  # noqa: E731
        dd.samplers.smc(key, den, proc, (2, 3), steps=2, log_potential=potential, num_particles=2)
    assert ancestral(key, den, proc, (2, 3), steps=2).shape == (2, 3)
