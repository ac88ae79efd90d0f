"""BD3-LM training from the command line: config checks before step 0 and a smoke run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(**loss):
    from experiments.configs import shakespeare_bd3lm_4

    cfg = shakespeare_bd3lm_4.get_config()
    cfg.loss.update(loss)
    return cfg


@pytest.mark.parametrize(
    "change, expected",
    [
        (dict(loss=dict(block_size=5)), "loss.block_size=5 must divide data.seq_len=128"),
        (dict(loss=dict(block_size=0)), "needs loss.block_size >= 1"),
        (dict(loss=dict(block_size=-1)), "loss.block_size must be an integer >= 0"),
        (dict(model=dict(time_conditioning=True)), "model.time_conditioning=False"),
        (dict(process=dict(name="uniform")), "needs process.name='masking'"),
        (dict(loss=dict(name="masked_elbo")), "is for loss.name='block_masked_elbo'"),
        (dict(loss=dict(mask_rate_min=0.8, mask_rate_max=0.3)), "need 0 <= min < max <= 1"),
        (dict(loss=dict(mask_rate_max=1.5)), "need 0 <= min < max <= 1"),
    ],
    ids=["divide", "zero", "negative", "time", "process", "other-loss", "order", "range"],
)
def test_block_config_errors_name_the_key(change, expected):
    from experiments.checks import check_config
    from experiments.common import ConfigError

    cfg = _cfg()
    for section, values in change.items():
        cfg[section].update(values)
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert expected in str(err.value)


def test_block_configs_pass_the_checks():
    import importlib

    from experiments.checks import check_config

    for name in ("shakespeare_bd3lm_4", "shakespeare_bd3lm_16", "owt_bd3lm_4", "owt_bd3lm_16"):
        cfg = importlib.import_module(f"experiments.configs.{name}").get_config()
        check_config(cfg)
        assert cfg.loss.name == "block_masked_elbo" and not cfg.model.time_conditioning
        assert cfg.data.seq_len % cfg.loss.block_size == 0


def test_build_gives_a_block_causal_model_and_objective():
    from experiments import model

    cfg = _cfg(block_size=16)
    cfg.model.update(num_layers=1, width=32)
    exp = model.build(cfg)
    assert exp.objective.block_size == 16 and exp.objective.mask_rate is None
    cfg.loss.update(mask_rate_min=0.3, mask_rate_max=0.8)
    assert model.mask_rate(cfg) == (0.3, 0.8)


def test_bd3lm_smoke_run_trains_and_reports_validation_bits(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.main",
            "--config=experiments/configs/shakespeare_bd3lm_4.py",
            f"--workdir={tmp_path}",
            "--config.train.num_steps=3",
            "--config.eval.max_batches=1",
            "--config.eval.batch_size=8",
            "--config.sample.num_samples=0",
            "--config.model.num_layers=1",
            "--config.model.width=32",
            "--config.loss.mask_rate_min=0.3",
            "--config.loss.mask_rate_max=0.8",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "block_masked_elbo on shakespeare" in out.stdout
    assert "validation bits per char" in out.stdout
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert any("eval/nelbo_bits_per_char" in r for r in rows)


def test_block_sizes_reading_follows_the_numbers():
    from experiments.tables import block_sizes

    text = block_sizes.reading(
        {"ar": 2.0, "1": 2.1, "4": 2.5, "16": 2.4, "L": 3.0, "mdlm": 3.05},
        {"4": 0.01, "16": 0.01, "L": 0.2},
    )
    assert "block 1 (2.100) vs block 4 (2.500): the smaller block is better" in text
    assert "block 4 (2.500) vs block 16 (2.400): the larger block is better here" in text
    assert "block 16 (2.400) vs block L (3.000): the smaller block is better" in text
    assert "AR 2.000: closest BD3-LM row is block 1" in text
    assert "MDLM 3.050: closest BD3-LM row is block L" in text
    tie = block_sizes.reading({"4": 2.5, "16": 2.52}, {"4": 0.02, "16": 0.02})
    assert "a tie within two standard errors" in tie


def test_the_one_pass_gives_every_block_its_sampler_conditional():
    """BD3-LM's one pass over [x_t ; x0] is the per-block computation: block b's logits
    equal those of the plain block-causal call on (clean blocks < b, noisy block b,
    anything after), the block sampler's input. Random (non-zero) parameters, so every
    path through the network matters."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from ddjax import models

    k, length, bs = 5, 12, 3
    model = models.DiT(
        vocab_size=k + 1,
        out_size=k,
        num_layers=2,
        width=16,
        num_heads=2,
        max_len=length,
        time_conditioning=False,
        block_size=bs,
        rngs=nnx.Rngs(0),
    )
    graphdef, params = nnx.split(model, nnx.Param)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    leaves = [0.5 * jax.random.normal(r, v.shape) for r, v in zip(keys, leaves, strict=True)]
    params = jax.tree.unflatten(tree, leaves)
    one_pass_fn = jax.jit(lambda p, xt, c: models.apply(graphdef, p, xt, None, x0=c))
    plain_fn = jax.jit(lambda p, z: models.apply(graphdef, p, z, None))
    rng = np.random.default_rng(0)
    x0 = jnp.asarray(rng.integers(0, k, size=(3, length)))
    x_t = jnp.where(jnp.asarray(rng.uniform(size=(3, length)) < 0.5), k, x0)
    one_pass = one_pass_fn(params, x_t, x0)
    pos = jnp.arange(length)
    nb = length // bs
    junk = jnp.asarray(rng.integers(0, k + 1, size=(nb, 3, length)))  # after the block
    z = jnp.stack(
        [
            jnp.where(pos < b * bs, x0, jnp.where(pos < (b + 1) * bs, x_t, junk[b]))
            for b in range(nb)
        ]
    )  # [nb, 3, L]: clean blocks < b, noisy block b, anything after
    plain = plain_fn(params, z.reshape(nb * 3, length)).reshape(nb, 3, length, k)
    for b in range(nb):
        np.testing.assert_allclose(
            one_pass[:, b * bs : (b + 1) * bs], plain[b, :, b * bs : (b + 1) * bs], atol=1e-4
        )
    # and the clean half matters: other clean tokens before block 2 change block 2
    other = x0.at[:, 0].set((x0[:, 0] + 1) % k)
    changed = one_pass_fn(params, x_t, other)
    assert not np.allclose(changed[:, 2 * bs : 3 * bs], one_pass[:, 2 * bs : 3 * bs])
