"""Noise schedules.

Convention: ``t`` in [0, 1], t = 0 is data and t = 1 is noise. ``alpha(t)`` is the
probability that a token is still clean (alpha(0) = 1, alpha(1) ~ 0) and
``sigma_bar(t) = -log alpha(t)`` is SEDD's total noise. Every schedule gives
``alpha'`` in closed form and the inverse ``t_of_alpha`` (first-hitting sampler).

Schedules are frozen pytree dataclasses whose parameters are static metadata, so
they can be passed to jitted functions and are part of the compilation key.

The D3PM discrete-time beta grids live here too: ``d3pm_betas(T, kind)``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from ddjax._struct import check, pytree_dataclass, static_field

__all__ = [
    "Schedule",
    "LogLinear",
    "Linear",
    "Cosine",
    "Polynomial",
    "Geometric",
    "d3pm_betas",
]


class Schedule:
    """Base class: subclasses define ``alpha``, ``alpha_prime`` and ``t_of_alpha``."""

    def alpha(self, t: ArrayLike) -> Array:
        """Probability that a token is still clean at time ``t``. Shape of ``t``."""
        raise NotImplementedError

    def alpha_prime(self, t: ArrayLike) -> Array:
        """d alpha / dt in closed form. Shape of ``t``."""
        raise NotImplementedError

    def t_of_alpha(self, alpha: ArrayLike) -> Array:
        """The inverse of ``alpha``: the time at which alpha(t) = ``alpha``."""
        raise NotImplementedError

    def one_minus_alpha(self, t: ArrayLike) -> Array:
        """1 - alpha(t); overridden where a cancellation-free form exists."""
        return 1.0 - self.alpha(t)

    def sigma_bar(self, t: ArrayLike) -> Array:
        """Total noise -log alpha(t), as -log1p(-(1 - alpha)) to keep precision near t = 0."""
        return -jnp.log1p(-self.one_minus_alpha(t))

    def sigma_bar_prime(self, t: ArrayLike) -> Array:
        """d sigma_bar / dt = -alpha'(t) / alpha(t): the forward jump rate of the process."""
        return -self.alpha_prime(t) / self.alpha(t)

    def masking_rate(self, t: ArrayLike) -> Array:
        """-alpha'(t) / (1 - alpha(t)): the MDLM/MD4 weight of the masked cross-entropy."""
        return -self.alpha_prime(t) / self.one_minus_alpha(t)


def _t(t: ArrayLike) -> Array:
    return jnp.asarray(t, dtype=jnp.float32)


@pytree_dataclass
class LogLinear(Schedule):
    """alpha(t) = 1 - (1 - eps) t (SEDD's log-linear total noise, MDLM's default)."""

    eps: float = static_field(default=1e-3)

    def __post_init__(self) -> None:
        if isinstance(self.eps, (int, float)):
            check(0.0 < self.eps < 1.0, f"eps must lie in (0, 1), got {self.eps}")

    def alpha(self, t: ArrayLike) -> Array:
        return 1.0 - (1.0 - self.eps) * _t(t)

    def alpha_prime(self, t: ArrayLike) -> Array:
        return jnp.full_like(_t(t), -(1.0 - self.eps))

    def one_minus_alpha(self, t: ArrayLike) -> Array:
        return (1.0 - self.eps) * _t(t)

    def t_of_alpha(self, alpha: ArrayLike) -> Array:
        return (1.0 - _t(alpha)) / (1.0 - self.eps)


@pytree_dataclass
class Linear(Schedule):
    """alpha(t) = 1 - t (MD4's linear schedule; alpha(1) = 0 exactly)."""

    def alpha(self, t: ArrayLike) -> Array:
        return 1.0 - _t(t)

    def alpha_prime(self, t: ArrayLike) -> Array:
        return jnp.full_like(_t(t), -1.0)

    def one_minus_alpha(self, t: ArrayLike) -> Array:
        return _t(t)

    def t_of_alpha(self, alpha: ArrayLike) -> Array:
        return 1.0 - _t(alpha)


@pytree_dataclass
class Cosine(Schedule):
    """alpha(t) = 1 - cos(pi/2 (1 - t)) = 1 - sin(pi t / 2) (MD4's cosine schedule)."""

    def alpha(self, t: ArrayLike) -> Array:
        return 1.0 - jnp.sin(0.5 * math.pi * _t(t))

    def alpha_prime(self, t: ArrayLike) -> Array:
        return -0.5 * math.pi * jnp.cos(0.5 * math.pi * _t(t))

    def one_minus_alpha(self, t: ArrayLike) -> Array:
        return jnp.sin(0.5 * math.pi * _t(t))

    def t_of_alpha(self, alpha: ArrayLike) -> Array:
        return jnp.arcsin(jnp.clip(1.0 - _t(alpha), 0.0, 1.0)) * (2.0 / math.pi)


