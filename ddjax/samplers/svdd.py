"""SVDD, soft value-based decoding (Li et al. 2024, "Derivative-free guidance in continuous
and discrete diffusion models with soft value-based decoding").

Each step from t to s draws M = ``num_candidates`` proposals x_s^(1..M) from the
ancestral step (one denoiser call at x_t on the B rows, shared by the candidates, then
M draws) and keeps x_s^(j) with probability proportional to exp(v(x_s^(j), s) / alpha).
With the exact soft value v_s(x) = alpha log E[exp(r(x0) / alpha) | x_s = x]
(:func:`ddjax.testing.steering.soft_value`) and an exact proposal, the kept candidate's
law tends, as M grows, to p(x_s | x_t) exp((v_s(x_s) - v_t(x_t)) / alpha), the reverse
kernel of p(x) exp(r(x) / alpha) / Z, so the output tends to that tilted law.

The paper's cheap value (:func:`svdd_value`) is the reward of the denoiser's predicted
x0: v(x_s, s) = r(argmax p(x0 | x_s, s)). When ``value_fn`` is ``svdd_value(denoiser, r)``
with the sampler's own denoiser, the prediction made for the kept candidate is also the
next step's proposal (the same call at (x_s, s)), so a step costs one call on
B * num_candidates rows and nothing more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from ddjax._struct import check
from ddjax.samplers import driver, masking, weights
from ddjax.samplers.ancestral import Ancestral

__all__ = ["Svdd", "SvddValue", "svdd", "svdd_value"]

_PROPOSAL = Ancestral()
# Draw the candidates vmapped over keys from the shared denoiser output where the step
# has no gathered (capacity) draw; False forces the batched path (tests cover both).
SHARED_DRAWS = True


@dataclasses.dataclass(frozen=True)
class SvddValue:
    """The value ``v(x, t) = log_reward(argmax_k p(x0_i = k | x, t))``: float32[N].

    Attributes:
      denoiser: ``(x int32[N, L], t float32[N]) -> log p(x0 | x)`` float32[N, L, K].
      log_reward: ``(x0 int32[N, L]) -> float32[N]``.
    """

    denoiser: Callable[[Array, Array], Array]
    log_reward: Callable[[Array], Array]

    def __call__(self, x: Array, t: Array) -> Array:
        return self.from_log_probs(self.denoiser(x, t))

    def from_log_probs(self, log_probs: Array) -> Array:
        """The value given the denoiser's output float32[N, L, K] at (x, t)."""
        return self.log_reward(_argmax(log_probs))


def _argmax(log_probs: Array) -> Array:
    """The first index of the largest entry along the last axis: int32[...].

    A max and a min (plain reductions) instead of ``jnp.argmax``, whose variadic reduce
    costs about as much as the network at K = 50258 on the CPU.
    """
    k = log_probs.shape[-1]
    top = jnp.max(log_probs, axis=-1, keepdims=True)
    index = jnp.arange(k, dtype=jnp.int32)
    return jnp.min(jnp.where(log_probs >= top, index, k), axis=-1).clip(max=k - 1)


def svdd_value(
    denoiser: Callable[[Array, Array], Array], log_reward: Callable[[Array], Array]
) -> SvddValue:
    """The paper's cheap value function: the log reward of the denoiser's argmax x0.

    Args:
      denoiser: the (pretrained) denoiser, the same one the sampler uses to share calls.
      log_reward: ``(x0 int32[N, L]) -> float32[N]``, the log reward r.
    Returns:
      ``value_fn(x int32[N, L], t float32[N]) -> float32[N]``.
    """
    check(callable(denoiser), "svdd_value: denoiser must be a function (x, t) -> log-probs")
    check(callable(log_reward), "svdd_value: log_reward must be a function x0 -> [N]")
    return SvddValue(denoiser, log_reward)


