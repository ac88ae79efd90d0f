"""Block diffusion, the KV caches, EOS stopping and threshold decoding, against exact answers.

The block sampler runs on the oracle's exact block-conditional denoiser
(``ExactTarget.block_denoiser``) of small enumerable targets (K = 3, L = 4: 81
sequences); its draws are compared with the target (or the exact law a coarse sampler
has, computed here in NumPy from the target's probabilities) within the Monte Carlo
floor ``tv_floor``. The caches are compared with the uncached passes on random-init
networks whose parameters are all perturbed (at init the readout is zero and every
logit 0, which would hide any error).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import ddjax as dd

K, L = 3, 4
N = 20_000
FAST = {"xla_backend_optimization_level": 0}
MARGIN = 1.3  # an exact sampler's TV stays below MARGIN * tv_floor


@pytest.fixture(scope="module")
def setup():
    target = dd.testing.random_target(jax.random.PRNGKey(0), K, L, temperature=0.5)
    process = dd.processes.Masking(K, dd.schedules.LogLinear())
    return target, process


def _tabulated(target, process, block_size):
    """The oracle's block denoiser evaluated once per call on all (K + 1)**L states, then
    gathered (exact: every call of the sampler shares one time and one block)."""
    exact = target.block_denoiser(process, block_size)
    states = dd.testing.exact_law.all_states(K + 1, L)
    place = (K + 1) ** jnp.arange(L - 1, -1, -1)

    def fn(x, t, block):
        table = exact(states, jnp.broadcast_to(t[0], (states.shape[0],)), block)
        return table[(x * place).sum(-1)]

    return fn


def _draw(target, process, block_size, n=N, seed=1, **options):
    den = _tabulated(target, process, block_size)

    def run(key):
        return dd.samplers.block_diffusion(
            key, den, process, (n, L), block_size=block_size, **options
        )

    return np.asarray(jax.jit(run, compiler_options=FAST)(jax.random.PRNGKey(seed)))


def _block_marginals_law(target, block_size):
    """The law of drawing each block's positions independently from their marginals
    given the clean earlier blocks (block diffusion with one ancestral step per block):
    float64[K**L], from the target's probabilities alone."""
    p = target.probs.reshape([K] * L)
    out = np.ones([K] * L)
    for start in range(0, L, block_size):
        prefix = np.asarray(p.sum(axis=tuple(range(start, L))))  # p(x_<start): [K] * start
        for i in range(start, start + block_size):
            joint = p.sum(axis=tuple(j for j in range(start, L) if j != i))  # [K] * start + [K]
            cond = joint / np.expand_dims(prefix, -1)
            out = out * cond.reshape([K if j < start or j == i else 1 for j in range(L)])
    return out.reshape(-1)


def test_block_size_one_is_exact_at_one_step_per_block(setup):
    """Block size 1 is autoregressive: one ancestral step per block draws each token
    from its exact conditional, so the law is the target's."""
    target, process = setup
    x = _draw(target, process, 1, steps=1)
    tv = dd.testing.total_variation(x, target)
    assert tv < MARGIN * dd.testing.tv_floor(target, N), tv


def test_block_diffusion_reaches_the_target_as_steps_grow(setup):
    """Block size 2: one ancestral step per block draws the block's two positions
    independently from their marginals (that exact law, far from the target); many steps
    reach the target; first_hitting inside each block is exact at any step count."""
    target, process = setup
    floor = dd.testing.tv_floor(target, N)
    coarse = _draw(target, process, 2, steps=1)
    want = _block_marginals_law(target, 2)
    np.testing.assert_allclose(want.sum(), 1.0, atol=1e-12)
    assert dd.testing.total_variation(coarse, want, K) < MARGIN * floor
    assert dd.testing.total_variation(coarse, target) > 3 * floor
    fine = _draw(target, process, 2, steps=256, seed=2)
    assert dd.testing.total_variation(fine, target) < MARGIN * floor + 0.004
    exact = _draw(target, process, 2, steps=None, inner="first_hitting", seed=3)
    assert dd.testing.total_variation(exact, target) < MARGIN * floor


