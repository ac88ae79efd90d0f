"""Forward processes (transition kernels).

Two families:

* The interpolating family, continuous time: ``q(x_t | x0) = Cat(a_t onehot(x0) +
  (1 - a_t) pi)`` with ``pi`` the mask state (:class:`Masking`), uniform
  (:class:`Uniform`) or the data marginals (:class:`MarginalPrior`). Every method
  is O(K) per token; no K x K matrix is ever built.
* :class:`D3PM`, discrete time: dense per-step matrices ``Q_t`` (row convention,
  ``q(x_t | x_{t-1}) = Cat(x_{t-1} Q_t)``) and their products, built once in
  float64 NumPy and stored as float32. For this family every ``t`` is an int32
  step index in 0..T.

Every process reads a denoiser output ``x0_probs`` (a distribution over the K
data tokens) as the posterior ``p(x0_i | x_t)``: reverse steps are the posterior
mixture ``sum_k p(k) q(x_s | x_t, x0 = k)`` and reverse rates ``R_t(y, x) sum_k
p(k) q_t(y|k) / q_t(x|k)``. Values of ``x0`` that cannot have produced ``x_t``
(``q(x_t | k) = 0``, e.g. any ``k != x_t`` at an unmasked position) are dropped
and ``p`` renormalised. ``plugin=True`` gives the papers' plug-in posterior
(D3PM, UDLM, Duo) instead; it is only exact for masking.

Shapes: tokens ``[..., L]`` int32, times ``[...]`` (one per sequence), distributions
``[..., L, K]`` in and ``[..., L, num_states]`` out.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from ddjax import schedules as schedules_lib
from ddjax._struct import check, concrete, pytree_dataclass, static_field
from ddjax._validation import validate_probs, validate_tokens
from ddjax.arrays import onehot, sequence_times
from ddjax.random import categorical

__all__ = [
    "Process",
    "ProcessBase",
    "CAPABILITIES",
    "require",
    "Interpolating",
    "Masking",
    "Uniform",
    "MarginalPrior",
    "D3PM",
]

_TINY = 1e-30


def _check_tokens(x: Any, num_states: int, name: str) -> Array:
    x = jnp.asarray(x)
    check(x.ndim >= 1, f"{name} must have shape [..., L], got a scalar")
    validate_tokens(x, num_states, name)
    return x.astype(jnp.int32)


def _check_x0_probs(x0_probs: Any, vocab_size: int, tokens: Array | None = None) -> Array:
    x0_probs = jnp.asarray(x0_probs, jnp.float32)
    check(
        x0_probs.ndim >= 2 and x0_probs.shape[-1] == vocab_size,
        f"x0_probs must have shape [..., L, {vocab_size}] (a distribution over the data "
        f"tokens), got {x0_probs.shape}",
    )
    if tokens is not None:
        check(
            x0_probs.shape[:-1] == tokens.shape,
            f"x0_probs has shape {x0_probs.shape} but x_t has shape {tokens.shape}",
        )
    return x0_probs


def _pad_states(p: Array, num_states: int) -> Array:
    """Extends a distribution over K data tokens with zeros for the extra states."""
    extra = num_states - p.shape[-1]
    if extra == 0:
        return p
    return jnp.pad(p, [(0, 0)] * (p.ndim - 1) + [(0, extra)])


def _normalise_consistent(p: Array, consistent: Array) -> Array:
    """Restricts ``p`` to ``consistent`` states and renormalises (uniform if no mass is left)."""
    p = jnp.where(consistent, p, 0.0)
    z = p.sum(-1, keepdims=True)
    fallback = consistent / jnp.maximum(consistent.sum(-1, keepdims=True), 1)
    out = jnp.where(z > 0, p / jnp.where(z > 0, z, 1.0), fallback)
    # a NaN row stays NaN (not the fallback), so the draws mark it invalid
    return jnp.where(jnp.isnan(z), jnp.nan, out)


@runtime_checkable
class Process(Protocol):
    """The forward-process protocol: what samplers and losses use, and nothing else.

    A process is a frozen pytree dataclass (``ddjax.pytree_dataclass``) with

    * ``vocab_size`` K (data tokens 0..K-1), ``num_states`` N (K, or K + 1 with a
      mask), ``mask_id`` (the mask state, or None), ``is_discrete_time`` (True: every
      time is an int32 step index 0..T and ``num_steps`` gives T);
    * ``sample(key, x0, t)``: x_t ~ q(x_t | x0), int32[B, L] for x0 int32[B, L], t [B];
    * ``prior_sample(key, shape)``: a draw from the t = 1 (t = T) law, int32[shape];
    * ``marginal_probs(x0_probs, t)``: q(x_t | x0) averaged under x0_probs [B, L, K],
      float32[B, L, N];
    * ``posterior_probs(x_t, x0_probs, s, t)``: q(x_s | x_t, x0) averaged under the
      denoiser's x0_probs [B, L, K] (the posterior mixture), s < t, float32[B, L, N].

    Optional capabilities (:data:`CAPABILITIES`); a sampler or loss that needs one checks
    for it with :func:`require` and raises a TypeError naming the missing method.
    """

    vocab_size: int

    @property
    def num_states(self) -> int: ...

    @property
    def mask_id(self) -> int | None: ...

    @property
    def is_discrete_time(self) -> bool: ...

    def sample(self, key: Array, x0: ArrayLike, t: ArrayLike) -> Array: ...

    def prior_sample(self, key: Array, shape: tuple[int, ...]) -> Array: ...

    def marginal_probs(self, x0_probs: ArrayLike, t: ArrayLike) -> Array: ...

    def posterior_probs(
        self, x_t: ArrayLike, x0_probs: ArrayLike, s: ArrayLike, t: ArrayLike
    ) -> Array: ...


# Optional process methods, with what they return (shapes for x_t int32[B, L], t [B]).
CAPABILITIES: dict[str, str] = {
    "prior_probs": "prior_probs() -> float32[N]: the t = 1 law of one token",
    "reverse_rates": (
        "reverse_rates(x_t, x0_probs, t) -> float32[B, L, N]: reverse CTMC rates x_t -> y "
        "(0 at y = x_t) implied by the denoiser's x0 distribution"
    ),
    "forward_rates": (
        "forward_rates(x_t, t) -> float32[B, L, N]: forward rates x_t -> y (0 at y = x_t)"
    ),
    "forward_rate_into": (
        "forward_rate_into(x_t, t) -> float32[B, L]: forward rate y -> x_t, the same for every "
        "y != x_t (the weight of the score-entropy terms)"
    ),
    "score": (
        "score(x_t, x0_probs, t) -> float32[B, L, N]: the concrete score p_t(x^{i<-y}) / p_t(x)"
    ),
    "transition_likelihood": (
        "transition_likelihood(x_t, s, t) -> float32[B, L, N]: q(x_t | x_s = y) for every y"
    ),
    "undo_transition": (
        "undo_transition(v, s, t) -> float32[B, L, N]: v applied to the inverse of the "
        "kernel from s to t (exp(-(sigma_t - sigma_s) Q) v)"
    ),
    "unmask_probability": (
        "unmask_probability(s, t) -> float32[B, L] (or broadcastable): the probability that a "
        "masked token is decoded between t and s < t, for masking-type processes"
    ),
    "unmask_rate": (
        "unmask_rate(t) -> float32[B, L] (or broadcastable): the total reverse rate out of the "
        "mask at time t, for masking-type processes"
    ),
    "plugin_posterior_probs": (
        "plugin_posterior_probs(x_t, x0_probs, s, t) -> float32[B, L, N]: the papers' plug-in "
        "step q(x_s | x_t, x0 = x0_probs) (D3PM / UDLM / Duo), which puts the probability "
        "vector in place of the one-hot x0 (ancestral(plugin=True), d3pm_vb(plugin=True))"
    ),
    "schedule": (
        "schedule: the noise schedule alpha(t), a dd.schedules.Schedule (an attribute; "
        "samplers and losses read alpha, alpha_prime, one_minus_alpha, t_of_alpha, "
        "sigma_bar, masking_rate)"
    ),
}


def require(process: Any, names: tuple[str, ...] | str, who: str) -> None:
    """Raises TypeError unless ``process`` has every capability in ``names``.

    Besides the methods of :data:`CAPABILITIES`, ``"continuous_time"`` and ``"mask"``
    require ``is_discrete_time`` False and ``mask_id`` not None.
    """
    names = (names,) if isinstance(names, str) else names
    kind = type(process).__name__
    for name in names:
        if name == "continuous_time":
            check(
                not getattr(process, "is_discrete_time", False),
                f"{who} needs a continuous-time process, got the discrete-time {kind}; "
                "use ancestral for D3PM processes",
                TypeError,
            )
        elif name == "mask":
            check(
                getattr(process, "mask_id", None) is not None,
                f"{who} needs a process with a mask state (mask_id not None), got {kind}",
                TypeError,
            )
        else:
            check(
                hasattr(process, name),
                f"{who} needs process.{CAPABILITIES.get(name, name)}; {kind} has no {name!r}",
                TypeError,
            )


class ProcessBase:
    """Defaults and token checks for the processes defined here (any class may use it)."""

    vocab_size: int

    @property
    def mask_id(self) -> int | None:
        """The mask state for absorbing processes, else None."""
        return None

    @property
    def is_discrete_time(self) -> bool:
        return False

    def check_x0(self, x0: Any) -> Array:
        """``x0`` as int32 after checking its ids are data tokens 0..K-1 (when concrete)."""
        return _check_tokens(x0, self.vocab_size, "x0")

    def check_x_t(self, x_t: Any) -> Array:
        """``x_t`` as int32 after checking its ids are states 0..num_states-1 (when concrete)."""
        return _check_tokens(x_t, self.num_states, "x_t")


# --------------------------------------------------------------------------
# Interpolating family (continuous time)
# --------------------------------------------------------------------------


class Interpolating(ProcessBase):
    """q(x_t | x0) = Cat(a_t onehot(x0) + (1 - a_t) pi); subclasses give ``pi``."""

    schedule: schedules_lib.Schedule

    def prior_probs(self) -> Array:
        """The noise distribution ``pi`` over all states, float32[num_states]."""
        raise NotImplementedError

    def prior_sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        """Draws ``x_1 ~ pi`` independently per token: int32[shape]."""
        return categorical(
            key, jnp.broadcast_to(jnp.log(self.prior_probs()), (*shape, self.num_states))
        )

    # -- forward ----------------------------------------------------------

    def marginal_probs(self, x0_probs: ArrayLike, t: ArrayLike) -> Array:
        """q(x_t | x0) averaged under ``x0_probs`` [..., L, K]: float32[..., L, num_states]."""
        x0_probs = _check_x0_probs(x0_probs, self.vocab_size)
        t = sequence_times(t, x0_probs[..., 0])
        a = self.schedule.alpha(t)[..., None, None]
        one_minus_a = self.schedule.one_minus_alpha(t)[..., None, None]
        return a * _pad_states(x0_probs, self.num_states) + one_minus_a * self.prior_probs()

    def transition_probs(self, x_s: ArrayLike, s: ArrayLike, t: ArrayLike) -> Array:
        """q(x_t | x_s) for states ``x_s`` [..., L] and s <= t: float32[..., L, num_states]."""
        x_s = jnp.asarray(x_s, jnp.int32)
        s, t = sequence_times(s, x_s), sequence_times(t, x_s)
        r = self._alpha_ratio(s, t)[..., None, None]
        return r * onehot(x_s, self.num_states) + (1.0 - r) * self.prior_probs()

    def sample(self, key: Array, x0: ArrayLike, t: ArrayLike) -> Array:
        """Draws ``x_t ~ q(x_t | x0)``; x0 int32[..., L], t float32[...]: int32[..., L]."""
        x0 = self.check_x0(x0)
        t = sequence_times(t, x0)
        k_keep, k_noise = jax.random.split(key)
        keep = jax.random.uniform(k_keep, x0.shape) < self.schedule.alpha(t)[..., None]
        return jnp.where(keep, x0, self.prior_sample(k_noise, x0.shape))

    def dense_transition_matrix(self, s: float, t: float) -> Array:
        """q(x_t = n | x_s = m) as a [num_states, num_states] matrix, for tests at small K."""
        r = self._alpha_ratio(jnp.float32(s), jnp.float32(t))
        return r * jnp.eye(self.num_states) + (1.0 - r) * self.prior_probs()[None, :]

    def _alpha_ratio(self, s: Array, t: Array) -> Array:
        a_s = self.schedule.alpha(s)
        return self.schedule.alpha(t) / jnp.maximum(a_s, _TINY)

    # -- the posterior as seen from x_t -----------------------------------

    def _weights(self, x_t: Array, x0_probs: Array, t: Array) -> tuple[Array, Array]:
        """w_k = p~(k) / q_t(x_t | k) over states, and W = sum_k w_k.

        ``p~`` is ``x0_probs`` restricted to values of x0 that can produce ``x_t``.
        """
        n = self.num_states
        a = self.schedule.alpha(t)[..., None, None]
        one_minus_a = self.schedule.one_minus_alpha(t)[..., None, None]
        pi = self.prior_probs()
        lik = one_minus_a * pi[x_t][..., None] + a * onehot(x_t, n)  # q_t(x_t | k), over k
        is_data = jnp.arange(n) < self.vocab_size
        consistent = (lik > 0) & is_data
        p = _normalise_consistent(_pad_states(x0_probs, n), consistent)
        w = p / jnp.where(consistent, lik, 1.0)
        return w, w.sum(-1, keepdims=True)

    def score(self, x_t: ArrayLike, x0_probs: ArrayLike, t: ArrayLike) -> Array:
        """Concrete score p_t(x^{i<-y}) / p_t(x) implied by ``x0_probs``: float32[..., L, N].

        s_y = sum_k p(k) q_t(y | k) / q_t(x_t | k); the entry at y = x_t is 1. It is the true
        ratio wherever the forward rate into x_t is positive (pi(x_t) > 0), the entries that
        reverse rates and losses use. Where pi(x_t) = 0 (an unmasked token under masking)
        the sum only covers the x0 values that can produce x_t.
        """
        x_t = self.check_x_t(x_t)
        x0_probs = _check_x0_probs(x0_probs, self.vocab_size, x_t)
        t = sequence_times(t, x_t)
        w, w_sum = self._weights(x_t, x0_probs, t)
        a = self.schedule.alpha(t)[..., None, None]
        one_minus_a = self.schedule.one_minus_alpha(t)[..., None, None]
        return a * w + one_minus_a * self.prior_probs() * w_sum

    def posterior_probs(
        self,
        x_t: ArrayLike,
        x0_probs: ArrayLike,
        s: ArrayLike,
        t: ArrayLike,
        *,
        plugin: bool = False,
    ) -> Array:
        """q(x_s | x_t, x0) averaged under ``x0_probs``, s < t: float32[..., L, num_states].

        With ``plugin=True``, the plug-in form q(x_s | x_t, x0 = x0_probs) of D3PM / UDLM /
        Duo, which puts the probability vector in place of the one-hot x0.
        """
        x_t = self.check_x_t(x_t)
        x0_probs = _check_x0_probs(x0_probs, self.vocab_size, x_t)
        s, t = sequence_times(s, x_t), sequence_times(t, x_t)
        n = self.num_states
        pi = self.prior_probs()
        a_s = self.schedule.alpha(s)[..., None, None]
        r = self._alpha_ratio(s, t)[..., None, None]
        # q(x_t | x_s = j) as a function of j
        step_lik = r * onehot(x_t, n) + (1.0 - r) * pi[x_t][..., None]
        if plugin:
            unnorm = step_lik * (a_s * _pad_states(x0_probs, n) + (1.0 - a_s) * pi)
            return unnorm / jnp.maximum(unnorm.sum(-1, keepdims=True), _TINY)
        w, w_sum = self._weights(x_t, x0_probs, t)
        return step_lik * (a_s * w + (1.0 - a_s) * pi * w_sum)

    def plugin_posterior_probs(
        self, x_t: ArrayLike, x0_probs: ArrayLike, s: ArrayLike, t: ArrayLike
    ) -> Array:
        """The plug-in step q(x_s | x_t, x0 = x0_probs): float32[..., L, num_states]."""
        return self.posterior_probs(x_t, x0_probs, s, t, plugin=True)

    def forward_rate_into(self, x_t: ArrayLike, t: ArrayLike) -> Array:
        """R_t(y -> x_t) for any y != x_t (the same for every y here): float32[..., L].

        It is the weight of the score-entropy terms at each position.
        """
        x_t = jnp.asarray(x_t, jnp.int32)
        t = sequence_times(t, x_t)
        return self.schedule.sigma_bar_prime(t)[..., None] * self.prior_probs()[x_t]

    def forward_rates(self, x_t: ArrayLike, t: ArrayLike) -> Array:
        """Forward rates R_t(x_t -> y) = sigma_bar'(t) pi_y for y != x_t: float32[..., L, N]."""
        x_t = jnp.asarray(x_t, jnp.int32)
        t = sequence_times(t, x_t)
        rates = self.schedule.sigma_bar_prime(t)[..., None, None] * self.prior_probs()
        return jnp.where(onehot(x_t, self.num_states) > 0, 0.0, rates)

    def transition_likelihood(self, x_t: ArrayLike, s: ArrayLike, t: ArrayLike) -> Array:
        """q(x_t | x_s = y) for every state y, s <= t: float32[..., L, N]."""
        x_t = jnp.asarray(x_t, jnp.int32)
        s, t = sequence_times(s, x_t), sequence_times(t, x_t)
        r = self._alpha_ratio(s, t)[..., None, None]
        return r * onehot(x_t, self.num_states) + (1.0 - r) * self.prior_probs()[x_t][..., None]

    def undo_transition(self, v: ArrayLike, s: ArrayLike, t: ArrayLike) -> Array:
        """exp(-(sigma_bar(t) - sigma_bar(s)) Q) applied to v [..., L, N]: float32[..., L, N].

        The kernel from s to t is r I + (1 - r) 1 pi^T with r = a_t / a_s; its inverse is
        (I - (1 - r) 1 pi^T) / r, so the result is (v - (1 - r) pi sum(v)) / r.
        """
        v = jnp.asarray(v, jnp.float32)
        s, t = sequence_times(s, v[..., 0]), sequence_times(t, v[..., 0])
        r = self._alpha_ratio(s, t)[..., None, None]
        undone = v - (1.0 - r) * self.prior_probs() * v.sum(-1, keepdims=True)
        return undone / jnp.maximum(r, _TINY)

    def reverse_rates(self, x_t: ArrayLike, x0_probs: ArrayLike, t: ArrayLike) -> Array:
        """Reverse CTMC rates R^_t(x_t -> y) for every y: float32[..., L, num_states].

        R^(x -> y) = R_t(y -> x) s_y with s the score of ``x0_probs``; the entry at y = x_t
        is 0 (rates are off-diagonal; the stay probability is 1 - dt * sum).
        """
        x_t = self.check_x_t(x_t)
        x0_probs = _check_x0_probs(x0_probs, self.vocab_size, x_t)
        t = sequence_times(t, x_t)
        n = self.num_states
        w, w_sum = self._weights(x_t, x0_probs, t)
        pi = self.prior_probs()
        # beta * pi_x * (a w_y + (1 - a) pi_y W), with beta * a = -alpha' kept finite at a = 0.
        neg_da = -self.schedule.alpha_prime(t)[..., None, None]
        beta_one_minus_a = (self.schedule.sigma_bar_prime(t) * self.schedule.one_minus_alpha(t))[
            ..., None, None
        ]
        uniform_part = jnp.where(pi > 0, beta_one_minus_a * pi, 0.0) * w_sum
        rates = pi[x_t][..., None] * (neg_da * w + uniform_part)
        return jnp.where(onehot(x_t, n) > 0, 0.0, rates)


