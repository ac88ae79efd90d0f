"""Training: objectives, train/eval steps, gradient accumulation, a short real run."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from ddjax import models, processes, schedules, training
from ddjax.training import Objective

K = 5
L = 8
B = 8


def tiny_cfg(name="dit", time_conditioning=True):
    return ml_collections.ConfigDict(
        dict(
            name=name,
            num_layers=1,
            width=16,
            num_heads=2,
            max_len=L,
            time_conditioning=time_conditioning,
            num_classes=0,
            dtype="float32",
            dropout=0.0,
        )
    )


# the processes as objects (the library takes objects; config names are experiments')
PROCESSES = {
    "none": lambda: None,
    "masking": lambda: processes.Masking(K, schedules.LogLinear(eps=1e-3)),
    "uniform": lambda: processes.Uniform(K, schedules.LogLinear(eps=1e-3)),
    "d3pm_absorbing": lambda: processes.D3PM.absorbing(K, 20),
    "d3pm_uniform": lambda: processes.D3PM.uniform(K, 20),
}


def make_objective(loss, process_name, **kw):
    from experiments.model import build_model

    process = PROCESSES[process_name]()
    in_vocab = K if process is None else process.num_states
    name = "ar" if loss == "ar" else "dit"
    tc = loss not in ("ar", "any_order_nll")
    out = training.LOSSES[loss].output_size(process, K)
    model = build_model(tiny_cfg(name, tc), in_vocab, out)
    graphdef, params = models.split(model)

    def apply_fn(p, x, t, labels, dropout_key=None):
        if name == "ar":
            return models.apply(graphdef, p, x)
        return models.apply(graphdef, p, x, t, labels)

    obj = Objective(loss, process, apply_fn, time_conditioning=tc, **kw)
    return obj, params


CASES = [
    ("masked_elbo", "masking"),
    ("score_entropy", "masking"),
    ("score_entropy", "uniform"),
    ("uniform_elbo", "uniform"),
    ("d3pm_hybrid", "d3pm_absorbing"),
    ("d3pm_vb", "d3pm_uniform"),
    ("any_order_nll", "masking"),
    ("dfm", "masking"),
    ("ar", "none"),
]


def data(seed=0, n=B):
    return jax.random.randint(jax.random.PRNGKey(seed), (n, L), 0, K)


@pytest.mark.parametrize("loss,process", CASES)
def test_every_objective_gives_finite_loss_and_gradients(loss, process):
    obj, params = make_objective(loss, process)
    fn = jax.jit(training.make_loss_and_grad(obj))
    value, nats, grads = fn(params, {"x": data()}, jax.random.PRNGKey(1))
    assert nats.shape == (B,)
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(np.asarray(nats)))
    # An untrained network sits near the uniform guess: a bound of order L log K nats.
    assert 0 < float(value) < 10 * math.log(K)
    norms = [float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(norms)) and sum(norms) > 0
    if loss != "ar":
        den = obj.denoiser(params)
        t = jnp.full((B,), 10, jnp.int32) if "d3pm" in process else jnp.full((B,), 0.5)
        x_t = jnp.full((B, L), obj.process.num_states - 1, jnp.int32)
        lp = den(x_t, t)
        assert lp.shape == (B, L, K)
        np.testing.assert_allclose(np.exp(np.asarray(lp)).sum(-1), 1.0, atol=1e-4)


def test_gradient_accumulation_matches_the_whole_batch():
    obj, params = make_objective("masked_elbo", "masking")
    batch = {"x": data(n=8)}
    key = jax.random.PRNGKey(3)
    v1, n1, g1 = jax.jit(training.make_loss_and_grad(obj))(params, batch, key)
    v4, n4, g4 = jax.jit(training.make_loss_and_grad(obj, grad_accum=4))(params, batch, key)
    np.testing.assert_allclose(float(v1), float(v4), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(n1), np.asarray(n4), rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g4), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_ar_eval_is_the_exact_nll_and_diffusion_eval_averages_time_samples():
    obj, params = make_objective("ar", "none")
    x = data()
    nats = jax.jit(training.make_eval_step(obj, num_time_samples=7))(
        params, {"x": x}, jax.random.PRNGKey(0)
    )
    logits = obj.apply_fn(params, x, None, None)
    exact = -jnp.take_along_axis(jax.nn.log_softmax(logits), x[..., None], -1).sum((1, 2))
    np.testing.assert_allclose(np.asarray(nats), np.asarray(exact), rtol=1e-5)

    obj, params = make_objective("masked_elbo", "masking")
    e1 = training.make_eval_step(obj, num_time_samples=1)
    e64 = training.make_eval_step(obj, num_time_samples=64)
    keys = jax.random.split(jax.random.PRNGKey(5), 8)
    one = np.stack([np.asarray(jax.jit(e1)(params, {"x": x}, k)) for k in keys])
    many = np.asarray(jax.jit(e64)(params, {"x": x}, keys[0]))
    # Stratified averaging: the 64-sample estimate is close to the mean of single draws
    # and far less spread out than one draw.
    assert np.all(np.isfinite(many))
    assert abs(many.mean() - one.mean()) < 3 * one.std() / np.sqrt(one.size) + 0.5
    assert many.std() < one.std(0).mean()


def test_lr_schedule_and_ema():
    cfg = ml_collections.ConfigDict(
        dict(lr=1.0, warmup_steps=10, decay="cosine", final_lr_frac=0.1)
    )
    s = training.make_lr_schedule(cfg, 110)
    assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5)
    assert float(s(10)) == pytest.approx(1.0) and float(s(110)) == pytest.approx(0.1)
    cfg.decay = "constant"
    assert float(training.make_lr_schedule(cfg, 110)(100)) == pytest.approx(1.0)
    ema = training.ema_update({"w": jnp.zeros(3)}, {"w": jnp.ones(3)}, jnp.int32(0), 0.999)
    np.testing.assert_allclose(np.asarray(ema["w"]), 0.9, rtol=1e-6)  # decay 1/10 at step 0


def test_train_state_is_a_frozen_pytree():
    tx = optax.adam(1e-3)
    st = training.init_train_state({"w": jnp.ones(3)}, tx, seed=0)
    leaves = jax.tree.leaves(st)
    assert any(x.shape == (2,) and x.dtype == jnp.uint32 for x in leaves)  # the rng
    with pytest.raises(Exception):  # noqa: B017 - dataclasses.FrozenInstanceError
        st.step = 3
    st2 = jax.tree.map(lambda x: x, st)
    assert isinstance(st2, training.TrainState)


def test_smoke_training_lowers_the_loss_and_eval_beats_uniform():
    """A short real run on tiny Shakespeare (text8 alphabet): the training loss falls and
    the validation bits per character are finite and below log2(27)."""
    from experiments import run
    from experiments.configs import smoke

    cfg = smoke.get_config()
    cfg.train.num_steps = 30
    exp = run.build(cfg)
    state, tx = run.make_state(exp)
    step = training.jit_train_step(
        training.make_train_step(exp.objective, tx, ema_decay=0.0), exp.mesh, state
    )
    batches = exp.data.make_train_iter(cfg.train.batch_size, 0)
    losses = []
    for _ in range(cfg.train.num_steps):
        state, m = step(state, training.put_batch({"x": next(batches)}, exp.mesh))
        losses.append(float(m["loss"]))
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.2
    ev = run.evaluate_nelbo(exp, state.params, max_batches=2)
    bpc = ev["nelbo_bits_per_char"]
    assert np.isfinite(bpc) and bpc < math.log2(27)


# -- the loop's files and messages --------------------------------------------------------


def test_metric_writer_drops_records_of_steps_after_a_resume(tmp_path):
    import json

    w = training.MetricWriter(str(tmp_path), tensorboard=False)
    for step in (10, 20, 30):
        w.write(step, {"loss": float(step)}, "train/")
    w.close()
    # the run resumes from its checkpoint at step 20: step 30 will be run again
    w = training.MetricWriter(str(tmp_path), tensorboard=False, start_step=20)
    w.write(30, {"loss": 3.0}, "train/")
    w.close()
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in records] == [10, 20, 30]
    assert records[-1]["train/loss"] == 3.0


def test_the_nonfinite_message_names_what_was_not_finite():
    from ddjax.training.loop import _check_finite

    _check_finite({"step": 0, "loss": 1.0, "grad_norm": 2.0, "finite": 1.0})
    with pytest.raises(training.NonFiniteError) as e:
        _check_finite({"step": 6, "loss": 3.5e30, "grad_norm": math.inf, "finite": 0.0})
    msg = str(e.value)
    assert msg.startswith("non-finite gradient norm at step 7 (grad_norm=inf")
    assert "3.5e+30 is finite" in msg and "non-finite loss" not in msg
    with pytest.raises(training.NonFiniteError, match="non-finite loss at step 3 "):
        _check_finite({"step": 2, "loss": math.nan, "grad_norm": math.nan, "finite": 0.0})


def _two_checkpoints(directory):
    params = {"w": jnp.ones((3, 2))}
    tx = optax.sgd(0.1)
    state = training.init_train_state(params, tx, 0)
    ckpt = training.Checkpointer(str(directory), async_save=False)
    for step in (1, 2):
        ckpt.save(state.replace(step=jnp.int32(step)), {"pos": step})
    ckpt.close()
    return state


def test_a_missing_metadata_file_is_named_and_all_unreadable_is_reported(tmp_path):
    import os
    import warnings

    state = _two_checkpoints(tmp_path)
    os.remove(tmp_path / "2" / "state" / "_METADATA")
    ckpt = training.Checkpointer(str(tmp_path))
    with pytest.warns(RuntimeWarning, match=r"checkpoint 2 is incomplete: .*_METADATA is missing"):
        restored = ckpt.restore_latest(state)
    assert restored[2] == 1 and ckpt.unreadable == [2]
    ckpt.close()
    os.remove(tmp_path / "1" / "state" / "_METADATA")
    ckpt = training.Checkpointer(str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert ckpt.restore_latest(state) is None
    assert ckpt.unreadable == [1]
    ckpt.close()
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        training.Checkpointer(str(tmp_path / "absent"), create=False)
    assert not (tmp_path / "absent").exists()


def test_train_job_reports_unreadable_checkpoints_and_rewrites_stale_metrics(tmp_path, capsys):
    import json
    import os
    import warnings

    from experiments import outputs
    from experiments.configs import smoke
    from experiments.train import train

    work = tmp_path / "w"
    bad = work / "checkpoints" / "30"
    bad.mkdir(parents=True)
    (bad / "junk").write_text("not a checkpoint")
    with open(work / "metrics.jsonl", "w") as f:  # left by an earlier run that went further
        f.write(json.dumps({"step": 30, "train/loss": 9.0}) + "\n")
    cfg = smoke.get_config()
    cfg.train.update(num_steps=4, log_every=2, checkpoint_every=0, async_checkpoint=False)
    cfg.eval.update(max_batches=1)
    cfg.sample.num_samples = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        train(cfg, str(work))
    out = capsys.readouterr()
    text = out.out + out.err
    assert "every checkpoint in" in text and "unreadable (steps 30" in text
    assert "starting from step 0" in text
    assert "step 1/4 | loss" in text and "(compiling)" in text
    steps = [json.loads(line)["step"] for line in open(work / "metrics.jsonl")]
    assert 30 not in steps and steps[:2] == [2, 4]
    assert os.path.exists(work / outputs.LOSS_PNG)
