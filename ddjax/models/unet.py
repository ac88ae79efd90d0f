"""A small U-Net over 2-D grids of discrete pixel levels."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array
from jax.typing import ArrayLike, DTypeLike

from ddjax.models.layers import TimeEmbedding

__all__ = ["UNet"]

_zeros = nnx.initializers.zeros_init()


def _conv_init(key: Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> Array:
    """LeCun truncated-normal kernel init, drawn flat and reshaped.

    Same law as ``nnx.initializers.lecun_normal()`` for conv kernels [kh, kw, cin, cout];
    drawing a 1-D array compiles several times faster on XLA:CPU than a 4-D draw.
    """
    fan_in = math.prod(shape[:-1])
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978  # std of N(0,1) truncated to [-2, 2]
    flat = jax.random.truncated_normal(key, -2.0, 2.0, (math.prod(shape),), jnp.float32)
    return (std * flat).reshape(shape).astype(dtype)


def _num_groups(channels: int) -> int:
    return math.gcd(channels, 8)


class _ResBlock(nnx.Module):
    """GroupNorm-SiLU-conv twice, with a FiLM (scale, shift) from the conditioning vector."""

    def __init__(
        self,
        cin: int,
        cout: int,
        cond_dim: int | None,
        *,
        dropout: float,
        dtype: DTypeLike,
        rngs: nnx.Rngs,
    ) -> None:
        self.dtype = dtype
        self.norm1 = nnx.GroupNorm(cin, num_groups=_num_groups(cin), rngs=rngs)
        self.conv1 = nnx.Conv(cin, cout, (3, 3), kernel_init=_conv_init, dtype=dtype, rngs=rngs)
        self.film = nnx.Linear(cond_dim, 2 * cout, rngs=rngs) if cond_dim is not None else None
        self.norm2 = nnx.GroupNorm(cout, num_groups=_num_groups(cout), rngs=rngs)
        self.conv2 = nnx.Conv(
            cout, cout, (3, 3), kernel_init=_zeros, dtype=dtype, rngs=rngs
        )  # each block starts as the identity (plus skip projection)
        self.skip = (
            nnx.Conv(cin, cout, (1, 1), kernel_init=_conv_init, dtype=dtype, rngs=rngs)
            if cin != cout
            else None
        )
        self.dropout = nnx.Dropout(dropout)

    def __call__(self, x: Array, c: Array | None, key: Array | None) -> Array:
        h = self.conv1(jax.nn.silu(self.norm1(x)).astype(self.dtype)).astype(jnp.float32)
        h = self.norm2(h)
        if self.film is not None:
            scale, shift = jnp.split(self.film(jax.nn.silu(c))[:, None, None, :], 2, axis=-1)
            h = h * (1.0 + scale) + shift
        h = jax.nn.silu(h)
        if key is not None and self.dropout.rate > 0.0:
            h = self.dropout(h, rngs=key)
        h = self.conv2(h.astype(self.dtype)).astype(jnp.float32)
        skip = x if self.skip is None else self.skip(x.astype(self.dtype)).astype(jnp.float32)
        return skip + h


class UNet(nnx.Module):
    """U-Net denoiser for pixel grids: int32[B, H, W] -> float32[B, H, W, out_size] logits.

    Token embedding, a 3x3 stem, one residual block per resolution on the way down
    (halving H and W between levels), two at the bottom, one per resolution on the way
    up with a skip connection from the same resolution, and a zero-initialised 3x3
    readout (initial logits are 0). Residual blocks are conditioned (FiLM) on a
    sinusoidal embedding of ``t`` plus an optional class embedding (id ``num_classes``
    is the null class). H and W must be divisible by ``2 ** (len(channel_mults) - 1)``.

    Args:
      vocab_size: number of input pixel levels (include the mask id for masking).
      out_size: number of output logits per pixel.
      base_channels: channels at full resolution.
      channel_mults: channel multiplier per resolution level.
      num_classes: number of class labels (None: unconditional).
      time_conditioning: condition on ``t``; False ignores ``t``.
      dropout: dropout rate inside residual blocks, applied only with a ``dropout_key``.
      dtype: conv / matmul dtype (params float32; norms and logits float32).
      rngs: initialisation randomness.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        out_size: int,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        num_classes: int | None = None,
        time_conditioning: bool = True,
        dropout: float = 0.0,
        dtype: DTypeLike = jnp.float32,
        in_channels: int = 1,
        rngs: nnx.Rngs,
    ) -> None:
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.in_channels = in_channels
        if len(channel_mults) < 1:
            raise ValueError("channel_mults must have at least one level")
        dtype = jnp.dtype(dtype)
        self.vocab_size = vocab_size
        self.out_size = out_size
        self.num_classes = num_classes
        self.time_conditioning = time_conditioning
        self.dtype = dtype
        self.num_levels = len(channel_mults)
        chs = [base_channels * int(m) for m in channel_mults]
        cond_dim = 4 * base_channels if (time_conditioning or num_classes is not None) else None

        self.embed = nnx.Embed(vocab_size, base_channels, rngs=rngs)
        self.time_embed = (
            TimeEmbedding(cond_dim, frequency_dim=max(base_channels, 32), dtype=dtype, rngs=rngs)
            if time_conditioning
            else None
        )
        self.label_embed = (
            nnx.Embed(num_classes + 1, cond_dim, rngs=rngs) if num_classes is not None else None
        )
        # colour channels: each channel's level is embedded and the embeddings concatenated
        self.stem = nnx.Conv(
            in_channels * base_channels,
            base_channels,
            (3, 3),
            kernel_init=_conv_init,
            dtype=dtype,
            rngs=rngs,
        )

        kw = dict(dropout=dropout, dtype=dtype, rngs=rngs)
        down, downsample, prev = [], [], base_channels
        for i, ch in enumerate(chs):
            down.append(_ResBlock(prev, ch, cond_dim, **kw))
            if i < len(chs) - 1:
                downsample.append(
                    nnx.Conv(
                        ch, ch, (3, 3), strides=2, kernel_init=_conv_init, dtype=dtype, rngs=rngs
                    )
                )
            prev = ch
        self.down = nnx.List(down)
        self.downsample = nnx.List(downsample)
        self.mid1 = _ResBlock(prev, prev, cond_dim, **kw)
        self.mid2 = _ResBlock(prev, prev, cond_dim, **kw)
        up, upsample = [None] * len(chs), [None] * (len(chs) - 1)
        for i in reversed(range(len(chs))):
            up[i] = _ResBlock(prev + chs[i], chs[i], cond_dim, **kw)
            prev = chs[i]
            if i > 0:
                upsample[i - 1] = nnx.Conv(
                    chs[i], chs[i - 1], (3, 3), kernel_init=_conv_init, dtype=dtype, rngs=rngs
                )
                prev = chs[i - 1]
        self.up = nnx.List(up)
        self.upsample = nnx.List(upsample)
        self.out_norm = nnx.GroupNorm(prev, num_groups=_num_groups(prev), rngs=rngs)
        self.readout = nnx.Conv(
            prev, in_channels * out_size, (3, 3), kernel_init=_zeros, bias_init=_zeros, rngs=rngs
        )

    def __call__(
        self,
        x: ArrayLike,
        t: ArrayLike | None = None,
        labels: ArrayLike | None = None,
        *,
        dropout_key: Array | None = None,
    ) -> Array:
        """Logits for every pixel.

        Args:
          x: int32[B, H, W] pixel levels, or int32[B, H, W, C] with C = in_channels > 1.
          t: float32[B] (or a scalar) times in [0, 1].
          labels: int32[B] class ids in 0..num_classes (num_classes = null class) or None.
          dropout_key: PRNG key enabling dropout; None is deterministic.

        Returns:
          float32[B, H, W, out_size] (float32[B, H, W, C, out_size] for C > 1).
        """
        x = jnp.asarray(x, jnp.int32)
        want = 3 if self.in_channels == 1 else 4
        if x.ndim != want or (want == 4 and x.shape[-1] != self.in_channels):
            shape = "[B, H, W]" if want == 3 else f"[B, H, W, {self.in_channels}]"
            raise ValueError(f"x must be int32{shape}, got shape {x.shape}")
        b, hgt, wid = x.shape[:3]
        factor = 2 ** (self.num_levels - 1)
        if hgt % factor or wid % factor:
            raise ValueError(
                f"H and W ({hgt}, {wid}) must be divisible by {factor} for "
                f"{self.num_levels} resolution levels"
            )
        c = None
        if self.time_embed is not None:
            if t is None:
                raise ValueError("this model is time-conditioned: pass t (float32[B])")
            c = self.time_embed(jnp.broadcast_to(jnp.asarray(t, jnp.float32), (b,)))
        if self.label_embed is not None:
            if labels is None:
                labels = jnp.full((b,), self.num_classes, jnp.int32)
            emb = self.label_embed(jnp.asarray(labels, jnp.int32))
            c = emb if c is None else c + emb
        elif labels is not None:
            raise ValueError("labels given but the model has no classes (num_classes=None)")

        counter = iter(range(1 << 30))

        def key() -> Array | None:
            n = next(counter)
            return None if dropout_key is None else jax.random.fold_in(dropout_key, n)

        emb = self.embed(x).reshape(b, hgt, wid, -1)
        h = self.stem(emb.astype(self.dtype)).astype(jnp.float32)
        skips = []
        for i in range(self.num_levels):
            h = self.down[i](h, c, key())
            skips.append(h)
            if i < self.num_levels - 1:
                h = self.downsample[i](h.astype(self.dtype)).astype(jnp.float32)
        h = self.mid2(self.mid1(h, c, key()), c, key())
        for i in reversed(range(self.num_levels)):
            h = self.up[i](jnp.concatenate([h, skips[i]], axis=-1), c, key())
            if i > 0:
                bb, hh, ww, cc = h.shape
                h = jax.image.resize(h, (bb, 2 * hh, 2 * ww, cc), method="nearest")
                h = self.upsample[i - 1](h.astype(self.dtype)).astype(jnp.float32)
        h = jax.nn.silu(self.out_norm(h))
        out = self.readout(h).astype(jnp.float32)
        if self.in_channels > 1:
            out = out.reshape(b, hgt, wid, self.in_channels, self.out_size)
        return out
