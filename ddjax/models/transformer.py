"""Transformers over token sequences: the DiT denoiser and the causal baseline.

Both share one backbone: token embedding, pre-norm blocks with rotary
self-attention and a GELU MLP, adaLN-zero modulation (shift, scale and gate of
each branch predicted from a conditioning vector), and a final adaLN + linear
readout initialised at zero, so every model starts with all logits 0.

Precision: parameters are float32; ``dtype`` sets the matmul / activation dtype
(bfloat16 on accelerators). The residual stream, norms, softmax and the
returned logits stay float32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array
from jax.typing import ArrayLike, DTypeLike

from ddjax.models.layers import TimeEmbedding, apply_rotary, layer_norm, rotary_embedding

__all__ = ["DiT", "CausalTransformer", "ar_log_likelihood"]

_zeros = nnx.initializers.zeros_init()
_embed_init = nnx.initializers.normal(stddev=0.02)


class _Modulation(nnx.Module):
    """adaLN-zero: ``n`` vectors of size ``width`` from the conditioning vector, zero at init.

    Without conditioning (``cond_dim=None``) the vectors are learned constants.
    ``__call__(c: float32[B, cond_dim] | None) -> list of n float32[B or 1, 1, width]``.
    """

    def __init__(self, cond_dim: int | None, n: int, width: int, *, rngs: nnx.Rngs) -> None:
        self.n = n
        if cond_dim is None:
            self.linear = None
            self.bias = nnx.Param(jnp.zeros((n * width,), jnp.float32))
        else:
            self.linear = nnx.Linear(
                cond_dim, n * width, kernel_init=_zeros, bias_init=_zeros, rngs=rngs
            )
            self.bias = None

    def __call__(self, c: Array | None) -> list[Array]:
        if self.linear is None:
            out = self.bias[...][None, :]
        else:
            out = self.linear(jax.nn.silu(c))
        return jnp.split(out[:, None, :], self.n, axis=-1)


class _Attention(nnx.Module):
    def __init__(
        self,
        width: int,
        num_heads: int,
        *,
        causal: bool,
        dtype: DTypeLike,
        implementation: str | None,
        rngs: nnx.Rngs,
    ) -> None:
        self.num_heads = num_heads
        self.causal = causal
        self.implementation = implementation
        self.qkv = nnx.Linear(width, 3 * width, use_bias=False, dtype=dtype, rngs=rngs)
        self.out = nnx.Linear(width, width, use_bias=False, dtype=dtype, rngs=rngs)

    def __call__(self, h: Array, cos: Array, sin: Array) -> Array:
        b, l, d = h.shape
        qkv = self.qkv(h).reshape(b, l, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        o = jax.nn.dot_product_attention(
            q, k, v, is_causal=self.causal, implementation=self.implementation
        )
        return self.out(o.reshape(b, l, d))


class _Block(nnx.Module):
    """Pre-norm transformer block with adaLN-zero modulation of both branches."""

    def __init__(
        self,
        width: int,
        num_heads: int,
        *,
        mlp_ratio: int,
        dropout: float,
        cond_dim: int | None,
        causal: bool,
        dtype: DTypeLike,
        implementation: str | None,
        rngs: nnx.Rngs,
    ) -> None:
        self.dtype = dtype
        self.attn = _Attention(
            width, num_heads, causal=causal, dtype=dtype, implementation=implementation, rngs=rngs
        )
        self.fc1 = nnx.Linear(width, mlp_ratio * width, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(mlp_ratio * width, width, dtype=dtype, rngs=rngs)
        self.modulation = _Modulation(cond_dim, 6, width, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)

    def _drop(self, h: Array, key: Array | None, salt: int) -> Array:
        if key is None or self.dropout.rate == 0.0:
            return h
        return self.dropout(h, rngs=jax.random.fold_in(key, salt))

    def __call__(
        self, x: Array, c: Array | None, cos: Array, sin: Array, key: Array | None
    ) -> Array:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c)
        h = layer_norm(x) * (1.0 + scale1) + shift1
        a = self.attn(h.astype(self.dtype), cos, sin).astype(jnp.float32)
        x = x + gate1 * self._drop(a, key, 0)
        h = layer_norm(x) * (1.0 + scale2) + shift2
        m = self.fc2(jax.nn.gelu(self.fc1(h.astype(self.dtype)))).astype(jnp.float32)
        return x + gate2 * self._drop(m, key, 1)


class DiT(nnx.Module):
    """Diffusion transformer over token sequences: int32[B, L] -> float32[B, L, out_size] logits.

    Token embedding, ``num_layers`` blocks of rotary self-attention + MLP with adaLN-zero
    conditioning, final adaLN + linear readout initialised at zero (initial logits are 0).
    No learned position embedding: positions enter only through the rotary attention.

    Conditioning: a sinusoidal embedding of ``t`` through an MLP (``time_conditioning``)
    plus a learned class embedding (``num_classes``; id ``num_classes`` is the null class
    used for classifier-free guidance and for ``labels=None``). With neither, the
    modulation vectors are learned constants (the time-free RADD variant).

    ``causal=True`` makes it autoregressive: a causal mask and inputs shifted right by one
    behind a learned BOS vector, so the logits at position i depend only on tokens < i.

    Args:
      vocab_size: number of input token ids (include the mask id for masking processes).
      out_size: number of output logits per position.
      num_layers, width, num_heads: transformer size (``width % (2 * num_heads) == 0``).
      max_len: longest accepted sequence length.
      time_conditioning: condition on ``t``; False ignores ``t``.
      num_classes: number of class labels (None: unconditional).
      mlp_ratio: MLP hidden size / width.
      dropout: dropout rate on both residual branches, applied only when ``__call__``
        gets a ``dropout_key``.
      dtype: matmul / activation dtype (params are float32).
      causal: autoregressive mode (see above).
      float32_logits: compute the readout matmul in float32 even when ``dtype`` is lower.
      attention_implementation: passed to ``jax.nn.dot_product_attention`` (None, 'xla',
        'cudnn').
      remat: rematerialise each block in the backward pass (saves activation memory).
      rngs: initialisation randomness.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        out_size: int,
        num_layers: int,
        width: int,
        num_heads: int,
        max_len: int,
        time_conditioning: bool = True,
        num_classes: int | None = None,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        dtype: DTypeLike = jnp.float32,
        causal: bool = False,
        float32_logits: bool = True,
        attention_implementation: str | None = None,
        remat: bool = False,
        rngs: nnx.Rngs,
    ) -> None:
        if width % num_heads or (width // num_heads) % 2:
            raise ValueError(
                f"width ({width}) must be a multiple of num_heads ({num_heads}) with an even "
                "head size (rotary embeddings rotate pairs of features)"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}")
        dtype = jnp.dtype(dtype)
        self.vocab_size = vocab_size
        self.out_size = out_size
        self.num_heads = num_heads
        self.max_len = max_len
        self.time_conditioning = time_conditioning
        self.num_classes = num_classes
        self.dtype = dtype
        self.causal = causal
        self.float32_logits = float32_logits
        self.remat = remat

        self.embed = nnx.Embed(vocab_size, width, embedding_init=_embed_init, rngs=rngs)
        self.bos = nnx.Param(_embed_init(rngs.params(), (width,))) if causal else None
        self.time_embed = (
            TimeEmbedding(width, dtype=dtype, rngs=rngs) if time_conditioning else None
        )
        self.label_embed = (
            nnx.Embed(num_classes + 1, width, embedding_init=_embed_init, rngs=rngs)
            if num_classes is not None
            else None
        )
        cond_dim = width if (time_conditioning or num_classes is not None) else None
        self.blocks = nnx.List(
            [
                _Block(
                    width,
                    num_heads,
                    mlp_ratio=mlp_ratio,
                    dropout=dropout,
                    cond_dim=cond_dim,
                    causal=causal,
                    dtype=dtype,
                    implementation=attention_implementation,
                    rngs=rngs,
                )
                for _ in range(num_layers)
            ]
        )
        self.final_modulation = _Modulation(cond_dim, 2, width, rngs=rngs)
        self.readout = nnx.Linear(
            width,
            out_size,
            kernel_init=_zeros,
            bias_init=_zeros,
            dtype=jnp.float32 if float32_logits else dtype,
            rngs=rngs,
        )

    def _conditioning(self, batch: int, t: Array | None, labels: Array | None) -> Array | None:
        c = None
        if self.time_embed is not None:
            if t is None:
                raise ValueError("this model is time-conditioned: pass t (float32[B])")
            t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (batch,))
            c = self.time_embed(t)
        if self.label_embed is not None:
            if labels is None:
                labels = jnp.full((batch,), self.num_classes, jnp.int32)
            emb = self.label_embed(jnp.asarray(labels, jnp.int32))
            c = emb if c is None else c + emb
        elif labels is not None:
            raise ValueError("labels given but the model has no classes (num_classes=None)")
        return c

    def __call__(
        self,
        x: ArrayLike,
        t: ArrayLike | None = None,
        labels: ArrayLike | None = None,
        *,
        dropout_key: Array | None = None,
    ) -> Array:
        """Logits for every position.

        Args:
          x: int32[B, L] token ids, L <= max_len.
          t: float32[B] (or a scalar) times in [0, 1]; ignored without time conditioning.
          labels: int32[B] class ids in 0..num_classes (num_classes = null class); None
            means the null class.
          dropout_key: PRNG key enabling dropout (training); None is deterministic.

        Returns:
          float32[B, L, out_size] logits.
        """
        x = jnp.asarray(x, jnp.int32)
        if x.ndim != 2:
            raise ValueError(f"x must be int32[B, L], got shape {x.shape}")
        b, l = x.shape
        if l > self.max_len:
            raise ValueError(f"sequence length {l} exceeds max_len={self.max_len}")
        c = self._conditioning(b, t, labels)
        h = self.embed(x).astype(jnp.float32)
        if self.causal:
            bos = jnp.broadcast_to(self.bos[...].astype(jnp.float32), (b, 1, h.shape[-1]))
            h = jnp.concatenate([bos, h[:, :-1]], axis=1)
        cos, sin = rotary_embedding(l, h.shape[-1] // self.num_heads)
        for i, block in enumerate(self.blocks):
            key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
            if self.remat:
                h = nnx.remat(lambda blk, *a: blk(*a))(block, h, c, cos, sin, key)
            else:
                h = block(h, c, cos, sin, key)
        shift, scale = self.final_modulation(c)
        h = layer_norm(h) * (1.0 + scale) + shift
        return self.readout(h.astype(self.readout.dtype)).astype(jnp.float32)


class CausalTransformer(DiT):
    """Autoregressive baseline: the DiT backbone with a causal mask and no time conditioning.

    ``__call__(x: int32[B, L]) -> float32[B, L, vocab_size]``, where the logits at
    position i predict token i from tokens < i (position 0 from a learned BOS vector).
    ``t`` and ``labels`` are accepted and ignored / used as in :class:`DiT`, so it can be
    called with the same signature as a denoiser.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        num_layers: int,
        width: int,
        num_heads: int,
        max_len: int,
        dtype: DTypeLike = jnp.float32,
        num_classes: int | None = None,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        float32_logits: bool = True,
        attention_implementation: str | None = None,
        remat: bool = False,
        rngs: nnx.Rngs,
    ) -> None:
        super().__init__(
            vocab_size=vocab_size,
            out_size=vocab_size,
            num_layers=num_layers,
            width=width,
            num_heads=num_heads,
            max_len=max_len,
            time_conditioning=False,
            num_classes=num_classes,
            mlp_ratio=mlp_ratio,
            dropout=dropout,
            dtype=dtype,
            causal=True,
            float32_logits=float32_logits,
            attention_implementation=attention_implementation,
            remat=remat,
            rngs=rngs,
        )


def _sequence_log_likelihood(logits: Array, x: Array) -> Array:
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, x[..., None], axis=-1)[..., 0].sum(-1)


@functools.partial(jax.jit, static_argnums=0)
def _ar_ll_jit(graphdef: nnx.GraphDef, params: nnx.State, x: Array) -> Array:
    return _sequence_log_likelihood(nnx.merge(graphdef, params)(x), x)


def ar_log_likelihood(
    model: nnx.Module | Callable[[Array], Array], x: ArrayLike, *, batch_size: int | None = None
) -> Array:
    """log p(x) under an autoregressive model, in nats per sequence.

    Args:
      model: a :class:`CausalTransformer` (run under ``jax.jit``), or any callable
        ``x int32[B, L] -> logits float[B, L, V]`` with the same shift convention.
      x: int32[B, L] sequences.
      batch_size: evaluate in chunks of this many sequences (memory bound); None: all at once.

    Returns:
      float32[B]: sum over positions of log p(x_i | x_<i) (negate for the NLL).
    """
    x = jnp.asarray(x, jnp.int32)
    if isinstance(model, nnx.Module):
        graphdef, params = nnx.split(model, nnx.Param)

        def fn(chunk: Array) -> Array:
            return _ar_ll_jit(graphdef, params, chunk)

    else:

        def fn(chunk: Array) -> Array:
            return _sequence_log_likelihood(model(chunk), chunk)

    if batch_size is None or batch_size >= x.shape[0]:
        return fn(x)
    return jnp.concatenate([fn(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])
