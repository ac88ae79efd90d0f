"""Building blocks shared by the models: time embeddings, rotary embeddings, norms.

Everything here is a pure function or a small ``nnx.Module`` holding only
``nnx.Param`` state, so ``ddjax.models.split`` captures a whole model.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array
from jax.typing import DTypeLike

__all__ = [
    "timestep_embedding",
    "rotary_embedding",
    "apply_rotary",
    "layer_norm",
    "LayerNorm",
    "TimeEmbedding",
]


def timestep_embedding(
    t: Array, dim: int, *, max_period: float = 10_000.0, scale: float = 1000.0
) -> Array:
    """Sinusoidal embedding of continuous times.

    Args:
      t: float[B], times in [0, 1] (any real value works).
      dim: embedding size (even).
      max_period: the longest period, in units of ``scale * t``.
      scale: ``t`` is multiplied by this first, so that t in [0, 1] spans many periods.

    Returns:
      float32[B, dim]: ``[cos(scale t f_j), sin(scale t f_j)]`` with geometric frequencies f_j.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = (scale * jnp.asarray(t, jnp.float32))[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def rotary_embedding(length: int, head_dim: int, *, base: float = 10_000.0) -> tuple[Array, Array]:
    """Rotary position tables (RoFormer, half-split convention).

    Returns:
      (cos, sin): float32[length, head_dim // 2] each.
    """
    half = head_dim // 2
    inv_freq = 1.0 / (base ** (jnp.arange(half, dtype=jnp.float32) / half))
    angles = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_freq[None, :]
    return jnp.cos(angles), jnp.sin(angles)


def apply_rotary(x: Array, cos: Array, sin: Array, *, interleaved: bool = False) -> Array:
    """Rotates query or key vectors by their position.

    Args:
      x: [B, L, N, H] queries or keys (H even).
      cos, sin: float32[L, H // 2] from :func:`rotary_embedding`.
      interleaved: which features form the rotated pairs. False (the default, GPT-NeoX /
        flash-attn ``interleaved=False``, used by MDLM, SEDD, Duo and BD3-LM): feature j
        pairs with j + H/2. True (GPT-J / original RoFormer): 2j pairs with 2j + 1.

    Returns:
      [B, L, N, H] in the dtype of ``x`` (the rotation is computed in float32).
    """
    dtype = x.dtype
    x = x.astype(jnp.float32)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        out = jnp.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
        return out.reshape(x.shape).astype(dtype)
    x1, x2 = jnp.split(x, 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(dtype)


def layer_norm(x: Array, eps: float = 1e-6) -> Array:
    """Layer norm without learned scale or bias, computed in float32.

    Args:
      x: [..., D].

    Returns:
      float32[..., D].
    """
    x = x.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)


class LayerNorm(nnx.Module):
    """Layer norm with a learned scale (and optionally a learned bias), in float32.

    ``params='scale'`` is MDLM / SEDD / Duo's norm (weight only), ``'affine'`` is
    ``torch.nn.LayerNorm`` (GPT-2). ``__call__(x: [..., D]) -> float32[..., D]``.
    """

    def __init__(self, dim: int, *, params: str = "scale", eps: float = 1e-5) -> None:
        if params not in ("scale", "affine"):
            raise ValueError(f"params must be 'scale' or 'affine', got {params!r}")
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32)) if params == "affine" else None

    def __call__(self, x: Array) -> Array:
        h = layer_norm(x, self.eps) * self.scale[...]
        return h if self.bias is None else h + self.bias[...]


class TimeEmbedding(nnx.Module):
    """Sinusoidal features of ``scale * t`` followed by a two-layer SiLU MLP.

    ``scale=1`` embeds the input as given (MDLM, SEDD and Duo embed sigma this way).

    ``__call__(t: float[B]) -> float32[B, out_features]``.
    """

    def __init__(
        self,
        out_features: int,
        *,
        frequency_dim: int = 256,
        scale: float = 1000.0,
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        self.frequency_dim = frequency_dim
        self.scale = scale
        self.fc1 = nnx.Linear(frequency_dim, out_features, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(out_features, out_features, dtype=dtype, rngs=rngs)

    def __call__(self, t: Array) -> Array:
        h = self.fc1(timestep_embedding(t, self.frequency_dim, scale=self.scale))
        return self.fc2(jax.nn.silu(h)).astype(jnp.float32)
