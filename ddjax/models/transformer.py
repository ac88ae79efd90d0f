"""Transformers over token sequences: the DiT denoiser and the causal baseline.

Both share one backbone: token embedding, pre-norm blocks with rotary
self-attention and a GELU MLP, adaLN-zero modulation (shift, scale and gate of
each branch predicted from a conditioning vector), and a final adaLN + linear
readout initialised at zero, so every model starts with all logits 0.

Architecture options (all off by default, so the default model is unchanged) reproduce
published networks exactly, for :mod:`ddjax.interop`: a conditioning width apart from the
model width (``cond_dim``), the scale of the sinusoidal time features (``time_scale``),
learned norm parameters and epsilon (``norm``, ``norm_eps``), no adaLN at all (``adaln``),
learned absolute positions instead of rotary (``positions``), the rotary pairing
(``rotary_interleaved``), attention biases, a readout tied to the token embedding
(``tie_embeddings``) and causal models without the BOS shift (``bos_shift``).

Precision: parameters are float32; ``dtype`` sets the matmul / activation dtype
(bfloat16 on accelerators). The residual stream, norms, softmax and the
returned logits stay float32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array
from jax.typing import ArrayLike, DTypeLike

from ddjax.models.layers import (
    LayerNorm,
    TimeEmbedding,
    apply_rotary,
    layer_norm,
    rotary_embedding,
)

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
        bias: bool = False,
        rotary_interleaved: bool = False,
        rngs: nnx.Rngs,
    ) -> None:
        self.num_heads = num_heads
        self.causal = causal
        self.implementation = implementation
        self.rotary_interleaved = rotary_interleaved
        self.qkv = nnx.Linear(width, 3 * width, use_bias=bias, dtype=dtype, rngs=rngs)
        self.out = nnx.Linear(width, width, use_bias=bias, dtype=dtype, rngs=rngs)

    def __call__(
        self,
        h: Array,
        cos: Array | None,
        sin: Array | None,
        mask: Array | None = None,
        cache: tuple | None = None,
    ) -> Array | tuple[Array, tuple[Array, Array]]:
        """``cache``: (keys, values, offset) writes this call's keys / values at offset;
        (keys, values, offset, False) only reads the buffer (see DiT.cached_block)."""
        b, l, d = h.shape
        qkv = self.qkv(h).reshape(b, l, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if cos is not None:
            q = apply_rotary(q, cos, sin, interleaved=self.rotary_interleaved)
            k = apply_rotary(k, cos, sin, interleaved=self.rotary_interleaved)
        if cache is not None and len(cache) == 4 and not cache[3]:
            # read-only KV cache: attend to the cached positions before ``offset`` and to
            # this block itself, without writing the buffer (no copy of it per call)
            k_buf, v_buf, offset, _ = cache
            scale = 1.0 / jnp.sqrt(jnp.asarray(q.shape[-1], jnp.float32)).astype(q.dtype)
            s_buf = jnp.einsum("bqhd,bkhd->bhqk", q, k_buf.astype(q.dtype)) * scale
            s_own = jnp.einsum("bqhd,bkhd->bhqk", q, k) * scale
            seen = (jnp.arange(k_buf.shape[1]) < offset)[None, None, None, :]
            s_buf = jnp.where(seen, s_buf.astype(jnp.float32), -jnp.inf)
            p = jax.nn.softmax(jnp.concatenate([s_buf, s_own.astype(jnp.float32)], -1), -1)
            p = p.astype(q.dtype)
            m = k_buf.shape[1]
            o = jnp.einsum("bhqk,bkhd->bqhd", p[..., :m], v_buf.astype(q.dtype))
            o = o + jnp.einsum("bhqk,bkhd->bqhd", p[..., m:], v)
            return self.out(o.reshape(b, l, d)), (k_buf, v_buf)
        if cache is not None:
            # exact KV cache: write this block's keys / values at ``offset`` and attend to
            # every cached position before the block's end (static shapes)
            k_buf, v_buf, offset = cache[:3]
            start = (0, offset, 0, 0)
            k_buf = jax.lax.dynamic_update_slice(k_buf, k.astype(k_buf.dtype), start)
            v_buf = jax.lax.dynamic_update_slice(v_buf, v.astype(v_buf.dtype), start)
            seen = (jnp.arange(k_buf.shape[1]) < offset + l)[None, None, None, :]
            o = jax.nn.dot_product_attention(
                q, k_buf.astype(q.dtype), v_buf.astype(q.dtype), mask=seen
            )
            return self.out(o.reshape(b, l, d)), (k_buf, v_buf)
        o = jax.nn.dot_product_attention(
            q,
            k,
            v,
            mask=mask,
            is_causal=self.causal and mask is None,
            implementation=self.implementation,
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
        norm: str = "plain",
        norm_eps: float = 1e-6,
        adaln: bool = True,
        attention_bias: bool = False,
        rotary_interleaved: bool = False,
        rngs: nnx.Rngs,
    ) -> None:
        self.dtype = dtype
        self.norm_eps = norm_eps
        self.attn = _Attention(
            width,
            num_heads,
            causal=causal,
            dtype=dtype,
            implementation=implementation,
            bias=attention_bias,
            rotary_interleaved=rotary_interleaved,
            rngs=rngs,
        )
        self.fc1 = nnx.Linear(width, mlp_ratio * width, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(mlp_ratio * width, width, dtype=dtype, rngs=rngs)
        self.norm1 = _norm(norm, width, norm_eps)
        self.norm2 = _norm(norm, width, norm_eps)
        self.modulation = _Modulation(cond_dim, 6, width, rngs=rngs) if adaln else None
        self.dropout = nnx.Dropout(dropout)

    def _drop(self, h: Array, key: Array | None, salt: int) -> Array:
        if key is None or self.dropout.rate == 0.0:
            return h
        return self.dropout(h, rngs=jax.random.fold_in(key, salt))

    def _normed(self, norm: LayerNorm | None, x: Array) -> Array:
        return layer_norm(x, self.norm_eps) if norm is None else norm(x)

    def __call__(
        self,
        x: Array,
        c: Array | None,
        cos: Array | None,
        sin: Array | None,
        key: Array | None,
        mask: Array | None = None,
        cache: tuple | None = None,
    ) -> Array | tuple[Array, tuple[Array, Array]]:
        if self.modulation is None:
            shift1 = scale1 = shift2 = scale2 = 0.0
            gate1 = gate2 = 1.0
        else:
            shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c)
        h = self._normed(self.norm1, x)
        if self.modulation is not None:
            h = h * (1.0 + scale1) + shift1
        a = self.attn(h.astype(self.dtype), cos, sin, mask, cache)
        if cache is not None:
            a, cache = a
        x = x + gate1 * self._drop(a.astype(jnp.float32), key, 0)
        h = self._normed(self.norm2, x)
        if self.modulation is not None:
            h = h * (1.0 + scale2) + shift2
        m = self.fc2(jax.nn.gelu(self.fc1(h.astype(self.dtype)))).astype(jnp.float32)
        x = x + gate2 * self._drop(m, key, 1)
        return x if cache is None else (x, cache)


def _norm(kind: str, width: int, eps: float) -> LayerNorm | None:
    if kind == "plain":
        return None
    return LayerNorm(width, params=kind, eps=eps)


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
      cond_dim: width of the conditioning vector (time / label embedding); None: ``width``.
      time_scale: ``t`` is multiplied by this inside the sinusoidal features (1.0 embeds the
        input as given, as MDLM, SEDD and Duo do with sigma).
      norm: 'plain' (no parameters, the default), 'scale' (learned weight; MDLM, SEDD,
        Duo) or 'affine' (learned weight and bias; GPT-2), for every block norm and the
        final norm.
      norm_eps: layer-norm epsilon (the references use 1e-5).
      adaln: False drops the adaLN modulation altogether (pre-norm residual blocks with no
        shift, scale or gate, as in GPT-2); needs no conditioning.
      positions: 'rotary' (the default) or 'learned' (a learned absolute position
        embedding of ``max_len`` rows added to the token embedding, no rotary; GPT-2).
      rotary_interleaved: rotary pairing, see :func:`ddjax.models.layers.apply_rotary`.
      attention_bias: biases on the qkv and output projections (GPT-2).
      tie_embeddings: the readout is the transposed token embedding (no readout kernel).
      readout_bias: a bias on the readout.
      bos_shift: in causal mode, shift the inputs right behind a learned BOS vector (the
        default, None, means ``causal``). False gives GPT-2's convention: the logits at
        position i predict token i + 1 from tokens <= i.
      block_size: block-causal attention (BD3-LM): position i attends to every position
        of its own block and of earlier blocks (blocks of ``block_size`` consecutive
        positions). ``__call__(x_t, t, x0=x0)`` runs BD3-LM's training pass over the
        concatenation [x_t ; x0] (x_t block b sees itself and the clean blocks < b),
        and :meth:`init_cache` / :meth:`cached_block` give the exact KV cache.
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
        cond_dim: int | None = None,
        time_scale: float = 1000.0,
        norm: str = "plain",
        norm_eps: float = 1e-6,
        adaln: bool = True,
        positions: str = "rotary",
        rotary_interleaved: bool = False,
        attention_bias: bool = False,
        tie_embeddings: bool = False,
        readout_bias: bool = True,
        bos_shift: bool | None = None,
        block_size: int | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        if block_size is not None and (block_size < 1 or causal):
            raise ValueError(f"block_size must be >= 1 on a non-causal DiT, got {block_size}")
        if norm not in ("plain", "scale", "affine"):
            raise ValueError(f"norm must be 'plain', 'scale' or 'affine', got {norm!r}")
        if positions not in ("rotary", "learned"):
            raise ValueError(f"positions must be 'rotary' or 'learned', got {positions!r}")
        if not adaln and (time_conditioning or num_classes is not None):
            raise ValueError("adaln=False needs time_conditioning=False and num_classes=None")
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
        self.norm_eps = norm_eps
        self.positions = positions
        self.tie_embeddings = tie_embeddings
        self.bos_shift = causal if bos_shift is None else bos_shift
        self.block_size = block_size
        if self.bos_shift and not causal:
            raise ValueError("bos_shift=True needs causal=True")
        cond_width = width if cond_dim is None else cond_dim

        self.embed = nnx.Embed(vocab_size, width, embedding_init=_embed_init, rngs=rngs)
        self.bos = nnx.Param(_embed_init(rngs.params(), (width,))) if self.bos_shift else None
        self.pos_embed = (
            nnx.Param(_embed_init(rngs.params(), (max_len, width)))
            if positions == "learned"
            else None
        )
        self.time_embed = (
            TimeEmbedding(cond_width, scale=time_scale, dtype=dtype, rngs=rngs)
            if time_conditioning
            else None
        )
        self.label_embed = (
            nnx.Embed(num_classes + 1, cond_width, embedding_init=_embed_init, rngs=rngs)
            if num_classes is not None
            else None
        )
        cond_dim = cond_width if (time_conditioning or num_classes is not None) else None
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
                    norm=norm,
                    norm_eps=norm_eps,
                    adaln=adaln,
                    attention_bias=attention_bias,
                    rotary_interleaved=rotary_interleaved,
                    rngs=rngs,
                )
                for _ in range(num_layers)
            ]
        )
        self.final_norm = _norm(norm, width, norm_eps)
        self.final_modulation = _Modulation(cond_dim, 2, width, rngs=rngs) if adaln else None
        readout_dtype = jnp.float32 if float32_logits else dtype
        if tie_embeddings:
            if out_size != vocab_size:
                raise ValueError(
                    f"tie_embeddings needs out_size == vocab_size, got {out_size} != {vocab_size}"
                )
            self.readout = None
            self.readout_bias = (
                nnx.Param(jnp.zeros((out_size,), jnp.float32)) if readout_bias else None
            )
        else:
            self.readout = nnx.Linear(
                width,
                out_size,
                use_bias=readout_bias,
                kernel_init=_zeros,
                bias_init=_zeros,
                dtype=readout_dtype,
                rngs=rngs,
            )
            self.readout_bias = None
        self.readout_dtype = readout_dtype

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
        return_features: bool = False,
        x0: ArrayLike | None = None,
    ) -> Array:
        """Logits for every position.

        Args:
          x: int32[B, L] token ids, L <= max_len.
          t: float32[B] (or a scalar) times in [0, 1]; ignored without time conditioning.
          labels: int32[B] class ids in 0..num_classes (num_classes = null class); None
            means the null class.
          dropout_key: PRNG key enabling dropout (training); None is deterministic.
          return_features: return the final hidden states (after the final norm and
          modulation, before the readout) instead of the logits: float32[B, L, width]
          (MAUVE's features).
          x0: int32[B, L] clean tokens for the block-causal training pass (needs
            ``block_size``); the logits are those of the x_t half.

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
        mask = None
        if x0 is not None and self.block_size is None:
            raise ValueError("x0 is only for block-causal models (block_size)")
        if self.block_size is not None:
            if x0 is not None:
                x0 = jnp.asarray(x0, jnp.int32)
                if x0.shape != x.shape:
                    raise ValueError(f"x0 {x0.shape} must have the shape of x_t {x.shape}")
                h = jnp.concatenate([h, self.embed(x0).astype(jnp.float32)], axis=1)
                mask = _block_diff_mask(l, self.block_size)
            else:
                mask = _block_causal_mask(l, self.block_size)
        if self.bos is not None:
            bos = jnp.broadcast_to(self.bos[...].astype(jnp.float32), (b, 1, h.shape[-1]))
            h = jnp.concatenate([bos, h[:, :-1]], axis=1)
        if self.pos_embed is not None:
            h = h + self.pos_embed[...][:l].astype(jnp.float32)
            cos = sin = None
        else:
            cos, sin = rotary_embedding(l, h.shape[-1] // self.num_heads)
            if x0 is not None:  # both halves carry positions 0..L-1
                cos, sin = jnp.concatenate([cos, cos]), jnp.concatenate([sin, sin])
        for i, block in enumerate(self.blocks):
            key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
            if self.remat:
                h = nnx.remat(lambda blk, *a: blk(*a))(block, h, c, cos, sin, key, mask)
            else:
                h = block(h, c, cos, sin, key, mask)
        if x0 is not None:
            h = h[:, :l]
        return self._head(h, c, return_features)

    def _head(self, h: Array, c: Array | None, return_features: bool) -> Array:
        """Final norm, modulation and readout: h float32[B, L, width] -> [B, L, out_size]
        (or the features)."""
        h = layer_norm(h, self.norm_eps) if self.final_norm is None else self.final_norm(h)
        if self.final_modulation is not None:
            shift, scale = self.final_modulation(c)
            h = h * (1.0 + scale) + shift
        if return_features:
            return h.astype(jnp.float32)
        h = h.astype(self.readout_dtype)
        if self.readout is not None:
            out = self.readout(h).astype(jnp.float32)
        else:
            out = h @ self.embed.embedding[...].astype(self.readout_dtype).T
            if self.readout_bias is not None:
                out = out + self.readout_bias[...]
            out = out.astype(jnp.float32)
        return out

    def init_cache(self, batch: int) -> list[tuple[Array, Array]]:
        """An empty KV cache for :meth:`cached_block`: per layer (keys, values), each
        float32[batch, max_len, num_heads, head_dim]."""
        head = self.embed.embedding.get_value().shape[1] // self.num_heads
        shape = (batch, self.max_len, self.num_heads, head)
        return [(jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32)) for _ in self.blocks]

    def cached_block(
        self,
        x_block: ArrayLike,
        t: ArrayLike | None,
        cache: list[tuple[Array, Array]],
        offset: ArrayLike,
        labels: ArrayLike | None = None,
        *,
        write: bool = True,
    ) -> tuple[Array, list[tuple[Array, Array]]]:
        """Logits of one block at positions ``offset .. offset + n`` from a KV cache.

        The block attends to itself and to the cached keys / values before ``offset``; its
        own keys / values are written into the cache at ``offset`` (the returned cache);
        with ``write=False`` the cache is only read (and returned unchanged): the cheap
        form for the calls on a noisy block, whose keys are not kept.
        Advance ``offset`` by the block's length once the block is final, so that later
        blocks see it; calling again at the same offset overwrites the slot (as the
        noisy block is overwritten while it is being sampled). With the clean prefix in
        the cache this equals ``__call__`` on the whole sequence (block-causal), for that
        block's rows. Needs rotary positions (no learned positions, no BOS shift).

        Args:
          x_block: int32[B, n] tokens of the block, offset + n <= max_len.
          t: float32[B] as in ``__call__``.
          cache: from :meth:`init_cache` or a previous call.
          offset: int32 scalar (may be traced), the block's first position.

        Returns:
          (float32[B, n, out_size] logits, the updated cache).
        """
        if self.pos_embed is not None or self.bos is not None:
            raise ValueError("cached_block needs rotary positions and no BOS shift")
        x_block = jnp.asarray(x_block, jnp.int32)
        b, n = x_block.shape
        c = self._conditioning(b, t, labels)
        h = self.embed(x_block).astype(jnp.float32)
        cos, sin = rotary_embedding(self.max_len, h.shape[-1] // self.num_heads)
        offset = jnp.asarray(offset, jnp.int32)
        cos = jax.lax.dynamic_slice_in_dim(cos, offset, n)
        sin = jax.lax.dynamic_slice_in_dim(sin, offset, n)
        new_cache = []
        for block, (k_buf, v_buf) in zip(self.blocks, cache, strict=True):
            h, kv = block(h, c, cos, sin, None, None, (k_buf, v_buf, offset, write))
            new_cache.append(kv)
        return self._head(h, c, False), new_cache

    def cached_step(
        self,
        token: ArrayLike,
        cache: list[tuple[Array, Array]],
        position: ArrayLike,
        labels: ArrayLike | None = None,
    ) -> tuple[Array, list[tuple[Array, Array]]]:
        """One position of a causal model from a KV cache (autoregressive decoding).

        The input at ``position`` is written into the cache and attends to every cached
        position up to it, so stepping ``position`` = 0, 1, ... gives the rows of
        ``__call__`` on the whole sequence (causal), one at a time, static shapes.

        Args:
          token: int32[B], the input token of ``position``: x[position - 1] for a
            BOS-shifted model (ignored at position 0, where the BOS vector enters),
            x[position] without the BOS shift.
          cache: from :meth:`init_cache` or a previous call.
          position: int32 scalar (may be traced), < max_len.

        Returns:
          (float32[B, out_size] logits at ``position``: the law of token ``position``
          with the BOS shift, of token ``position + 1`` without, the updated cache).
        """
        if not self.causal:
            raise ValueError("cached_step is for causal models (causal=True); see cached_block")
        token = jnp.asarray(token, jnp.int32).reshape(-1, 1)
        b = token.shape[0]
        c = self._conditioning(b, None, labels)
        position = jnp.asarray(position, jnp.int32)
        h = self.embed(token).astype(jnp.float32)
        if self.bos is not None:
            bos = jnp.broadcast_to(self.bos[...].astype(jnp.float32), h.shape)
            h = jnp.where(position == 0, bos, h)
        if self.pos_embed is not None:
            h = h + jax.lax.dynamic_slice_in_dim(self.pos_embed[...], position, 1)[None]
            cos = sin = None
        else:
            cos, sin = rotary_embedding(self.max_len, h.shape[-1] // self.num_heads)
            cos = jax.lax.dynamic_slice_in_dim(cos, position, 1)
            sin = jax.lax.dynamic_slice_in_dim(sin, position, 1)
        new_cache = []
        for block, (k_buf, v_buf) in zip(self.blocks, cache, strict=True):
            h, kv = block(h, c, cos, sin, None, None, (k_buf, v_buf, position))
            new_cache.append(kv)
        return self._head(h, c, False)[:, 0], new_cache


def _block_causal_mask(length: int, block_size: int) -> Array:
    """bool[1, 1, L, L]: query i sees key j when block(j) <= block(i)."""
    blk = jnp.arange(length) // block_size
    return (blk[None, :] <= blk[:, None])[None, None]


def _block_diff_mask(length: int, block_size: int) -> Array:
    """bool[1, 1, 2L, 2L] over [x_t ; x0] (BD3-LM's training mask).

    x_t block b sees itself (block diagonal) and the x0 blocks < b; x0 block b sees the
    x0 blocks <= b.
    """
    idx = jnp.arange(2 * length)
    clean = idx >= length
    blk = jnp.where(clean, idx - length, idx) // block_size
    bq, bk = blk[:, None], blk[None, :]
    cq, ck = clean[:, None], clean[None, :]
    diagonal = (bq == bk) & (cq == ck)
    offset_causal = (bq > bk) & ck & ~cq
    causal = (bq >= bk) & ck & cq
    return (diagonal | offset_causal | causal)[None, None]


class CausalTransformer(DiT):
    """Autoregressive baseline: the DiT backbone with a causal mask and no time conditioning.

    ``__call__(x: int32[B, L]) -> float32[B, L, vocab_size]``, where the logits at
    position i predict token i from tokens < i (position 0 from a learned BOS vector).
    ``t`` and ``labels`` are accepted and ignored / used as in :class:`DiT`, so it can be
    called with the same signature as a denoiser.

    ``options`` are the architecture options of :class:`DiT` (``norm``, ``norm_eps``,
    ``adaln``, ``positions``, ``rotary_interleaved``, ``attention_bias``,
    ``tie_embeddings``, ``readout_bias``, ``bos_shift``); e.g. GPT-2 is
    ``norm='affine', norm_eps=1e-5, adaln=False, positions='learned',
    attention_bias=True, tie_embeddings=True, readout_bias=False, bos_shift=False``.
    With ``bos_shift=False`` the logits at i predict token i + 1, so
    :func:`ar_log_likelihood` (which assumes the BOS shift) does not apply; see
    :func:`ddjax.metrics.generative_perplexity`.
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
        **options: Any,
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
            **options,
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
