"""Tests for ddjax.models: shapes, dtypes, causality, zero init, conditioning, build.

Models are tiny, built with jitted initialisers and called through
jax.jit(split/apply) as training does; a few module-scoped models are shared so
that the file compiles only a handful of programs.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from ddjax import models

TINY = dict(num_layers=2, width=32, num_heads=2, max_len=16)


def _make(cls, **kwargs):
    """Builds a model with its initialisers jitted (eager NNX init is slow on the CPU)."""
    return models.init(lambda rngs: cls(**kwargs, rngs=rngs))


def _perturbed(params, seed=0, scale=0.3):
    """Adds noise to every parameter, so zero-initialised layers stop hiding dependencies."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noisy = [
        p + scale * jax.random.normal(k, p.shape, p.dtype)
        for p, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, noisy)


def _abstract(cls, **kwargs):
    """The model with abstract (shape-only) parameters: nothing is computed or compiled."""
    return nnx.eval_shape(lambda: cls(**kwargs, rngs=nnx.Rngs(0)))


def _out(model, *args, **kwargs):
    """Output shape and dtype of a (possibly abstract) model, by tracing only."""
    out = jax.eval_shape(lambda m: m(*args, **kwargs), model)
    return out.shape, out.dtype


class _Jitted:
    """A model called through jax.jit(split/apply); ``params`` default to the perturbed ones."""

    def __init__(self, model, scale=0.3):
        self.graphdef, self.init_params = models.split(model)
        self.params = _perturbed(self.init_params, scale=scale)
        self._fn = jax.jit(lambda p, *a, **k: models.apply(self.graphdef, p, *a, **k))

    def __call__(self, *args, params=None, **kwargs):
        return self._fn(self.params if params is None else params, *args, **kwargs)

    def shape(self, *args, **kwargs):
        """Output shape and dtype without compiling (jax.eval_shape)."""
        out = jax.eval_shape(lambda p: models.apply(self.graphdef, p, *args, **kwargs), self.params)
        return out.shape, out.dtype


def _tokens(shape, vocab, seed=0):
    return jax.random.randint(jax.random.key(seed), shape, 0, vocab, dtype=jnp.int32)


def _maxdiff(a, b):
    return float(jnp.max(jnp.abs(a - b)))


@pytest.fixture(scope="module")
def dit():
    """Time- and class-conditioned DiT with dropout (active only with a dropout_key)."""
    return _Jitted(_make(models.DiT, vocab_size=8, out_size=7, **TINY, num_classes=3, dropout=0.5))


@pytest.fixture(scope="module")
def ar():
    return _Jitted(_make(models.CausalTransformer, vocab_size=7, **TINY))


@pytest.fixture(scope="module")
def unet():
    return _Jitted(
        _make(models.UNet, vocab_size=18, out_size=17, base_channels=8, num_classes=10), scale=0.05
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(dtype=jnp.bfloat16),
        dict(num_classes=3),
        dict(time_conditioning=False),
        dict(time_conditioning=False, num_classes=3, dtype=jnp.bfloat16, dropout=0.1),
        dict(mlp_ratio=2, causal=True, remat=True),
    ],
)
def test_dit_shape_and_dtype(kwargs):
    model = _abstract(models.DiT, vocab_size=8, out_size=5, **TINY, **kwargs)
    x, t = _tokens((3, 12), 8), jnp.array([0.1, 0.5, 0.9])
    labels = jnp.array([0, 2, 3])
    has_t = kwargs.get("time_conditioning", True)
    has_y = kwargs.get("num_classes") is not None
    for call in [dict(), dict(labels=labels)] if has_y else [dict()]:
        assert _out(model, x, t if has_t else None, **call) == ((3, 12, 5), jnp.float32)
    assert _out(model, x, t, dropout_key=jax.random.key(0)) == ((3, 12, 5), jnp.float32)


def test_dit_values(dit):
    x, t, y = _tokens((3, 12), 8), jnp.array([0.1, 0.5, 0.9]), jnp.array([0, 2, 3])
    out = dit(x, t, y)
    assert out.shape == (3, 12, 7) and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))
    # bidirectional: the first position sees a change at the last one
    later = dit(x.at[:, 11].set((x[:, 11] + 1) % 8), t, y)
    assert _maxdiff(later[:, 0], out[:, 0]) > 1e-4
    # conditioned on time and on the label; labels=None is the null class id
    assert _maxdiff(dit(x, t + 0.2, y), out) > 1e-4
    assert _maxdiff(dit(x, t, jnp.array([1, 1, 1])), out) > 1e-4
    np.testing.assert_array_equal(dit(x, t), dit(x, t, jnp.array([3, 3, 3])))
    # dropout only with a key
    np.testing.assert_array_equal(dit(x, t, y), out)
    a = dit(x, t, y, dropout_key=jax.random.key(1))
    b = dit(x, t, y, dropout_key=jax.random.key(2))
    assert _maxdiff(a, b) > 1e-4 and _maxdiff(a, out) > 1e-4


