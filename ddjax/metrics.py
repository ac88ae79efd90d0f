"""Metric definitions, written down once.

* bits per token = nats per sequence / (tokens per sequence * ln 2).
* perplexity = exp(nats per sequence / tokens per sequence), token-weighted: the
  mean is taken over all tokens of the set, not over per-sequence perplexities.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

__all__ = ["bits_per_token", "perplexity", "nats_per_token", "unigram_entropy"]


def nats_per_token(nats: ArrayLike, num_tokens: ArrayLike) -> Array:
    """Total nats over total tokens (token-weighted mean): a scalar."""
    return jnp.sum(jnp.asarray(nats, jnp.float32)) / jnp.sum(jnp.asarray(num_tokens, jnp.float32))


def bits_per_token(nats: ArrayLike, num_tokens: ArrayLike) -> Array:
    """Nats per sequence [B] and tokens per sequence (scalar or [B]) to bits per token."""
    nats = jnp.asarray(nats, jnp.float32)
    return nats_per_token(
        nats, jnp.broadcast_to(jnp.asarray(num_tokens, jnp.float32), nats.shape)
    ) / math.log(2.0)


def perplexity(nats: ArrayLike, num_tokens: ArrayLike) -> Array:
    """exp of the token-weighted mean nats per token."""
    nats = jnp.asarray(nats, jnp.float32)
    return jnp.exp(
        nats_per_token(nats, jnp.broadcast_to(jnp.asarray(num_tokens, jnp.float32), nats.shape))
    )


def unigram_entropy(tokens: ArrayLike, vocab_size: int) -> Array:
    """Entropy in nats of each sequence's token histogram: float32[B] for tokens [B, L]."""
    tokens = jnp.asarray(tokens, jnp.int32)
    counts = (tokens[..., None] == jnp.arange(vocab_size)).sum(-2).astype(jnp.float32)
    p = counts / counts.sum(-1, keepdims=True)
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), -1)
