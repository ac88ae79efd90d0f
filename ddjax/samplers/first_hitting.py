"""Zheng et al.'s first-hitting sampler (2024): one token per network call, exact.

With n masked tokens at time tau the next unmasking happens at
``tau' = alpha^{-1}(1 - u^{1/n} (1 - alpha(tau)))``, u ~ U(0, 1) (the largest of n
unmasking times drawn given that all lie below tau), at one uniformly chosen masked
position, drawn from p(. | x, tau'). O(L K) categorical work in all.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from ddjax._struct import check
from ddjax.random import draw_tokens
from ddjax.samplers import driver

__all__ = ["FirstHitting", "first_hitting"]


@dataclasses.dataclass(frozen=True)
class FirstHitting(driver.Step):
    """Zheng et al.'s first-hitting sampler: one token per network call.

    With an exact denoiser the output law is exact. ``tokens_per_call = k`` decodes k
    positions per call (at the first of their k hitting times; time then moves to the
    k-th), an approximation with ceil(L / k) calls. ``steps`` is ignored (accepted for a
    uniform interface). The network is called once per loop iteration while some
    sequence still has a masked token: ceil(L / k) calls without ``fixed``, fewer with
    it (every iteration under ``vmap``). ``final_step="argmax"`` takes the mode for the
    call that decodes a sequence's last masked tokens. Masking processes only.

    Options:
      tokens_per_call: k >= 1.
    """

    tokens_per_call: int = 1

    name: ClassVar[str] = "first_hitting"
    needs: ClassVar[tuple[str, ...]] = ("continuous_time", "mask", "schedule")
    calls_doc: ClassVar[str] = "L / tokens_per_call in all (steps ignored)"
    steps_optional: ClassVar[bool] = True

    def validate(self, process: Any, shape: tuple[int, int], steps: int | None) -> None:
        check(
            isinstance(self.tokens_per_call, int) and self.tokens_per_call >= 1,
            f"tokens_per_call must be a positive int, got {self.tokens_per_call!r}",
        )

    def network_calls(self, steps: int, length: int) -> int:
        return -(-length // self.tokens_per_call)

    def iterations(self, steps: int | None, length: int) -> int:
        return self.network_calls(1, length)

    def grid(self, process: Any, steps: int | None, length: int, t_max: Any) -> Array:
        return jnp.zeros(self.iterations(steps, length) + 1, jnp.float32)  # times unused

    def init(self, ctx: driver.Context, x: Array, grid: Array) -> Any:
        return ctx.process.schedule.one_minus_alpha(jnp.full((x.shape[0],), ctx.t_max, jnp.float32))

    def step(
        self, key: Array, ctx: driver.Context, x: Array, aux: Any, at: driver.StepInfo
    ) -> tuple[Array, Any]:
        def call() -> tuple[Array, Array]:
            return self._call(key, ctx, x, aux)

        return jax.lax.cond(jnp.any(x == ctx.process.mask_id), call, lambda: (x, aux))

    def _call(self, key: Array, ctx: driver.Context, x: Array, oma: Array) -> tuple[Array, Array]:
        b, l = x.shape
        k = min(self.tokens_per_call, l)
        schedule = ctx.process.schedule
        masked = x == ctx.process.mask_id
        n = masked.sum(-1)  # [B]
        k_time, k_pos, k_tok = jax.random.split(key, 3)
        # the next k hitting times: 1 - alpha shrinks by u_j^{1/(n - j)} at each
        u = jax.random.uniform(k_time, (b, k), minval=jnp.finfo(jnp.float32).tiny)
        remaining = n[:, None] - jnp.arange(k)[None, :]
        log_shrink = jnp.where(remaining > 0, jnp.log(u) / jnp.maximum(remaining, 1), 0.0)
        oma_events = oma[:, None] * jnp.exp(jnp.cumsum(log_shrink, axis=-1))  # [B, k]
        t_call = jnp.clip(schedule.t_of_alpha(1.0 - oma_events[:, 0]), 0.0, ctx.t_max)
        log_probs = ctx.base(x, t_call)
        # k uniformly chosen masked positions
        score = jnp.where(masked, jax.random.uniform(k_pos, (b, l)), -1.0)
        top, pos = jax.lax.top_k(score, k)
        valid = top >= 0.0
        chosen = ctx.rows(jnp.take_along_axis(log_probs, pos[..., None], axis=1))  # [B, k, K]
        tokens = draw_tokens(k_tok, chosen)
        if ctx.argmax:
            last = (n <= k)[:, None]
            tokens = jnp.where(last, draw_tokens(k_tok, chosen, argmax=True), tokens)
        rows = jnp.arange(b)[:, None]
        old = jnp.take_along_axis(x, pos, axis=1)
        x = x.at[rows, pos].set(jnp.where(valid, tokens, old))
        last_event = jnp.clip(jnp.minimum(n, k) - 1, 0)
        oma_next = jnp.take_along_axis(oma_events, last_event[:, None], axis=1)[:, 0]
        return x, jnp.where(n > 0, oma_next, oma)


first_hitting = driver.public(FirstHitting)