def test_prompt_blocks_are_copied_and_the_rest_follows_the_conditional(setup):
    """A prefix prompt of 3 tokens with block size 2: block 0 is copied (no calls), block
    1 is half fixed; the draws follow p(x | prompt) exactly (first_hitting)."""
    target, process = setup
    prompt = np.array([[2, 0, 1]])
    den = target.block_denoiser(process, 2)

    def run(key):
        return dd.samplers.block_diffusion(
            key, den, process, (N, L), block_size=2, steps=None, inner="first_hitting",
            prompt=jnp.asarray(np.tile(prompt, (N, 1))), return_calls=True,
        )  # fmt: skip

    x, calls = jax.jit(run, compiler_options=FAST)(jax.random.PRNGKey(4))
    x = np.asarray(x)
    assert (x[:, :3] == prompt).all()
    assert int(calls) == 2  # block 0 copied; block 1: first_hitting's 2 planned calls
    want = target.conditional(np.array([2, 0, 1, -1]))
    tv = dd.testing.total_variation(x, want, K)
    assert tv < 0.01, tv  # 3 outcomes: the floor is ~0.002


# --------------------------------------------------------------------------- EOS


def _eos_denoiser(p_eos):
    """A block denoiser (K = 3, block size 2) with p(EOS = 0) = p_eos at every position."""
    row = jnp.log(jnp.array([p_eos, (1 - p_eos) / 2, (1 - p_eos) / 2]))

    def fn(x, t, block):
        return jnp.broadcast_to(row, (x.shape[0], 2, K))

    return fn


def test_eos_stops_pads_and_counts_lengths():
    process = dd.processes.Masking(K, dd.schedules.LogLinear())
    length, n = 8, 4000
    x, lengths, calls = dd.samplers.block_diffusion(
        jax.random.PRNGKey(0), _eos_denoiser(0.3), process, (n, length), block_size=2,
        steps=1, eos_id=0, pad_id=K, return_calls=True,
    )  # fmt: skip
    x, lengths = np.asarray(x), np.asarray(lengths)
    pos = np.arange(length)[None, :]
    has = (x[:, :length] == 0).any(-1)
    first = np.where(has, np.argmax(x == 0, -1) + 1, length)
    np.testing.assert_array_equal(lengths, first)  # up to and including the first EOS
    assert (x[pos >= lengths[:, None]] == K).all()  # pads after it
    assert not (x[pos < lengths[:, None] - 1] == 0).any()  # no EOS before it
    assert (x[pos < lengths[:, None]] != K).all()  # no pad before it
    # every position is EOS with probability 0.3, independently: P(length = l) exact
    q = 0.3
    want = [(1 - q) ** (l - 1) * q for l in range(1, length)] + [(1 - q) ** (length - 1)]
    emp = np.bincount(lengths, minlength=length + 1)[1:] / n
    np.testing.assert_allclose(emp, want, atol=4 * np.sqrt(0.25 / n))
    assert int(calls) == 4  # some row ran to the last block (one call per block)

    # every position EOS: one block, then the loop stops
    x, lengths, calls = dd.samplers.block_diffusion(
        jax.random.PRNGKey(0), _eos_denoiser(1.0 - 1e-6), process, (3, length), block_size=2,
        steps=3, eos_id=0, return_calls=True,
    )  # fmt: skip
    assert int(calls) == 3 and (np.asarray(lengths) == 1).all()
    assert (np.asarray(x) == 0).all()  # the default pad is eos_id

    # an EOS in the prompt does not stop the row
    x, lengths = dd.samplers.block_diffusion(
        jax.random.PRNGKey(1), _eos_denoiser(1.0 - 1e-6), process, (3, length), block_size=2,
        steps=1, eos_id=0, pad_id=K, prompt=jnp.array([[0, 1, 2]] * 3),
    )  # fmt: skip
    assert (np.asarray(lengths) == 4).all()
    assert (np.asarray(x)[:, :4] == [0, 1, 2, 0]).all() and (np.asarray(x)[:, 4:] == K).all()


