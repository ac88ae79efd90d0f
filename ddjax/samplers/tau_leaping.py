"""Tau-leaping (Campbell et al. 2022) and its predictor-corrector form.

Per position, independent Poisson counts with means h R^(x -> y) for every target y,
with the rates frozen at t; drawn through the exact law of these counts
(:mod:`ddjax.samplers.ctmc`). The corrector leaps at the fixed time s with rates
R_s + R^_s, whose generator leaves q_s invariant.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from ddjax._struct import check
from ddjax.random import draw_from_probs
from ddjax.samplers import ctmc, driver

__all__ = ["TauLeaping", "PredictorCorrector", "tau_leaping", "predictor_corrector"]


@dataclasses.dataclass(frozen=True)
class TauLeaping(driver.PositionLaw):
    """Tau-leaping (Campbell et al. 2022): Poisson jumps with the rates frozen at t.

    No jump: stay; one jump: move there; more than one: stay (``multi_jump="reject"``,
    the paper's rule for categorical data) or keep the first (``"first"``). One network
    call per step; first order.

    Options:
      multi_jump: "reject" (default) or "first".
    """

    multi_jump: str = "reject"

    name: ClassVar[str] = "tau_leaping"
    needs: ClassVar[tuple[str, ...]] = ("continuous_time", "reverse_rates")

    def validate(self, process: Any, shape: tuple[int, int], steps: int | None) -> None:
        ctmc.check_multi_jump(self.multi_jump)

    def law(self, ctx: driver.Context, x: Array, t: Array, s: Array) -> Array:
        rates = ctx.process.reverse_rates(x, ctx.x0_probs(x, t), t)
        return ctmc.leap_probs(x, rates, t - s, self.multi_jump)

    def draw(self, key: Array, ctx: driver.Context, x: Array, t: Array, s: Array) -> Array:
        if not ctmc.has_masked_rates(ctx.process):
            return super().draw(key, ctx, x, t, s)
        terms = [(ctx.process.unmask_rate(t), ctx.base(x, t))]
        return ctmc.masked_leap(key, ctx, x, terms, t - s, self.multi_jump)


@dataclasses.dataclass(frozen=True)
class PredictorCorrector(driver.PositionLaw):
    """A tau-leaping predictor, then ``n_corrector`` corrector leaps (Campbell et al. 2022).

    After the predictor leap t -> s, ``n_corrector`` tau-leaps at the fixed time s with
    rates R_s + R^_s: the process's ``forward_rates`` plus the reverse rates. Their
    generator leaves q_s invariant, so the correctors pull the state towards the right
    marginal. The final denoising step makes one call and has no corrector.

    Options:
      n_corrector: corrector leaps per step (default 1; 0 is tau-leaping).
      corrector_step_size: the corrector leap's length in time units (default: h).
      multi_jump: "reject" (default) or "first", for predictor and correctors.
    """

    n_corrector: int = 1
    corrector_step_size: float | None = None
    multi_jump: str = "reject"

    name: ClassVar[str] = "predictor_corrector"
    needs: ClassVar[tuple[str, ...]] = ("continuous_time", "reverse_rates", "forward_rates")
    calls_doc: ClassVar[str] = "1 + n_corrector per step, 1 for the final denoising step"

    def validate(self, process: Any, shape: tuple[int, int], steps: int | None) -> None:
        ctmc.check_multi_jump(self.multi_jump)
        check(
            isinstance(self.n_corrector, int) and self.n_corrector >= 0,
            f"n_corrector must be an int >= 0, got {self.n_corrector!r}",
        )
        if self.corrector_step_size is not None:
            driver.check_number("corrector_step_size", self.corrector_step_size, 0.0, open_lo=True)

    def network_calls(self, steps: int, length: int) -> int:
        return (steps - 1) * (1 + self.n_corrector) + 1

    def law(self, ctx: driver.Context, x: Array, t: Array, s: Array) -> Array:
        """The predictor's law (the correctors follow: :meth:`corrector_law`)."""
        rates = ctx.process.reverse_rates(x, ctx.x0_probs(x, t), t)
        return ctmc.leap_probs(x, rates, t - s, self.multi_jump)

    def _dt(self, t: Array, s: Array) -> Array:
        if self.corrector_step_size is None:
            return t - s
        return jnp.full_like(t, self.corrector_step_size)

    def corrector_law(self, ctx: driver.Context, x: Array, t: Array, s: Array) -> Array:
        """One corrector leap at time s with rates R_s + R^_s: float32[B, L, N]."""
        rates = ctx.process.reverse_rates(x, ctx.x0_probs(x, s), s)
        rates = rates + ctx.process.forward_rates(x, s)
        return ctmc.leap_probs(x, rates, self._dt(t, s), self.multi_jump)

    def draw(self, key: Array, ctx: driver.Context, x: Array, t: Array, s: Array) -> Array:
        k_pred, k_corr = jax.random.split(key)
        x = driver.clamp(draw_from_probs(k_pred, self.law(ctx, x, t, s)), ctx.fixed)

        def corrector(x: Array, kc: Array) -> tuple[Array, None]:
            return driver.clamp(
                draw_from_probs(kc, self.corrector_law(ctx, x, t, s)), ctx.fixed
            ), None

        if self.n_corrector == 0:
            return x
        return jax.lax.scan(corrector, x, jax.random.split(k_corr, self.n_corrector))[0]

    def transition_matrix(
        self, ctx: driver.Context, states: Array, t: Array, s: Array, last: bool = False
    ) -> Array:
        out = super().transition_matrix(ctx, states, t, s, last)
        if last:
            return out
        corr = driver.product_law(self.corrector_law(ctx, states, t, s), states)
        for _ in range(self.n_corrector):
            out = out @ corr
        return out


tau_leaping = driver.public(TauLeaping)
predictor_corrector = driver.public(PredictorCorrector)