def test_no_time_dit_ignores_t():
    model = _Jitted(_make(models.DiT, vocab_size=7, out_size=7, **TINY, time_conditioning=False))
    x, t = _tokens((2, 10), 7), jnp.array([0.3, 0.6])
    np.testing.assert_array_equal(model(x, t), model(x, t + 0.2))
    np.testing.assert_array_equal(model(x, t), model(x))
    assert _maxdiff(model(x), model(x, params=model.init_params)) > 0


def test_bf16_close_to_f32(dit):
    bf16 = _make(models.DiT, vocab_size=8, out_size=7, **TINY, num_classes=3, dtype=jnp.bfloat16)
    small = _perturbed(dit.init_params, scale=0.05)
    x, t = _tokens((2, 16), 8), jnp.array([0.3, 0.7])
    a = dit(x, t, params=small)
    b = _Jitted(bf16)(x, t, params=small)
    assert b.dtype == jnp.float32
    assert _maxdiff(a, b) < 0.1 * float(jnp.max(jnp.abs(a))) + 1e-3


def test_zero_init_logits(dit, ar, unet):
    x, t = _tokens((2, 8), 7), jnp.array([0.2, 0.8])
    assert bool(jnp.all(dit(x, t, jnp.array([0, 1]), params=dit.init_params) == 0))
    assert bool(jnp.all(ar(x, params=ar.init_params) == 0))
    assert bool(jnp.all(unet(_tokens((2, 8, 8), 18), t, params=unet.init_params) == 0))


def test_causal_logits_ignore_later_tokens(ar):
    x = _tokens((2, 12), 7)
    base = ar(x)
    assert base.shape == (2, 12, 7) and base.dtype == jnp.float32
    for j in (0, 5, 11):
        changed = ar(x.at[:, j].set((x[:, j] + 1) % 7))
        # logits at position i predict token i from tokens < i: positions <= j are unchanged
        np.testing.assert_array_equal(changed[:, : j + 1], base[:, : j + 1])
        if j + 1 < 12:
            assert _maxdiff(changed[:, j + 1 :], base[:, j + 1 :]) > 1e-4


def test_ar_log_likelihood(ar):
    x = _tokens((3, 8), 7)
    init_model = nnx.merge(ar.graphdef, ar.init_params)
    np.testing.assert_allclose(models.ar_log_likelihood(init_model, x), -8 * np.log(7), rtol=1e-5)
    model = nnx.merge(ar.graphdef, ar.params)
    logp = jax.nn.log_softmax(ar(x), -1)
    manual = jnp.take_along_axis(logp, x[..., None], -1)[..., 0].sum(-1)
    got = models.ar_log_likelihood(model, x)
    assert got.shape == (3,) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, manual, rtol=1e-5)
    np.testing.assert_allclose(models.ar_log_likelihood(model, x, batch_size=2), manual, rtol=1e-5)
    np.testing.assert_allclose(models.ar_log_likelihood(ar, x), manual, rtol=1e-5)  # any callable


def test_model_errors(dit):
    model = nnx.merge(dit.graphdef, dit.params)
    with pytest.raises(ValueError, match="pass t"):
        model(_tokens((1, 4), 8))
    with pytest.raises(ValueError, match="max_len"):
        model(_tokens((1, 17), 8), jnp.zeros(1))
    notime = models.DiT(
        vocab_size=5, out_size=5, num_layers=0, width=8, num_heads=2, max_len=4, rngs=nnx.Rngs(0)
    )
    with pytest.raises(ValueError, match="num_classes"):
        notime(_tokens((1, 4), 5), jnp.zeros(1), labels=jnp.zeros(1, jnp.int32))
    with pytest.raises(ValueError, match="num_heads"):
        models.DiT(
            vocab_size=5,
            out_size=5,
            num_layers=1,
            width=30,
            num_heads=4,
            max_len=4,
            rngs=nnx.Rngs(0),
        )


