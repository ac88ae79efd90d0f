"""Pure train and eval steps, and their jitted, sharded forms.

``train_step(state, batch) -> (state, metrics)`` and ``eval_step(params, batch, key)
-> nats[B]`` are pure: all randomness comes from ``state.rng`` folded with the step
number (train) or from ``key`` (eval). A batch is a dict ``{'x': int32[B, L],
'label': int32[B]}`` (``'label'`` optional).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import Array
from jax.sharding import Mesh

from ddjax.training import sharding
from ddjax.training.objectives import Objective
from ddjax.training.optim import ema_update
from ddjax.training.state import TrainState

__all__ = [
    "make_train_step",
    "make_eval_step",
    "make_loss_and_grad",
    "jit_train_step",
    "jit_eval_step",
    "antithetic_uniforms",
]

Batch = dict[str, Array]
Metrics = dict[str, Array]


def antithetic_uniforms(key: Array, batch: int, antithetic: bool = True) -> Array:
    """float32[batch] in [0, 1): (u + i / B) mod 1 (stratified), or i.i.d. uniforms."""
    if antithetic:
        return (jax.random.uniform(key, ()) + jnp.arange(batch, dtype=jnp.float32) / batch) % 1.0
    return jax.random.uniform(key, (batch,))


def _labels(
    batch: Batch, key: Array | None, num_classes: int, label_dropout: float
) -> Array | None:
    """The batch labels, with a fraction ``label_dropout`` replaced by the null class
    ``num_classes`` (classifier-free guidance training); None when unconditional."""
    labels = batch.get("label")
    if labels is None or num_classes <= 0:
        return None
    labels = labels.astype(jnp.int32)
    if key is not None and label_dropout > 0:
        drop = jax.random.bernoulli(key, label_dropout, labels.shape)
        labels = jnp.where(drop, num_classes, labels)
    return labels


def make_loss_and_grad(
    objective: Objective,
    *,
    antithetic: bool = True,
    grad_accum: int = 1,
    num_classes: int = 0,
    label_dropout: float = 0.0,
) -> Callable[[Any, Batch, Array], tuple[Array, Array, Any]]:
    """``fn(params, batch, key) -> (loss, nats[B], grads)``.

    ``loss`` = mean nats per token (the optimised scalar). With ``grad_accum = A`` the
    batch is split into A micro-batches (micro-batch a = rows a, a + A, ...), the
    gradient of each is computed in a ``lax.scan`` and averaged: the same value as the
    whole batch at once, in 1/A of the activation memory. Noise levels are stratified
    over the whole batch before the split.
    """

    def micro_loss(params: Any, x0: Array, labels: Array | None, u: Array, keys: Array):
        nats = objective.loss(params, x0, labels, u, keys)
        return nats.mean() / x0.shape[-1], nats

    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

    def loss_and_grad(params: Any, batch: Batch, key: Array):
        x0 = batch["x"]
        x0 = x0.reshape(x0.shape[0], -1)
        b = x0.shape[0]
        k_u, k_noise, k_label = jax.random.split(key, 3)
        u = antithetic_uniforms(k_u, b, antithetic)
        keys = jax.random.split(k_noise, b)
        labels = _labels(batch, k_label, num_classes, label_dropout)
        if grad_accum == 1:
            (loss, nats), grads = grad_fn(params, x0, labels, u, keys)
            return loss, nats, grads
        if b % grad_accum:
            raise ValueError(f"batch size {b} is not divisible by grad_accum={grad_accum}")
        m = b // grad_accum

        def split(a: Array) -> Array:  # [B, ...] -> [A, B / A, ...], row i*A + a -> [a, i]
            return jnp.swapaxes(a.reshape(m, grad_accum, *a.shape[1:]), 0, 1)

        xs = (split(x0), split(u), None if labels is None else split(labels), split(keys))

        def body(carry, inp):
            x_a, u_a, l_a, k_a = inp
            (loss_a, nats_a), g_a = grad_fn(params, x_a, l_a, u_a, k_a)
            return jax.tree.map(jnp.add, carry, (loss_a, g_a)), nats_a

        zero = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
        (loss, grads), nats = jax.lax.scan(body, zero, xs)
        scale = 1.0 / grad_accum
        grads = jax.tree.map(lambda g: g * scale, grads)
        nats = jnp.swapaxes(nats, 0, 1).reshape(b)
        return loss * scale, nats, grads

    return loss_and_grad


def make_train_step(
    objective: Objective,
    tx: optax.GradientTransformation,
    *,
    ema_decay: float = 0.9999,
    antithetic: bool = True,
    grad_accum: int = 1,
    num_classes: int = 0,
    label_dropout: float = 0.0,
    lr_schedule: optax.Schedule | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """A pure ``train_step(state, batch) -> (state, metrics)``.

    metrics: ``loss`` (nats/token of the optimised objective), ``bits_per_token``,
    ``grad_norm``, ``lr`` and ``finite`` (1.0 when loss and gradients are finite),
    each a float32 scalar, and ``step`` (the step these metrics belong to, int32).
    """
    loss_and_grad = make_loss_and_grad(
        objective,
        antithetic=antithetic,
        grad_accum=grad_accum,
        num_classes=num_classes,
        label_dropout=label_dropout,
    )

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        key = jax.random.fold_in(state.rng, state.step)
        loss, _, grads = loss_and_grad(state.params, batch, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = ema_update(state.ema_params, params, state.step, ema_decay)
        grad_norm = optax.tree.norm(grads)
        metrics = {
            "step": state.step,
            "loss": loss,
            "bits_per_token": loss / math.log(2.0),
            "grad_norm": grad_norm,
            "finite": (jnp.isfinite(loss) & jnp.isfinite(grad_norm)).astype(jnp.float32),
            "lr": jnp.asarray(
                lr_schedule(state.step) if lr_schedule is not None else 0.0, jnp.float32
            ),
        }
        new_state = state.replace(
            params=params, opt_state=opt_state, ema_params=ema, step=state.step + 1
        )
        return new_state, metrics

    return train_step


def make_eval_step(
    objective: Objective, num_time_samples: int = 1, *, num_classes: int = 0
) -> Callable[[Any, Batch, Array], Array]:
    """A pure ``eval_step(params, batch, key) -> nats[B]``, the negative ELBO per sequence.

    Each sequence gets ``num_time_samples`` noise levels stratified over [0, 1)
    (u_j = (u + j / n) mod 1), evaluated one after another in a ``lax.scan`` and
    averaged. For 'ar' the NLL is exact and one pass is made.
    """
    n = 1 if objective.is_exact else max(int(num_time_samples), 1)

    def eval_step(params: Any, batch: Batch, key: Array) -> Array:
        x0 = batch["x"]
        x0 = x0.reshape(x0.shape[0], -1)
        labels = _labels(batch, None, num_classes, 0.0)
        k_u, k_noise = jax.random.split(key)
        u0 = jax.random.uniform(k_u, x0.shape[:1])

        def body(total: Array, j: Array) -> tuple[Array, None]:
            u = (u0 + j.astype(jnp.float32) / n) % 1.0
            keys = jax.random.split(jax.random.fold_in(k_noise, j), x0.shape[0])
            nats = objective.nelbo(params, x0, labels, u, keys)
            return total + nats, None

        total, _ = jax.lax.scan(body, jnp.zeros(x0.shape[:1], jnp.float32), jnp.arange(n))
        return total / n

    return eval_step


def jit_train_step(
    train_step: Callable[[TrainState, Batch], tuple[TrainState, Metrics]],
    mesh: Mesh,
    state: TrainState,
    *,
    donate: bool = True,
    fsdp: bool = False,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """``jax.jit`` with the state replicated (or FSDP-sharded) and the batch sharded
    over 'data'. Place ``state`` with ``put_replicated(state, mesh, fsdp)`` first."""
    state_sh = sharding.state_sharding(mesh, state, fsdp)
    return jax.jit(
        train_step,
        in_shardings=(state_sh, sharding.batch_sharding(mesh)),
        out_shardings=(state_sh, sharding.replicated(mesh)),
        donate_argnums=(0,) if donate else (),
    )


def jit_eval_step(
    eval_step: Callable[[Any, Batch, Array], Array],
    mesh: Mesh,
    params: Any,
    *,
    fsdp: bool = False,
) -> Callable[[Any, Batch, Array], Array]:
    """``jax.jit`` with params replicated and the batch (and output) sharded over 'data'."""
    return jax.jit(
        eval_step,
        in_shardings=(
            sharding.state_sharding(mesh, params, fsdp),
            sharding.batch_sharding(mesh),
            sharding.replicated(mesh),
        ),
        out_shardings=sharding.batch_sharding(mesh),
    )