@pytree_dataclass
class Polynomial(Schedule):
    """alpha(t) = 1 - t**power (MD4's poly schedules)."""

    power: float = static_field(default=2.0)

    def __post_init__(self) -> None:
        if isinstance(self.power, (int, float)):
            check(self.power > 0, f"power must be positive, got {self.power}")

    def alpha(self, t: ArrayLike) -> Array:
        return 1.0 - _t(t) ** self.power

    def alpha_prime(self, t: ArrayLike) -> Array:
        return -self.power * _t(t) ** (self.power - 1.0)

    def one_minus_alpha(self, t: ArrayLike) -> Array:
        return _t(t) ** self.power

    def t_of_alpha(self, alpha: ArrayLike) -> Array:
        return jnp.clip(1.0 - _t(alpha), 0.0, 1.0) ** (1.0 / self.power)


@pytree_dataclass
class Geometric(Schedule):
    """sigma_bar(t) = sigma_min**(1 - t) * sigma_max**t, alpha = exp(-sigma_bar) (SEDD)."""

    sigma_min: float = static_field(default=1e-4)
    sigma_max: float = static_field(default=20.0)

    def __post_init__(self) -> None:
        if isinstance(self.sigma_min, (int, float)) and isinstance(self.sigma_max, (int, float)):
            check(
                0.0 < self.sigma_min < self.sigma_max,
                f"need 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min}, "
                f"sigma_max={self.sigma_max}",
            )

    @property
    def _log_ratio(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def sigma_bar(self, t: ArrayLike) -> Array:
        return self.sigma_min * jnp.exp(_t(t) * self._log_ratio)

    def sigma_bar_prime(self, t: ArrayLike) -> Array:
        return self.sigma_bar(t) * self._log_ratio

    def alpha(self, t: ArrayLike) -> Array:
        return jnp.exp(-self.sigma_bar(t))

    def alpha_prime(self, t: ArrayLike) -> Array:
        return -self.alpha(t) * self.sigma_bar_prime(t)

    def one_minus_alpha(self, t: ArrayLike) -> Array:
        # expm1 keeps precision where sigma_bar is tiny (t near 0).
        return -jnp.expm1(-self.sigma_bar(t))

    def masking_rate(self, t: ArrayLike) -> Array:
        return self.sigma_bar_prime(t) / jnp.expm1(self.sigma_bar(t))

    def t_of_alpha(self, alpha: ArrayLike) -> Array:
        sigma = -jnp.log(_t(alpha))
        return jnp.clip(jnp.log(sigma / self.sigma_min) / self._log_ratio, 0.0, 1.0)


def d3pm_betas(num_steps: int, kind: str = "mutual_information", **kwargs: float) -> np.ndarray:
    """Per-step corruption rates b_1..b_T of a D3PM process, float64 NumPy of shape [T].

    Kinds:
      ``mutual_information``: b_t = 1 / (T - t + 1) (D3PM's absorbing choice; it
        makes alpha_bar linear in t and b_T = 1, so x_T is exactly the prior).
      ``linear``: b_t evenly spaced from ``start`` (default 0.02) to ``end``
        (default 1.0); D3PM's discretized-Gaussian choice.
      ``cosine``: the cosine alpha_bar of Nichol & Dhariwal with offset ``s``
        (default 0.008): b_t = 1 - alpha_bar(t) / alpha_bar(t - 1).
    """
    check(
        isinstance(num_steps, (int, np.integer)) and num_steps >= 1,
        f"num_steps (T) must be an integer >= 1, got {num_steps!r}",
    )
    t = np.arange(1, num_steps + 1, dtype=np.float64)
    if kind == "mutual_information":
        betas = 1.0 / (num_steps - t + 1.0)
    elif kind == "linear":
        start, end = kwargs.get("start", 0.02), kwargs.get("end", 1.0)
        betas = np.linspace(start, end, num_steps, dtype=np.float64)
    elif kind == "cosine":
        s = kwargs.get("s", 0.008)
        grid = np.arange(num_steps + 1, dtype=np.float64) / num_steps
        abar = np.cos((grid + s) / (1 + s) * np.pi / 2) ** 2
        betas = np.clip(1.0 - abar[1:] / abar[:-1], 0.0, 1.0)
    else:
        raise ValueError(
            f"unknown beta schedule kind {kind!r}; use mutual_information, linear or cosine"
        )
    return betas