@pytree_dataclass
class Masking(Interpolating):
    """Masking (absorbing) noise: every token jumps to the mask id ``K`` (num_states = K + 1)."""

    vocab_size: int = static_field()
    schedule: schedules_lib.Schedule = schedules_lib.LogLinear()

    def __post_init__(self) -> None:
        _check_vocab(self.vocab_size)
        _check_schedule(self)

    @property
    def num_states(self) -> int:
        return self.vocab_size + 1

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    def prior_probs(self) -> Array:
        return onehot(jnp.int32(self.vocab_size), self.num_states)

    def prior_sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        del key
        return jnp.full(shape, self.vocab_size, jnp.int32)

    def posterior_probs(
        self,
        x_t: ArrayLike,
        x0_probs: ArrayLike,
        s: ArrayLike,
        t: ArrayLike,
        *,
        plugin: bool = False,
    ) -> Array:
        """Masked tokens unmask to v w.p. (a_s - a_t)/(1 - a_t) p(v); others stay (SUBS).

        The plug-in and mixture forms agree for masking; ``plugin`` is accepted for a
        uniform interface.
        """
        del plugin
        x_t = self.check_x_t(x_t)
        x0_probs = _check_x0_probs(x0_probs, self.vocab_size, x_t)
        s, t = sequence_times(s, x_t), sequence_times(t, x_t)
        one_minus_a_t = self.schedule.one_minus_alpha(t)
        unmask = (self.schedule.alpha(s) - self.schedule.alpha(t)) / one_minus_a_t
        masked = (x_t == self.mask_id)[..., None]
        data = jnp.where(masked, unmask[..., None, None] * x0_probs, onehot(x_t, self.vocab_size))
        stay = jnp.where(
            masked, (self.schedule.one_minus_alpha(s) / one_minus_a_t)[..., None, None], 0.0
        )
        return jnp.concatenate([data, stay], axis=-1)

    def unmask_rate(self, t: ArrayLike) -> Array:
        """-a'_t / (1 - a_t): the total reverse rate out of the mask at time t, [..., 1]."""
        return self.schedule.masking_rate(jnp.asarray(t, jnp.float32))[..., None]

    def unmask_probability(self, s: ArrayLike, t: ArrayLike) -> Array:
        """(a_s - a_t) / (1 - a_t): a masked token's chance to be decoded from t to s, [..., 1]."""
        s, t = jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32)
        oma_t = self.schedule.one_minus_alpha(t)
        unmask = (oma_t - self.schedule.one_minus_alpha(s)) / jnp.maximum(oma_t, _TINY)
        return unmask[..., None]

    def reverse_rates(self, x_t: ArrayLike, x0_probs: ArrayLike, t: ArrayLike) -> Array:
        """Masked tokens jump to data v at rate -a'/(1 - a) p(v); unmasked tokens never move."""
        x_t = self.check_x_t(x_t)
        x0_probs = _check_x0_probs(x0_probs, self.vocab_size, x_t)
        t = sequence_times(t, x_t)
        rate = self.schedule.masking_rate(t)[..., None, None]
        masked = (x_t == self.mask_id)[..., None]
        data = jnp.where(masked, rate * x0_probs, 0.0)
        return _pad_states(data, self.num_states)


