"""EDLM, an energy-based correction of the factorised denoiser (Xu et al., "Energy-based
diffusion language models").

The factorised denoiser prod_i p(x0_i | x_t) ignores the dependence between positions;
the exact joint posterior is p(x0 | x_t) proportional to p(x0) q(x_t | x0). For steps
with t > ``t_stop`` a step from t to s draws M = ``num_candidates`` full x0 from the
factorised denoiser (the proposal), weights each by

    log w = log_joint(x0) + log q(x_t | x0) - sum_i log p(x0_i | x_t)

(self-normalised importance sampling of the joint posterior; log q(x_t | x0) from
``process.marginal_probs``), keeps one x0 by these weights and steps
x_s ~ q(x_s | x_t, x0) (``process.posterior_probs`` with a one-hot x0). With the exact
log p and many candidates every step draws from the exact joint posterior, so even two
steps give the target. Steps with t <= t_stop are plain ancestral steps. Every step
makes one denoiser call on B rows; ``log_joint`` is called on B * M rows per corrected
step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from ddjax._struct import check
from ddjax.arrays import onehot, take_last
from ddjax.random import draw_from_probs, draw_tokens
from ddjax.samplers import driver, weights
from ddjax.samplers.ancestral import Ancestral

__all__ = ["Edlm", "edlm"]

_PROPOSAL = Ancestral()


@dataclasses.dataclass(frozen=True)
class Edlm(driver.Step):
    """EDLM: importance-resampled full x0 from the factorised denoiser, weighted by a
    sequence model, then the one-hot posterior step (module docstring).

    Options:
      log_joint: ``(x0 int32[N, L]) -> float32[N]``, log p(x0) up to a constant (an AR
        model, the oracle's exact ``-target.nll``). Another shape is a ValueError.
      num_candidates: x0 proposals per corrected step, >= 1 (1: the ancestral sampler).
      t_stop: corrected steps are those with t > t_stop, in [0, 1].

    NaN policy: :mod:`ddjax.samplers.weights` (``debug=True`` names a NaN / +inf log_joint).
    """

    log_joint: Callable[[Array], Array]
    num_candidates: int
    t_stop: float = 0.0

    name: ClassVar[str] = "edlm"
    needs: ClassVar[tuple[str, ...]] = ()
    calls_doc: ClassVar[str] = "1 per step (plus log_joint on B * num_candidates rows)"

    def validate(self, process: Any, shape: tuple[int, int], steps: int | None) -> None:
        check(callable(self.log_joint), "log_joint must be a function x0 -> [N]")
        check(
            isinstance(self.num_candidates, int)
            and not isinstance(self.num_candidates, bool)
            and self.num_candidates >= 1,
            f"num_candidates must be a positive int, got {self.num_candidates!r}",
        )
        driver.check_number("t_stop", self.t_stop, 0.0, 1.0)
        _PROPOSAL.validate(process, shape, steps)

    def log_weights(
        self, ctx: driver.Context, x: Array, log_probs: Array, x0: Array, t: Array
    ) -> Array:
        """log w of candidates x0 int32[B, M, L] at x int32[B, L]: float32[B, M].

        ``log_probs`` is the transformed proposal log p(x0_i | x_t) float32[B, L, K].
        """
        b, m, l = x0.shape
        proposal = take_last(log_probs[:, None], x0).sum(-1)  # [B, M]
        flat = x0.reshape(b * m, l)
        tm = jnp.repeat(t, m, axis=0)
        joint = self.log_joint(flat)
        joint = weights.scores("log_joint", self.log_joint, joint, b * m, ctx.debug)
        q = ctx.process.marginal_probs(onehot(flat, ctx.process.vocab_size), tm)  # [BM, L, N]
        x_rep = jnp.repeat(x, m, axis=0)
        lik = jnp.log(jnp.maximum(take_last(q, x_rep), 0.0)).sum(-1)
        return joint.reshape(b, m) + lik.reshape(b, m) - proposal

    def step(
        self, key: Array, ctx: driver.Context, x: Array, aux: Any, at: driver.StepInfo
    ) -> tuple[Array, Any]:
        t, s, last = at.t, at.s, at.last
        m = self.num_candidates
        k_x0, k_pick, k_step = jax.random.split(key, 3)
        base = ctx.base(x, t)

        def corrected() -> Array:
            log_probs = ctx.rows(base)  # [B, L, K]
            b, l, k = log_probs.shape
            x0 = draw_tokens(k_x0, jnp.broadcast_to(log_probs[:, None], (b, m, l, k)))
            choice = weights.pick(k_pick, self.log_weights(ctx, x, log_probs, x0, t))
            best = jnp.take_along_axis(x0, choice[:, None, None], axis=1)[:, 0]  # [B, L]
            probs = ctx.process.posterior_probs(x, onehot(best, k), s, t)
            return draw_from_probs(k_step, probs, last and ctx.argmax)

        def plain() -> Array:
            return _PROPOSAL.update(k_step, ctx, x, base, t, s, last)

        if self.t_stop <= 0.0:
            return corrected(), aux
        return jax.lax.cond(t[0] > self.t_stop, corrected, plain), aux


edlm = driver.public(Edlm)
