"""The factorised masking update, shared by every sampler's masking fast path.

Under masking a step changes few tokens, so the work avoids full ``[B, L, K]``
categorical draws: *whether* a position changes is a per-position Bernoulli, and a
token is drawn only where a masked position is decoded (:func:`draw_at`: at most
``capacity`` rows per sequence are gathered, with an exact fallback to a full draw when
more positions change). Row transforms (renormalisation, temperature, top-k, top-p)
act on the gathered rows only. Draws over a large vocabulary use the exact two-stage
draw of :func:`ddjax.random.draw_tokens`.

Shapes: tokens int32[B, L] with the mask id K; log-probabilities float32[B, L, K].
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from ddjax._struct import check
from ddjax.arrays import take_last
from ddjax.random import TWO_STAGE_MIN_VOCAB, draw_tokens
from ddjax.samplers import driver
from ddjax.samplers.transforms import RowTransform

__all__ = [
    "draw_at",
    "masking_update",
    "check_capacity",
    "capacity_for",
    "has_fast_path",
    "step_capacity",
    "posterior_update",
    "top_ranked",
]


def has_fast_path(process: Any) -> bool:
    """True when ``process`` declares the masking capabilities the fast paths use."""
    return getattr(process, "mask_id", None) is not None and hasattr(process, "unmask_probability")


def check_capacity(capacity: Any) -> None:
    """``draw_capacity`` must be None or a positive int."""
    check(
        capacity is None or (isinstance(capacity, int) and capacity >= 1),
        f"draw_capacity must be None or a positive int, got {capacity!r}",
    )


def capacity_for(capacity: int | None, expected: float, length: int, vocab_size: int) -> int | None:
    """``capacity`` if given, else one for ``expected`` decoded tokens per sequence."""
    if capacity is not None:
        return capacity
    return driver.auto_capacity(expected, length, vocab_size, TWO_STAGE_MIN_VOCAB)


def step_capacity(ctx: driver.Context, capacity: int | None = None) -> int | None:
    """The gather size for one step of ``ctx``'s grid: ``capacity`` if given, else sized
    for the largest expected number of tokens an ancestral step decodes on the grid,
    L (a_s - a_t) (with a schedule; else L times the conditional unmask probability)."""
    if capacity is not None or ctx.steps is None:
        return capacity
    process, length = ctx.process, ctx.shape[1]
    if hasattr(process, "schedule"):
        oma = process.schedule.one_minus_alpha
        per_step = lambda t, s: oma(t) - oma(s)  # noqa: E731
    else:
        per_step = lambda t, s: process.unmask_probability(s, t)  # noqa: E731
    expected = driver.max_decoded(process, ctx.steps, ctx.t_max, length, per_step)
    return capacity_for(None, expected, length, process.vocab_size)


def draw_at(
    key: Array,
    log_probs: Array,
    select: Array,
    *,
    capacity: int | None = None,
    argmax: bool = False,
    transform: RowTransform | None = None,
    bits: int | str = 32,
) -> tuple[Array, Array]:
    """Tokens drawn from ``transform(log_probs)`` at the ``select``-ed positions.

    Args:
      log_probs: float32[B, L, K].
      select: bool[B, L], where a token is needed.
      capacity: None draws at every position. An int C < L gathers the rows of the
        first C selected positions of each sequence and draws there only; when some
        sequence selects more than C positions the call falls back to the full draw
        (``lax.cond``), so the law is exact either way.
      argmax: take the mode instead of drawing.
      transform: the row transform applied per position.
    Returns:
      (tokens int32[B, L], their log-probabilities float32[B, L]), meaningful where
      ``select`` holds.
    """
    transform = transform or (lambda lp: lp)
    b, l, _ = log_probs.shape

    def full() -> tuple[Array, Array]:
        lp = transform(log_probs)
        tokens = draw_tokens(key, lp, argmax, bits=bits)
        return tokens, take_last(lp, tokens)

    if capacity is None or capacity >= l:
        return full()

    def compact() -> tuple[Array, Array]:
        order = jnp.where(select, l - jnp.arange(l, dtype=jnp.int32), 0)
        idx = jax.lax.top_k(order, capacity)[1]  # [B, C]: the first C selected positions
        rows = transform(jnp.take_along_axis(log_probs, idx[..., None], axis=1))
        tokens = draw_tokens(key, rows, argmax, bits=bits)
        batch = jnp.arange(b)[:, None]
        out_tokens = jnp.zeros((b, l), jnp.int32).at[batch, idx].set(tokens)
        out_lp = jnp.zeros((b, l), jnp.float32).at[batch, idx].set(take_last(rows, tokens))
        return out_tokens, out_lp

    overflow = jnp.any(select.sum(-1) > capacity)
    return jax.lax.cond(overflow, full, compact)


def masking_update(
    key: Array,
    x: Array,
    log_probs: Array,
    unmask_prob: Array,
    mask_id: int,
    *,
    remask_prob: Array | None = None,
    free: Array | None = None,
    capacity: int | None = None,
    argmax: bool = False,
    transform: RowTransform | None = None,
    bits: int | str = 32,
) -> tuple[Array, Array, Array]:
    """One factorised masking step: decode masked tokens, optionally re-mask decoded ones.

    A masked position is decoded with probability ``unmask_prob``, to a token drawn from
    ``transform(log_probs)`` at that position; a decoded (free) position is re-masked with
    probability ``remask_prob``; everything else stays. This is the law
    ``unmask_prob * p(v)`` / ``1 - unmask_prob`` over {data, mask} drawn as a Bernoulli and
    then a token, so the token draw happens only where a token is decoded.

    Args:
      x: int32[B, L]; log_probs: float32[B, L, K].
      unmask_prob, remask_prob: float32 broadcastable to [B, L].
      free: bool[B, L], positions allowed to be re-masked (None: all).
    Returns:
      (new x int32[B, L], decoded bool[B, L], log-probability of each decoded token
      float32[B, L]).
    """
    k_u, k_tok = jax.random.split(key)
    u = jax.random.uniform(k_u, x.shape)
    masked = x == mask_id
    decode = masked & (u < unmask_prob)
    tokens, token_lp = draw_at(
        k_tok, log_probs, decode, capacity=capacity, argmax=argmax, transform=transform, bits=bits
    )
    x_new = jnp.where(decode, tokens, x)
    if remask_prob is not None:
        remask = ~masked & (u < remask_prob)  # disjoint from ``decode``: same u is fine
        if free is not None:
            remask = remask & free
        x_new = jnp.where(remask, mask_id, x_new)
    return x_new, decode, token_lp


def posterior_update(
    key: Array,
    ctx: driver.Context,
    x: Array,
    log_probs: Array,
    t: Array,
    s: Array,
    *,
    last: bool = False,
    capacity: int | None = None,
    bits: int | str = 32,
) -> Array:
    """A draw from the masking posterior q(x_s | x_t, p) in factorised form: int32[B, L].

    ``log_probs`` is the checked denoiser output before ``ctx.rows`` (applied to the
    decoded rows only). The last step decodes every remaining mask.
    """
    unmask = ctx.process.unmask_probability(s, t)
    if last:  # alpha(0) may fall short of 1
        unmask = jnp.ones_like(unmask)
    return masking_update(
        key, x, log_probs, unmask, ctx.process.mask_id,
        capacity=step_capacity(ctx, capacity), argmax=last and ctx.argmax,
        transform=ctx.rows, bits=bits,
    )[0]  # fmt: skip


def top_ranked(score: Array, eligible: Array, count: Array) -> Array:
    """bool[B, L]: the ``count`` [B] highest-scored ``eligible`` positions (ties: lower index).

    A NaN score (from a denoiser row that is not a distribution) ranks first, so its
    position is decoded to the invalid id and shows in the output instead of staying
    masked behind the ordering.
    """
    score = jnp.where(jnp.isnan(score), jnp.inf, score)
    score = jnp.where(eligible, score, -jnp.inf)
    order = jnp.argsort(-score, axis=-1, stable=True)
    rank = jnp.argsort(order, axis=-1)
    return eligible & (rank < count[:, None])
