"""Categorical draws that keep the Gumbel tail, and the exact two-stage draw.

This is core code: processes, the oracle and every sampler draw through it.

Gumbel-max draws ``argmax(logits + G)`` with ``G = -log E``, ``E ~ Exp(1)``. A
class far in the tail wins only when its ``E`` is tiny, so the resolution of the
uniform behind ``E`` near zero sets how large ``G`` can get. ``jax.random.gumbel``
in float32 builds ``E`` from a uniform with 23 random bits, which caps ``G`` near
16 nats: a class whose logit trails by more than that can never be drawn, and the
sample entropy drops (Zheng et al. 2024: generative perplexity 31 at 32-bit
Gumbel against 126 at 64-bit).

Here ``E = -log1p(-V)``, and ``V`` is built from 32 (or 64) random bits directly
in float32, whose exponent range keeps every low-order bit: the smallest ``V``
is 2**-33 (2**-65), which puts the cap at 22.9 (45.1) nats. The truncated mass of
a class is then at most exp(-22.9) ~ 1e-10 of its own probability (3e-20 with
``bits=64``). No float64 mode is needed, and the cost is one (two) random words
per class, the same as ``jax.random.categorical``'s one.

Large vocabularies use :func:`draw_tokens`'s exact two-stage draw (a group of about
sqrt(K) classes, then a class within it), about 2 sqrt(K) random words per row
instead of K, both stages through :func:`categorical`.

A row that is not a distribution (a NaN entry, or every entry -inf) has nothing to
draw: every draw here returns :data:`INVALID` (-1) for it instead of a silent 0, so a
denoiser that returned NaN or -inf shows in the samples without a host sync inside the
compiled loop (``ddjax.samplers.check_samples`` reads them on the host).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

__all__ = [
    "categorical",
    "gumbel",
    "uniform_from_words",
    "gumbel_from_uniform",
    "gumbel_float32_truncated",
    "draw_two_stage",
    "draw_tokens",
    "draw_from_probs",
    "TWO_STAGE_MIN_VOCAB",
    "INVALID",
    "invalid_rows",
]

# The id drawn from a row that is not a distribution (NaN, or every entry -inf).
INVALID = -1

# Vocabularies at least this large are drawn with the two-stage draw.
TWO_STAGE_MIN_VOCAB = 2048

_TWO_M32 = 2.0**-32


def uniform_from_words(hi: Array, lo: Array | None = None) -> Array:
    """V in (0, 1) as float32 from one (``hi``) or two (``hi``, ``lo``) uint32 words.

    V = (hi + 1/2) 2**-32, or (hi + (lo + 1/2) 2**-32) 2**-32: exact near 0, where the
    upper tail of the Gumbel is decided.
    """
    if lo is None:
        v = (hi.astype(jnp.float32) + 0.5) * _TWO_M32
    else:
        v = hi.astype(jnp.float32) * _TWO_M32 + (lo.astype(jnp.float32) + 0.5) * (
            _TWO_M32 * _TWO_M32
        )
    # Values within 2**-25 of 1 round to 1.0 in float32; keep E finite there
    # (this only touches the irrelevant lower tail of G, G >= -2.8).
    return jnp.minimum(v, 1.0 - 2.0**-24)


def _uniform_open(key: Array, shape: tuple[int, ...], bits: int) -> Array:
    """V uniform in (0, 1) as float32, with full resolution near 0."""
    if bits == 32:
        return uniform_from_words(jax.random.bits(key, shape, jnp.uint32))
    if bits == 64:
        k1, k2 = jax.random.split(key)
        hi = jax.random.bits(k1, shape, jnp.uint32)
        return uniform_from_words(hi, jax.random.bits(k2, shape, jnp.uint32))
    raise ValueError(f"bits must be 32 or 64, got {bits}")


def gumbel_from_uniform(v: Array) -> Array:
    """G = -log E with E = -log1p(-V) ~ Exp(1)."""
    return -jnp.log(-jnp.log1p(-v))


def gumbel(key: Array, shape: tuple[int, ...], bits: int = 32) -> Array:
    """Standard Gumbel noise, float32, with the upper tail kept to ``bits`` of resolution."""
    return gumbel_from_uniform(_uniform_open(key, shape, bits))


def gumbel_float32_truncated(key: Array, shape: tuple[int, ...]) -> Array:
    """JAX's default float32 Gumbel (tail capped near 16 nats); for comparisons only."""
    return jax.random.gumbel(key, shape, jnp.float32)