@pytree_dataclass
class Uniform(Interpolating):
    """Uniform noise: a corrupted token is uniform over the K data tokens (num_states = K)."""

    vocab_size: int = static_field()
    schedule: schedules_lib.Schedule = schedules_lib.LogLinear()

    def __post_init__(self) -> None:
        _check_vocab(self.vocab_size)
        _check_schedule(self)

    @property
    def num_states(self) -> int:
        return self.vocab_size

    def prior_probs(self) -> Array:
        return jnp.full((self.vocab_size,), 1.0 / self.vocab_size, jnp.float32)

    def prior_sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        return jax.random.randint(key, shape, 0, self.vocab_size, jnp.int32)


@pytree_dataclass
class MarginalPrior(Interpolating):
    """Noise towards given marginals ``probs`` over the K data tokens (num_states = K)."""

    probs: Array
    schedule: schedules_lib.Schedule = schedules_lib.LogLinear()

    def __post_init__(self) -> None:
        arr = concrete(self.probs)
        if arr is not None:
            check(
                arr.ndim == 1, f"probs must be a vector over the vocabulary, got shape {arr.shape}"
            )
            _check_vocab(arr.shape[0])
            validate_probs(arr, "probs")
            object.__setattr__(self, "probs", jnp.asarray(arr, jnp.float32))
        _check_schedule(self)

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.probs.shape[-1]

    @property
    def num_states(self) -> int:
        return self.vocab_size

    def prior_probs(self) -> Array:
        return self.probs


