"""Ancestral sampling: each step draws x_s from the posterior mixture
sum_k p(k) q(x_s | x_t, x0 = k) (design.md 5.3).

Works for every process: the interpolating family on a continuous time grid and
D3PM over its T steps (or an even stride of them). For masking it is MDLM's
sampler with SUBS carry-over. For a time-independent denoiser (RADD) a step in
which no token changed reuses the previous prediction instead of calling the
network, as MDLM/RADD caching does.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from ddjax.processes import Process
from ddjax.samplers import _common
from ddjax.samplers.categorical import categorical

__all__ = ["ancestral"]


def _draw(key: Array, probs: Array, argmax: bool) -> Array:
    if argmax:
        return jnp.argmax(probs, axis=-1).astype(jnp.int32)
    return categorical(key, jnp.log(probs))


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
    Returns:
      int32[B, L] samples (and the trajectory).
    """
    fixed = _common.check_common(process, shape, steps, fixed, final_step, temperature)
    denoise = _common.wrap_denoiser(denoiser, temperature, top_k, top_p)
    k_init, k_loop = jax.random.split(key)
    x_init = _common.initial_state(k_init, process, shape, fixed)
    grid = _common.time_grid(process, steps, t_max=t_max)

    # A denoiser may carry its own reverse step (guidance.cfg(mode="posterior")).
    own_posterior = getattr(denoiser, "mode", None) == "posterior"

    def make_step(argmax: bool) -> _common.StepFn:
        def step(k: Array, x: Array, t: Array, s: Array) -> Array:
            if own_posterior:
                probs = denoiser.posterior_probs(process, x, s, t)
            else:
                probs = process.posterior_probs(x, jnp.exp(denoise(x, t)), s, t, plugin=plugin)
            return _draw(k, probs, argmax)

        return step

    if not time_independent:
        return _common.run_loop(
            k_loop,
            x_init,
            grid,
            make_step(False),
            make_step(final_step == "argmax"),
            fixed,
            return_trajectory,
        )
    return _cached(
        k_loop, denoise, process, x_init, grid, fixed, final_step, return_trajectory, plugin
    )


def _cached(
    key: Array,
    denoise: _common.Denoiser,
    process: Process,
    x: Array,
    grid: Array,
    fixed: Array | None,
    final_step: str,
    return_trajectory: bool,
    plugin: bool,
) -> Array | tuple[Array, Array]:
    """Ancestral steps that call the network only when the state changed."""
    batch = x.shape[0]
    times = jnp.broadcast_to(grid[:, None], (grid.shape[0], batch))
    keys = jax.random.split(key, grid.shape[0] - 1)
    log_probs0 = denoise(x, times[0])

    def step(carry: tuple[Array, Array, Array], inputs: tuple[Array, Array, Array]):
        x, log_probs, changed = carry
        k, t, s = inputs
        log_probs = jax.lax.cond(changed, lambda: denoise(x, t), lambda: log_probs)
        probs = process.posterior_probs(x, jnp.exp(log_probs), s, t, plugin=plugin)
        x_new = _common.clamp(_draw(k, probs, False), fixed)
        return (x_new, log_probs, jnp.any(x_new != x)), (x_new if return_trajectory else None)

    (x, log_probs, changed), traj = jax.lax.scan(
        step, (x, log_probs0, jnp.array(False)), (keys[:-1], times[:-2], times[1:-1])
    )
    log_probs = jax.lax.cond(changed, lambda: denoise(x, times[-2]), lambda: log_probs)
    probs = process.posterior_probs(x, jnp.exp(log_probs), times[-1], times[-2], plugin=plugin)
    x = _common.clamp(_draw(keys[-1], probs, final_step == "argmax"), fixed)
    if not return_trajectory:
        return x
    return x, jnp.concatenate([traj, x[None]], axis=0)
