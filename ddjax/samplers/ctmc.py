"""Pieces shared by the continuous-time Markov chain (CTMC) samplers.

Every CTMC step factorises over positions; its law at one position is a categorical
over the ``num_states`` states built from the process's ``reverse_rates``. A Poisson
tau-leap is drawn through its exact law: with rates r and total rate Lambda,
independent Poisson counts over a time dt give "exactly one jump, to y" with
probability dt r_y exp(-dt Lambda), so one categorical replaces N Poisson draws.
``multi_jump`` chooses what a position with two or more jumps does: ``"reject"``
(stay; Campbell et al.) or ``"first"`` (keep the first jump: the move to y has
probability (r_y / Lambda)(1 - exp(-dt Lambda)), the exact law of one step of the
frozen-rate chain at a position whose rates vanish after one jump, e.g. a masked token).

Masking fast path (:func:`masked_leap`): under masking the only moves are mask -> v at
rates c p(v), so a leap is a Bernoulli per masked position (a function of the total
rate alone) and a token drawn at the decoded positions only: the same law, without a
[B, L, K + 1] law and draw per step.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jax import Array

from ddjax._struct import check
from ddjax.arrays import onehot
from ddjax.samplers import driver, masking

__all__ = [
    "MULTI_JUMP",
    "check_multi_jump",
    "off_diagonal",
    "euler_probs_from_rates",
    "leap_probs",
    "jump_probability",
    "has_masked_rates",
    "masked_leap",
]

MULTI_JUMP = ("reject", "first")


def check_multi_jump(multi_jump: str) -> None:
    """``multi_jump`` must be "reject" or "first"."""
    check(multi_jump in MULTI_JUMP, f"multi_jump must be one of {MULTI_JUMP}, got {multi_jump!r}")


def _col(v: Array) -> Array:
    """float[B] -> float[B, 1, 1]."""
    return v[:, None, None]


def off_diagonal(x: Array, rates: Array) -> Array:
    """Rates [B, L, N] clipped at 0 and zeroed at y = x."""
    return jnp.where(onehot(x, rates.shape[-1]) > 0, 0.0, jnp.maximum(rates, 0.0))


def euler_probs_from_rates(x: Array, rates: Array, dt: Array) -> Array:
    """Cat(onehot(x) + dt R) with the stay probability clipped at 0, renormalised.

    Args:
      x: int32[B, L]; rates: float32[B, L, N] (0 at y = x); dt: float32[B].
    Returns:
      float32[B, L, N].
    """
    move = off_diagonal(x, rates) * _col(dt)
    total = move.sum(-1, keepdims=True)
    stay = jnp.maximum(1.0 - total, 0.0)
    return (move + onehot(x, rates.shape[-1]) * stay) / jnp.maximum(total, 1.0)


def jump_probability(total: Array, dt: Array, multi_jump: str) -> Array:
    """P(the position moves) in one leap of length dt with total rate ``total``.

    "reject": exactly one jump, dt L exp(-dt L); "first": at least one, 1 - exp(-dt L);
    "euler": the clipped Euler step, min(dt L, 1).
    """
    if multi_jump == "reject":
        return dt * total * jnp.exp(-dt * total)
    if multi_jump == "first":
        return -jnp.expm1(-dt * total)
    return jnp.minimum(dt * total, 1.0)


def leap_probs(x: Array, rates: Array, dt: Array, multi_jump: str = "reject") -> Array:
    """The law of one Poisson tau-leap with frozen rates over ``dt``, per position.

    Args:
      x: int32[B, L]; rates: float32[B, L, N]; dt: float32[B].
    Returns:
      float32[B, L, N]: move to y w.p. P(move) r_y / Lambda, else stay.
    """
    rates = off_diagonal(x, rates)
    dt = _col(dt)
    total = rates.sum(-1, keepdims=True)
    positive = total > 0
    share = jump_probability(total, dt, multi_jump) / jnp.where(positive, total, 1.0)
    # the limit total -> 0 of share is dt for both rules
    move = rates * jnp.where(positive, share, dt)
    stay = jnp.clip(1.0 - move.sum(-1, keepdims=True), 0.0, 1.0)
    return move + onehot(x, rates.shape[-1]) * stay


def has_masked_rates(process: Any) -> bool:
    """True when ``process`` has the masking fast path and the rate ``unmask_rate``."""
    return masking.has_fast_path(process) and hasattr(process, "unmask_rate")


def masked_leap(
    key: Array,
    ctx: driver.Context,
    x: Array,
    terms: list[tuple[Array, Array]],
    dt: Array,
    multi_jump: str,
) -> Array:
    """A leap at the masked positions of ``x`` with rates (sum_j c_j p_j(v))_+ to data v.

    Args:
      x: int32[B, L], the state the leap starts from.
      terms: pairs (c_j float32[B, L] (or broadcastable), log_probs_j float32[B, L, K]);
        log_probs are the checked denoiser outputs *before* the row transforms (one term:
        c >= 0 and the rows are transformed at the decoded positions only).
      dt: float32[B]; multi_jump: "reject", "first" or "euler".
    Returns:
      int32[B, L].
    """
    capacity = masking.step_capacity(ctx)
    if len(terms) == 1:
        c, lp = terms[0]
        total, transform = jnp.maximum(c, 0.0), ctx.rows
    else:
        rates = sum(c[..., None] * jnp.exp(ctx.rows(lp)) for c, lp in terms)
        rates = jnp.maximum(rates, 0.0)
        total = rates.sum(-1)
        lp, transform = jnp.log(rates), None
    total = jnp.broadcast_to(total, x.shape)
    decode = jump_probability(total, dt[:, None], multi_jump)
    # a position with no rate at all never moves (its draw is never used)
    return masking.masking_update(
        key, x, lp, jnp.where(total > 0, decode, 0.0), ctx.process.mask_id,
        capacity=capacity, transform=transform,
    )[0]  # fmt: skip
