"""MaskGIT confidence decoding (Chang et al. 2022) and Fast-dLLM's threshold mode (Wu et
al. 2025), masking processes only."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from ddjax._struct import check
from ddjax.arrays import take_last
from ddjax.random import draw_tokens, gumbel
from ddjax.samplers import driver
from ddjax.samplers.masking import top_ranked

__all__ = ["Confidence", "confidence"]


@dataclasses.dataclass(frozen=True)
class Confidence(driver.Step):
    """MaskGIT decoding: keep the most confident sampled tokens, cosine count schedule.

    At step i (0-based) every masked position gets a token drawn from the x0
    distribution; its confidence is the token's log-probability plus
    ``noise_scale * (1 - (i + 1) / steps)`` times Gumbel noise. The most confident are
    kept and the rest re-masked so that ``floor(n cos(pi/2 (i + 1) / steps))`` positions
    stay masked (n = the number of free positions), with at least one new token per
    step; the last step fills every mask (``final_step="argmax"``: with the mode). The
    denoiser sees the time whose masked fraction 1 - alpha(t) equals the current one, so
    ``t_max`` has no effect (from the all-mask prior the first call is at t = 1).

    This is a heuristic, not a sampler of the model's law: picking the most confident
    tokens favours likely ones. With a very large ``noise_scale`` the order becomes
    uniformly random and, at one token per step, the law is exact.

    Threshold mode (Fast-dLLM's parallel decoding), ``threshold=c``: each call decodes
    every masked position whose top probability max_k p_i(k) (of the transformed x0
    distribution) exceeds c, and at least one (the most confident masked position, ties
    to the lower index), each to a token drawn from p_i (``final_step="argmax"``: the
    mode, in the call that decodes a sequence's last masks). The number of calls adapts:
    the driver runs a ``lax.while_loop`` until no mask is left, and ``steps`` is the
    maximum number of calls (the steps-th call decodes every remaining mask; steps >= L
    never binds). The denoiser sees the time of the current masked fraction, as above.
    ``dd.samplers.count_calls`` returns the calls made. With ``threshold=None`` (the
    default) the sampler is the MaskGIT schedule above, unchanged.

    Options:
      noise_scale: scale of the Gumbel noise on the confidences (MaskGIT's choice
        temperature, 4.5 in its paper; 0 keeps the pure confidence order). Must be 0 in
        threshold mode.
      threshold: None (the cosine schedule) or a probability in [0, 1] (threshold mode).
    """

    noise_scale: float = 0.0
    threshold: float | None = None

    name: ClassVar[str] = "confidence"
    needs: ClassVar[tuple[str, ...]] = ("continuous_time", "mask", "schedule")

    def validate(self, process: Any, shape: tuple[int, int], steps: int | None) -> None:
        driver.check_number("noise_scale", self.noise_scale, 0.0)
        if self.threshold is not None:
            driver.check_number("threshold", self.threshold, 0.0, 1.0)
            check(
                isinstance(self.noise_scale, jax.core.Tracer) or self.noise_scale == 0,
                f"noise_scale must be 0 in threshold mode, got {self.noise_scale!r}",
            )

    def adaptive(self) -> bool:
        return self.threshold is not None

    def _denoise(self, ctx: driver.Context, x: Array) -> tuple[Array, Array, Array, Array]:
        """(masked, n_masked, n_free, log_probs) at the time of the masked fraction."""
        b, l = x.shape
        free = ctx.fixed is None
        n_free = (jnp.full((b,), l) if free else (ctx.fixed < 0).sum(-1)).astype(jnp.float32)
        masked = x == ctx.process.mask_id
        n_masked = masked.sum(-1)
        frac = n_masked / jnp.maximum(n_free, 1.0)
        t_net = jnp.clip(ctx.process.schedule.t_of_alpha(1.0 - frac), 0.0, 1.0)
        return masked, n_masked, n_free, ctx.denoise(x, t_net)

    def _threshold_step(self, key: Array, ctx: driver.Context, x: Array, i: Array) -> Array:
        masked, _, _, log_probs = self._denoise(ctx, x)
        top = log_probs.max(-1)  # log of the top probability, [B, L]
        best = jnp.argmax(jnp.where(masked, top, -jnp.inf), axis=-1)  # first maximum
        at_cap = i + 1 >= ctx.steps
        decode = masked & (
            (jnp.exp(top) > self.threshold)
            | (jnp.arange(x.shape[1])[None, :] == best[:, None])
            | at_cap
        )
        tokens = draw_tokens(key, log_probs)
        if ctx.argmax:
            ends = jnp.all(decode == masked, axis=-1, keepdims=True)
            tokens = jnp.where(ends, jnp.argmax(log_probs, axis=-1).astype(jnp.int32), tokens)
        return jnp.where(decode, tokens, x)

    def step(
        self, key: Array, ctx: driver.Context, x: Array, aux: Any, at: driver.StepInfo
    ) -> tuple[Array, Any]:
        if self.threshold is not None:
            return self._threshold_step(key, ctx, x, at.index), aux
        i, steps, last = at.index, ctx.steps, at.last
        masked, n_masked, n_free, log_probs = self._denoise(ctx, x)
        k_tok, k_noise = jax.random.split(key)
        tokens = draw_tokens(k_tok, log_probs, argmax=last and ctx.argmax)
        score = take_last(log_probs, tokens)
        ratio = (i + 1).astype(jnp.float32) / steps
        score = score + self.noise_scale * (1.0 - ratio) * gumbel(k_noise, x.shape)
        # masked count after this step; the small slack keeps exact integers exact
        target = jnp.floor(n_free * jnp.cos(0.5 * math.pi * ratio) + 1e-3).astype(jnp.int32)
        if last:
            target = jnp.zeros_like(target)
        n_next = jnp.clip(jnp.minimum(n_masked - 1, target), 0)
        n_decode = n_masked - n_next
        decode = top_ranked(score, masked, n_decode)
        return jnp.where(decode, tokens, x), aux


confidence = driver.public(Confidence)
