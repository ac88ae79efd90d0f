"""Small array helpers shared by the core modules (processes, losses, samplers)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from ddjax._struct import check

__all__ = ["onehot", "sequence_times", "take_last"]


def onehot(x: Array, n: int) -> Array:
    """float32[..., n] one-hot rows of the int tokens ``x`` [...]."""
    return (x[..., None] == jnp.arange(n, dtype=x.dtype)).astype(jnp.float32)


def sequence_times(t: ArrayLike, x: Array, dtype: Any = jnp.float32) -> Array:
    """``t`` as one time per sequence, shape ``x.shape[:-1]`` (a scalar is broadcast).

    Args:
      t: a scalar or an array of shape ``x.shape[:-1]``.
      x: tokens [..., L].
    """
    t = jnp.asarray(t, dtype)
    batch = x.shape[:-1]
    if t.ndim == 0:
        return jnp.broadcast_to(t, batch)
    check(
        t.shape == batch,
        f"t has shape {t.shape} but the tokens {x.shape} need one time per sequence: {batch}",
    )
    return t


def take_last(v: Array, index: Array) -> Array:
    """``v[..., index]`` per position: float[...] for v [..., N] and int index [...]."""
    return jnp.take_along_axis(v, index[..., None], axis=-1)[..., 0]
