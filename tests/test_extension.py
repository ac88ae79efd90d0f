"""Extending ddjax from a test file alone: a new loss and a new process, defined here with
public names only (no edit under ddjax/ or experiments/), named in the CLI config as
import paths and trained for a few steps; MarginalPrior trained from its config name.

The new loss is the masked ELBO weighted by the process's own unmask rate (so it serves
per-position schedules) with importance-sampled times: t = u**2 and the weight
dt/du = 2u, so its mean over u ~ U[0, 1) is still the integral over t of the masked ELBO
and, with the exact denoiser, the exact NLL (checked by quadrature and enumeration).
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ddjax as dd
from ddjax import processes, schedules, testing, training
from ddjax.arrays import onehot, sequence_times
from ddjax.training.loss_table import sample_rows

# What the training run traced (a Python side effect at trace time): which loss function
# and which process's ``sample`` the CLI's compiled steps were built from.
TRACED: list[str] = []


# -- (a) a new loss ----------------------------------------------------------------------


def rate_masked_elbo(
    log_probs: jax.Array, x0: jax.Array, x_t: jax.Array, t: jax.Array, process: Any
) -> jax.Array:
    """sum_i unmask_rate_i(t) [x_t,i masked] -log p(x0_i | x_t): float32[B] for log_probs
    float32[B, L, K], x0 / x_t int32[B, L], t float32[B]. The masked ELBO's integrand
    with each position's own rate -alpha_i'(t) / (1 - alpha_i(t))."""
    rate = jnp.broadcast_to(process.unmask_rate(t), x0.shape)
    nll = -jnp.take_along_axis(log_probs, x0[..., None], axis=-1)[..., 0]
    return jnp.where(x_t == process.mask_id, rate * nll, 0.0).sum(-1)


def _importance_nats(
    obj: Any,
    params: Any,
    x0: jax.Array,
    labels: Any,
    u: jax.Array,
    keys: jax.Array,
    dropout_key: Any,
    train: bool,
) -> jax.Array:
    """The loss entry's function: t = u**2 weighted by 2u (still the bound in mean)."""
    TRACED.append(f"loss:{type(obj.process).__name__}")
    u = u.astype(jnp.float32)
    t = obj.times(u * u, train)
    x_t = sample_rows(obj.process, keys, x0, t)
    out = obj.network(params, x_t, t, labels, dropout_key)
    return 2.0 * u * rate_masked_elbo(obj.log_probs(out, x_t, t), x0, x_t, t, obj.process)


IMPORTANCE_ELBO = training.Loss(
    "importance_rate_elbo", _importance_nats, needs=("continuous_time", "mask", "unmask_rate")
)


# -- (b) a new process, through the protocol only -----------------------------------------