def _check_schedule(process: Any) -> None:
    """A TypeError naming ``schedule`` when it is a name (a str), not a schedule object.

    Only names are rejected: tree utilities rebuild processes with placeholder leaves, and
    a user schedule need not subclass ``Schedule`` (any object with ``alpha`` etc. works).
    """
    schedule = process.schedule
    if not isinstance(schedule, (str, bytes)):
        return
    names = [n for n in schedules_lib.__all__ if n not in ("Schedule", "d3pm_betas")]
    hint = next((n for n in names if str(schedule).replace("_", "").lower() == n.lower()), None)
    example = f"dd.schedules.{hint or 'LogLinear'}()"
    raise TypeError(
        f"{type(process).__name__}(schedule={schedule!r}): schedule must be a schedule object, "
        f"not a {type(schedule).__name__}; one of dd.schedules.{', dd.schedules.'.join(names)} "
        f"(e.g. schedule={example})"
    )


def _check_vocab(vocab_size: Any) -> None:
    check(
        isinstance(vocab_size, (int, np.integer)) and not isinstance(vocab_size, bool),
        f"vocab_size must be an int, got {vocab_size!r}",
        TypeError,
    )
    check(vocab_size >= 2, f"vocab_size must be >= 2, got {vocab_size}")


# --------------------------------------------------------------------------
# D3PM matrix family (discrete time)
# --------------------------------------------------------------------------


