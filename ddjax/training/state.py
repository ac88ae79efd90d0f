"""The train state: a frozen pytree of everything a training step reads and writes."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import Array

from ddjax._struct import pytree_dataclass

__all__ = ["TrainState", "init_train_state"]


@pytree_dataclass
class TrainState:
    """Params, optimiser state, EMA params, step and RNG, as one immutable pytree.

    Attributes:
      params: the model parameters (any pytree of float arrays, e.g. an ``nnx.State``).
      opt_state: the optax state for ``params``.
      ema_params: an exponential moving average of ``params`` (same structure).
      step: int32[] number of optimiser updates applied so far.
      rng: uint32[2] base key; step ``n`` draws from ``fold_in(rng, n)``, so a resumed
        run makes exactly the draws of an uninterrupted one.
    """

    params: Any
    opt_state: Any
    ema_params: Any
    step: Array
    rng: Array

    def replace(self, **changes: Any) -> TrainState:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (the layout of a checkpoint)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        """Inverse of :meth:`to_dict`."""
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


def init_train_state(params: Any, tx: optax.GradientTransformation, seed: int) -> TrainState:
    """A fresh state at step 0; the EMA starts at ``params``."""
    params = jax.tree.map(jnp.array, params)  # a copy: the train step donates the state
    return TrainState(
        params=params,
        opt_state=tx.init(params),
        ema_params=jax.tree.map(jnp.copy, params),
        step=jnp.zeros((), jnp.int32),
        rng=jax.random.PRNGKey(seed),
    )