def test_block_sampler_errors(setup):
    target, process = setup
    den = target.block_denoiser(process, 2)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="block_size=3 must divide the sequence length L=4"):
        dd.samplers.block_diffusion(key, den, process, (2, L), block_size=3, steps=2)
    with pytest.raises(ValueError, match="prompt has 5 positions, more than the maximum length 4"):
        dd.samplers.block_diffusion(
            key, den, process, (2, L), block_size=2, steps=2, prompt=jnp.zeros((2, 5), int)
        )
    with pytest.raises(ValueError, match="unknown inner sampler 'ancestrl'; known: "):
        dd.samplers.block_diffusion(
            key, den, process, (2, L), block_size=2, steps=2, inner="ancestrl"
        )
    with pytest.raises(
        TypeError, match=r"unknown options \['etaa'\]; valid inner options: .*'eta'"
    ):
        dd.samplers.block_diffusion(
            key, den, process, (2, L), block_size=2, steps=2, inner="remdm", etaa=0.1
        )
    uniform = dd.processes.Uniform(K, dd.schedules.LogLinear())
    with pytest.raises(TypeError, match="block_diffusion needs a process with a mask state"):
        dd.samplers.block_diffusion(key, den, uniform, (2, L), block_size=2, steps=2)
    with pytest.raises(ValueError, match="eos_id must be a data token id in 0..2"):
        dd.samplers.block_diffusion(key, den, process, (2, L), block_size=2, steps=2, eos_id=3)


# --------------------------------------------------------------------------- threshold


def _pattern_denoiser(length, seed=0):
    """log p(x0_i | x) = table[mask pattern of x][i]: depends on which positions are
    masked only, so threshold decoding's path of masked sets is deterministic."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.3, 4.0, size=(2**length, length, 1))
    logits = scale * rng.normal(size=(2**length, length, K))
    table = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    weights = jnp.asarray(2 ** np.arange(length), jnp.int32)

    def fn(x, t):
        return jnp.asarray(table, jnp.float32)[((x == K) * weights).sum(-1)]

    return fn, np.exp(table)


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.95])
def test_threshold_decoding_unmasks_every_confident_position(threshold):
    """Each call decodes exactly the masked positions whose top probability exceeds the
    threshold, plus the most confident one; the number of calls is that path's length."""
    length = 6
    process = dd.processes.Masking(K, dd.schedules.LogLinear())
    den, probs = _pattern_denoiser(length)
    # the expected path, from the table
    masked = np.ones(length, bool)
    path = []
    while masked.any():
        conf = probs[int((masked * 2 ** np.arange(length)).sum())].max(-1)
        decode = masked & (conf > threshold)
        decode[np.flatnonzero(masked)[np.argmax(conf[masked])]] = True
        path.append(decode)
        masked = masked & ~decode
    ctx = dd.samplers.driver.context(process, den, (8, length), 64)
    step = dd.samplers.Confidence(threshold=threshold)
    x = jnp.full((8, length), K, jnp.int32)
    zero, grid = jnp.zeros((8,), jnp.float32), jnp.zeros((65,), jnp.float32)
    for i, want in enumerate(path):
        at = dd.samplers.driver.StepInfo(jnp.int32(i), zero, zero, False, grid)
        new, _ = step.step(jax.random.PRNGKey(i), ctx, x, None, at)
        got = (np.asarray(new) != K) & (np.asarray(x) == K)
        np.testing.assert_array_equal(got, np.broadcast_to(want, got.shape))
        x = new
    out, calls = dd.samplers.count_calls(
        dd.samplers.confidence, jax.random.PRNGKey(0), den, process, (8, length), steps=64,
        threshold=threshold,
    )  # fmt: skip
    assert int(calls) == len(path) and not (np.asarray(out) == K).any()
    # the cap: steps=2 with nothing above the threshold, the second call fills all
    out, calls = dd.samplers.count_calls(
        dd.samplers.confidence, jax.random.PRNGKey(0), den, process, (8, length), steps=2,
        threshold=1.0,
    )  # fmt: skip
    assert int(calls) == 2 and not (np.asarray(out) == K).any()


