"""SEDD's analytic ("Tweedie tau-leaping") step."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
from jax import Array

from ddjax.arrays import onehot
from ddjax.samplers import driver, masking

__all__ = ["Tweedie", "tweedie"]


@dataclasses.dataclass(frozen=True)
class Tweedie(driver.PositionLaw):
    """SEDD's analytic sampler: p(y) proportional to [exp(-dsig Q) s]_y exp(dsig Q)(x, y).

    dsig = sigma_bar(t) - sigma_bar(s) and s the concrete score implied by the denoiser
    (``process.score``); ``process.undo_transition`` applies exp(-dsig Q) and
    ``process.transition_likelihood`` gives exp(dsig Q)(x, y) = q(x_t = x | x_s = y): O(N)
    per token for the interpolating family, no N x N matrix. With the mixture-form score
    it is the same law as the ancestral posterior step (for masking this is SEDD's
    observation, and the masking fast path draws it as such). Its float32 evaluation
    subtracts two nearly equal terms where alpha(t) is tiny, so keep alpha(t_max) >~ 1e-5
    (LogLinear's default eps = 1e-3 is fine). One network call per step.
    """

    name: ClassVar[str] = "tweedie"
    needs: ClassVar[tuple[str, ...]] = (
        "continuous_time",
        "score",
        "undo_transition",
        "transition_likelihood",
    )

    def law(self, ctx: driver.Context, x: Array, t: Array, s: Array) -> Array:
        process = ctx.process
        score = process.score(x, ctx.x0_probs(x, t), t)
        back = jnp.maximum(process.undo_transition(score, s, t), 0.0)
        w = back * process.transition_likelihood(x, s, t)
        z = w.sum(-1, keepdims=True)
        # a degenerate step (float32 cancellation where a_t underflows) stays put
        return jnp.where(z > 0, w / jnp.where(z > 0, z, 1.0), onehot(x, process.num_states))

    def draw(self, key: Array, ctx: driver.Context, x: Array, t: Array, s: Array) -> Array:
        if not masking.has_fast_path(ctx.process):
            return super().draw(key, ctx, x, t, s)
        return masking.posterior_update(key, ctx, x, ctx.base(x, t), t, s)


tweedie = driver.public(Tweedie)