@dataclasses.dataclass(frozen=True)
class Svdd(driver.Step):
    """SVDD: keep one of ``num_candidates`` ancestral proposals with probability
    proportional to exp(value_fn(x_s, s) / alpha) (module docstring).

    Options:
      value_fn: ``(x int32[N, L], t float32[N]) -> float32[N]``, a soft value estimate
        (at t = 0 the log reward); called on the B * num_candidates candidates each step.
        Another shape is a ValueError.
      num_candidates: proposals per step, >= 1 (1: the ancestral sampler).
      alpha: temperature > 0 of the target p(x) exp(r(x) / alpha).

    NaN policy: :mod:`ddjax.samplers.weights` (``debug=True`` names a NaN / +inf value_fn).
    """

    value_fn: Callable[[Array, Array], Array]
    num_candidates: int
    alpha: Any

    name: ClassVar[str] = "svdd"
    needs: ClassVar[tuple[str, ...]] = ()
    calls_doc: ClassVar[str] = (
        "1 per step on B rows, plus value_fn's (with svdd_value of the same denoiser: "
        "1 per step on B * num_candidates rows, 1 more at the start)"
    )

    def validate(self, process: Any, shape: tuple[int, int], steps: int | None) -> None:
        check(callable(self.value_fn), "value_fn must be a function (x, t) -> [N]")
        check(
            isinstance(self.num_candidates, int)
            and not isinstance(self.num_candidates, bool)
            and self.num_candidates >= 1,
            f"num_candidates must be a positive int, got {self.num_candidates!r}",
        )
        driver.check_number("alpha", self.alpha, 0.0, open_lo=True)
        _PROPOSAL.validate(process, shape, steps)

    def _shares_calls(self, ctx: driver.Context) -> bool:
        return isinstance(self.value_fn, SvddValue) and self.value_fn.denoiser is ctx.base.denoiser

    def network_calls(self, steps: int, length: int) -> int:
        return steps

    def init(self, ctx: driver.Context, x: Array, grid: Array) -> Any:
        if not self._shares_calls(ctx):
            return None
        return ctx.base(x, jnp.broadcast_to(grid[0], (x.shape[0],)))

    def step(
        self, key: Array, ctx: driver.Context, x: Array, aux: Any, at: driver.StepInfo
    ) -> tuple[Array, Any]:
        t, s, last = at.t, at.s, at.last
        m = self.num_candidates
        b = x.shape[0]
        k_prop, k_pick = jax.random.split(key)
        log_probs = ctx.base(x, t) if aux is None else aux
        many = dataclasses.replace(
            ctx, shape=(b * m, ctx.shape[1]), fixed=weights.repeat_rows(ctx.fixed, m)
        )
        ss = weights.repeat_rows(s, m)
        if SHARED_DRAWS and masking.step_capacity(ctx) is None:
            # M independent draws from the one (row-transformed) output, not M copies of it
            draw = lambda k: _PROPOSAL.update(k, ctx, x, log_probs, t, s, last)  # noqa: E731
            cand = jax.vmap(draw)(jax.random.split(k_prop, m))  # [M, B, L]
            cand = cand.swapaxes(0, 1).reshape(b * m, -1)
        else:  # gathered draws (lax.cond inside): on the B * M rows, batched
            xs, ts, lps = weights.repeat_rows((x, t, log_probs), m)
            cand = _PROPOSAL.update(k_prop, many, xs, lps, ts, ss, last)
        cand = driver.clamp(cand, many.fixed)
        if aux is None:
            values, new_lp = self.value_fn(cand, ss), None
        else:
            new_lp = ctx.base(cand, ss)
            values = self.value_fn.from_log_probs(new_lp)
        values = weights.scores("value_fn", self.value_fn, values, b * m, ctx.debug)
        choice = weights.pick(k_pick, values.reshape(b, m) / self.alpha)
        x_new = weights.select_rows(cand, choice)
        return x_new, (None if aux is None else weights.select_rows(new_lp, choice))


svdd = driver.public(Svdd)
