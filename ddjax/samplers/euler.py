"""Euler steps of the reverse CTMC: x_s ~ Cat(onehot(x) + h R^(x, t)), h = t - s."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from jax import Array

from ddjax.samplers import ctmc, driver

__all__ = ["Euler", "euler"]


@dataclasses.dataclass(frozen=True)
class Euler(driver.PositionLaw):
    """Euler steps of the reverse CTMC: x_s ~ Cat(onehot(x) + h R^(x, t)).

    The rates are the process's ``reverse_rates`` at (x, t); the stay probability is
    clipped at 0 and the row renormalised. One network call per step; first order. (For
    masking with the log-linear schedule it is exactly the ancestral step.)
    """

    name: ClassVar[str] = "euler"
    needs: ClassVar[tuple[str, ...]] = ("continuous_time", "reverse_rates")

    def law(self, ctx: driver.Context, x: Array, t: Array, s: Array) -> Array:
        rates = ctx.process.reverse_rates(x, ctx.x0_probs(x, t), t)
        return ctmc.euler_probs_from_rates(x, rates, t - s)

    def draw(self, key: Array, ctx: driver.Context, x: Array, t: Array, s: Array) -> Array:
        if not ctmc.has_masked_rates(ctx.process):
            return super().draw(key, ctx, x, t, s)
        terms = [(ctx.process.unmask_rate(t), ctx.base(x, t))]
        return ctmc.masked_leap(key, ctx, x, terms, t - s, "euler")


euler = driver.public(Euler)
