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

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp
from jax import Array

from ddjax._struct import check, concrete
from ddjax.samplers import driver

__all__ = ["DfmEuler", "dfm_euler", "dfm_probs", "JUMPS"]

JUMPS = ("exact", "exponential", "euler")
_TINY = 1e-30


def _is_zero(value: Any) -> bool:
    arr = concrete(value)
    return arr is not None and float(arr) == 0.0


def dfm_probs(
    process: Any,
    x0_probs: Array,
    x: Array,
    t: Array,
    s: Array,
    jump: str,
    corrector: Any,
) -> Array:
    """The per-position law of one DFM step t -> s: float32[B, L, N].

    A mixture of three moves: to a draw from the restricted x0 distribution p~ (data
    event), to a draw from pi (source event, only with the corrector), or stay.
    """
    n = process.num_states
    sched = process.schedule
    # p~: the x0 distribution restricted to tokens consistent with x, over all N states
    data = process.posterior_probs(x, x0_probs, jnp.zeros_like(t), t)
    a_t, a_s = sched.alpha(t), sched.alpha(s)
    h = t - s
    neg_da = -sched.alpha_prime(t)
    if jump == "exact":
        # infinite where 1 - alpha(s) = 0 (s = 0): every event is then a data move
        hazard_data = (1.0 + corrector) * jnp.log(
            jnp.maximum(sched.one_minus_alpha(t), _TINY)
            / jnp.maximum(sched.one_minus_alpha(s), _TINY)
        )
        hazard_data = jnp.where(sched.one_minus_alpha(s) > 0, hazard_data, jnp.inf)
    else:
        hazard_data = (1.0 + corrector) * h * neg_da / jnp.maximum(sched.one_minus_alpha(t), _TINY)
    hazard_data = hazard_data[:, None, None]
    pi = process.prior_probs()
    if not _is_zero(corrector):
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
        hazard_src = jnp.zeros_like(hazard_data)
    total = hazard_data + hazard_src
    if jump == "euler":
        p_event = jnp.minimum(total, 1.0)
    else:
        p_event = -jnp.expm1(-total)
    finite = jnp.isfinite(total)
    share = jnp.where(finite, p_event / jnp.maximum(jnp.where(finite, total, 1.0), _TINY), 0.0)
    data_share = jnp.where(finite, share * hazard_data, p_event)
    probs = data_share * data + share * hazard_src * pi
    stay = jnp.clip(1.0 - p_event, 0.0, 1.0)
    return probs + stay * (x[..., None] == jnp.arange(n)).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class DfmEuler(driver.PositionLaw):
    """Discrete flow matching sampling (Gat et al. 2024) with an optional corrector.

    Each step: per position, with the jump probability of ``jump`` replace the token by
    a draw x0 ~ p(x0 | x_t); with ``corrector`` = beta > 0 the data velocity is scaled by
    1 + beta and a source velocity of weight beta is added (module docstring). One
    network call per step. Needs a mixture-path process (``schedule``, ``prior_probs``).

    Options:
      jump: "exact" (default), "exponential" or "euler".
      corrector: the corrector weight beta >= 0 (default 0: no corrector; may be traced).
    """

    jump: str = "exact"
    corrector: float = 0.0

    name: ClassVar[str] = "dfm_euler"
    needs: ClassVar[tuple[str, ...]] = ("continuous_time", "schedule", "prior_probs")

    def validate(self, process: Any, shape: tuple[int, int], steps: int | None) -> None:
        check(self.jump in JUMPS, f"jump must be one of {JUMPS}, got {self.jump!r}")
        driver.check_number("corrector", self.corrector, 0.0)

    def law(self, ctx: driver.Context, x: Array, t: Array, s: Array) -> Array:
        return dfm_probs(ctx.process, ctx.x0_probs(x, t), x, t, s, self.jump, self.corrector)


dfm_euler = driver.public(DfmEuler)
