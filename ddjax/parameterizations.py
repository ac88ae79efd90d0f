"""Conversions between network outputs and the denoiser contract.

The contract: ``denoiser(x_t, t) -> log_probs`` with ``log_probs: float32[B, L, K]``
= log p(x0_i = k | x_t) over the K data tokens. Score (ratio) networks, as in
SEDD, are converted with :func:`log_probs_from_log_score`; the inverse,
:func:`log_score_from_log_probs`, gives the concrete score that an x0
distribution implies under a process.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from ddjax._struct import check
from ddjax.arrays import onehot, sequence_times
from ddjax.processes import Interpolating, Process, require

__all__ = [
    "NEG_INF",
    "subs",
    "logits_to_log_probs",
    "log_score_from_log_probs",
    "log_probs_from_log_score",
]

# A finite stand-in for log 0: exp underflows to exactly 0 and 0 * NEG_INF stays 0.
NEG_INF = -1e9


def subs(logits: ArrayLike, x_t: ArrayLike, mask_id: int) -> Array:
    """MDLM's SUBS parameterisation for masking.

    The mask is never predicted (a mask column in ``logits``, if any, is dropped) and
    unmasked tokens carry over: their distribution is the point mass on ``x_t``.

    Args:
      logits: float[B, L, K] or float[B, L, K + 1].
      x_t: int32[B, L] with mask id ``mask_id`` = K.
    Returns:
      log_probs float32[B, L, K].
    """
    logits = jnp.asarray(logits, jnp.float32)[..., :mask_id]
    x_t = jnp.asarray(x_t, jnp.int32)
    check(
        logits.shape[:-1] == x_t.shape and logits.shape[-1] == mask_id,
        f"logits {logits.shape} must be [..., L, K] or [..., L, K + 1] with K = {mask_id} "
        f"for x_t {x_t.shape}",
    )
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    carry = jnp.where(onehot(x_t, mask_id) > 0, 0.0, NEG_INF)
    return jnp.where((x_t == mask_id)[..., None], log_probs, carry)


def logits_to_log_probs(logits: ArrayLike, x_t: ArrayLike, process: Process) -> Array:
    """Network logits to the denoiser contract: SUBS for masking, log-softmax otherwise."""
    if process.mask_id is not None:
        return subs(logits, x_t, process.mask_id)
    logits = jnp.asarray(logits, jnp.float32)[..., : process.vocab_size]
    return jax.nn.log_softmax(logits, axis=-1)


def _require_interpolating(process: Process) -> Interpolating:
    """Concrete scores here use the closed form of a schedule with noise law prior_probs."""
    require(process, ("continuous_time", "schedule", "prior_probs", "score"), "concrete scores")
    return process


def log_score_from_log_probs(
    log_probs: ArrayLike, x_t: ArrayLike, t: ArrayLike, process: Process
) -> Array:
    """log s_y = log sum_k p(k) q_t(y|k) / q_t(x_t|k): float32[B, L, num_states]."""
    process = _require_interpolating(process)
    score = process.score(x_t, jnp.exp(jnp.asarray(log_probs, jnp.float32)), t)
    return jnp.log(jnp.maximum(score, 0.0))


def log_probs_from_log_score(
    log_score: ArrayLike, x_t: ArrayLike, t: ArrayLike, process: Process
) -> Array:
    """Inverts :func:`log_score_from_log_probs` (O(K) per token).

    With s_y = a w_y + (1 - a) pi_y W and w_y = p(y) / q_t(x_t | y), summing over y gives
    W = sum_y s_y, so w_y = (s_y - (1 - a) pi_y W) / a and p(y) = w_y q_t(x_t | y). A model
    score that implies negative weights is clipped at 0 before renormalising. The entry of
    ``log_score`` at y = x_t is ignored (it is 1 by definition).

    Args:
      log_score: float[B, L, num_states].
    Returns:
      log_probs float32[B, L, K].
    """
    process = _require_interpolating(process)
    x_t = jnp.asarray(x_t, jnp.int32)
    log_score = jnp.asarray(log_score, jnp.float32)
    n, k = process.num_states, process.vocab_size
    check(
        log_score.shape == (*x_t.shape, n),
        f"log_score must have shape {(*x_t.shape, n)}, got {log_score.shape}",
    )
    t = sequence_times(t, x_t)
    a = jnp.maximum(process.schedule.alpha(t), 1e-12)[..., None, None]
    one_minus_a = process.schedule.one_minus_alpha(t)[..., None, None]
    pi = process.prior_probs()
    at_x = onehot(x_t, n) > 0
    s = jnp.where(at_x, 1.0, jnp.exp(log_score))
    w = jnp.maximum(s - one_minus_a * pi * s.sum(-1, keepdims=True), 0.0) / a
    lik = one_minus_a * pi[x_t][..., None] + a * at_x
    p = (w * lik)[..., :k]
    p = p / jnp.maximum(p.sum(-1, keepdims=True), 1e-30)
    return jnp.log(jnp.maximum(p, 0.0)).clip(NEG_INF)
