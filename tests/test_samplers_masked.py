"""Tests of the masking samplers: first_hitting, remdm, confidence, and the masking path
of ancestral (its cache and its large-vocabulary draws).

Exact answers come from the oracle on a random target with K = 3, L = 3; law tests use
N = 50,000 samples. See test_samplers_common.py for the tests shared by all samplers.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_samplers_common import tabulate  # the oracle's denoiser as a lookup table

import ddjax as dd
from ddjax.random import TWO_STAGE_MIN_VOCAB, draw_tokens
from ddjax.testing import ExactTarget, random_target, total_variation, tv_floor

K, L, N = 3, 3, 50_000
MASKED = {
    "first_hitting": dd.samplers.first_hitting,
    "remdm": dd.samplers.remdm,
    "confidence": dd.samplers.confidence,
}


def run(fn, key, denoiser, process, shape, **options):
    """``fn`` under jit with the denoiser and process as arguments (not constants)."""
    return jax.jit(lambda k, d, p: fn(k, d, p, shape, **options))(key, denoiser, process)


@pytest.fixture(scope="module")
def target() -> ExactTarget:
    return random_target(jax.random.key(0), K, L)


@pytest.fixture(scope="module")
def masking() -> dd.processes.Masking:
    return dd.processes.Masking(vocab_size=K)


@pytest.fixture(scope="module")
def denoiser(target, masking):
    return tabulate(target, masking)


@pytest.fixture(scope="module")
def floor(target) -> float:
    return tv_floor(target, N)


@pytest.mark.parametrize("name", dd.samplers.MASKING_ONLY)
def test_masked_samplers_need_the_masking_process(name):
    """Every sampler listed in MASKING_ONLY refuses other processes."""
    process = dd.processes.Uniform(vocab_size=K)
    den = lambda x, t: jnp.zeros((*x.shape, K))
    with pytest.raises(TypeError, match="mask state"):
        dd.samplers.SAMPLERS[name](jax.random.key(0), den, process, (2, L), steps=4)


# --------------------------------------------------------------------------
# first_hitting
# --------------------------------------------------------------------------


def test_first_hitting_is_exact_with_one_call_per_token(target, masking, denoiser, floor):
    out, traj = run(
        dd.samplers.first_hitting,
        jax.random.key(1),
        denoiser,
        masking,
        (N, L),
        return_trajectory=True,
    )
    out, traj = np.asarray(out), np.asarray(traj)
    tv = total_variation(out, target)
    assert tv <= 1.6 * floor, (tv, floor)
    # L calls, each decoding exactly one masked token of every sequence
    assert traj.shape == (L, N, L)
    states = np.concatenate([np.full((1, N, L), K), traj])
    decoded = (states[:-1] == K) & (states[1:] != K)
    assert np.all(decoded.sum(-1) == 1)
    assert np.all((states[:-1] != K) <= (states[1:] == states[:-1]))  # decoded tokens stay


def test_first_hitting_times(masking):
    """The token drawn at each call reveals its time: p(token = 1) = t (linear alpha).

    With n masked tokens the j-th hitting time has mean (n - j + 1) / (n + 1).
    """
    process = dd.processes.Masking(vocab_size=2, schedule=dd.schedules.Linear())
    length, n = 4, 20_000

    def reveal(x, t):
        t = jnp.clip(t, 1e-6, 1 - 1e-6)[:, None, None]
        return jnp.log(jnp.concatenate([1 - t, t], -1)) * jnp.ones((*x.shape, 1))

    for per_call, expected in [(1, [0.8, 0.6, 0.4, 0.2]), (2, [0.8, 0.4])]:
        _, traj = run(
            dd.samplers.first_hitting,
            jax.random.key(2),
            jax.tree_util.Partial(reveal),
            process,
            (n, length),
            tokens_per_call=per_call,
            return_trajectory=True,
        )
        traj = np.asarray(traj)
        states = np.concatenate([np.full((1, n, length), 2), traj])
        for call, mean in enumerate(expected):
            new = (states[call] == 2) & (states[call + 1] != 2)
            assert np.all(new.sum(-1) == per_call)
            got = states[call + 1][new].mean()
            assert abs(got - mean) < 0.015, (per_call, call, got, mean)


def test_first_hitting_tokens_per_call(target, masking, denoiser, floor):
    out, traj = run(
        dd.samplers.first_hitting,
        jax.random.key(3),
        denoiser,
        masking,
        (N, L),
        tokens_per_call=L,
        return_trajectory=True,
    )
    assert traj.shape == (1, N, L)  # one call decodes everything: the product of marginals
    assert not np.any(np.asarray(out) == K)
    assert total_variation(out, target) >= floor + 0.1


def test_first_hitting_argmax_final_call(masking, denoiser):
    # with L = 1 the only call is the last one, so "argmax" makes it deterministic
    process = dd.processes.Masking(vocab_size=4)
    logits = jnp.log(jnp.array([0.1, 0.2, 0.4, 0.3]))
    den = jax.tree_util.Partial(lambda x, t: jnp.broadcast_to(logits, (*x.shape, 4)))
    out = run(
        dd.samplers.first_hitting, jax.random.key(4), den, process, (64, 1), final_step="argmax"
    )
    assert np.all(np.asarray(out) == 2)


def test_first_hitting_options(masking, denoiser):
    with pytest.raises(ValueError, match="tokens_per_call"):
        dd.samplers.first_hitting(jax.random.key(0), denoiser, masking, (2, L), tokens_per_call=0)
    with pytest.raises(ValueError, match="steps"):
        dd.samplers.first_hitting(jax.random.key(0), denoiser, masking, (2, L), steps=0)


# --------------------------------------------------------------------------
# remdm
# --------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["cap", "rescale", "conf"])
def test_remdm_without_remasking_is_ancestral(schedule, target, masking, denoiser, floor):
    steps = 3  # few steps: the law is far from the target, so the comparison means something
    anc = run(dd.samplers.ancestral, jax.random.key(5), denoiser, masking, (N, L), steps=steps)
    rem = run(
        dd.samplers.remdm,
        jax.random.key(6),
        denoiser,
        masking,
        (N, L),
        steps=steps,
        schedule=schedule,
        eta=0.0,
    )
    assert total_variation(anc, target) >= floor + 0.05
    p_anc = dd.testing.empirical_probs(anc, K)
    assert total_variation(rem, p_anc, K) <= 2.0 * floor + 0.003


@pytest.mark.parametrize(
    "schedule, eta, steps",
    [
        ("cap", None, 64),
        ("rescale", None, 64),
        ("loop", None, 64),
        pytest.param("rescale", 0.5, 256, marks=pytest.mark.slow),
        pytest.param("cap", 0.2, 1024, marks=pytest.mark.slow),
    ],
)
def test_remdm_with_remasking_converges(schedule, eta, steps, target, masking, denoiser, floor):
    out = run(
        dd.samplers.remdm,
        jax.random.key(7),
        denoiser,
        masking,
        (N, L),
        steps=steps,
        schedule=schedule,
        eta=eta,
    )
    tv = total_variation(out, target)
    assert tv <= floor + 0.01, (schedule, tv, floor)


@pytest.mark.parametrize("schedule", ["cap", "rescale", "conf", "loop"])
def test_remdm_remasks(schedule, masking, denoiser):
    _, traj = run(
        dd.samplers.remdm,
        jax.random.key(8),
        denoiser,
        masking,
        (2000, L),
        steps=32,
        schedule=schedule,
        eta={"cap": 0.1, "rescale": 0.3, "conf": 1.0, "loop": 0.1}[schedule],
        return_trajectory=True,
    )
    traj = np.asarray(traj)
    remasked = (traj[:-1] != K) & (traj[1:] == K)
    assert remasked.sum() > 0
    assert not np.any(traj[-1] == K)


def test_remdm_conf_improves_with_steps(target, masking, denoiser):
    # ReMDM-conf re-masks by confidence and decodes masked tokens as MDLM does, so it
    # does not keep the forward marginals; its error still falls as steps grow.
    tvs = [
        total_variation(
            run(
                dd.samplers.remdm,
                jax.random.key(9),
                denoiser,
                masking,
                (N, L),
                steps=s,
                schedule="conf",
            ),
            target,
        )
        for s in (4, 32)
    ]
    assert tvs[1] < 0.5 * tvs[0], tvs


@pytest.mark.parametrize(
    "options, name",
    [
        ({"schedule": "linear"}, "schedule"),
        ({"eta": -0.1}, "eta"),
        ({"schedule": "loop", "t_on": 0.05, "t_off": 0.5}, "t_on"),
        ({"schedule": "loop", "alpha_on": 1.5}, "alpha_on"),
        ({"draw_capacity": 0}, "draw_capacity"),
        ({"t_max": 1.5}, "t_max"),
    ],
)
def test_remdm_bad_options(options, name, masking, denoiser):
    with pytest.raises(ValueError, match=name):
        dd.samplers.remdm(jax.random.key(0), denoiser, masking, (2, L), steps=4, **options)


# --------------------------------------------------------------------------
# confidence (MaskGIT)
# --------------------------------------------------------------------------


def _logit_denoiser(vocab: int, length: int, seed: int = 0) -> jax.tree_util.Partial:
    logits = jax.nn.log_softmax(2.0 * jax.random.normal(jax.random.key(seed), (length, vocab)))
    return jax.tree_util.Partial(
        lambda lp, x, t: jnp.broadcast_to(lp, (*x.shape, lp.shape[-1])), logits
    )


@pytest.mark.parametrize("steps", [1, 2, 5, 20])
def test_confidence_fills_every_mask_on_a_cosine_count(steps):
    vocab, length, b = 5, 16, 8
    process = dd.processes.Masking(vocab_size=vocab)
    fixed = np.full((b, length), -1, np.int32)
    fixed[1, :5] = 2  # a prompt: 11 free positions in that row
    out, traj = run(
        dd.samplers.confidence,
        jax.random.key(10),
        _logit_denoiser(vocab, length),
        process,
        (b, length),
        steps=steps,
        fixed=jnp.asarray(fixed),
        return_trajectory=True,
    )
    out, traj = np.asarray(out), np.asarray(traj)
    assert not np.any(out == vocab)
    assert np.all(out[1, :5] == 2)
    for row, free in [(0, length), (1, length - 5)]:
        left = free
        for i in range(steps):
            want = math.floor(free * math.cos(math.pi / 2 * (i + 1) / steps) + 1e-9)
            left = max(0, min(left - 1, want)) if i < steps - 1 else 0
            assert (traj[i, row] == vocab).sum() == left, (steps, row, i)


def test_confidence_argmax_and_top_k_one_are_deterministic():
    vocab, length = 6, 12
    process = dd.processes.Masking(vocab_size=vocab)
    den = _logit_denoiser(vocab, length, seed=1)
    for options in ({"steps": 1, "final_step": "argmax"}, {"steps": 4, "top_k": 1}):
        a = run(dd.samplers.confidence, jax.random.key(11), den, process, (8, length), **options)
        b = run(dd.samplers.confidence, jax.random.key(12), den, process, (8, length), **options)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_confidence_law(target, masking, denoiser, floor):
    # one token per step (steps = L): uniformly random order with a huge noise_scale is
    # exact; the pure confidence order favours likely tokens and is biased
    random_order = run(
        dd.samplers.confidence,
        jax.random.key(13),
        denoiser,
        masking,
        (N, L),
        steps=L,
        noise_scale=1e6,
    )
    assert total_variation(random_order, target) <= floor + 0.01
    greedy = run(dd.samplers.confidence, jax.random.key(14), denoiser, masking, (N, L), steps=L)
    assert total_variation(greedy, target) >= floor + 0.05


def test_confidence_bad_options(masking, denoiser):
    with pytest.raises(ValueError, match="noise_scale"):
        dd.samplers.confidence(
            jax.random.key(0), denoiser, masking, (2, L), steps=4, noise_scale=-1.0
        )


# --------------------------------------------------------------------------
# ancestral on masking: cache, gathered draws, large vocabularies
# --------------------------------------------------------------------------


def test_ancestral_cache_same_samples_fewer_calls(masking, denoiser):
    steps, n = 16, 5000
    plain = run(dd.samplers.ancestral, jax.random.key(15), denoiser, masking, (n, L), steps=steps)
    cached = run(
        dd.samplers.ancestral,
        jax.random.key(15),
        denoiser,
        masking,
        (n, L),
        steps=steps,
        time_independent=True,
    )
    # the exact masking denoiser ignores t, so reusing it changes nothing: same samples
    # (and so the same law, whose convergence test_samplers_common checks)
    np.testing.assert_array_equal(np.asarray(plain), np.asarray(cached))
    steps = 32
    # calls: one at the start, then one after each step that changed the state
    one = lambda k: dd.samplers.ancestral(
        k, denoiser, masking, (1, L), steps=steps, time_independent=True, return_trajectory=True
    )[1]
    traj = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(16), 100)))
    changed = np.any(traj[:, 1:-1] != traj[:, :-2], axis=(-1, -2))  # steps 1..steps-2
    first = np.any(traj[:, 0] != K, axis=(-1, -2))
    calls = 1 + first + changed.sum(-1)
    assert np.all(calls <= L + 1) and calls.max() < steps


@pytest.mark.parametrize("name", ["ancestral", "remdm"])
def test_gathered_draws_keep_the_law(name, target, masking, denoiser, floor):
    # capacity 1 < L: one decoded token is drawn from its gathered row, more fall back to
    # the full draw, so both paths run
    fn = dd.samplers.SAMPLERS[name]
    out = run(fn, jax.random.key(17), denoiser, masking, (N, L), steps=64, draw_capacity=1)
    assert total_variation(out, target) <= floor + 0.01


def test_two_stage_draw_is_exact():
    vocab, n = 50, 100_000  # isqrt(50) = 7: seven groups of 7 and a tail group of 1
    logits = 1.5 * jax.random.normal(jax.random.key(18), (vocab,))
    logits = logits.at[3].set(dd.parameterizations.NEG_INF).at[49].set(-jnp.inf)
    probs = np.asarray(jax.nn.softmax(logits), np.float64)
    draws = draw_tokens(jax.random.key(19), jnp.broadcast_to(logits, (n, vocab)), two_stage=True)
    hist = np.bincount(np.asarray(draws), minlength=vocab) / n
    assert hist[3] == 0 and hist[49] == 0
    tv = 0.5 * np.abs(hist - probs).sum()
    assert tv <= 1.6 * tv_floor(probs, n), tv


def test_large_vocabulary_path():
    """K above TWO_STAGE_MIN_VOCAB: two-stage draws at gathered rows; per-position law."""
    vocab, length, b, steps = 2048, 96, 8, 8
    assert vocab >= TWO_STAGE_MIN_VOCAB
    process = dd.processes.Masking(vocab_size=vocab)
    # the same distribution at every position: 8 likely tokens and a long tail (10%)
    logits = jnp.full((vocab,), -jnp.inf).at[:8].set(jnp.log(0.9 / 8))
    logits = logits.at[8:].set(jnp.log(0.1 / (vocab - 8)))
    den = jax.tree_util.Partial(
        lambda lp, x, t: jnp.broadcast_to(lp, (*x.shape, lp.shape[-1])), logits
    )
    bins = np.array([0.9 / 8] * 8 + [0.1])
    for name in ("ancestral", "remdm"):  # the gathered draw (a lax.cond with its fallback)
        fn = lambda k, name=name: dd.samplers.SAMPLERS[name](
            k, den, process, (b, length), steps=steps
        )
        assert "cond" in str(jax.make_jaxpr(fn)(jax.random.key(0))), name
    for name, options in [
        ("ancestral", {"steps": steps}),  # remdm shares its gathered draw
        ("first_hitting", {"tokens_per_call": length // steps}),
        ("confidence", {"steps": steps, "noise_scale": 1e6}),
    ]:
        out = np.asarray(
            run(
                dd.samplers.SAMPLERS[name], jax.random.key(20), den, process, (b, length), **options
            )
        )
        assert out.min() >= 0 and out.max() < vocab, name
        hist = np.bincount(np.minimum(out.ravel(), 8), minlength=9) / out.size
        tv = 0.5 * np.abs(hist - bins).sum()
        assert tv <= 3.0 * tv_floor(bins, out.size), (name, tv)
