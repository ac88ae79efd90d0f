"""Ancestral sampling: each step draws x_s from the posterior mixture
sum_k p(k) q(x_s | x_t, x0 = k) (design.md 5.3), ``process.posterior_probs``.

Works for every process, continuous or discrete time (D3PM over its T steps or an even
stride of them). For masking it is MDLM's sampler with SUBS carry-over. For a process
with the masking capabilities (``mask_id`` and ``unmask_probability``) the step is drawn
in its factorised form (:func:`ddjax.samplers.masking.masking_update`): a Bernoulli per
masked position, then a token only where one is decoded, with the row transforms on
those rows: the same law as the posterior over K + 1 states without a [B, L, K + 1]
draw per step. A time-independent denoiser (RADD) lets a step in which no token changed
reuse the last prediction instead of calling the network.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from ddjax._struct import check
from ddjax.processes import require
from ddjax.random import draw_from_probs
from ddjax.samplers import driver, masking

__all__ = ["Ancestral", "ancestral"]


@dataclasses.dataclass(frozen=True)
class Ancestral(driver.PositionLaw):
    """Ancestral (posterior-mixture) steps, for every process.

    Options:
      time_independent: the denoiser ignores t (RADD): reuse its output when x is unchanged.
      plugin: the papers' plug-in posterior (D3PM / UDLM) instead of the mixture; needs the
        process capability ``plugin_posterior_probs``.
      draw_capacity: masking fast path: rows gathered per step for the token draws
        (:func:`ddjax.samplers.masking.draw_at`); None picks one for large vocabularies.
      gumbel_bits: resolution of the categorical draws: 32, 64, or "float32" to
        reproduce Zheng et al.'s bias only (JAX's truncated float32 Gumbel in one joint
        draw over the K + 1 posterior classes, as the reference implementations draw).
    """

    time_independent: bool = False
    plugin: bool = False
    draw_capacity: int | None = None
    gumbel_bits: int | str = 32

    name: ClassVar[str] = "ancestral"
    needs: ClassVar[tuple[str, ...]] = ()
    uses_own_posterior: ClassVar[bool] = True
    calls_doc: ClassVar[str] = (
        "1 per step (fewer with time_independent=True: none when nothing changed)"
    )

    def validate(self, process: Any, shape: tuple[int, int], steps: int | None) -> None:
        if self.plugin:
            require(process, "plugin_posterior_probs", "ancestral(plugin=True)")
        masking.check_capacity(self.draw_capacity)
        check(
            self.gumbel_bits in (32, 64, "float32"),
            f"gumbel_bits must be 32, 64 or 'float32', got {self.gumbel_bits!r}",
        )

    def _fast(self, ctx: driver.Context) -> bool:
        return (
            masking.has_fast_path(ctx.process)
            and ctx.own_posterior is None
            and self.gumbel_bits != "float32"
        )

    def law(self, ctx: driver.Context, x: Array, t: Array, s: Array) -> Array:
        own = ctx.own_posterior is not None
        return self._posterior(ctx, x, None if own else ctx.base(x, t), t, s)

    def _posterior(
        self, ctx: driver.Context, x: Array, log_probs: Array | None, t: Array, s: Array
    ) -> Array:
        """q(x_s | x_t, p) float32[B, L, N] from the checked output before the row transforms."""
        if ctx.own_posterior is not None:  # the denoiser's reverse step (rows inside)
            return ctx.own_posterior(x, s, t)
        x0 = jnp.exp(ctx.rows(log_probs))
        if self.plugin:
            return ctx.process.plugin_posterior_probs(x, x0, s, t)
        return ctx.process.posterior_probs(x, x0, s, t)

    def transition_matrix(
        self, ctx: driver.Context, states: Array, t: Array, s: Array, last: bool = False
    ) -> Array:
        return driver.product_law(self.law(ctx, states, t, s), states)

    def init(self, ctx: driver.Context, x: Array, grid: Array) -> Any:
        if not self.time_independent or ctx.own_posterior is not None:
            return None
        # (the last prediction, whether x changed since): the first step always calls
        return jnp.zeros((*x.shape, ctx.process.vocab_size), jnp.float32), jnp.array(True)

    def update(
        self, key: Array, ctx: driver.Context, x: Array, log_probs: Array, t: Array, s: Array,
        last: bool,
    ) -> Array:  # fmt: skip
        """One step given the checked denoiser output ``log_probs`` (before row transforms)."""
        if self._fast(ctx):
            return masking.posterior_update(
                key, ctx, x, log_probs, t, s, last=last, capacity=self.draw_capacity,
                bits=self.gumbel_bits,
            )  # fmt: skip
        probs = self._posterior(ctx, x, log_probs, t, s)
        return draw_from_probs(key, probs, last and ctx.argmax, self.gumbel_bits)

    def step(
        self, key: Array, ctx: driver.Context, x: Array, aux: Any, at: driver.StepInfo
    ) -> tuple[Array, Any]:
        t, s, last = at.t, at.s, at.last
        if ctx.own_posterior is not None:
            return self.update(key, ctx, x, None, t, s, last), aux
        if aux is None:
            return self.update(key, ctx, x, ctx.base(x, t), t, s, last), aux
        cached, changed = aux
        log_probs = jax.lax.cond(changed, lambda: ctx.base(x, t), lambda: cached)
        x_new = driver.clamp(self.update(key, ctx, x, log_probs, t, s, last), ctx.fixed)
        return x_new, (log_probs, jnp.any(x_new != x))


ancestral = driver.public(Ancestral)
