"""DDPD, discrete diffusion with planned denoising (Liu et al. 2024, "Think while you
generate"), for uniform noise: a planner says which positions are noise, the denoiser
resamples them.

The planner contract: ``planner(x_t int32[B, L], t float32[B]) -> float32[B, L]``, the
logit of P(x_t,i != x0_i | x_t), the corruption indicator (trained with
:func:`ddjax.losses.ddpd_planner`; the oracle's exact one is
:func:`ddjax.testing.exact_planner`). The denoiser keeps the library contract
p(x0_i | x_t); the denoiser *conditioned on noise* that DDPD resamples from is derived from
it: p(x0_i = y | x_t, x0_i != x_t,i) = p(y) [y != x_t,i] / (1 - p(x_t,i)).

The reverse CTMC: position i is denoised at rate lambda_t P(x_t,i != x0_i | x_t),
lambda_t = -alpha'(t) / (1 - alpha(t)), to y ~ p(. | x_t, noise at i). Its jump rate to
y != x_t,i is lambda_t p(x0_i = y | x_t) (the planner times the conditioned denoiser),
the rate of DDPD's own reverse process, which carries the uniform-noise marginals
(DDPD's latent "was resampled" indicator adds only self-jumps). One step t -> s is its
tau-leap in masking form: each position is denoised with probability
u P(noise at i), u = (alpha_s - alpha_t) / (1 - alpha_t), all positions at once from the
state at t; the last step (u = 1) denoises every planned position. With the exact planner
and denoiser the law tends to the data law as steps grow (first order in 1 / steps).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from ddjax._struct import check
from ddjax.arrays import onehot
from ddjax.random import draw_from_probs
from ddjax.samplers import driver, transforms

__all__ = ["DDPD", "ddpd", "Planner"]

Planner = Callable[[Array, Array], Array]


@dataclasses.dataclass(frozen=True)
class DDPD(driver.PositionLaw):
    """Planner-then-denoiser steps (tau-leaping form) for processes without a mask state.

    Per position, from t to s: stay with probability 1 - u P_i, else jump to
    y != x_i with probability u P_i p(y) / (1 - p(x_i)), where P_i = sigmoid(planner) and
    u = (alpha_s - alpha_t) / (1 - alpha_t) (u = 1 on the last step).

    Options:
      planner: ``(x_t, t) -> float32[B, L]`` logits of P(x_t,i != x0_i | x_t).
    """

    planner: Planner | None = None

    name: ClassVar[str] = "ddpd"
    needs: ClassVar[tuple[str, ...]] = ("continuous_time", "schedule")
    calls_doc: ClassVar[str] = "1 denoiser + 1 planner call per step"

    def validate(self, process: Any, shape: tuple[int, int], steps: int | None) -> None:
        check(callable(self.planner), f"ddpd needs a callable planner, got {self.planner!r}")
        if process.mask_id is not None:
            raise TypeError(
                "ddpd is for processes without a mask state (uniform noise): under masking "
                "the planner is the mask indicator and ddpd is the ancestral sampler"
            )

    def noise_probs(self, x: Array, t: Array) -> Array:
        """P(x_t,i != x0_i | x_t) = sigmoid(planner(x, t)): float32[B, L] (shape checked)."""
        logits = self.planner(x, t)
        check(
            getattr(logits, "shape", None) == x.shape,
            f"planner must return float32[B, L] logits, shape {x.shape}, got "
            f"{getattr(logits, 'shape', type(logits))}",
        )
        return jax.nn.sigmoid(jnp.asarray(logits, jnp.float32))

    def jump_fraction(self, ctx: driver.Context, t: Array, s: Array, last: bool) -> Array:
        """u = (alpha_s - alpha_t) / (1 - alpha_t) per sequence: float32[B] (1 if last)."""
        if last:
            return jnp.ones_like(t)
        oma = ctx.process.schedule.one_minus_alpha
        return jnp.clip((oma(t) - oma(s)) / jnp.maximum(oma(t), 1e-12), 0.0, 1.0)

    def _law(self, ctx: driver.Context, x: Array, t: Array, s: Array, last: bool) -> Array:
        p = ctx.x0_probs(x, t)  # [B, L, K]
        here = onehot(x, p.shape[-1])
        p_x = (p * here).sum(-1, keepdims=True)
        cond = p * (1.0 - here) / jnp.maximum(1.0 - p_x, 1e-12)
        # a planner that says "noise" where the denoiser puts all its mass on x_i: stay
        cond = jnp.where(1.0 - p_x > 1e-12, cond, here)
        move = (self.jump_fraction(ctx, t, s, last)[:, None] * self.noise_probs(x, t))[..., None]
        return (1.0 - move) * here + move * cond

    def law(self, ctx: driver.Context, x: Array, t: Array, s: Array) -> Array:
        return self._law(ctx, x, t, s, False)

    def step(
        self, key: Array, ctx: driver.Context, x: Array, aux: Any, at: driver.StepInfo
    ) -> tuple[Array, Any]:
        probs = self._law(ctx, x, at.t, at.s, at.last)
        return draw_from_probs(key, probs, at.last and ctx.argmax), aux

    def transition_matrix(
        self, ctx: driver.Context, states: Array, t: Array, s: Array, last: bool = False
    ) -> Array:
        return driver.product_law(self._law(ctx, states, t, s, last), states)

    def network_calls(self, steps: int, length: int) -> int:
        return 2 * steps


def ddpd(
    key: Array,
    denoiser: transforms.Denoiser,
    planner: Planner,
    process: Any,
    shape: tuple[int, int],
    *,
    steps: int,
    **options: Any,
) -> Array | tuple[Array, Array]:
    """DDPD planner-then-denoiser sampling (see :class:`DDPD`): int32[B, L].

    Args:
      key: PRNG key.
      denoiser: ``(x_t int32[B, L], t float32[B]) -> log p(x0 | x_t)`` float32[B, L, K].
      planner: ``(x_t, t) -> float32[B, L]``, logit of P(x_t,i != x0_i | x_t).
      process: a continuous-time process without a mask state (Uniform, MarginalPrior).
      shape: (B, L).
      steps: grid intervals from t_max to 0.
      options: the common sampler options (temperature, top_k, top_p, fixed,
        final_step, return_trajectory, t_max, debug).
    """
    unknown = sorted(set(options) - set(driver.COMMON_OPTIONS))
    if unknown:
        raise TypeError(
            f"ddpd() got unknown options {unknown}; valid: {sorted(driver.COMMON_OPTIONS)}"
        )
    return driver.sample(
        DDPD(planner=planner), key, denoiser, process, shape, steps=steps, **options
    )
