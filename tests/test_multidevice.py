"""Data parallelism: 4 virtual CPU devices give the loss and gradients of 1 device."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax
    from ddjax import models, processes, schedules, training

    assert jax.device_count() == 4, jax.devices()
    K, L, B = 6, 8, 8
    process = processes.Masking(K, schedules.LogLinear(eps=1e-3))
    dit = models.init(lambda rngs: models.DiT(vocab_size=K + 1, out_size=K, num_layers=1,
        width=16, num_heads=2, max_len=L, rngs=rngs))
    graphdef, params = models.split(dit)
    apply_fn = lambda p, x, t, labels, dropout_key=None: models.apply(graphdef, p, x, t, labels)
    obj = training.Objective("masked_elbo", process, apply_fn)
    tx = optax.adam(1e-2)
    x = np.asarray(jax.random.randint(jax.random.PRNGKey(0), (B, L), 0, K))
    key = jax.random.PRNGKey(1)

    def run(devices):
        mesh = training.make_mesh(devices)
        batch = training.put_batch({"x": x}, mesh)
        assert len(batch["x"].sharding.device_set) == len(devices)
        p = training.put_replicated(params, mesh)
        fn = jax.jit(training.make_loss_and_grad(obj))
        loss, nats, grads = fn(p, batch, key)
        state = training.put_replicated(training.init_train_state(params, tx, 0), mesh)
        step = training.jit_train_step(training.make_train_step(obj, tx), mesh, state)
        for _ in range(3):
            state, m = step(state, batch)
        return float(loss), np.asarray(nats), jax.device_get(grads), jax.device_get(state.params)

    one = run(jax.devices()[:1])
    four = run(jax.devices())
    np.testing.assert_allclose(one[0], four[0], rtol=1e-5)
    np.testing.assert_allclose(one[1], four[1], rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(one[2]), jax.tree.leaves(four[2]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # Three Adam steps (lr 1e-2) on the two: Adam's normalisation amplifies float
    # round-off in tiny gradients, so compare on the scale of the updates.
    for a, b in zip(jax.tree.leaves(one[3]), jax.tree.leaves(four[3]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-4)
    # FSDP shards a large matrix along its largest divisible axis.
    mesh = training.make_mesh()
    sh = training.state_sharding(mesh, {"w": jnp.zeros((512, 1024))}, fsdp=True)
    assert sh["w"].spec == jax.sharding.PartitionSpec(None, "data"), sh["w"].spec
    print("OK", one[0], four[0])
    """
)


def test_four_virtual_devices_match_one_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK" in out.stdout
