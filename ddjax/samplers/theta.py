"""The theta-trapezoidal and theta-RK-2 methods (Ren et al. 2025), in our time direction.

Step h = t - s, intermediate time rho = t - theta h. Stage 1 tau-leaps from x over
theta h with the reverse rates R(x, t), giving x*. Stage 2:

* trapezoidal: a tau-leap from x* over (1 - theta) h with rates
  (a1 R(x*, rho) - a2 R(x, t) 1[x*_i = x_i])_+, a1 = 1 / (2 theta (1 - theta)),
  a2 = ((1 - theta)^2 + theta^2) / (2 theta (1 - theta)). At a position that jumped in
  stage 1 the -a2 R(x, t) term is dropped: its contribution to the second-order
  expansion cancels by antisymmetry there, while keeping it clips the rates (uniform
  noise then falls to first order even for one token). Second order where the positive
  part stays inactive.
* RK-2: a tau-leap from x over the whole h with ((1 - 1/(2 theta)) R(x, t) +
  (1/(2 theta)) R(x*, rho))_+. It jumps from x with rates taken at x*, so on a discrete
  space it is first order, unlike its ODE namesake.

Both stages' intensities are per target token y. Two network calls per step (one for
the final denoising step). ``multi_jump="first"`` (default) keeps the first of several
jumps at a position within a stage; Campbell et al.'s ``"reject"`` adds an O(h^2) error
per step, which makes the methods first order for uniform noise.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from ddjax._struct import check, concrete
from ddjax.random import draw_from_probs
from ddjax.samplers import ctmc, driver

__all__ = ["ThetaTrapezoidal", "ThetaRK2", "theta_trapezoidal", "theta_rk2", "trapezoidal_weights"]


def trapezoidal_weights(theta: Any) -> tuple[Any, Any]:
    """a1 = 1 / (2 th (1 - th)), a2 = ((1 - th)^2 + th^2) / (2 th (1 - th)); a1 - a2 = 1."""
    denom = 2.0 * theta * (1.0 - theta)
    return 1.0 / denom, ((1.0 - theta) ** 2 + theta**2) / denom


@dataclasses.dataclass(frozen=True)
class _Theta(driver.PositionLaw):
    theta: float = 0.5
    multi_jump: str = "first"

    needs: ClassVar[tuple[str, ...]] = ("continuous_time", "reverse_rates")
    calls_doc: ClassVar[str] = "2 per step, 1 for the final denoising step"
    theta_max: ClassVar[float] = 1.0

    def validate(self, process: Any, shape: tuple[int, int], steps: int | None) -> None:
        ctmc.check_multi_jump(self.multi_jump)
        driver.check_number("theta", self.theta, 0.0, self.theta_max, open_lo=True)
        if self.theta_max < 1.0:
            arr = concrete(self.theta)
            check(arr is None or float(arr) < 1.0, f"theta must lie in (0, 1), got {self.theta}")

    def network_calls(self, steps: int, length: int) -> int:
        return 2 * (steps - 1) + 1

    def stage1(self, ctx: driver.Context, x: Array, t: Array, s: Array) -> tuple[Array, Array]:
        """(the stage-1 law float32[B, L, N], the rates R(x, t) float32[B, L, N])."""
        rates = ctx.process.reverse_rates(x, ctx.x0_probs(x, t), t)
        return ctmc.leap_probs(x, rates, self.theta * (t - s), self.multi_jump), rates

    def stage2(
        self, ctx: driver.Context, x: Array, x_star: Array, rates1: Array, t: Array, s: Array
    ) -> Array:
        """The stage-2 law given the stage-1 state ``x_star``: float32[B, L, N]."""
        raise NotImplementedError

    def law(self, ctx: driver.Context, x: Array, t: Array, s: Array) -> Array:
        raise TypeError(f"{self.name} has a two-stage law: use stage1 / stage2")

    def draw(self, key: Array, ctx: driver.Context, x: Array, t: Array, s: Array) -> Array:
        k1, k2 = jax.random.split(key)
        if ctmc.has_masked_rates(ctx.process):
            return self.masked_draw(k1, k2, ctx, x, t, s)
        probs1, rates1 = self.stage1(ctx, x, t, s)
        x_star = driver.clamp(draw_from_probs(k1, probs1), ctx.fixed)
        return draw_from_probs(k2, self.stage2(ctx, x, x_star, rates1, t, s))

    def masked_draw(
        self, k1: Array, k2: Array, ctx: driver.Context, x: Array, t: Array, s: Array
    ) -> Array:
        """Both stages through :func:`ddjax.samplers.ctmc.masked_leap` (masking only)."""
        h = t - s
        rho = t - self.theta * h
        lp_t = ctx.base(x, t)
        rate_t = ctx.process.unmask_rate(t)
        x_star = ctmc.masked_leap(k1, ctx, x, [(rate_t, lp_t)], self.theta * h, self.multi_jump)
        x_star = driver.clamp(x_star, ctx.fixed)
        start, terms, dt = self.masked_stage2(ctx, x, x_star, lp_t, rate_t, rho, h)
        return ctmc.masked_leap(k2, ctx, start, terms, dt, self.multi_jump)

    def masked_stage2(
        self, ctx: driver.Context, x: Array, x_star: Array, lp_t: Array, rate_t: Array,
        rho: Array, h: Array,
    ) -> tuple[Array, list[tuple[Array, Array]], Array]:  # fmt: skip
        """Stage 2 under masking: (the state it leaps from, its rate terms, its length)."""
        raise NotImplementedError

    def transition_matrix(
        self, ctx: driver.Context, states: Array, t: Array, s: Array, last: bool = False
    ) -> Array:
        if last:
            return super().transition_matrix(ctx, states, t, s, last)
        num = states.shape[0]
        probs1, rates1 = self.stage1(ctx, states, t, s)
        first = driver.product_law(probs1, states)  # [x, x*]
        x = jnp.repeat(states, num, axis=0)
        x_star = jnp.tile(states, (num, 1))
        pair_t, pair_s = jnp.repeat(t, num), jnp.repeat(s, num)
        probs2 = self.stage2(ctx, x, x_star, jnp.repeat(rates1, num, axis=0), pair_t, pair_s)
        second = driver.product_law(probs2, states).reshape(num, num, num)  # [x, x*, new]
        return jnp.einsum("ac,acb->ab", first, second)


@dataclasses.dataclass(frozen=True)
class ThetaTrapezoidal(_Theta):
    """The theta-trapezoidal method (Ren et al. 2025): two-stage tau-leaping, second order.

    Stage 1 leaps from x over theta h with R(x, t), giving x*; stage 2 leaps from x* over
    (1 - theta) h with (a1 R(x*, rho) - a2 R(x, t) 1[x*_i = x_i])_+ (module docstring).

    Options:
      theta: the intermediate point, in (0, 1) (default 0.5).
      multi_jump: "first" (default) or "reject".
    """

    name: ClassVar[str] = "theta_trapezoidal"
    theta_max: ClassVar[float] = 1.0 - 1e-9

    def stage2(
        self, ctx: driver.Context, x: Array, x_star: Array, rates1: Array, t: Array, s: Array
    ) -> Array:
        h = t - s
        rho = t - self.theta * h
        rates2 = ctx.process.reverse_rates(x_star, ctx.x0_probs(x_star, rho), rho)
        a1, a2 = trapezoidal_weights(self.theta)
        stayed = (x_star == x)[..., None]
        rates = a1 * rates2 - a2 * jnp.where(stayed, rates1, 0.0)
        return ctmc.leap_probs(x_star, rates, (1.0 - self.theta) * h, self.multi_jump)

    def masked_stage2(
        self, ctx: driver.Context, x: Array, x_star: Array, lp_t: Array, rate_t: Array,
        rho: Array, h: Array,
    ) -> tuple[Array, list[tuple[Array, Array]], Array]:  # fmt: skip
        # positions still masked in x* were masked in x; jumped ones have no rates left
        a1, a2 = trapezoidal_weights(self.theta)
        terms = [(a1 * ctx.process.unmask_rate(rho), ctx.base(x_star, rho)), (-a2 * rate_t, lp_t)]
        return x_star, terms, (1.0 - self.theta) * h


@dataclasses.dataclass(frozen=True)
class ThetaRK2(_Theta):
    """The theta-RK-2 method (Ren et al. 2025); first order on a discrete space.

    Stage 1 as in theta_trapezoidal gives x* at rho = t - theta h; stage 2 leaps from x
    over the whole h with ((1 - 1/(2 theta)) R(x, t) + (1/(2 theta)) R(x*, rho))_+. The
    stage-1 jumps themselves are discarded: a position that jumped in stage 1 is rated
    from where it landed but moved from where it was, which costs O(h^2) per step, so it
    is first order; use theta_trapezoidal for second order.

    Options:
      theta: the intermediate point, in (0, 1] (default 0.5).
      multi_jump: "first" (default) or "reject".
    """

    name: ClassVar[str] = "theta_rk2"

    def stage2(
        self, ctx: driver.Context, x: Array, x_star: Array, rates1: Array, t: Array, s: Array
    ) -> Array:
        h = t - s
        rho = t - self.theta * h
        rates2 = ctx.process.reverse_rates(x_star, ctx.x0_probs(x_star, rho), rho)
        w = 1.0 / (2.0 * self.theta)
        return ctmc.leap_probs(x, (1.0 - w) * rates1 + w * rates2, h, self.multi_jump)

    def masked_stage2(
        self, ctx: driver.Context, x: Array, x_star: Array, lp_t: Array, rate_t: Array,
        rho: Array, h: Array,
    ) -> tuple[Array, list[tuple[Array, Array]], Array]:  # fmt: skip
        w = 1.0 / (2.0 * self.theta)
        # R(x*, rho) is 0 where x* is unmasked (the position jumped in stage 1)
        still = (x_star == ctx.process.mask_id).astype(jnp.float32)
        rate_rho = w * ctx.process.unmask_rate(rho) * still
        terms = [((1.0 - w) * rate_t, lp_t), (rate_rho, ctx.base(x_star, rho))]
        return x, terms, h


theta_trapezoidal = driver.public(ThetaTrapezoidal)
theta_rk2 = driver.public(ThetaRK2)
