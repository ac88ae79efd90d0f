"""Anchored posterior sampling (APS; Rout et al. 2025, "Test-time anchoring for discrete
diffusion posterior sampling"), masking processes only.

Target (approximately): p(x | y) proportional to p(x) exp(-measurement_loss(c[x])), with
a codebook c float32[K] giving each token a value (on digits: the pixel levels) and
``measurement_loss(values float32[B, L]) -> float32[B]`` the negative log-likelihood of
the measurement y as a function of the values.

Each step t -> s (a count schedule, :func:`ddjax.samplers.pc_sampler.decode_counts`):

1. quantized expectation: the denoiser's x0 law p_i at every position gives the
   expected value v_i = sum_k p_i(k) c_k (decoded positions: their token's value),
   rounded to the nearest codebook value with a straight-through gradient; g_i =
   d measurement_loss / d v_i at that point;
2. the guidance step on the x0 logits, the gradient step on the simplex through v:
   log p_i'(k) = log p_i(k) - scale * g_i * c_k + const (``grad_steps`` times, the
   expectation recomputed from p' each time);
3. anchored remasking: a token is drawn from p' at every masked position; the
   ``n`` most confident positions (their p' probability; decoded free positions compete
   with their current token when ``remask``) are kept or decoded, the anchors, and every
   other free position is masked. ``anchor="random"`` picks the decoded positions
   uniformly instead (MDLM's order, no remasking).

What it is exact for: one step of 2 with scale 1 multiplies p_i by exp(-g_i c_k), the
exact tilt when the loss is linear in the values, loss = sum_i a_i v_i; with a product
prior (independent positions) and ``anchor="random"`` APS then samples the exact
posterior at any step count. Otherwise (dependent positions, a nonlinear loss, the
confidence order) it is a heuristic: the tilt is a first-order expansion at the
expected values and the order favours confident tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ddjax._struct import check, concrete
from ddjax.arrays import take_last
from ddjax.random import draw_tokens
from ddjax.samplers import driver
from ddjax.samplers.masking import top_ranked
from ddjax.samplers.pc_sampler import decode_counts, network_time

__all__ = ["APS", "aps", "guided_log_probs"]

MeasurementLoss = Callable[[Array], Array]


def guided_log_probs(
    log_probs: Array,
    x: Array,
    mask_id: int,
    codebook: Array,
    measurement_loss: MeasurementLoss,
    scale: Any = 1.0,
    grad_steps: int = 1,
    quantize: bool = True,
) -> Array:
    """APS's guided x0 law: float32[B, L, K] log-probabilities (steps 1-2 of the module).

    Args:
      log_probs: the denoiser's log p(x0_i | x_t) float32[B, L, K].
      x: the current state int32[B, L] (mask id ``mask_id`` where masked).
      codebook: float32[K], each token's value.
      measurement_loss: values float32[B, L] -> float32[B].
      scale: guidance step size (1: the exact tilt of a loss linear in the values).
      grad_steps: gradient steps, each at the expectation of the previous guided law.
      quantize: round the expectation to the nearest codebook value (straight-through).
    """
    masked = x == mask_id
    fixed_values = codebook[jnp.where(masked, 0, x)]

    def loss_of(v: Array) -> Array:
        if quantize:
            nearest = codebook[jnp.argmin(jnp.abs(v[..., None] - codebook), axis=-1)]
            v = v + jax.lax.stop_gradient(nearest - v)
        return measurement_loss(v).sum()

    def one(_, lp: Array) -> Array:
        v = jnp.where(masked, jnp.exp(lp) @ codebook, fixed_values)
        g = jax.grad(loss_of)(v)
        g = jnp.where(masked, g, 0.0)
        return jax.nn.log_softmax(lp - scale * g[..., None] * codebook, axis=-1)

    return jax.lax.fori_loop(0, grad_steps, one, log_probs)


@dataclasses.dataclass(frozen=True)
class APS(driver.Step):
    """Anchored posterior sampling (module docstring): guided draws, anchored remasking.

    Options:
      measurement_loss: ``values float32[B, L] -> float32[B]``, -log p(y | values).
      codebook: float32[K], the value of each data token.
      guidance_scale: the step size of the logit update (1: exact tilt for a linear loss).
      grad_steps: guidance steps per sampler step (>= 1).
      quantize: straight-through rounding of the expected values to the codebook.
      anchor: "confidence" (anchored remasking by the guided confidence) or "random".
      remask: with "confidence", decoded free positions compete too and may be re-masked.
    """

    measurement_loss: MeasurementLoss | None = None
    codebook: Any = None
    guidance_scale: float = 1.0
    grad_steps: int = 1
    quantize: bool = True
    anchor: str = "confidence"
    remask: bool = True

    name: ClassVar[str] = "aps"
    needs: ClassVar[tuple[str, ...]] = ("continuous_time", "mask", "schedule")
    calls_doc: ClassVar[str] = "1 per step (plus grad_steps gradients of measurement_loss)"

    def validate(self, process: Any, shape: tuple[int, int], steps: int | None) -> None:
        k = process.vocab_size
        cb = concrete(self.codebook) if self.codebook is not None else None
        check(
            cb is not None and cb.shape == (k,) and bool(np.all(np.isfinite(cb))),
            f"aps needs codebook=float32[{k}] (one finite value per data token), got "
            f"{None if self.codebook is None else np.shape(self.codebook)}",
        )
        check(callable(self.measurement_loss), "aps needs a callable measurement_loss=")
        out = jax.eval_shape(self.measurement_loss, jax.ShapeDtypeStruct(shape, jnp.float32))
        check(
            getattr(out, "shape", None) == (shape[0],),
            f"measurement_loss must map values float32[B, L] to float32[B] (B = {shape[0]}), "
            f"got {getattr(out, 'shape', type(out))}",
        )
        driver.check_number("guidance_scale", self.guidance_scale, 0.0)
        check(
            isinstance(self.grad_steps, int) and self.grad_steps >= 1,
            f"grad_steps must be an int >= 1, got {self.grad_steps!r}",
        )
        check(
            self.anchor in ("confidence", "random"),
            f"anchor must be 'confidence' or 'random', got {self.anchor!r}",
        )

    def network_calls(self, steps: int, length: int) -> int:
        return steps

    def step(
        self, key: Array, ctx: driver.Context, x: Array, aux: Any, at: driver.StepInfo
    ) -> tuple[Array, Any]:
        mask_id = ctx.process.mask_id
        masked, n_decode = decode_counts(ctx, x, at.index, at.last)
        log_probs = ctx.denoise(x, network_time(ctx, x))
        codebook = jnp.asarray(self.codebook, jnp.float32)
        guided = guided_log_probs(
            log_probs, x, mask_id, codebook, self.measurement_loss, self.guidance_scale,
            self.grad_steps, self.quantize,
        )  # fmt: skip
        k_tok, k_order = jax.random.split(key)
        tokens = draw_tokens(k_tok, guided, argmax=at.last and ctx.argmax)
        if self.anchor == "random":
            score = jax.random.uniform(k_order, x.shape)
            decode = top_ranked(score, masked, n_decode)
            return jnp.where(decode, tokens, x), aux
        free = jnp.ones_like(masked) if ctx.fixed is None else ctx.fixed < 0
        current = jnp.where(masked, tokens, x)
        conf = take_last(guided, current)
        if not self.remask:
            decode = top_ranked(conf, masked, n_decode)
            return jnp.where(decode, tokens, x), aux
        # anchors: the most confident free positions, as many as are decoded after the step
        n_keep = (free & ~masked).sum(-1) + n_decode
        keep = top_ranked(conf, free, n_keep)
        return jnp.where(keep | ~free, current, mask_id), aux


aps = driver.public(APS)
