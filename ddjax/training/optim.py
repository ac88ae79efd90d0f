"""Optimiser from a config: AdamW, linear warmup, constant or cosine decay, clipping."""

from __future__ import annotations

from typing import Any

import jax
import optax

__all__ = ["make_lr_schedule", "make_optimizer", "ema_update"]


def make_lr_schedule(cfg: Any, num_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to ``cfg.lr`` over ``cfg.warmup_steps``, then ``cfg.decay``.

    ``decay='constant'`` keeps ``lr``; ``'cosine'`` decays to ``lr * cfg.final_lr_frac``
    at ``num_steps``.
    """
    warmup = max(int(cfg.warmup_steps), 0)
    lr = float(cfg.lr)
    if cfg.decay == "constant":
        after = optax.constant_schedule(lr)
    elif cfg.decay == "cosine":
        after = optax.cosine_decay_schedule(
            lr, max(int(num_steps) - warmup, 1), alpha=float(cfg.final_lr_frac)
        )
    else:
        raise ValueError(f"optim.decay must be 'constant' or 'cosine', got {cfg.decay!r}")
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def _decay_mask(params: Any) -> Any:
    """Weight decay on matrices only (not on biases, norms' scales or other vectors)."""
    return jax.tree.map(lambda p: getattr(p, "ndim", 0) >= 2, params)


def make_optimizer(cfg: Any, num_steps: int) -> optax.GradientTransformation:
    """Global-norm clipping (``cfg.grad_clip`` > 0) followed by AdamW on the schedule."""
    parts = []
    if float(cfg.grad_clip) > 0:
        parts.append(optax.clip_by_global_norm(float(cfg.grad_clip)))
    parts.append(
        optax.adamw(
            make_lr_schedule(cfg, num_steps),
            b1=float(cfg.b1),
            b2=float(cfg.b2),
            eps=float(cfg.eps),
            weight_decay=float(cfg.weight_decay),
            mask=_decay_mask,
        )
    )
    return optax.chain(*parts)


def ema_update(ema: Any, params: Any, step: jax.Array, decay: float) -> Any:
    """EMA with warmup: decay_n = min(decay, (1 + n) / (10 + n)) at update ``n`` (0-based).

    With ``decay = 0`` the EMA is the params themselves.
    """
    d = jax.numpy.minimum(decay, (1.0 + step) / (10.0 + step)).astype(jax.numpy.float32)
    return jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), ema, params)
