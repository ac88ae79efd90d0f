"""Exact answers for steering samplers (smc, svdd, edlm), on small enumerable targets.

Everything here is enumerated over the K**L sequences of an :class:`ExactTarget`:

* the tilted law p(x) exp(r(x) / alpha) / Z: ``target.tilted(r, alpha)`` (the target of
  smc with alpha = 1 and of svdd), and its normaliser :func:`log_normalizer`
  (log E_p[exp(r / alpha)], what smc's ``info.log_normalizer`` estimates);
* the exact soft value v_t(x_t) = alpha log E[exp(r(x0) / alpha) | x_t]
  (:func:`soft_value`), from the exact joint posterior ``target.posterior(process)``;
  with alpha = 1 it is the exact twist of smc (``log_potential``), and svdd's exact
  ``value_fn``;
* the exact log p(x0) for edlm's ``log_joint``: :func:`log_joint` (= -target.nll);
* the exact joint posterior p(x0 | x_t) itself: ``target.posterior(process)``.

How to check your own steering code: build a small target (``random_target(key, 3, 3,
coupling=...)``), a reward r on its sequences, the exact denoiser
(``target.denoiser(process)``) and the exact twist / value / log p from here; run your
sampler for n rows and compare ``total_variation(samples, target.tilted(r))`` with
``tv_floor(target.tilted(r), n)``: a correct method lands near the floor as its
particles / candidates grow, an incorrect weight or time does not. A sampler built on
an approximate proposal (ancestral at few steps) targets the tilt of its proposal's own
law; :func:`tilted_law` tilts any law (e.g. ``ExactLaw("ancestral", ...)(steps)``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from ddjax._struct import check
from ddjax.processes import Process
from ddjax.testing import ExactTarget

__all__ = ["soft_value", "log_normalizer", "log_joint", "tilted_law", "reward_values"]


def reward_values(target: ExactTarget, log_reward: Callable | ArrayLike) -> np.ndarray:
    """r on every sequence of ``target`` (its :attr:`sequences` order): float64[K**L]."""
    return target.values(log_reward, "log_reward")


def soft_value(
    target: ExactTarget,
    process: Process,
    log_reward: Callable | ArrayLike,
    alpha: float = 1.0,
) -> Callable[[Array, Array], Array]:
    """The exact soft value ``(x_t int32[B, L], t float32[B]) -> float32[B]``:

    v_t(x_t) = alpha log sum_x0 p(x0 | x_t) exp(r(x0) / alpha), with the exact joint
    posterior. v_0 = r; with alpha = 1 it is log E[exp r(x0) | x_t], smc's exact twist.

    Args:
      log_reward: ``r(x int32[S, L]) -> float[S]`` or its values in sequence order.
      alpha: temperature > 0.
    """
    check(alpha > 0, f"alpha must be > 0, got {alpha}")
    scaled = jnp.asarray(reward_values(target, log_reward) / alpha, jnp.float32)
    posterior = target.posterior(process)

    def value(x_t: Array, t: Array) -> Array:
        post = posterior(x_t, t)  # [B, S]
        return alpha * jax.nn.logsumexp(jnp.log(post) + scaled[None, :], axis=-1)

    return value


def log_normalizer(
    target: ExactTarget | ArrayLike, log_reward: Callable | ArrayLike, alpha: float = 1.0
) -> float:
    """log E_p[exp(r(x) / alpha)] over the target (or a law over its sequences): float.

    Pass a probability vector (e.g. a sampler's exact law) with ``log_reward`` as values.
    """
    if isinstance(target, ExactTarget):
        p, r = target.probs, reward_values(target, log_reward)
    else:
        p = np.asarray(target, np.float64)
        r = np.asarray(log_reward, np.float64).reshape(-1)
    with np.errstate(divide="ignore"):
        z = np.log(p) + r / alpha
    top = np.max(z)
    return float(top + np.log(np.sum(np.exp(z - top))))


def log_joint(target: ExactTarget) -> Callable[[Array], Array]:
    """The exact log p(x0): ``(x0 int32[N, L]) -> float32[N]`` (edlm's ``log_joint``)."""
    return lambda x0: -target.nll(x0)


def tilted_law(probs: ArrayLike, log_reward_values: ArrayLike, alpha: float = 1.0) -> np.ndarray:
    """q(x) exp(r(x) / alpha) / Z for a law q over the sequences: float64[K**L]."""
    q = np.asarray(probs, np.float64).reshape(-1)
    r = np.asarray(log_reward_values, np.float64).reshape(-1)
    check(q.shape == r.shape, f"probs {q.shape} and rewards {r.shape} differ in shape")
    with np.errstate(divide="ignore"):
        z = np.log(q) + r / alpha
    w = np.exp(z - np.max(z))
    return w / w.sum()