def test_training_step_through_split_apply():
    model = _make(models.DiT, vocab_size=6, out_size=5, **TINY, dropout=0.1, remat=True)
    graphdef, params = models.split(model)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    assert models.num_params(model) == models.num_params(params) > 0
    x, t = _tokens((4, 8), 5), jnp.full((4,), 0.5)

    def loss_fn(p, key):
        logits = models.apply(graphdef, p, x, t, dropout_key=key)
        return optax.softmax_cross_entropy_with_integer_labels(logits, x).mean()

    opt = optax.adam(1e-2)

    @jax.jit
    def step(p, s, key):
        loss, g = jax.value_and_grad(loss_fn)(p, key)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    state, losses = opt.init(params), []
    for i in range(15):
        params, state, loss = step(params, state, jax.random.key(i))
        losses.append(float(loss))
    assert losses[0] == pytest.approx(np.log(5), rel=1e-5)  # zero-init logits
    assert losses[-1] < 0.5 * losses[0]


def test_unet(unet):
    t, y = jnp.array([0.1, 0.9]), jnp.array([3, 10])
    x = _tokens((2, 8, 8), 18)
    out = unet(x, t, y)
    assert out.shape == (2, 8, 8, 17) and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))
    assert _maxdiff(unet(x, jnp.array([0.5, 0.9]), y), out) > 0
    assert unet.shape(_tokens((2, 32, 32), 18), t, y) == ((2, 32, 32, 17), jnp.float32)
    with pytest.raises(ValueError, match="divisible"):
        unet.shape(_tokens((2, 9, 9), 18), t)
    deep = _abstract(
        models.UNet, vocab_size=4, out_size=3, base_channels=4, channel_mults=(1, 2, 2)
    )
    assert _out(deep, _tokens((1, 32, 32), 4), jnp.zeros(1)) == ((1, 32, 32, 3), jnp.float32)


def test_build_model_from_a_config():
    """experiments.model.build_model: the config-reading builder (outside the library)."""
    from experiments.model import build_model

    cfg = ml_collections.ConfigDict(
        dict(
            name="dit",
            num_layers=1,
            width=16,
            num_heads=2,
            max_len=8,
            time_conditioning=True,
            num_classes=None,
            dtype="bfloat16",
            dropout=0.0,
            base_channels=8,
            channel_mults=(1, 2),
        )
    )
    x = _tokens((2, 8), 6)
    dit = build_model(cfg, vocab_size=6, out_size=5)
    assert isinstance(dit, models.DiT) and dit.dtype == jnp.bfloat16
    assert _Jitted(dit).shape(x, jnp.zeros(2)) == ((2, 8, 5), jnp.float32)
    same = build_model(cfg, vocab_size=6, out_size=5, seed=0)
    other = build_model(cfg, vocab_size=6, out_size=5, seed=1)
    p0, p1, p2 = (jax.tree.leaves(models.split(m)[1]) for m in (dit, same, other))
    assert all(np.array_equal(a, b) for a, b in zip(p0, p1, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(p0, p2, strict=True))

    cfg.name = "ar"
    ar = build_model(cfg, vocab_size=6, out_size=6)
    assert isinstance(ar, models.CausalTransformer)
    assert _Jitted(ar).shape(x) == ((2, 8, 6), jnp.float32)
    cfg.name = "unet"
    cfg.num_classes = 10
    cfg.dtype = "float32"
    unet = build_model(cfg, vocab_size=18, out_size=17)
    assert isinstance(unet, models.UNet)
    shape = _Jitted(unet).shape(_tokens((1, 8, 8), 18), jnp.zeros(1), jnp.array([10]))
    assert shape == ((1, 8, 8, 17), jnp.float32)

    cfg.name = "resnet"
    with pytest.raises(ValueError, match="dit, ar, unet"):
        build_model(cfg, vocab_size=6, out_size=6)
    cfg.name, cfg.dtype = "dit", "float8"
    with pytest.raises(ValueError, match="float32"):
        build_model(cfg, vocab_size=6, out_size=6)


def test_unet_colour_channels():
    """in_channels > 1 (CIFAR-10): x int32[B, H, W, C] -> logits [B, H, W, C, out]."""
    model = models.init(
        lambda rngs: models.UNet(
            vocab_size=9,
            out_size=8,
            base_channels=8,
            channel_mults=(1, 2),
            in_channels=3,
            rngs=rngs,
        )
    )
    graphdef, params = models.split(model)
    x = jnp.zeros((2, 8, 8, 3), jnp.int32)
    out = jax.jit(lambda p, x: models.apply(graphdef, p, x, jnp.full((2,), 0.5)))(params, x)
    assert out.shape == (2, 8, 8, 3, 8) and out.dtype == jnp.float32
    with pytest.raises(ValueError, match="B, H, W, 3"):
        models.apply(graphdef, params, jnp.zeros((2, 8, 8), jnp.int32), jnp.full((2,), 0.5))
