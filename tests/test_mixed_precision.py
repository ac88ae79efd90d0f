"""The bf16 compute policy (``--config.model.dtype=bfloat16``): float32 master weights and
optimiser state, bfloat16 matmuls and activations, float32 residual stream, norms,
softmax, logits and loss. On the CPU its loss curve tracks float32's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddjax import training

STEPS = 50


def _experiment(dtype):
    from experiments import model
    from experiments.configs import smoke

    cfg = smoke.get_config()
    cfg.model.dtype = dtype
    cfg.train.num_steps = STEPS
    return model.build(cfg)


def _losses(dtype):
    from experiments import model

    exp = _experiment(dtype)
    state, tx = model.make_state(exp)
    cfg = exp.cfg
    step_fn = training.make_train_step(
        exp.objective,
        tx,
        ema_decay=float(cfg.optim.ema_decay),
        antithetic=True,
        lr_schedule=training.make_lr_schedule(cfg.optim, STEPS),
    )
    jitted = training.jit_train_step(step_fn, exp.mesh, state)
    batches = exp.data.make_train_iter(int(cfg.train.batch_size), int(cfg.seed))
    losses = []
    for _ in range(STEPS):
        state, m = jitted(state, training.put_batch({"x": next(batches)}, exp.mesh))
        losses.append(float(m["loss"]))
    return np.asarray(losses), state, exp


@pytest.fixture(scope="module")
def curves():
    return _losses("float32"), _losses("bfloat16")


@pytest.mark.slow  # 2 x 50 training steps; the policy itself is checked below by default
def test_bf16_loss_curve_tracks_float32_over_50_steps(curves):
    (f32, _, _), (bf16, state, _) = curves
    assert np.all(np.isfinite(bf16))
    # Same data, same noise draws, same initial weights: the two runs differ only by
    # bf16 rounding of matmul inputs and activations (8 mantissa bits, 2^-8 = 0.4%
    # relative each), which compounds over 50 Adam steps. Measured on the CPU (smoke
    # model, 2 x 32): 10-step means within 2e-5 relative, every step within 5e-4 nats.
    # Bounds: 10-step means within 0.5%, every step within 0.02 nats (about 40 times
    # the measured gap, for other CPUs and XLA versions).
    m32, m16 = f32.reshape(-1, 10).mean(1), bf16.reshape(-1, 10).mean(1)
    np.testing.assert_allclose(m16, m32, rtol=0.005)
    assert np.max(np.abs(bf16 - f32)) < 0.02, np.abs(bf16 - f32).max()
    assert m16[-1] < m16[0] - 0.2  # and it learns
    # master weights and optimiser state stay float32
    for leaf in jax.tree.leaves((state.params, state.opt_state, state.ema_params)):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32


def test_bf16_policy_matmuls_in_bf16_logits_and_loss_in_float32():
    from experiments import model

    exp = _experiment("bfloat16")
    state, _ = model.make_state(exp)
    for leaf in jax.tree.leaves((state.params, state.opt_state, state.ema_params)):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32  # master weights and optimiser state
    x = jnp.zeros((2, exp.data.seq_len), jnp.int32)
    t = jnp.full((2,), 0.5)
    logits = exp.apply_fn(state.params, x, t, None)
    assert logits.dtype == jnp.float32
    jaxpr = str(jax.make_jaxpr(lambda p: exp.apply_fn(p, x, t, None))(state.params))
    assert "bf16" in jaxpr and "dot_general" in jaxpr
    loss_fn = training.make_loss_and_grad(exp.objective)
    loss, nats, _ = loss_fn(state.params, {"x": x}, jax.random.PRNGKey(0))
    assert loss.dtype == jnp.float32 and nats.dtype == jnp.float32
