"""Checkpoints: data position, corrupt steps, non-finite states, SIGKILL-and-resume."""

import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ddjax import data as ddata
from ddjax import training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_state(seed=0):
    params = {"w": jax.random.normal(jax.random.PRNGKey(seed), (4, 3)), "b": jnp.zeros(3)}
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2))
    return training.init_train_state(params, tx, seed), tx


def fake_step(tx, nan_at=None):
    """A deterministic train step on a quadratic; params become NaN at step ``nan_at``."""

    def step(state, batch):
        x = batch["x"].astype(jnp.float32)

        def loss_fn(p):
            return jnp.mean((x[:, :4] @ p["w"] + p["b"]) ** 2)

        loss, g = jax.value_and_grad(loss_fn)(state.params)
        if nan_at is not None:
            bad = state.step + 1 == nan_at
            loss = jnp.where(bad, jnp.nan, loss)
            g = jax.tree.map(lambda v: jnp.where(bad, jnp.nan, v), g)
        updates, opt = tx.update(g, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "step": state.step,
            "loss": loss,
            "bits_per_token": loss,
            "finite": jnp.isfinite(loss).astype(jnp.float32),
        }
        return state.replace(params=params, opt_state=opt, step=state.step + 1), metrics

    return jax.jit(step)


def batches(seed=0):
    tokens = np.arange(5000, dtype=np.int32) % 27
    return ddata.sequence_batches(tokens, 8, 4, seed=seed)


def test_restore_gives_the_state_and_the_data_position(tmp_path):
    state, tx = small_state()
    it = batches()
    step = fake_step(tx)
    mesh = training.make_mesh()
    ckpt = training.Checkpointer(str(tmp_path / "ck"), max_to_keep=2, async_save=False)
    state = training.train_loop(
        state,
        step,
        it,
        num_steps=7,
        mesh=mesh,
        checkpointer=ckpt,
        checkpoint_every=3,
        print_fn=lambda s: None,
    )
    ckpt.close()
    expected_next = next(it)
    assert training.Checkpointer(str(tmp_path / "ck")).all_steps() == [6, 7]

    fresh, _ = small_state(seed=1)
    ckpt = training.Checkpointer(str(tmp_path / "ck"))
    restored, data_state, at = ckpt.restore_latest(fresh)
    ckpt.close()
    assert at == 7 and int(restored.step) == 7
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    it2 = batches()
    it2.set_state(data_state)
    np.testing.assert_array_equal(next(it2), expected_next)


def test_a_corrupt_latest_checkpoint_is_skipped_with_a_warning(tmp_path):
    state, tx = small_state()
    ckpt = training.Checkpointer(str(tmp_path), max_to_keep=3, async_save=False)
    s1 = state.replace(step=jnp.int32(1))
    s2 = state.replace(step=jnp.int32(2), params=jax.tree.map(lambda x: x + 1, state.params))
    ckpt.save(s1, {"pos": 1})
    ckpt.save(s2, {"pos": 2})
    ckpt.close()
    # Damage step 2: truncate every array data file.
    for root, _, files in os.walk(tmp_path / "2" / "state"):
        for f in files:
            if root.endswith("d") or f == "_METADATA":
                with open(os.path.join(root, f), "r+b") as fh:
                    fh.truncate(3)
    ckpt = training.Checkpointer(str(tmp_path))
    with pytest.warns(RuntimeWarning, match="step 2"):
        restored, data_state, at = ckpt.restore_latest(state)
    assert at == 1 and data_state == {"pos": 1}
    np.testing.assert_array_equal(np.asarray(restored.params["w"]), np.asarray(s1.params["w"]))
    assert ckpt.all_steps() == [1]
    assert any(p.startswith("corrupt-2") for p in os.listdir(tmp_path))
    # Training can carry on and write step 2 again.
    assert ckpt.save(s2, {"pos": 2})
    ckpt.close()


def test_a_nonfinite_loss_stops_the_run_naming_the_step_and_is_never_saved(tmp_path):
    state, tx = small_state()
    ckpt = training.Checkpointer(str(tmp_path), max_to_keep=10, async_save=False)
    with pytest.raises(training.NonFiniteError, match="step 5"):
        training.train_loop(
            state,
            fake_step(tx, nan_at=5),
            batches(),
            num_steps=10,
            mesh=training.make_mesh(),
            checkpointer=ckpt,
            checkpoint_every=1,
            print_fn=lambda s: None,
        )
    ckpt.close()
    steps = training.Checkpointer(str(tmp_path)).all_steps()
    assert steps == [1, 2, 3, 4]
    # Saving a non-finite state directly is refused too, and writes nothing.
    ckpt = training.Checkpointer(str(tmp_path), async_save=False)
    bad = state.replace(
        step=jnp.int32(9), params={"w": jnp.full((4, 3), jnp.nan), "b": jnp.zeros(3)}
    )
    with pytest.raises(training.NonFiniteError, match="step 9"):
        ckpt.save(bad, {})
    with pytest.raises(TypeError):
        ckpt.save(state.replace(step=jnp.int32(8)), {"bad": object()})
    ckpt.close()
    assert training.Checkpointer(str(tmp_path)).all_steps() == [1, 2, 3, 4]


# -- SIGKILL and resume (subprocesses) ----------------------------------------------

ARGS = [
    "--config=experiments/configs/smoke.py",
    "--config.train.num_steps=120",
    "--config.train.checkpoint_every=20",
    "--config.train.max_to_keep=2",
    "--config.train.log_every=20",
    "--config.train.final_eval=False",
    "--config.sample.num_samples=0",
]


def _cmd(workdir):
    return [sys.executable, "-m", "experiments.main", f"--workdir={workdir}", *ARGS]


def _final_params(workdir, step):
    import orbax.checkpoint as ocp

    tree = ocp.PyTreeCheckpointer().restore(
        os.path.join(workdir, "checkpoints", str(step), "state")
    )
    return tree["params"], tree["ema_params"], tree["opt_state"]


def test_sigkill_and_resume_gives_bitwise_equal_parameters(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    out = subprocess.run(_cmd(ref), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]

    proc = subprocess.Popen(
        _cmd(killed), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    marker = killed / "checkpoints" / "40"
    deadline = time.time() + 240
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)  # land somewhere in the next steps (or in the middle of a save)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "checkpoints" / "120").exists()

    out = subprocess.run(_cmd(killed), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed from" in out.stdout
    a, b = _final_params(ref, 120), _final_params(killed, 120)
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.slow
def test_repeated_sigkills_at_random_moments_still_give_bitwise_equal_parameters(tmp_path):
    """Kill the run at random moments (during compilation, steps or saves) until it
    completes; its parameters must equal an uninterrupted run's bit for bit."""
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    out = subprocess.run(_cmd(ref), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rng = np.random.default_rng(0)
    kills = 0
    for _ in range(12):
        proc = subprocess.Popen(
            _cmd(killed), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            proc.wait(timeout=float(rng.uniform(2.0, 9.0)))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            continue
        assert proc.returncode == 0
        break
    else:
        out = subprocess.run(_cmd(killed), cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
    assert kills >= 1
    for x, y in zip(
        jax.tree.leaves(_final_params(ref, 120)),
        jax.tree.leaves(_final_params(killed, 120)),
        strict=True,
    ):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
