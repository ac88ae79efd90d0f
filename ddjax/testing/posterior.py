"""Oracle pieces for steering and posterior samplers.

The exact tilted law / likelihood posterior is :meth:`ddjax.testing.ExactTarget.tilted`
and the exact joint p(x0 | x_t) is :meth:`ddjax.testing.ExactTarget.posterior`; here:

* :func:`exact_planner`: DDPD's exact planner, the logit of P(x_t,i != x0_i | x_t);
* :func:`smoothed_log_likelihood`: split Gibbs's exact x-marginal at a fixed coupling
  level t, p(x) E_{z ~ q_t(. | x)}[exp(l(z))] / Z, as the log weight for ``tilted``;
* :func:`ddpd_law`: the exact output law of :func:`ddjax.samplers.ddpd` with the exact
  denoiser (its step matrices over all states multiplied over the grid).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ddjax._struct import check

__all__ = ["exact_planner", "smoothed_log_likelihood", "ddpd_law"]


def exact_planner(target, process) -> Callable[[Array, Array], Array]:
    """The exact DDPD planner of ``target`` under ``process``.

    Returns ``planner(x_t int32[B, L], t float32[B]) -> float32[B, L]``, the logit of
    P(x_t,i != x0_i | x_t) computed from the exact joint posterior
    ``target.posterior(process)`` (clipped to [-30, 30] where it is 0 or 1).
    """
    posterior = target.posterior(process)
    seqs = target.sequences  # [S, L]

    def planner(x_t: Array, t: Array) -> Array:
        x_t = jnp.asarray(x_t, jnp.int32)
        post = posterior(x_t, t)  # [B, S]
        same = (seqs[None, :, :] == x_t[:, None, :]).astype(jnp.float32)  # [B, S, L]
        p_clean = jnp.einsum("bs,bsl->bl", post, same)
        p_clean = jnp.clip(p_clean, 1e-13, 1.0 - 1e-13)
        return jnp.clip(jnp.log1p(-p_clean) - jnp.log(p_clean), -30.0, 30.0)

    return planner


def smoothed_log_likelihood(
    target, process, log_likelihood: Callable[[Array], Array], t: float
) -> np.ndarray:
    """log E_{z ~ q_t(. | x)}[exp(l(z))] for every sequence x: float64[K**L].

    The x-marginal of split Gibbs's joint p(x) q_t(z | x) exp(l(z)) at a fixed coupling
    level t is ``target.tilted(smoothed_log_likelihood(...))``; it tends to the posterior
    ``target.tilted(l)`` as t -> 0. Needs a process whose noised data stays data (no mask
    state). Enumerates all K**L x K**L pairs (small targets only).
    """
    check(process.mask_id is None, "smoothed_log_likelihood needs a process without a mask state")
    k = target.vocab_size
    seqs = target.sequences
    ll = np.asarray(log_likelihood(seqs), np.float64).reshape(-1)
    check(ll.shape == (target.num_sequences,), "log_likelihood must give float[S] for [S, L]")
    table = np.asarray(
        process.marginal_probs(jnp.eye(k)[None], jnp.full((1,), t, jnp.float32))[0], np.float64
    )  # [K, N]: q_t(z_i | x_i)
    s = np.asarray(seqs)
    # kernel[a, b] = prod_i q_t(z_i = s[b, i] | x_i = s[a, i])
    log_kernel = np.log(table[s[:, None, :], s[None, :, :]]).sum(-1)
    out = log_kernel + ll[None, :]
    top = out.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(out - top).sum(axis=1, keepdims=True)))[:, 0]


def ddpd_law(target, process, steps: int, planner=None) -> np.ndarray:
    """The exact output law of ``ddpd`` over the K**L sequences (target order), float64.

    Uses the target's exact denoiser and ``planner`` (default: :func:`exact_planner`);
    the prior is the process's t = 1 law. Small targets only ([S, S] matrices).
    """
    from ddjax.samplers import driver  # the samplers import ddjax.testing lazily
    from ddjax.samplers.ddpd import DDPD

    check(isinstance(steps, int) and steps >= 1, f"steps must be an int >= 1, got {steps!r}")
    states = target.sequences
    n = states.shape[0]
    step = DDPD(planner=planner or exact_planner(target, process))
    ctx = driver.context(process, target.denoiser(process), (n, target.length), steps)
    prior = np.prod(np.asarray(process.prior_probs(), np.float64)[np.asarray(states)], -1)

    def matrix(t, s, last):
        full = jnp.full((n,), t, jnp.float32), jnp.full((n,), s, jnp.float32)
        return step.transition_matrix(ctx, states, *full, last)

    fast = jax.jit(matrix, static_argnums=2, compiler_options={"xla_backend_optimization_level": 0})
    grid = np.linspace(1.0, 0.0, steps + 1)
    law = prior
    for j in range(steps):
        law = law @ np.asarray(fast(grid[j], grid[j + 1], j == steps - 1), np.float64)
    return law / law.sum()
