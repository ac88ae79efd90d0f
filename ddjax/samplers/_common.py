"""Pieces shared by every sampler: the x0-distribution transforms (temperature,
top-k, top-p), clamped positions (``fixed``), time grids and the compiled step loop.

A sampler is ``name(key, denoiser, process, shape, *, steps, **options) -> int32[shape]``
with ``denoiser(x_t, t) -> log p(x0_i | x_t)``, float32[B, L, K]. The loop over steps
is a ``lax.scan`` whose body is traced once, so the compiled program does not grow
with ``steps``; the last step is traced separately so that it can take the argmax
(``final_step="argmax"``) and land exactly on t = 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from ddjax._struct import check
from ddjax._validation import validate_tokens
from ddjax.parameterizations import NEG_INF
from ddjax.processes import Process

Denoiser = Callable[[Array, Array], Array]
StepFn = Callable[[Array, Array, Array, Array], Array]  # (key, x, t, s) -> x

__all__ = [
    "Denoiser",
    "transform_log_probs",
    "wrap_denoiser",
    "initial_state",
    "clamp",
    "time_grid",
    "run_loop",
    "check_common",
]


def transform_log_probs(
    log_probs: Array,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> Array:
    """Temperature, then top-k, then nucleus (top-p) truncation of x0 log-probabilities.

    Args:
      log_probs: float32[..., K].
    Returns:
      renormalised log-probabilities, float32[..., K]; removed entries are NEG_INF.
    """
    if temperature != 1.0:
        log_probs = jax.nn.log_softmax(log_probs / temperature, axis=-1)
    if top_k is not None and top_k < log_probs.shape[-1]:
        kth = jax.lax.top_k(log_probs, top_k)[0][..., -1:]
        log_probs = jax.nn.log_softmax(jnp.where(log_probs >= kth, log_probs, NEG_INF), axis=-1)
    if top_p is not None and top_p < 1.0:
        sorted_lp = jnp.sort(log_probs, axis=-1)[..., ::-1]
        cum = jnp.cumsum(jnp.exp(sorted_lp), axis=-1)
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        keep_sorted = (cum - jnp.exp(sorted_lp)) < top_p
        cutoff = jnp.min(jnp.where(keep_sorted, sorted_lp, jnp.inf), axis=-1, keepdims=True)
        log_probs = jax.nn.log_softmax(jnp.where(log_probs >= cutoff, log_probs, NEG_INF), axis=-1)
    return log_probs


def wrap_denoiser(
    denoiser: Denoiser,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> Denoiser:
    """The denoiser followed by :func:`transform_log_probs` (identity for the defaults)."""
    if temperature == 1.0 and top_k is None and (top_p is None or top_p >= 1.0):
        return denoiser

    def wrapped(x_t: Array, t: Array) -> Array:
        return transform_log_probs(denoiser(x_t, t), temperature, top_k, top_p)

    return wrapped


def check_common(
    process: Process,
    shape: tuple[int, ...],
    steps: int,
    fixed: Any = None,
    final_step: str = "sample",
    temperature: float = 1.0,
) -> Array | None:
    """Eager checks of the options every sampler shares; returns ``fixed`` as int32 or None."""
    check(
        isinstance(shape, tuple) and len(shape) == 2,
        f"shape must be a (batch, length) tuple, got {shape!r}",
    )
    check(isinstance(steps, int) and steps >= 1, f"steps must be a positive int, got {steps!r}")
    check(
        final_step in ("sample", "argmax"),
        f"final_step must be 'sample' or 'argmax', got {final_step!r}",
    )
    check(temperature > 0, f"temperature must be positive, got {temperature}")
    if fixed is None:
        return None
    fixed = jnp.asarray(fixed)
    check(
        fixed.shape == shape,
        f"fixed must have the sample shape {shape} (-1 where free), got {fixed.shape}",
    )
    validate_tokens(jnp.where(fixed < 0, 0, fixed), process.vocab_size, "fixed")
    return fixed.astype(jnp.int32)


def clamp(x: Array, fixed: Array | None) -> Array:
    """Puts the fixed tokens back (``fixed`` is -1 where free)."""
    if fixed is None:
        return x
    return jnp.where(fixed >= 0, fixed, x)


def initial_state(
    key: Array, process: Process, shape: tuple[int, ...], fixed: Array | None
) -> Array:
    """A draw from the prior with the fixed tokens in place: int32[shape]."""
    return clamp(process.prior_sample(key, shape), fixed)


def time_grid(process: Process, steps: int, t_max: float = 1.0, t_min: float = 0.0) -> Array:
    """``steps + 1`` decreasing times from ``t_max`` to ``t_min``.

    For D3PM processes the grid is int32 step indices from T to 0 (rounded, strictly
    decreasing; ``steps`` must not exceed T).
    """
    if process.is_discrete_time:
        num = process.num_steps
        check(steps <= num, f"steps={steps} exceeds the process's T={num}")
        return jnp.round(jnp.linspace(num, 0, steps + 1)).astype(jnp.int32)
    return jnp.linspace(t_max, t_min, steps + 1, dtype=jnp.float32)


def run_loop(
    key: Array,
    x: Array,
    grid: Array,
    step: StepFn,
    last_step: StepFn,
    fixed: Array | None = None,
    return_trajectory: bool = False,
    aux: Any = None,
) -> Array | tuple[Array, Array]:
    """Runs ``step`` over consecutive grid pairs (t, s) with ``lax.scan``, then ``last_step``.

    Args:
      x: the initial state, int32[B, L].
      grid: steps + 1 times, decreasing.
      step, last_step: ``(key, x, t, s) -> x`` with t, s broadcast to float32[B]
        (int32[B] on a D3PM grid).
      aux: optional extra loop state (any pytree, e.g. per-token confidences or a step
        counter). When given, ``step`` and ``last_step`` are
        ``(key, (x, aux), t, s) -> (x, aux)``; the final aux is dropped.
    Returns:
      int32[B, L], or with ``return_trajectory`` also int32[steps, B, L] (the state after
      each step).
    """
    batch = x.shape[0]
    keys = jax.random.split(key, grid.shape[0] - 1)
    times = jnp.broadcast_to(grid[:, None], (grid.shape[0], batch))

    if aux is None:
        step_fn = lambda k, state, t, s: (step(k, state[0], t, s), None)
        last_fn = lambda k, state, t, s: (last_step(k, state[0], t, s), None)
    else:
        step_fn, last_fn = step, last_step

    def body(state: tuple[Array, Any], inputs: tuple[Array, Array, Array]):
        k, t, s = inputs
        x, a = step_fn(k, state, t, s)
        x = clamp(x, fixed)
        return (x, a), (x if return_trajectory else None)

    (x, aux), traj = jax.lax.scan(body, (x, aux), (keys[:-1], times[:-2], times[1:-1]))
    x = clamp(last_fn(keys[-1], (x, aux), times[-2], times[-1])[0], fixed)
    if not return_trajectory:
        return x
    return x, jnp.concatenate([traj, x[None]], axis=0)
