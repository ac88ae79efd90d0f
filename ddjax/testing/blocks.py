"""Exact block-conditional denoisers of an enumerated target (block diffusion, BD3-LM).

A sequence of length L is cut into ``L // block_size`` blocks of consecutive positions.
Block diffusion models each block given the clean earlier blocks, so its denoiser at
position i (in block b) is the exact conditional

    p(x0_i | x0 of blocks < b, x_t of block b at the block's time),

where the positions after block b carry no evidence (they are marginalised out). Two
forms are given, both built on one enumeration:

* :func:`block_denoiser` (the sampler's contract):
  ``fn(x int32[B, L], t float32[B], block int32) -> float32[B, block_size, K]``; ``x``
  holds clean tokens before block ``block``, the noisy block in place and anything after
  (ignored).
* :func:`block_training_denoiser` (the loss's contract):
  ``fn(x_t int32[B, L], x0 int32[B, L], t float32[B, L // block_size] or float32[B])
  -> float32[B, L, K]``; every block is noisy at its own time and conditions on the clean
  blocks of ``x0`` before it.

Both are normally reached through :meth:`ddjax.testing.ExactTarget.block_denoiser` and
:meth:`ddjax.testing.ExactTarget.block_training_denoiser`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from jax import Array

from ddjax._struct import check
from ddjax.arrays import onehot
from ddjax.processes import Process

if TYPE_CHECKING:
    from ddjax.testing import ExactTarget

__all__ = ["block_denoiser", "block_training_denoiser", "position_log_likelihood"]

BlockDenoiser = Callable[[Array, Array, Array], Array]


def position_log_likelihood(vocab_size: int, process: Process, x_t: Array, t_pos: Array) -> Array:
    """log q(x_t,i | x0_i = k) at per-position times: float32[B, L, K].

    Args:
      vocab_size: K.
      process: any process with ``marginal_probs``.
      x_t: int32[B, L] states.
      t_pos: float32[B, L], the time of each position.
    """
    k = vocab_size
    b, l = x_t.shape
    # table[b, i, k, n] = q(x_t = n | x0 = k) at time t_pos[b, i]: the K rows of the
    # identity are a "sequence" of length K per (b, i), so marginal_probs takes t [B, L].
    eye = jnp.broadcast_to(jnp.eye(k), (b, l, k, k))
    table = process.marginal_probs(eye, t_pos)  # [B, L, K, N]
    at = jnp.take_along_axis(table, x_t[:, :, None, None], axis=-1)[..., 0]  # [B, L, K]
    return jnp.log(jnp.maximum(at, 0.0))


def _check_block_size(target: ExactTarget, block_size: int) -> int:
    check(
        isinstance(block_size, int) and block_size >= 1,
        f"block_size must be a positive int, got {block_size!r}",
    )
    check(
        target.length % block_size == 0,
        f"block_size {block_size} must divide the target's length {target.length}",
    )
    return block_size


def block_denoiser(target: ExactTarget, process: Process, block_size: int) -> BlockDenoiser:
    """The exact block denoiser of ``target`` (the sampler's contract).

    Returns ``fn(x int32[B, L], t float32[B] (or a scalar), block int32 (a scalar or
    int32[B], may be traced)) -> float32[B, block_size, K]``: for each position i of
    block ``block``, log p(x0_i | x0_j = x_j for j in blocks < block, x_t of the block =
    x's block at time t). Positions after the block are ignored; the tokens before it
    must be clean data tokens.
    """
    block_size = _check_block_size(target, block_size)
    k, l = target.vocab_size, target.length
    seqs = target.sequences  # [S, L]
    onehots = onehot(seqs, k)  # [S, L, K]
    pos_block = jnp.arange(l) // block_size

    def fn(x: Array, t: Array, block: Array) -> Array:
        x = jnp.asarray(x, jnp.int32)
        check(x.ndim == 2 and x.shape[1] == l, f"x must be int32[B, {l}], got {x.shape}")
        b = x.shape[0]
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (b,))
        block = jnp.broadcast_to(jnp.asarray(block, jnp.int32), (b,))
        before = pos_block[None, :] < block[:, None]  # [B, L]
        inside = pos_block[None, :] == block[:, None]
        # the noisy block's evidence; the safe states keep the gather in range elsewhere
        x_in = jnp.where(inside, x, 0)
        lik = position_log_likelihood(k, process, x_in, jnp.broadcast_to(t[:, None], (b, l)))
        lik_s = jnp.take_along_axis(lik[:, None], seqs[None, :, :, None], axis=-1)[..., 0]
        clean = jnp.where(seqs[None] == x[:, None], 0.0, -jnp.inf)  # [B, S, L]
        evidence = jnp.where(inside[:, None], lik_s, jnp.where(before[:, None], clean, 0.0))
        logits = target.log_probs[None, :] + evidence.sum(-1)  # [B, S]
        post = jax.nn.softmax(logits, axis=-1)
        marg = jnp.einsum("bs,slk->blk", post, onehots)  # [B, L, K]
        start = block * block_size
        rows = jax.vmap(lambda m, s: jax.lax.dynamic_slice_in_dim(m, s, block_size, 0))(marg, start)
        return jnp.log(jnp.maximum(rows, 1e-38))

    return fn


def block_training_denoiser(
    target: ExactTarget, process: Process, block_size: int
) -> Callable[[Array, Array, Array], Array]:
    """The exact block denoiser in the training (loss) form.

    Returns ``fn(x_t int32[B, L], x0 int32[B, L], t float32[B, L // block_size] or
    float32[B]) -> float32[B, L, K]``: position i of block b gets
    log p(x0_i | x0 of blocks < b, x_t of block b at time t[:, b]), what a block-causal
    network computes in BD3-LM's one pass over [x_t ; x0] and what
    :func:`ddjax.losses.block_masked_elbo` expects.
    """
    block_size = _check_block_size(target, block_size)
    l = target.length
    num_blocks = l // block_size
    one_block = block_denoiser(target, process, block_size)
    pos_block = jnp.arange(l) // block_size

    def fn(x_t: Array, x0: Array, t: Array) -> Array:
        x_t, x0 = jnp.asarray(x_t, jnp.int32), jnp.asarray(x0, jnp.int32)
        check(x_t.shape == x0.shape, f"x_t {x_t.shape} and x0 {x0.shape} must match")
        b = x_t.shape[0]
        t = jnp.asarray(t, jnp.float32)
        if t.ndim <= 1:
            t = jnp.broadcast_to(t.reshape(-1, 1) if t.ndim else t, (b, num_blocks))
        check(
            t.shape == (b, num_blocks),
            f"t must be float32[B] or [B, {num_blocks}] (one time per block), got {t.shape}",
        )
        outs = []
        for blk in range(num_blocks):
            x = jnp.where(pos_block[None, :] < blk, x0, x_t)
            outs.append(one_block(x, t[:, blk], jnp.int32(blk)))
        return jnp.concatenate(outs, axis=1)

    return fn
