"""Ancestral sampling: each step draws x_s from the posterior mixture
sum_k p(k) q(x_s | x_t, x0 = k) (design.md 5.3).

Works for every process: the interpolating family on a continuous time grid and
D3PM over its T steps (or an even stride of them). For masking it is MDLM's
sampler with SUBS carry-over. For a time-independent denoiser (RADD) a step in
which no token changed reuses the previous prediction instead of calling the
network, as MDLM/RADD caching does.

For :class:`~ddjax.processes.Masking` the step is drawn in its factorised form
(:func:`ddjax.samplers.masked.masking_update`): a Bernoulli per masked position with
probability (a_s - a_t) / (1 - a_t), then a token from p only where one is decoded,
with the x0 transforms applied to those rows. That is the same law as the
posterior over K + 1 states, without a [B, L, K + 1] draw per step (at large
vocabularies only the decoded rows are gathered). The last step decodes every
remaining mask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ddjax.processes import Masking, Process
from ddjax.samplers import _common, ctmc, masked

__all__ = ["ancestral"]

# (key, x, log_probs, t, s, last) -> x: one reverse step given the denoiser's output.
UpdateFn = Callable[[Array, Array, Array, Array, Array, bool], Array]


def ancestral(
    key: Array,
    denoiser: _common.Denoiser,
    process: Process,
    shape: tuple[int, int],
    *,
    steps: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    fixed: Any = None,
    final_step: str = "sample",
    return_trajectory: bool = False,
    time_independent: bool = False,
    plugin: bool = False,
    t_max: float = 1.0,
    draw_capacity: int | None = None,
    gumbel_bits: int | str = 32,
) -> Array | tuple[Array, Array]:
    """Samples ``shape`` = (B, L) tokens with ``steps`` posterior-mixture steps.

    Args:
      key: PRNG key.
      denoiser: ``(x_t int32[B, L], t float32[B]) -> log p(x0 | x_t)`` float32[B, L, K]
        (``t`` int32[B] for D3PM).
      process: the forward process the denoiser was trained for.
      shape: (B, L).
      steps: number of steps (one network call each; fewer with ``time_independent``).
      temperature, top_k, top_p: applied to the x0 distribution.
      fixed: int32[B, L], -1 where free: tokens to hold (prompts, infilling).
      final_step: "sample" or "argmax" for the step that lands on t = 0.
      return_trajectory: also return the state after every step, int32[steps, B, L].
      time_independent: the denoiser ignores t (RADD); reuse its output when x is unchanged.
      plugin: use the papers' plug-in posterior (D3PM / UDLM) instead of the mixture.
      t_max: start time (continuous time only).
      draw_capacity: masking only: rows gathered per step for the token draws (see
        :func:`ddjax.samplers.masked.draw_at`); None picks one for large vocabularies.
      gumbel_bits: resolution of the categorical draws (:func:`categorical`): 32, 64, or
        "float32" to reproduce Zheng et al.'s bias only: JAX's truncated float32 Gumbel
        in one joint draw over the K + 1 posterior classes (mask included), as the
        reference implementations draw, instead of the factorised masking update.
    Returns:
      int32[B, L] samples (and the trajectory).
    """
    fixed = _common.check_common(process, shape, steps, fixed, final_step, temperature)
    masked._check_capacity(draw_capacity)
    k_init, k_loop = jax.random.split(key)
    x_init = _common.initial_state(k_init, process, shape, fixed)
    grid = _common.time_grid(process, steps, t_max=t_max)

    # A denoiser may carry its own reverse step (guidance.cfg(mode="posterior")).
    own_posterior = getattr(denoiser, "mode", None) == "posterior"

    # "float32" reproduces the reference draw: one (K + 1)-way Gumbel-max per position
    reference_draw = gumbel_bits == "float32"
    if isinstance(process, Masking) and not own_posterior and not reference_draw:
        # the x0 transforms act on the decoded rows inside masking_update
        denoise = denoiser
        update = _masking_update(
            process,
            steps,
            t_max,
            shape[1],
            temperature,
            top_k,
            top_p,
            draw_capacity,
            final_step,
            gumbel_bits,
        )
    else:
        denoise = _common.wrap_denoiser(denoiser, temperature, top_k, top_p)

        def update(k: Array, x: Array, log_probs: Array, t: Array, s: Array, last: bool) -> Array:
            probs = process.posterior_probs(x, jnp.exp(log_probs), s, t, plugin=plugin)
            return ctmc.draw(k, probs, last and final_step == "argmax", gumbel_bits)

    def make_step(last: bool) -> _common.StepFn:
        def step(k: Array, x: Array, t: Array, s: Array) -> Array:
            if own_posterior:
                probs = denoiser.posterior_probs(process, x, s, t)
                return ctmc.draw(k, probs, last and final_step == "argmax", gumbel_bits)
            return update(k, x, denoise(x, t), t, s, last)

        return step

    if not time_independent or own_posterior:
        return _common.run_loop(
            k_loop,
            x_init,
            grid,
            make_step(False),
            make_step(True),
            fixed,
            return_trajectory,
        )
    return _cached(k_loop, denoise, update, x_init, grid, fixed, return_trajectory)


def _masking_update(
    process: Masking,
    steps: int,
    t_max: float,
    length: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    draw_capacity: int | None,
    final_step: str,
    bits: int | str = 32,
) -> UpdateFn:
    """The factorised masking step ``(k, x, log_probs, t, s, last) -> x``."""
    sched = process.schedule
    capacity = draw_capacity
    if capacity is None:
        with jax.ensure_compile_time_eval():
            grid = jnp.asarray(np.linspace(t_max, 0.0, steps + 1), jnp.float32)
            one_minus_a = np.asarray(sched.one_minus_alpha(grid))
            expected = float(np.max(one_minus_a[:-1] - one_minus_a[1:])) * length
        capacity = masked._auto_capacity(expected, length, process.vocab_size)
    transform = masked._transform(temperature, top_k, top_p)

    def update(k: Array, x: Array, log_probs: Array, t: Array, s: Array, last: bool) -> Array:
        oma_t = sched.one_minus_alpha(t)[:, None]
        unmask = (oma_t - sched.one_minus_alpha(s)[:, None]) / jnp.maximum(oma_t, 1e-30)
        if last:  # decode every remaining mask (alpha(0) may fall short of 1)
            unmask = jnp.ones_like(unmask)
        return masked.masking_update(
            k,
            x,
            log_probs,
            unmask,
            process.mask_id,
            capacity=capacity,
            argmax=last and final_step == "argmax",
            transform=transform,
            bits=bits,
        )[0]

    return update


def _cached(
    key: Array,
    denoise: _common.Denoiser,
    update: UpdateFn,
    x: Array,
    grid: Array,
    fixed: Array | None,
    return_trajectory: bool,
) -> Array | tuple[Array, Array]:
    """Ancestral steps that call the network only when the state changed.

    The keys and the step are those of the uncached loop, so for a denoiser that
    really ignores t the output is the same sample for the same key.
    """
    batch = x.shape[0]
    times = jnp.broadcast_to(grid[:, None], (grid.shape[0], batch))
    keys = jax.random.split(key, grid.shape[0] - 1)
    log_probs0 = denoise(x, times[0])

    def step(carry: tuple[Array, Array, Array], inputs: tuple[Array, Array, Array]):
        x, log_probs, changed = carry
        k, t, s = inputs
        log_probs = jax.lax.cond(changed, lambda: denoise(x, t), lambda: log_probs)
        x_new = _common.clamp(update(k, x, log_probs, t, s, False), fixed)
        return (x_new, log_probs, jnp.any(x_new != x)), (x_new if return_trajectory else None)

    (x, log_probs, changed), traj = jax.lax.scan(
        step, (x, log_probs0, jnp.array(False)), (keys[:-1], times[:-2], times[1:-1])
    )
    log_probs = jax.lax.cond(changed, lambda: denoise(x, times[-2]), lambda: log_probs)
    x = _common.clamp(update(keys[-1], x, log_probs, times[-2], times[-1], True), fixed)
    if not return_trajectory:
        return x
    return x, jnp.concatenate([traj, x[None]], axis=0)
