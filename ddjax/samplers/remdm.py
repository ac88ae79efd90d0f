"""ReMDM remasking (Wang et al. 2025) on an even time grid, masking processes only."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp
from jax import Array

from ddjax._struct import check, concrete
from ddjax.samplers import driver, masking

__all__ = ["Remdm", "remdm", "REMDM_SCHEDULES", "REMDM_DEFAULT_ETA", "loop_one_minus_alpha"]

REMDM_SCHEDULES = ("cap", "rescale", "conf", "loop")
# Defaults of the ReMDM paper's code (eta multiplies the softmax weights for "conf").
REMDM_DEFAULT_ETA = {"cap": 0.008, "rescale": 0.015, "conf": 1.0, "loop": 0.02}

_TINY = 1e-30


def loop_one_minus_alpha(
    t: Array, alpha_start: Array, t_on: Any, t_off: Any, alpha_on: Any
) -> Array:
    """1 - alpha of ReMDM-loop's piecewise-linear schedule at times t.

    alpha rises linearly from ``alpha_start`` (the process's alpha(1)) at t = 1 to
    ``alpha_on`` at ``t_on``, stays there down to ``t_off``, then rises linearly to 1 at 0.
    """
    rise = alpha_start + (alpha_on - alpha_start) * (1.0 - t) / (1.0 - t_on)
    return jnp.where(
        t > t_on,
        1.0 - rise,
        jnp.where(t > t_off, 1.0 - alpha_on, (1.0 - alpha_on) * t / t_off),
    )


@dataclasses.dataclass(frozen=True)
class Remdm(driver.Step):
    """ReMDM remasking sampler (Wang et al. 2025).

    A step from t to s (a_t = alpha(t)): a decoded token is re-masked with probability
    sigma; a masked token is decoded to v with probability
    ``(a_s - (1 - sigma) a_t) / (1 - a_t) p(v)`` and stays masked with
    ``(1 - a_s - sigma a_t) / (1 - a_t)``, with ``0 <= sigma <= sigma_max =
    min(1, (1 - a_s) / a_t)``. These keep the marginals q(x_s | x0) of the forward
    process, so with an exact denoiser the sampler converges to the data law as steps
    grow; sigma = 0 is MDLM's ancestral step. The last step (to t = 0) decodes every
    remaining mask and re-masks nothing. Masking processes only.

    Schedules (``eta`` defaults to the paper's values, REMDM_DEFAULT_ETA):
      ``cap``: sigma = min(eta, sigma_max) (eta 0.008).
      ``rescale``: sigma = eta * sigma_max (eta 0.015).
      ``conf``: per decoded token, sigma = eta * softmax(-confidence) * sigma_max over the
        decoded (free) positions, where a token's confidence is its probability when it
        was decoded; masked tokens decode as in MDLM (eta 1.0).
      ``loop``: alpha follows a piecewise-linear path in t: up to ``alpha_on`` at
        ``t_on`` with MDLM steps, constant at ``alpha_on`` down to ``t_off`` with
        sigma = eta remasking (eta 0.02), then MDLM steps to alpha = 1 at t = 0. The
        denoiser sees the process time whose alpha matches.

    Options:
      schedule: "cap", "rescale", "conf" or "loop".
      eta: remasking strength (>= 0; may be traced).
      t_on, t_off, alpha_on: the loop schedule (0 < t_off < t_on < 1, 0 < alpha_on < 1).
      draw_capacity: rows gathered per step for the token draws
        (:func:`ddjax.samplers.masking.draw_at`); None picks one for large vocabularies.
    """

    schedule: str = "cap"
    eta: float | None = None
    t_on: float = 0.55
    t_off: float = 0.05
    alpha_on: float = 0.9
    draw_capacity: int | None = None

    name: ClassVar[str] = "remdm"
    needs: ClassVar[tuple[str, ...]] = ("continuous_time", "mask", "schedule")

    @property
    def strength(self) -> Any:
        return REMDM_DEFAULT_ETA[self.schedule] if self.eta is None else self.eta

    def validate(self, process: Any, shape: tuple[int, int], steps: int | None) -> None:
        check(
            self.schedule in REMDM_SCHEDULES,
            f"schedule must be one of {REMDM_SCHEDULES}, got {self.schedule!r}",
        )
        driver.check_number("eta", self.strength, 0.0)
        masking.check_capacity(self.draw_capacity)
        if self.schedule == "loop":
            driver.check_number("alpha_on", self.alpha_on, 0.0, 1.0, open_lo=True)
            check(self.alpha_on < 1.0, f"alpha_on must be below 1, got {self.alpha_on}")
            driver.check_number("t_off", self.t_off, 0.0, 1.0, open_lo=True)
            driver.check_number("t_on", self.t_on, 0.0, 1.0, open_lo=True)
            check(
                self.t_off < self.t_on < 1.0,
                f"need 0 < t_off < t_on < 1, got t_off={self.t_off}, t_on={self.t_on}",
            )

    def times(self, process: Any, t: Array, s: Array) -> tuple[Array, ...]:
        """(a_t, 1 - a_t, 1 - a_s, the denoiser's time, sigma for the cap-like schedules)."""
        sched, eta = process.schedule, self.strength
        if self.schedule == "loop":
            a_start = sched.alpha(jnp.float32(1.0))
            oma_t = loop_one_minus_alpha(t, a_start, self.t_on, self.t_off, self.alpha_on)
            oma_s = loop_one_minus_alpha(s, a_start, self.t_on, self.t_off, self.alpha_on)
            a_t = 1.0 - oma_t
            t_net = jnp.clip(sched.t_of_alpha(a_t), 0.0, 1.0)
        else:
            oma_t, oma_s = sched.one_minus_alpha(t), sched.one_minus_alpha(s)
            a_t, t_net = sched.alpha(t), t
        sigma_max = jnp.where(a_t > 0, jnp.clip(oma_s / jnp.maximum(a_t, _TINY), 0.0, 1.0), 1.0)
        if self.schedule == "cap":
            sigma = jnp.minimum(eta, sigma_max)
        elif self.schedule == "rescale":
            sigma = eta * sigma_max
        elif self.schedule == "loop":
            in_loop = (t > self.t_off) & (t <= self.t_on)
            sigma = jnp.where(in_loop, jnp.minimum(eta, sigma_max), 0.0)
        else:  # conf: per position, in the step
            sigma = sigma_max
        return a_t, oma_t, oma_s, t_net, sigma

    def _capacity(self, ctx: driver.Context) -> int | None:
        if self.draw_capacity is not None:
            return self.draw_capacity
        if concrete(self.strength) is None or ctx.steps is None:  # no static gather size
            return None

        def per_step(t: Array, s: Array) -> Array:
            a_t, oma_t, oma_s, _, sigma = self.times(ctx.process, t, s)
            return oma_t - oma_s + (0.0 if self.schedule == "conf" else sigma) * a_t

        expected = driver.max_decoded(ctx.process, ctx.steps, ctx.t_max, ctx.shape[1], per_step)
        return masking.capacity_for(None, expected, ctx.shape[1], ctx.process.vocab_size)

    def init(self, ctx: driver.Context, x: Array, grid: Array) -> Any:
        return jnp.zeros(x.shape, jnp.float32)  # the confidence of each decoded token

    def step(
        self, key: Array, ctx: driver.Context, x: Array, aux: Any, at: driver.StepInfo
    ) -> tuple[Array, Any]:
        t, s, last = at.t, at.s, at.last
        conf, mask_id = aux, ctx.process.mask_id
        free = None if ctx.fixed is None else ctx.fixed < 0
        a_t, oma_t, oma_s, t_net, sigma = self.times(ctx.process, t, s)
        a_t, oma_t, oma_s, sigma = a_t[:, None], oma_t[:, None], oma_s[:, None], sigma[:, None]
        masked = x == mask_id
        if self.schedule == "conf":
            decoded = ~masked if free is None else ~masked & free
            z = jnp.where(decoded, -conf, -jnp.inf)
            z_top = jnp.max(z, axis=-1, keepdims=True)
            e = jnp.where(decoded, jnp.exp(z - jnp.where(jnp.isfinite(z_top), z_top, 0.0)), 0.0)
            weights = e / jnp.maximum(e.sum(-1, keepdims=True), _TINY)
            remask_prob = self.strength * weights * sigma
            sigma_masked = 0.0
        else:
            remask_prob, sigma_masked = sigma, sigma
        unmask_prob = (oma_t - oma_s + sigma_masked * a_t) / jnp.maximum(oma_t, _TINY)
        if last:  # decode every remaining mask, re-mask nothing
            unmask_prob, remask_prob = jnp.ones_like(unmask_prob), None
        x_new, decoded_now, token_lp = masking.masking_update(
            key, x, ctx.base(x, t_net), unmask_prob, mask_id, remask_prob=remask_prob,
            free=free, capacity=self._capacity(ctx), argmax=last and ctx.argmax,
            transform=ctx.rows,
        )  # fmt: skip
        return x_new, jnp.where(decoded_now, jnp.exp(token_lp), conf)


remdm = driver.public(Remdm)