def test_threshold_decoded_tokens_follow_the_denoiser():
    """The tokens decoded in one threshold call are draws from p_i (threshold 0: all)."""
    length, n = 2, 40_000
    process = dd.processes.Masking(K, dd.schedules.LogLinear())
    den, probs = _pattern_denoiser(length, seed=1)
    out = dd.samplers.confidence(
        jax.random.PRNGKey(0), den, process, (n, length), steps=4, threshold=0.0
    )
    emp = dd.testing.empirical_probs(out, K)
    want = np.einsum("i,j->ij", probs[3][0], probs[3][1]).reshape(-1)
    assert dd.testing.tv(emp, want) < 3 * dd.testing.tv_floor(want, n)


# --------------------------------------------------------------------------- networks


def _perturbed(model, seed=0, scale=0.5):
    graphdef, params = nnx.split(model, nnx.Param)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [scale * jax.random.normal(k, v.shape) for k, v in zip(keys, leaves, strict=True)]
    return nnx.merge(graphdef, jax.tree.unflatten(tree, leaves))


@pytest.fixture(scope="module")
def dit():
    ctor = lambda rngs: dd.models.DiT(  # noqa: E731
        vocab_size=6, out_size=5, num_layers=2, width=16, num_heads=2, max_len=8,
        time_conditioning=False, block_size=2, rngs=rngs,
    )  # fmt: skip
    return _perturbed(dd.models.init(ctor))


def test_kv_cache_rows_equal_the_full_block_causal_pass(dit):
    x = jax.random.randint(jax.random.PRNGKey(0), (3, 8), 0, 6)
    full = dit(x, None)
    cache = dit.init_cache(3)
    for b in range(4):
        xb = x[:, 2 * b : 2 * b + 2]
        read, same = dit.cached_block(xb, None, cache, 2 * b, write=False)
        assert all(a is c for (a, _), (c, _) in zip(same, cache, strict=True))
        written, cache = dit.cached_block(xb, None, cache, 2 * b)
        np.testing.assert_allclose(read, full[:, 2 * b : 2 * b + 2], atol=1e-5)
        np.testing.assert_allclose(written, full[:, 2 * b : 2 * b + 2], atol=1e-5)


@pytest.mark.parametrize("inner, options", [("ancestral", {}), ("confidence", {"threshold": 0.4})])
def test_cached_and_uncached_block_sampling_give_the_same_tokens(dit, inner, options):
    process = dd.processes.Masking(5, dd.schedules.LogLinear())

    def run(params, key, cache):
        bd = dd.models.block_denoiser((nnx.graphdef(dit), params), process, cache=cache)
        return dd.samplers.block_diffusion(
            key, bd, process, (16, 8), block_size=2, steps=2, inner=inner, **options
        )

    params = nnx.state(dit, nnx.Param)
    fn = jax.jit(run, static_argnums=2, compiler_options=FAST)
    a = np.asarray(fn(params, jax.random.PRNGKey(3), True))
    b = np.asarray(fn(params, jax.random.PRNGKey(3), False))
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) > 2  # not a degenerate (constant) draw


def test_block_denoiser_errors(dit):
    process = dd.processes.Masking(5, dd.schedules.LogLinear())
    with pytest.raises(ValueError, match="model's block_size is 2, sampling with 4"):
        dd.models.block_denoiser(dit, process, block_size=4)
    dd.models.block_denoiser(dit, process, block_size=4, cache=False)  # fine uncached
    with pytest.raises(ValueError, match="time-conditioned"):
        dd.models.block_denoiser(dit, process, time_conditioning=True)