def categorical(key: Array, logits: ArrayLike, axis: int = -1, *, bits: int | str = 32) -> Array:
    """Draws an index from ``softmax(logits)`` along ``axis`` without truncating the tail.

    Args:
      key: PRNG key.
      logits: float array; ``-inf`` entries are never drawn.
      axis: the class axis.
      bits: random bits per class, 32 (default: Gumbel values up to 22.9 nats, so a
        class trailing the best by more than that is never drawn; its probability is
        then below e^-22.9 ~ 1e-10, an absolute bound) or 64 (45.1 nats);
        "float32" uses JAX's truncated float32 Gumbel, only to reproduce its bias.

    Returns:
      int32 array of ``logits.shape`` without ``axis``; :data:`INVALID` (-1) for a row
      with a NaN entry or no finite entry.
    """
    logits = jnp.asarray(logits, jnp.float32)
    if bits == "float32":
        g = gumbel_float32_truncated(key, logits.shape)
    else:
        g = gumbel(key, logits.shape, bits)
    drawn = jnp.argmax(logits + g, axis=axis).astype(jnp.int32)
    return jnp.where(invalid_rows(logits, axis), INVALID, drawn)


def invalid_rows(logits: Array, axis: int = -1) -> Array:
    """bool[...]: rows along ``axis`` with a NaN entry or no entry above -inf."""
    return jnp.any(jnp.isnan(logits), axis=axis) | jnp.all(logits == -jnp.inf, axis=axis)


def draw_two_stage(key: Array, log_probs: Array, bits: int | str = 32) -> Array:
    """Exact draw from softmax(log_probs) over the last axis: a group, then a class in it.

    The K classes are split into groups of ``S = isqrt(K)`` consecutive ids (the last
    group may be shorter). Stage 1 draws a group from the group masses, stage 2 a class
    from the chosen group's S logits: about 2 sqrt(K) random words instead of K, and one
    pass over the logits.

    Args:
      log_probs: float32[..., K] (unnormalised is fine).
    Returns:
      int32[...].
    """
    k = log_probs.shape[-1]
    size = max(1, math.isqrt(k))
    groups = k // size
    batch = log_probs.shape[:-1]
    top = jax.lax.stop_gradient(jnp.max(log_probs, axis=-1, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    lead = log_probs[..., : groups * size].reshape(*batch, groups, size)
    group_logits = jnp.log(jnp.exp(lead - top[..., None]).sum(-1)) + top
    if groups * size < k:
        tail = jax.nn.logsumexp(log_probs[..., groups * size :], axis=-1, keepdims=True)
        group_logits = jnp.concatenate([group_logits, tail], axis=-1)
    k_group, k_token = jax.random.split(key)
    g = categorical(k_group, group_logits, bits=bits)
    idx = jnp.maximum(g, 0)[..., None] * size + jnp.arange(size, dtype=jnp.int32)
    within = jnp.take_along_axis(log_probs, jnp.minimum(idx, k - 1), axis=-1)
    within = jnp.where(idx < k, within, -jnp.inf)
    inner = categorical(k_token, within, bits=bits)
    return jnp.where((g == INVALID) | (inner == INVALID), INVALID, g * size + inner)


def draw_tokens(
    key: Array,
    log_probs: Array,
    argmax: bool = False,
    two_stage: bool | None = None,
    bits: int | str = 32,
) -> Array:
    """One class per row of ``log_probs`` float32[..., K]: int32[...].

    Rows that are not a distribution give :data:`INVALID`, drawn or argmax.

    Args:
      argmax: take the mode instead of drawing.
      two_stage: use :func:`draw_two_stage`; None picks it for K >= TWO_STAGE_MIN_VOCAB
        (never for bits="float32", which reproduces JAX's one-stage truncated draw).
      bits: the Gumbel resolution of :func:`categorical`.
    """
    if argmax:
        mode = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
        return jnp.where(invalid_rows(log_probs), INVALID, mode)
    if two_stage is None:
        two_stage = log_probs.shape[-1] >= TWO_STAGE_MIN_VOCAB and bits != "float32"
    if two_stage:
        return draw_two_stage(key, log_probs, bits)
    return categorical(key, log_probs, bits=bits)


def draw_from_probs(key: Array, probs: Array, argmax: bool = False, bits: int | str = 32) -> Array:
    """A draw (or the argmax) from per-position probabilities float32[..., N]: int32[...]."""
    return draw_tokens(key, jnp.log(jnp.maximum(probs, 0.0)), argmax, bits=bits)
