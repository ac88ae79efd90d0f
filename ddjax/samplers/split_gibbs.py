"""Split Gibbs posterior sampling (SGDD; Chu et al. 2025, "Split Gibbs discrete diffusion
posterior sampling"), for processes whose noised data stays data (uniform, marginal prior).

Target: p(x | y) proportional to p(x) exp(l(x)), ``l = log_likelihood``. Split Gibbs samples
the joint

    pi_t(x, z) proportional to p(x) q_t(z | x) exp(l(z))

over the clean x and an auxiliary copy z, coupled by the forward kernel at level t. For
uniform noise q_t(z | x) = prod_i [(1 - a_t)/K + a_t [z_i = x_i]] is proportional to
exp(-beta_t Hamming(x, z)) with beta_t = log(1 + K a_t / (1 - a_t)) (SGDD's Hamming
potential; a marginal prior pi gives a token-weighted Hamming distance). Both
conditionals are steps we can take exactly:

* likelihood step, z | x proportional to exp(l(z)) q_t(z | x): Metropolis-within-Gibbs
  sweeps over the positions, proposing z_i' ~ q_t(. | x_i) and accepting with
  probability min(1, exp(l(z') - l(z))) (the proposal is the coupling, so the ratio is
  the likelihood ratio; no network call);
* prior step, x | z proportional to p(x) q_t(z | x) = p(x0 = x | x_t = z): the reverse
  diffusion started from x_t = z at time t (``prior_steps`` ancestral steps to 0). No
  extra noise is added: z already is a draw of x_t.

The x-marginal of pi_t is p(x) E_{z ~ q_t(. | x)} exp(l(z)) / Z, which tends to the
posterior as t -> 0 (:func:`ddjax.testing.smoothed_log_likelihood` gives it exactly),
while the chain mixes faster at large t; so the level is annealed over ``num_rounds``
rounds, geometrically from ``t_max`` to ``t_min`` (beta grows as t falls). With an
exact denoiser, enough prior steps and a constant level the chain's x-law converges to
the exact pi_t marginal; annealed to a small ``t_min`` it approaches p(x | y).

Masking is refused: a data-valued z and a masked x_t never agree, its coupling
q_t(z | x) is the hard constraint z = x and the chain cannot move.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from ddjax._struct import check
from ddjax.arrays import onehot
from ddjax.processes import require
from ddjax.random import draw_from_probs
from ddjax.samplers import driver, transforms
from ddjax.samplers.ancestral import Ancestral

__all__ = ["split_gibbs", "coupling_levels", "reverse_from", "check_log_likelihood"]

LogLikelihood = Callable[[Array], Array]


def coupling_levels(num_rounds: int, t_max: float, t_min: float) -> Array:
    """The annealed coupling levels t_k, k = 0..num_rounds-1: float32[num_rounds].

    Geometric from ``t_max`` to ``t_min`` (one round: ``t_min``).
    """
    if num_rounds == 1:
        return jnp.full((1,), t_min, jnp.float32)
    frac = jnp.arange(num_rounds, dtype=jnp.float32) / (num_rounds - 1)
    return (t_max * (t_min / t_max) ** frac).astype(jnp.float32)


def reverse_from(
    key: Array, ctx: driver.Context, x_t: Array, t: Array, steps: int, step: driver.Step
) -> Array:
    """Runs ``step`` over ``steps`` even intervals from time t (traced scalar) to 0.

    The reverse diffusion started from the state x_t int32[B, L] at t: the prior step of
    split Gibbs (and a full unconditional draw from t = 1 from the prior). int32[B, L].
    """
    grid = jnp.linspace(t, 0.0, steps + 1).astype(jnp.float32)
    return driver.run(step, key, ctx, x_t, grid)


def check_log_likelihood(log_likelihood: Any, shape: tuple[int, int], who: str) -> None:
    """``log_likelihood(int32[B, L]) -> float32[B]``, checked by abstract evaluation."""
    check(callable(log_likelihood), f"{who}: log_likelihood must be callable")
    out = jax.eval_shape(log_likelihood, jax.ShapeDtypeStruct(shape, jnp.int32))
    check(
        getattr(out, "shape", None) == (shape[0],),
        f"{who}: log_likelihood must map int32[B, L] to float32[B] (B = {shape[0]}), "
        f"got {getattr(out, 'shape', type(out))}",
    )


def _likelihood_step(
    key: Array,
    log_likelihood: LogLikelihood,
    process: Any,
    x: Array,
    z: Array,
    t: Array,
    sweeps: int,
) -> tuple[Array, Array]:
    """Metropolis-within-Gibbs sweeps on z | x, target exp(l(z)) prod_i q_t(z_i | x_i).

    Returns (z, acceptance rate float32[]).
    """
    b, length = x.shape
    coupling = process.marginal_probs(
        onehot(x, process.vocab_size), jnp.full((b,), t, jnp.float32)
    )  # [B, L, N]: q_t(z_i | x_i)
    ll = log_likelihood(z).astype(jnp.float32)

    def site(j: Array, carry):
        z, ll, acc, k = carry
        k, k_prop, k_u = jax.random.split(k, 3)
        pos = j % length
        probs = jax.lax.dynamic_index_in_dim(coupling, pos, axis=1, keepdims=False)  # [B, N]
        proposal = draw_from_probs(k_prop, probs)
        z_new = jax.lax.dynamic_update_index_in_dim(z, proposal, pos, axis=1)
        ll_new = log_likelihood(z_new).astype(jnp.float32)
        log_u = jnp.log(jax.random.uniform(k_u, (b,), minval=1e-38))
        take = log_u < ll_new - ll
        z = jnp.where(take[:, None], z_new, z)
        return z, jnp.where(take, ll_new, ll), acc + take.mean(), k

    z, _, acc, _ = jax.lax.fori_loop(0, sweeps * length, site, (z, ll, jnp.float32(0.0), key))
    return z, acc / (sweeps * length)


def split_gibbs(
    key: Array,
    denoiser: transforms.Denoiser,
    process: Any,
    shape: tuple[int, int],
    *,
    log_likelihood: LogLikelihood,
    num_rounds: int,
    t_max: float = 0.5,
    t_min: float = 0.02,
    mh_sweeps: int = 2,
    prior_steps: int = 8,
    init_steps: int | None = None,
    temperature: Any = 1.0,
    return_info: bool = False,
) -> Array | tuple[Array, dict[str, Array]]:
    """Split Gibbs samples of p(x | y) proportional to p(x) exp(log_likelihood(x)).

    Starts from an unconditional draw (``init_steps`` ancestral steps from the prior,
    default ``prior_steps``), then each round k at coupling level t_k
    (:func:`coupling_levels`) runs ``mh_sweeps`` Metropolis sweeps of the auxiliary copy
    z given x (z starts at the first x and is carried from round to round), then draws
    x | z by ``prior_steps`` ancestral steps from x_t = z at time t_k to 0. One
    ``lax.scan`` over rounds. Network calls: init_steps + num_rounds * prior_steps;
    log_likelihood calls: num_rounds * (1 + mh_sweeps * L).

    Args:
      key: PRNG key.
      denoiser: ``(x_t int32[B, L], t float32[B]) -> log p(x0 | x_t)`` float32[B, L, K].
      process: continuous time, no mask state (Uniform, MarginalPrior).
      shape: (B, L): B independent chains.
      log_likelihood: ``x int32[B, L] -> float32[B]``, log p(y | x) up to a constant.
      num_rounds: Gibbs rounds >= 1.
      t_max, t_min: the coupling level's first and last value, 0 < t_min <= t_max <= 1
        (uniform noise: beta_t = log(1 + K a_t / (1 - a_t))).
      mh_sweeps: Metropolis sweeps over all L positions per round (>= 1).
      prior_steps: ancestral steps of each prior step (>= 1).
      init_steps: ancestral steps of the initial unconditional draw (default prior_steps).
      temperature: the denoiser temperature of the prior steps.
      return_info: also return {"t": float32[R], "acceptance": float32[R]}.
    Returns:
      int32[B, L] (and the info dict).
    """
    require(process, ("posterior_probs", "prior_sample", "continuous_time"), "split_gibbs")
    if process.mask_id is not None:
        raise TypeError(
            "split_gibbs needs a process whose noised data stays data (Uniform, "
            "MarginalPrior): under masking the coupling q_t(z | x) of a data-valued z is the "
            "hard constraint z = x"
        )
    check(
        isinstance(shape, tuple) and len(shape) == 2 and all(isinstance(d, int) for d in shape),
        f"shape must be a (batch, length) tuple of ints, got {shape!r}",
    )
    for name, value in (("num_rounds", num_rounds), ("mh_sweeps", mh_sweeps),
                        ("prior_steps", prior_steps)):  # fmt: skip
        check(
            isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            f"{name} must be an int >= 1, got {value!r}",
        )
    init_steps = prior_steps if init_steps is None else init_steps
    check(
        isinstance(init_steps, int) and init_steps >= 1,
        f"init_steps must be an int >= 1, got {init_steps!r}",
    )
    driver.check_number("t_min", t_min, 0.0, 1.0, open_lo=True)
    driver.check_number("t_max", t_max, float(t_min), 1.0)
    check_log_likelihood(log_likelihood, shape, "split_gibbs")

    ctx = driver.context(process, denoiser, shape, prior_steps, temperature=temperature)
    ancestral = Ancestral()
    k_prior, k_init, k_rounds = jax.random.split(key, 3)
    x = reverse_from(
        k_init, ctx, process.prior_sample(k_prior, shape), jnp.float32(1.0), init_steps, ancestral
    )
    levels = coupling_levels(num_rounds, t_max, t_min)

    def round_(state: tuple[Array, Array], inputs: tuple[Array, Array]):
        x, z = state
        k, t = inputs
        k_mh, k_rev = jax.random.split(k)
        # Metropolis-within-Gibbs leaves z | x invariant only from the chain's own z
        z, acc = _likelihood_step(k_mh, log_likelihood, process, x, z, t, mh_sweeps)
        x = reverse_from(k_rev, ctx, z, t, prior_steps, ancestral)
        return (x, z), acc

    keys = jax.random.split(k_rounds, num_rounds)
    (x, _), acceptance = jax.lax.scan(round_, (x, x), (keys, levels))
    if return_info:
        return x, {"t": levels, "acceptance": acceptance}
    return x
