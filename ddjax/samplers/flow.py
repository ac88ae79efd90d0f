"""Discrete flow matching's Euler sampler (Gat et al. 2024), in ddjax's time direction.

The interpolating processes are DFM's mixture paths: with kappa = alpha(t) (t = 1
noise, t = 0 data; DFM's time is 1 - t), a token is the data token with probability
kappa and a draw from the source pi otherwise. DFM's velocity towards the data is,
per position, u(y | x) = kappa' / (1 - kappa) [p(y | x) - delta_x(y)], with
kappa' = -alpha'(t) in our time and p the denoiser's x0 distribution (restricted to
the tokens that can have produced x, e.g. an unmasked token keeps its value). So a
step jumps with some probability to a fresh draw x0 ~ p.

Jump probability over a step t -> s (option ``jump``):

* ``"exact"`` (default): the integrated hazard, (alpha(s) - alpha(t)) / (1 - alpha(t))
  without corrector: for masking this is exactly MDLM's ancestral step.
* ``"exponential"``: 1 - exp(-h kappa' / (1 - kappa)) with the rate frozen at t.
* ``"euler"``: h kappa' / (1 - kappa), the plain Euler step x + h u that Gat et al. use
  (clipped so that the stay probability is >= 0).

Corrector (``corrector`` = beta >= 0, Gat et al.'s corrector sampling): the velocity
(1 + beta) u_forward + beta u_backward, where u_backward moves towards the source:
with rate beta (-alpha'/alpha) per position the token is replaced by the posterior
draw of its source sample, i.e. (off the diagonal) rate beta (-alpha') w_x pi_y with
alpha w_x = p(clean | x) the posterior probability that x is still the data token.
The mixture keeps every marginal q_t (for masking it remasks unmasked tokens at the
forward rate, as ReMDM does). beta = 0 gives the plain sampler.

The step that lands on t = 0 draws from ``process.posterior_probs`` at s = 0 (= the
restricted x0 distribution), as in :mod:`ddjax.samplers.ctmc`.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jax import Array

from ddjax._struct import check
from ddjax.processes import Interpolating, Process
from ddjax.samplers import _common
from ddjax.samplers.ctmc import draw, run

__all__ = ["dfm_euler"]

JUMPS = ("exact", "exponential", "euler")
_TINY = 1e-30


def _dfm_probs(
    process: Interpolating,
    denoise: _common.Denoiser,
    x: Array,
    t: Array,
    s: Array,
    jump: str,
    corrector: float,
) -> Array:
    """The per-position law of one DFM step t -> s: float32[B, L, N].

    A mixture of three moves: to a draw from the restricted x0 distribution p~ (data
    event), to a draw from pi (source event, only with the corrector), or stay.
    """
    n = process.num_states
    sched = process.schedule
    # p~: the x0 distribution restricted to tokens consistent with x, over all N states
    data = process.posterior_probs(x, jnp.exp(denoise(x, t)), jnp.zeros_like(t), t)
    a_t, a_s = sched.alpha(t), sched.alpha(s)
    h = t - s
    neg_da = -sched.alpha_prime(t)
    if jump == "exact":
        hazard_data = (1.0 + corrector) * jnp.log(
            jnp.maximum(sched.one_minus_alpha(t), _TINY)
            / jnp.maximum(sched.one_minus_alpha(s), _TINY)
        )
    else:
        hazard_data = (1.0 + corrector) * h * neg_da / jnp.maximum(sched.one_minus_alpha(t), _TINY)
    hazard_data = hazard_data[:, None, None]
    if corrector > 0:
        pi = process.prior_probs()
        # posterior probability that x is still the data token: a_t p~(x) / q_t(x | x)
        p_x = jnp.take_along_axis(data, x[..., None], axis=-1)
        lik = a_t[:, None, None] + (1.0 - a_t[:, None, None]) * pi[x][..., None]
        clean = a_t[:, None, None] * p_x / jnp.maximum(lik, _TINY)
        if jump == "exact":
            log_ratio = jnp.log(a_s) - jnp.log(jnp.maximum(a_t, _TINY))
        else:
            log_ratio = h * neg_da / jnp.maximum(a_t, _TINY)
        hazard_src = corrector * log_ratio[:, None, None] * clean
    else:
        pi = None
        hazard_src = jnp.zeros_like(hazard_data)
    total = hazard_data + hazard_src
    if jump == "euler":
        p_event = jnp.minimum(total, 1.0)
    else:
        p_event = -jnp.expm1(-total)
    share = p_event / jnp.maximum(total, _TINY)
    probs = share * hazard_data * data
    if pi is not None:
        probs = probs + share * hazard_src * pi
    stay = jnp.clip(1.0 - p_event, 0.0, 1.0)
    return probs + stay * (x[..., None] == jnp.arange(n)).astype(jnp.float32)


def dfm_euler(
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
    t_max: float = 1.0,
    jump: str = "exact",
    corrector: float = 0.0,
) -> Array | tuple[Array, Array]:
    """Discrete flow matching sampling (Gat et al. 2024) with an optional corrector.

    Each step: per position, with the jump probability of ``jump`` ("exact",
    "exponential" or Gat et al.'s "euler"; see the module docstring) replace the token
    by a draw x0 ~ p(x0 | x_t); with ``corrector`` = beta > 0 the data velocity is
    scaled by 1 + beta and a source velocity of weight beta is added. One network call
    per step.

    Args:
      key: PRNG key.
      denoiser: ``(x_t int32[B, L], t float32[B]) -> log p(x0 | x_t)`` float32[B, L, K].
      process: Masking, Uniform or MarginalPrior (continuous time).
      shape: (B, L).
      steps: number of grid intervals from t_max to 0; the last is the denoising step.
      temperature, top_k, top_p: applied to the x0 distribution.
      fixed: int32[B, L], -1 where free: tokens to hold (prompts, infilling).
      final_step: "sample" or "argmax" for the step that lands on t = 0.
      return_trajectory: also return the state after every step, int32[steps, B, L].
      t_max: start time (the state starts from the prior).
      jump: "exact" (default), "exponential" or "euler".
      corrector: the corrector weight beta >= 0 (default 0: no corrector).
    Returns:
      int32[B, L] samples (and the trajectory).
    """
    check(jump in JUMPS, f"jump must be one of {JUMPS}, got {jump!r}")
    check(corrector >= 0, f"corrector must be >= 0, got {corrector}")
    corrector = float(corrector)

    def make_step(denoise: _common.Denoiser, fixed: Array | None) -> _common.StepFn:
        def step(k: Array, x: Array, t: Array, s: Array) -> Array:
            return draw(k, _dfm_probs(process, denoise, x, t, s, jump, corrector))

        return step

    return run(
        key, denoiser, process, shape, "dfm_euler", make_step, steps=steps,
        temperature=temperature, top_k=top_k, top_p=top_p, fixed=fixed,
        final_step=final_step, return_trajectory=return_trajectory, t_max=t_max,
    )  # fmt: skip