@dd.pytree_dataclass
class PositionMasking:
    """Masking where position i keeps its token with alpha_i(t) = 1 - (1 - eps) t**p_i:
    the protocol's members and the unmask_rate capability, no ddjax base class."""

    powers: jax.Array  # float32[L]
    vocab_size: int = dd.static_field()
    eps: float = dd.static_field(default=1e-3)

    @property
    def num_states(self) -> int:
        return self.vocab_size + 1

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    @property
    def is_discrete_time(self) -> bool:
        return False

    def alpha(self, t: jax.Array) -> jax.Array:  # t [...] -> [..., L]
        return 1.0 - (1.0 - self.eps) * jnp.asarray(t, jnp.float32)[..., None] ** self.powers

    def unmask_rate(self, t: jax.Array) -> jax.Array:  # -alpha_i'(t) / (1 - alpha_i(t))
        return self.powers / jnp.maximum(jnp.asarray(t, jnp.float32)[..., None], 1e-30)

    def sample(self, key: jax.Array, x0: jax.Array, t: Any) -> jax.Array:
        TRACED.append("process.sample")
        keep = jax.random.uniform(key, x0.shape) < self.alpha(sequence_times(t, x0))
        return jnp.where(keep, x0, self.vocab_size)

    def prior_sample(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return jnp.full(shape, self.vocab_size, jnp.int32)

    def marginal_probs(self, x0_probs: jax.Array, t: Any) -> jax.Array:
        a = self.alpha(sequence_times(t, x0_probs[..., 0]))[..., None]
        data = jnp.pad(x0_probs, [(0, 0)] * (x0_probs.ndim - 1) + [(0, 1)])
        return a * data + (1.0 - a) * onehot(jnp.int32(self.vocab_size), self.num_states)

    def posterior_probs(self, x_t, x0_probs, s, t) -> jax.Array:  # noqa: ANN001
        a_s, a_t = self.alpha(sequence_times(s, x_t)), self.alpha(sequence_times(t, x_t))
        unmask = ((a_s - a_t) / (1.0 - a_t))[..., None]
        masked = (x_t == self.mask_id)[..., None]
        data = jnp.where(masked, unmask * x0_probs, onehot(x_t, self.vocab_size))
        return jnp.concatenate([data, jnp.where(masked, 1.0 - unmask, 0.0)], axis=-1)


BUILT: list[tuple[str, int]] = []


def position_masking(process_cfg: Any, data: Any) -> PositionMasking:
    """The CLI builder: powers from 1 (first position) to 2 (last)."""
    BUILT.append((process_cfg.name, data.vocab_size))
    powers = jnp.linspace(1.0, 2.0, data.seq_len, dtype=jnp.float32)
    return PositionMasking(powers=powers, vocab_size=data.vocab_size)


HERE = f"{__name__}:"  # this module as pytest imported it (an import path in the config)


# -- exact: the new loss's mean with the exact denoiser is the NLL ------------------------

K, L = 3, 2


def exact_mean(process: Any, target: testing.ExactTarget, nodes: int = 48) -> np.ndarray:
    """E_u E_{x_t} of the new loss for every x0 (row-major), by Gauss-Legendre in u and
    an enumeration of every x_t: float64[K**L]."""
    x0 = jnp.asarray(list(itertools.product(range(K), repeat=L)), jnp.int32)  # [S, L]
    xt = jnp.asarray(list(itertools.product(range(K + 1), repeat=L)), jnp.int32)  # [N, L]
    denoiser = target.denoiser(process)
    t_min = 1e-5

    def at(u: jax.Array) -> jax.Array:
        t = t_min + (1.0 - 2.0 * t_min) * u * u
        q = process.marginal_probs(onehot(x0, K), jnp.full((len(x0),), t))  # [S, L, K+1]
        weight = jnp.prod(jnp.take_along_axis(q[:, None], xt[None, :, :, None], -1)[..., 0], -1)
        lp = denoiser(xt, jnp.full((len(xt),), t))  # [N, L, K]
        rows = jnp.repeat(x0, len(xt), 0), jnp.tile(xt, (len(x0), 1))
        vals = rate_masked_elbo(
            jnp.tile(lp, (len(x0), 1, 1)), *rows, jnp.full(len(rows[0]), t), process
        )
        vals = 2.0 * u * vals.reshape(len(x0), len(xt))
        return jnp.where(weight > 0, weight * vals, 0.0).sum(1)

    g, w = np.polynomial.legendre.leggauss(nodes)
    per_node = jax.jit(jax.vmap(at))(jnp.asarray(0.5 * (g + 1.0), jnp.float32))
    return np.asarray(per_node, np.float64).T @ (0.5 * w)


@pytest.fixture(scope="module")
def target() -> testing.ExactTarget:
    log_p = np.random.default_rng(3).normal(size=(K,) * L)
    return testing.ExactTarget(log_p)


@pytest.mark.parametrize("which", ["position", "masking"])
def test_new_loss_with_the_exact_denoiser_is_the_exact_nll(target, which):
    """Its mean is the NLL for the per-position process and for log-linear masking (up to
    the prior term eps leaves out, ~1e-3 nats); also through an Objective, Monte Carlo."""
    if which == "position":
        process = PositionMasking(powers=jnp.array([1.0, 2.0]), vocab_size=K)
    else:
        process = processes.Masking(K, schedules.LogLinear(eps=1e-3))
    x0 = np.array(list(itertools.product(range(K), repeat=L)), np.int32)
    nll = np.asarray(target.nll(jnp.asarray(x0)), np.float64)
    mean = exact_mean(process, target)
    np.testing.assert_allclose(mean, nll, atol=0.01)
    assert np.all(mean <= nll + 1e-3)  # a bound: the left-out prior term is >= 0

    # The Loss entry in an Objective whose "network" is the exact denoiser: the Monte
    # Carlo mean over rows of one x0 matches the exact mean within 4 standard errors.
    denoiser = target.denoiser(process)
    obj = training.Objective(IMPORTANCE_ELBO, process, lambda params, x, t, labels: denoiser(x, t))
    n, row = 4096, 5
    xs = jnp.tile(jnp.asarray(x0[row])[None], (n, 1))
    u = jax.random.uniform(jax.random.PRNGKey(0), (n,))
    nats = np.asarray(jax.jit(obj.nelbo)(None, xs, None, u, jax.random.split(jax.random.key(1), n)))
    assert abs(nats.mean() - mean[row]) < 4 * nats.std() / np.sqrt(n)


# -- the CLI config: import paths and the marginal prior ----------------------------------


def tiny_config(**sections: dict[str, Any]) -> Any:
    """The smoke config cut to a 2-step, 1-layer run with no samples."""
    from experiments.configs import smoke

    cfg = smoke.get_config()
    cfg.data.seq_len = 16
    cfg.model.update(num_layers=1, width=16, num_heads=2, max_len=16)
    cfg.train.update(
        batch_size=8,
        num_steps=2,
        checkpoint_every=2,
        log_every=1,
        eval_every=0,
        async_checkpoint=False,
        tensorboard=False,
        final_eval=False,
    )
    cfg.eval.update(batch_size=16, max_batches=1, num_time_samples=1)
    cfg.sample.num_samples = 0
    for name, values in sections.items():
        cfg[name].update(values)
    return cfg


def train_from_the_cli(cfg: Any, workdir: Any) -> dict[str, Any]:
    """``--mode=train`` in this process (experiments.run.run, behind experiments.main):
    the results, after checking the run trained and wrote its checkpoint."""
    from experiments import run

    results = run.run(cfg, str(workdir), "train")
    assert results["step"] == 2
    records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert len(losses) == 2 and np.all(np.isfinite(losses))
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2"]
    return results


def test_a_new_loss_and_a_new_process_train_from_the_cli_config(tmp_path):
    """loss.name and process.name as import paths into this file: the run trains with
    both (its compiled step was traced from them), and the built experiment holds them.
    (The new loss on the built-in masking process is checked exactly above.)"""
    from experiments import model

    name = HERE + "position_masking"
    cfg = tiny_config(loss=dict(name=HERE + "IMPORTANCE_ELBO"), process=dict(name=name))
    TRACED.clear()
    BUILT.clear()
    train_from_the_cli(cfg, tmp_path / "w")
    assert "loss:PositionMasking" in TRACED and "process.sample" in TRACED
    # built from the process section with the smoke data's 27-symbol alphabet
    assert BUILT[0] == (name, 27)
    exp = model.build(cfg)
    assert exp.objective.spec is IMPORTANCE_ELBO
    assert isinstance(exp.objective.process, PositionMasking)
    np.testing.assert_allclose(exp.objective.process.powers, np.linspace(1, 2, 16), rtol=1e-6)


def test_marginal_prior_trains_from_the_cli_config(tmp_path):
    """process.name='marginal': noise towards the training tokens' add-one smoothed
    unigram frequencies, trained with a loss that accepts it (uniform_elbo)."""
    from experiments import model

    cfg = tiny_config(process=dict(name="marginal"), loss=dict(name="uniform_elbo"))
    train_from_the_cli(cfg, tmp_path / "w")
    exp = model.build(cfg)
    process = exp.objective.process
    assert isinstance(process, processes.MarginalPrior)
    counts = np.bincount(exp.data.train_tokens, minlength=27) + 1.0
    np.testing.assert_allclose(np.asarray(process.probs), counts / counts.sum(), rtol=1e-5)
    # a loss that needs a mask state cannot serve it: one ConfigError naming both keys
    from experiments.common import ConfigError

    cfg.loss.name = "masked_elbo"
    with pytest.raises(
        ConfigError,
        match="loss.name='masked_elbo' cannot train process.name='marginal'.*mask state",
    ):
        model.build(cfg)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("loss.name", "masked_elbo_typo", "unknown loss.name 'masked_elbo_typo'; valid: "),
        ("loss.name", "no_such_module_x:LOSS", "loss.name='no_such_module_x:LOSS': cannot "),
        ("loss.name", HERE + "NOPE", "has no attribute 'NOPE'"),
        ("loss.name", HERE + "rate_masked_elbo", "names a function, not a ddjax.training.Loss"),
        ("process.name", "gaussian", "unknown process.name 'gaussian'; valid: none, masking"),
        ("process.name", HERE + "TRACED", "names a list, not a builder"),
    ],
)
def test_check_config_names_the_key_of_a_bad_loss_or_process(key, value, expected):
    from experiments.checks import check_config
    from experiments.common import ConfigError

    cfg = tiny_config()
    section, name = key.split(".")
    cfg[section][name] = value
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        check_config(cfg)
    cfg[section][name] = HERE + ("IMPORTANCE_ELBO" if section == "loss" else "position_masking")
    check_config(cfg)  # an import path to the right kind of object passes


def test_every_process_name_builds():
    """experiments.components.PROCESSES: each table name gives a process of the data's
    vocabulary (None for 'none')."""
    from experiments import components

    data = type("Data", (), dict(vocab_size=5, seq_len=4, train_tokens=np.arange(20) % 5))()
    cfg = tiny_config(process=dict(num_steps=4))
    for name in components.PROCESSES:
        cfg.process.name = name
        p = components.make_process(cfg, data)
        assert (p is None) == (name == "none")
        if p is not None:
            assert p.vocab_size == 5 and p.is_discrete_time == name.startswith("d3pm")