@pytree_dataclass
class D3PM(ProcessBase):
    """Discrete-time D3PM process with dense transition matrices.

    Attributes:
      q: float32[T + 1, N, N], ``q[t]`` = Q_t (row convention), ``q[0]`` = identity.
      qbar: float32[T + 1, N, N], ``qbar[t]`` = Q_1 ... Q_t, ``qbar[0]`` = identity.
      prior: float32[N], the distribution of x_T (average row of Qbar_T).
      vocab_size: K data tokens; N = K + 1 for absorbing, else K.
      num_steps: T.
      kind: the constructor's name.

    Build with :meth:`uniform`, :meth:`absorbing`, :meth:`gaussian` or
    :meth:`nearest_neighbor`; every ``t`` argument is an int32 step index.
    """

    q: Array
    qbar: Array
    prior: Array
    vocab_size: int = static_field()
    num_steps: int = static_field()
    kind: str = static_field(default="custom")
    absorbing_state: int | None = static_field(default=None)

    @property
    def num_states(self) -> int:
        return self.q.shape[-1]

    @property
    def mask_id(self) -> int | None:
        return self.absorbing_state

    @property
    def is_discrete_time(self) -> bool:
        return True

    def prior_probs(self) -> Array:
        """The law of x_T, float32[N]."""
        return self.prior

    # -- construction -----------------------------------------------------

    @classmethod
    def from_matrices(
        cls,
        step_matrices: np.ndarray,
        vocab_size: int,
        kind: str = "custom",
        absorbing_state: int | None = None,
    ) -> D3PM:
        """Builds the process from per-step matrices Q_1..Q_T, float[T, N, N] (rows sum to 1)."""
        mats = np.asarray(step_matrices, np.float64)
        check(
            mats.ndim == 3 and mats.shape[1] == mats.shape[2],
            f"step_matrices must have shape [T, N, N], got {mats.shape}",
        )
        validate_probs(mats, "step_matrices (rows of Q_t)", atol=1e-6)
        num_steps, n = mats.shape[0], mats.shape[1]
        q = np.concatenate([np.eye(n)[None], mats], axis=0)
        qbar = np.empty_like(q)
        qbar[0] = np.eye(n)
        for t in range(1, num_steps + 1):
            qbar[t] = qbar[t - 1] @ q[t]
        prior = qbar[num_steps][:vocab_size].mean(0)
        return cls(
            q=_to_float32(q),
            qbar=_to_float32(qbar),
            prior=_to_float32(prior / prior.sum()),
            vocab_size=int(vocab_size),
            num_steps=int(num_steps),
            kind=kind,
            absorbing_state=absorbing_state,
        )

    @classmethod
    def uniform(cls, vocab_size: int, num_steps: int, betas: np.ndarray | None = None) -> D3PM:
        """Q_t = (1 - b_t) I + b_t / K (default b_t: the cosine grid, as in D3PM)."""
        _check_vocab(vocab_size)
        betas = _betas(num_steps, betas, "cosine")
        k = vocab_size
        eye = np.eye(k)
        mats = (1 - betas)[:, None, None] * eye + betas[:, None, None] / k
        return cls.from_matrices(mats, k, "uniform")

    @classmethod
    def absorbing(cls, vocab_size: int, num_steps: int, betas: np.ndarray | None = None) -> D3PM:
        """Q_t = (1 - b_t) I + b_t 1 e_m^T, mask id m = K (default b_t = 1 / (T - t + 1))."""
        _check_vocab(vocab_size)
        betas = _betas(num_steps, betas, "mutual_information")
        n = vocab_size + 1
        to_mask = np.zeros((n, n))
        to_mask[:, vocab_size] = 1.0
        mats = (1 - betas)[:, None, None] * np.eye(n) + betas[:, None, None] * to_mask
        return cls.from_matrices(mats, vocab_size, "absorbing", absorbing_state=vocab_size)

    @classmethod
    def gaussian(
        cls,
        vocab_size: int,
        num_steps: int,
        bandwidth: int | None = None,
        betas: np.ndarray | None = None,
    ) -> D3PM:
        """Discretized Gaussian for ordinal data (pixel levels).

        Off-diagonal entries with |i - j| <= bandwidth are exp(-(2 (i - j) / (K - 1))**2 / b_t)
        normalised by the sum over the band (including 0); the diagonal takes the rest.
        Default b_t: linear from 0.02 to 1.0; default bandwidth: K - 1 (no band limit).
        """
        _check_vocab(vocab_size)
        k = vocab_size
        band = k - 1 if bandwidth is None else int(bandwidth)
        check(1 <= band <= k - 1, f"bandwidth must lie in 1..{k - 1}, got {bandwidth}")
        betas = _betas(num_steps, betas, "linear")
        offsets = np.arange(-band, band + 1, dtype=np.float64)
        diff = np.arange(k)[:, None] - np.arange(k)[None, :]
        in_band = (np.abs(diff) <= band) & (diff != 0)
        mats = np.empty((num_steps, k, k))
        for i, b in enumerate(betas):
            weights = np.exp(-((2 * diff / (k - 1)) ** 2) / b)
            z = np.exp(-((2 * offsets / (k - 1)) ** 2) / b).sum()
            m = np.where(in_band, weights / z, 0.0)
            m[np.diag_indices(k)] = 1.0 - m.sum(1)
            mats[i] = m
        return cls.from_matrices(mats, k, "gaussian")

    @classmethod
    def nearest_neighbor(
        cls,
        embeddings: np.ndarray,
        num_steps: int,
        k: int = 5,
        betas: np.ndarray | None = None,
        sinkhorn_iters: int = 100,
    ) -> D3PM:
        """Q_t = (1 - b_t) I + b_t M, M a Sinkhorn-normalised symmetric k-NN graph.

        Args:
          embeddings: float[K, d] token embeddings.
          k: neighbours per token (excluding itself).
        """
        emb = np.asarray(embeddings, np.float64)
        check(emb.ndim == 2, f"embeddings must have shape [K, d], got {emb.shape}")
        vocab = emb.shape[0]
        _check_vocab(vocab)
        check(1 <= k < vocab, f"k must lie in 1..{vocab - 1}, got {k}")
        betas = _betas(num_steps, betas, "mutual_information")
        dist = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(dist, np.inf)
        nbrs = np.argsort(dist, axis=1)[:, :k]
        adj = np.zeros((vocab, vocab))
        adj[np.arange(vocab)[:, None], nbrs] = 1.0
        m = np.maximum(adj, adj.T)
        for _ in range(sinkhorn_iters):  # symmetric doubly stochastic by alternating scaling
            m = m / m.sum(1, keepdims=True)
            m = m / m.sum(0, keepdims=True)
        m = 0.5 * (m + m.T)
        m = m / m.sum(1, keepdims=True)
        mats = (1 - betas)[:, None, None] * np.eye(vocab) + betas[:, None, None] * m
        return cls.from_matrices(mats, vocab, "nearest_neighbor")

    # -- forward ----------------------------------------------------------

    def check_steps(self, t: ArrayLike, x: Array, name: str = "t", lo: int = 0) -> Array:
        """``t`` as int32 step indices, one per sequence of ``x``, checked in lo..T."""
        t = sequence_times(t, x, jnp.int32)
        arr = concrete(t)
        if arr is not None and arr.size:
            check(
                arr.min() >= lo and arr.max() <= self.num_steps,
                f"{name} must be step indices in {lo}..{self.num_steps}, "
                f"got [{arr.min()}, {arr.max()}]",
            )
        return t

    def marginal_probs(self, x0_probs: ArrayLike, t: ArrayLike) -> Array:
        """q(x_t | x0) averaged under ``x0_probs`` [..., L, K]: float32[..., L, N]."""
        x0_probs = _check_x0_probs(x0_probs, self.vocab_size)
        t = self.check_steps(t, x0_probs[..., 0])
        p = _pad_states(x0_probs, self.num_states)
        return jnp.einsum("...ln,...nm->...lm", p, self.qbar[t])

    def transition_probs(self, x_s: ArrayLike, s: ArrayLike, t: ArrayLike) -> Array:
        """q(x_t | x_s) for s <= t: float32[..., L, N]."""
        x_s = jnp.asarray(x_s, jnp.int32)
        s, t = self.check_steps(s, x_s, "s"), self.check_steps(t, x_s)
        between = self._between(s, t)
        return jnp.take_along_axis(between, x_s[..., None], axis=-2)

    def sample(self, key: Array, x0: ArrayLike, t: ArrayLike) -> Array:
        """Draws ``x_t ~ q(x_t | x0)``; x0 int32[..., L], t int32[...]: int32[..., L]."""
        x0 = self.check_x0(x0)
        t = self.check_steps(t, x0)
        probs = jnp.take_along_axis(self.qbar[t], x0[..., None], axis=-2)  # [..., L, N]
        return categorical(key, jnp.log(probs))

    def prior_sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        """Draws x_T from ``prior`` independently per token: int32[shape]."""
        return categorical(key, jnp.broadcast_to(jnp.log(self.prior), (*shape, self.num_states)))

    def dense_transition_matrix(self, s: int, t: int) -> Array:
        """Q_{s+1} ... Q_t as a [N, N] matrix."""
        return self._between(jnp.int32(s), jnp.int32(t))

    def _between(self, s: Array, t: Array) -> Array:
        """Q_{s+1} ... Q_t for each batch entry: float32[..., N, N]."""
        eye = jnp.eye(self.num_states, dtype=jnp.float32)

        def product(s1: Array, t1: Array) -> Array:
            return jax.lax.fori_loop(s1 + 1, t1 + 1, lambda j, m: m @ self.q[j], eye)

        flat = jax.vmap(product)(s.reshape(-1), t.reshape(-1))
        return flat.reshape(*s.shape, *eye.shape)

    # -- reverse ----------------------------------------------------------

    def posterior_probs(
        self,
        x_t: ArrayLike,
        x0_probs: ArrayLike,
        s: ArrayLike,
        t: ArrayLike,
        *,
        plugin: bool = False,
    ) -> Array:
        """q(x_s | x_t, x0) averaged under ``x0_probs``, for steps s < t: float32[..., L, N].

        Mixture form: sum_k p~(k) Q_{s:t}[j, x_t] Qbar_s[k, j] / Qbar_t[k, x_t].
        ``plugin=True``: D3PM's form, proportional to Q_{s:t}[j, x_t] (p Qbar_s)_j.
        """
        x_t = self.check_x_t(x_t)
        x0_probs = _check_x0_probs(x0_probs, self.vocab_size, x_t)
        s, t = self.check_steps(s, x_t, "s"), self.check_steps(t, x_t)
        n = self.num_states
        p = _pad_states(x0_probs, n)
        between = self._between(s, t)  # [..., N, N]
        # step_lik[..., l, j] = Q_{s:t}[j, x_t[l]]
        step_lik = jnp.take_along_axis(jnp.swapaxes(between, -1, -2), x_t[..., None], axis=-2)
        qbar_s = self.qbar[s]
        if plugin:
            unnorm = step_lik * jnp.einsum("...lk,...kj->...lj", p, qbar_s)
            return unnorm / jnp.maximum(unnorm.sum(-1, keepdims=True), _TINY)
        lik = jnp.take_along_axis(
            jnp.swapaxes(self.qbar[t], -1, -2), x_t[..., None], axis=-2
        )  # q(x_t | x0 = k), over k
        consistent = (lik > 0) & (jnp.arange(n) < self.vocab_size)
        w = _normalise_consistent(p, consistent) / jnp.where(consistent, lik, 1.0)
        return step_lik * jnp.einsum("...lk,...kj->...lj", w, qbar_s)

    def plugin_posterior_probs(
        self, x_t: ArrayLike, x0_probs: ArrayLike, s: ArrayLike, t: ArrayLike
    ) -> Array:
        """D3PM's plug-in step, proportional to Q_{s:t}[j, x_t] (p Qbar_s)_j: [..., L, N]."""
        return self.posterior_probs(x_t, x0_probs, s, t, plugin=True)


def _to_float32(x: np.ndarray) -> Array:
    """float64 probabilities to float32, with subnormal results set to 0.

    XLA flushes float32 subnormals to zero on CPU and GPU while NumPy keeps them, so
    a subnormal entry would be a possible transition on the host and an impossible
    one on the device (the posterior's support would depend on where it runs).
    """
    x32 = np.asarray(x, np.float32)
    return jnp.asarray(np.where(x32 < np.finfo(np.float32).smallest_normal, 0.0, x32), jnp.float32)


def _betas(num_steps: int, betas: np.ndarray | None, default: str) -> np.ndarray:
    if betas is None:
        return schedules_lib.d3pm_betas(num_steps, default)
    check(
        not isinstance(betas, str),
        f"betas={betas!r}: betas is an array of num_steps noise levels, not a name; "
        f"use betas=dd.schedules.d3pm_betas({num_steps}, {betas!r})",
        TypeError,
    )
    betas = np.asarray(betas, np.float64)
    check(
        betas.shape == (num_steps,),
        f"betas must have shape ({num_steps},) for num_steps={num_steps}, got {betas.shape}",
    )
    check(
        np.all((betas >= 0) & (betas <= 1)),
        "betas must lie in [0, 1]",
    )
    return betas