def test_cached_ar_gives_the_same_tokens_as_uncached_ar():
    ctor = lambda rngs: dd.models.CausalTransformer(  # noqa: E731
        vocab_size=5, num_layers=2, width=16, num_heads=2, max_len=8, rngs=rngs
    )
    model = _perturbed(dd.models.init(ctor), seed=1)
    graphdef, params = nnx.split(model, nnx.Param)

    def run(params, key, cache, prompt):
        return dd.samplers.autoregressive(
            key, (graphdef, params), (16, 8), cache=cache, prompt=prompt, temperature=0.9
        )

    fn = jax.jit(run, static_argnums=2, compiler_options=FAST)
    for prompt in (None, jnp.tile(jnp.array([[1, 4, 2]]), (16, 1))):
        a = np.asarray(fn(params, jax.random.PRNGKey(0), True, prompt))
        b = np.asarray(fn(params, jax.random.PRNGKey(0), False, prompt))
        np.testing.assert_array_equal(a, b)
        assert len(np.unique(a[:, 3:])) > 2
    assert (a[:, :3] == [1, 4, 2]).all()
    # the cached step's logits are the full causal pass's rows
    x = jax.random.randint(jax.random.PRNGKey(2), (2, 8), 0, 5)
    full, cache = model(x), model.init_cache(2)
    for i in range(8):
        row, cache = model.cached_step(x[:, max(i - 1, 0)], cache, i)
        np.testing.assert_allclose(row, full[:, i], atol=1e-5)
    with pytest.raises(ValueError, match="prompt has 9 tokens, more than the maximum length 8"):
        dd.samplers.autoregressive(
            jax.random.PRNGKey(0), model, (2, 8), prompt=jnp.zeros((2, 9), int)
        )


def test_ar_eos_stops_each_row_and_pads_after_it():
    """With eos_id, each row holds the draws of the run without it up to its first drawn
    EOS (an EOS in the prompt does not count), pad_id after, and its length; rows without
    an EOS are unchanged (length L)."""
    ctor = lambda rngs: dd.models.CausalTransformer(  # noqa: E731
        vocab_size=5, num_layers=1, width=16, num_heads=2, max_len=8, rngs=rngs
    )
    model = _perturbed(dd.models.init(ctor), seed=3)
    graphdef, params = nnx.split(model, nnx.Param)
    prompt = jnp.tile(jnp.array([[3, 1]]), (32, 1))  # starts with the EOS token

    def run(params, key, eos):
        return dd.samplers.autoregressive(
            key, (graphdef, params), (32, 8), prompt=prompt, eos_id=eos, pad_id=4 if eos else None
        )

    fn = jax.jit(run, static_argnums=2, compiler_options=FAST)
    free_run = np.asarray(fn(params, jax.random.PRNGKey(7), None))
    x, lengths = map(np.asarray, fn(params, jax.random.PRNGKey(7), 3))
    stopped = 0
    for row, got, n in zip(free_run, x, lengths):
        hits = np.flatnonzero(row[2:] == 3)
        want = 2 + hits[0] + 1 if len(hits) else 8
        stopped += len(hits) > 0
        assert n == want
        np.testing.assert_array_equal(got[:n], row[:n])
        assert (got[n:] == 4).all()
    assert 0 < stopped < 32  # both kinds of rows occur
    with pytest.raises(ValueError, match="eos_id must be a data token id in 0..4"):
        dd.samplers.autoregressive(jax.random.PRNGKey(0), model, (2, 8), eos_id=5)
    with pytest.raises(ValueError, match="pad_id needs eos_id"):
        dd.samplers.autoregressive(jax.random.PRNGKey(0), model, (2, 8), pad_id=1)
