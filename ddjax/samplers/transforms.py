"""Denoiser transforms: temperature, top-k, top-p, and the contract check at the boundary.

Each transform maps a denoiser ``(x_t, t) -> log p(x0 | x_t)`` to another, so they
compose with each other and with :mod:`ddjax.guidance` (optax-style: the user builds
the denoiser, every sampler takes it unchanged)::

    den = dd.samplers.top_p(dd.samplers.temperature(den, 0.8), 0.9)

The returned object is a :class:`Transformed`: the inner denoiser plus a transform of
x0 log-probability rows, float32[..., K] -> float32[..., K], that acts on each
position alone. Samplers that draw tokens at a few positions only (the masking fast
paths) apply that row transform to the gathered rows instead of to all B * L of
them. Values may be traced (``jax.vmap`` over temperatures works); ``top_k`` is a
static int (``lax.top_k`` needs it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jax import Array
from jax.experimental import checkify

from ddjax._struct import check, concrete
from ddjax.parameterizations import NEG_INF

__all__ = [
    "Denoiser",
    "RowTransform",
    "Transformed",
    "temperature",
    "top_k",
    "top_p",
    "normalise_rows",
    "temperature_rows",
    "top_k_rows",
    "top_p_rows",
    "split_rows",
    "compose_rows",
    "option_rows",
    "contract",
    "Checked",
    "OwnPosterior",
    "own_posterior",
]

Denoiser = Callable[[Array, Array], Array]
RowTransform = Callable[[Array], Array]


def _is_value(x: Any, value: float) -> bool:
    """True when ``x`` is concretely ``value`` (a traced value never is)."""
    arr = concrete(x)
    return arr is not None and arr.size == 1 and float(arr) == value


def normalise_rows(log_probs: Array) -> Array:
    """Renormalises log-probability rows with one logsumexp (exact rows are unchanged)."""
    return jax.nn.log_softmax(log_probs, axis=-1)


def temperature_rows(log_probs: Array, value: Any) -> Array:
    """softmax(log p / value): float32[..., K]; ``value`` may be traced.

    A traced value <= 0 gives NaN rows, which every draw turns into the invalid id -1
    (:data:`ddjax.random.INVALID`) instead of sampling a flipped law.
    """
    scaled = jnp.where(value > 0, log_probs / value, jnp.nan)
    return jax.nn.log_softmax(scaled, axis=-1)


def top_k_rows(log_probs: Array, k: int) -> Array:
    """Keeps the k largest entries of each row, renormalised (others NEG_INF)."""
    if k >= log_probs.shape[-1]:
        return log_probs
    kth = jax.lax.top_k(log_probs, k)[0][..., -1:]
    return jax.nn.log_softmax(jnp.where(log_probs >= kth, log_probs, NEG_INF), axis=-1)


def top_p_rows(log_probs: Array, p: Any) -> Array:
    """Nucleus truncation: the smallest prefix of sorted entries with mass >= p (at least one)."""
    sorted_lp = jnp.sort(log_probs, axis=-1)[..., ::-1]
    mass = jnp.exp(sorted_lp)
    keep_sorted = (jnp.cumsum(mass, axis=-1) - mass) < p
    cutoff = jnp.min(jnp.where(keep_sorted, sorted_lp, jnp.inf), axis=-1, keepdims=True)
    return jax.nn.log_softmax(jnp.where(log_probs >= cutoff, log_probs, NEG_INF), axis=-1)


def compose_rows(*transforms: RowTransform | None) -> RowTransform:
    """Applies the row transforms left to right (None entries are skipped)."""
    chain = [f for f in transforms if f is not None]

    def rows(log_probs: Array) -> Array:
        for f in chain:
            log_probs = f(log_probs)
        return log_probs

    return rows


@dataclasses.dataclass(frozen=True)
class Transformed:
    """A denoiser followed by a per-position transform of its log-probability rows."""

    denoiser: Denoiser
    rows: RowTransform

    def __call__(self, x_t: Array, t: Array) -> Array:
        return self.rows(self.denoiser(x_t, t))


def split_rows(denoiser: Denoiser) -> tuple[Denoiser, RowTransform | None]:
    """(the innermost denoiser, the composed row transforms around it) of nested transforms."""
    if isinstance(denoiser, Transformed):
        inner, rows = split_rows(denoiser.denoiser)
        return inner, compose_rows(rows, denoiser.rows)
    return denoiser, None


def _check_temperature(value: Any) -> None:
    arr = concrete(value)
    if arr is not None:
        check(arr.size == 1 and float(arr) > 0, f"temperature must be positive, got {value!r}")


def _check_top_k(k: Any) -> None:
    check(
        isinstance(k, int) and not isinstance(k, bool) and k >= 1,
        f"top_k must be a positive int (static), got {k!r}",
    )


def _check_top_p(p: Any) -> None:
    arr = concrete(p)
    if arr is not None:
        check(arr.size == 1 and 0 < float(arr) <= 1, f"top_p must lie in (0, 1], got {p!r}")


def temperature(denoiser: Denoiser, value: Any) -> Transformed:
    """The x0 distribution at temperature ``value`` > 0 (may be traced)."""
    _check_temperature(value)
    return Transformed(denoiser, lambda lp: temperature_rows(lp, value))


def top_k(denoiser: Denoiser, k: int) -> Transformed:
    """The x0 distribution restricted to its k most likely tokens (k a static int)."""
    _check_top_k(k)
    return Transformed(denoiser, lambda lp: top_k_rows(lp, k))


def top_p(denoiser: Denoiser, p: Any) -> Transformed:
    """The x0 distribution restricted to its nucleus of mass ``p`` in (0, 1] (may be traced)."""
    _check_top_p(p)
    return Transformed(denoiser, lambda lp: top_p_rows(lp, p))


def option_rows(
    temperature: Any = 1.0, top_k: int | None = None, top_p: Any = None
) -> RowTransform:
    """The samplers' ``temperature`` / ``top_k`` / ``top_p`` options as one row transform.

    Temperature first, then top-k, then top-p; defaults are skipped (1.0 and None only
    when concrete, so traced values always apply).
    """
    _check_temperature(temperature)
    if top_k is not None:
        _check_top_k(top_k)
    if top_p is not None:
        _check_top_p(top_p)
    temp = None if _is_value(temperature, 1.0) else (lambda lp: temperature_rows(lp, temperature))
    topk = None if top_k is None else (lambda lp: top_k_rows(lp, top_k))
    topp = None if top_p is None or _is_value(top_p, 1.0) else (lambda lp: top_p_rows(lp, top_p))
    return compose_rows(temp, topk, topp)


@runtime_checkable
class OwnPosterior(Protocol):
    """A denoiser that carries its own reverse step (a declared capability).

    ``posterior_probs(process, x_t, s, t, rows)`` is q(x_s | x_t) float32[B, L, N] from
    the denoiser's own parts, with ``rows`` (the row transforms the sampler applies: its
    renormalisation, the user's transforms, the temperature / top-k / top-p options)
    applied to each x0 distribution it uses. :func:`ddjax.guidance.cfg` with
    ``mode="posterior"`` returns one. The driver finds it through :class:`Transformed`
    wrappers; a sampler that cannot use it (``Step.uses_own_posterior`` False) is a
    TypeError, so the mode is never dropped silently.
    """

    def posterior_probs(
        self, process: Any, x_t: Array, s: Array, t: Array, rows: RowTransform
    ) -> Array: ...


def own_posterior(denoiser: Denoiser) -> OwnPosterior | None:
    """The innermost denoiser of ``denoiser``'s transforms when it has its own reverse step."""
    inner, _ = split_rows(denoiser)
    return inner if isinstance(inner, OwnPosterior) else None


@dataclasses.dataclass(frozen=True)
class Checked:
    """A denoiser whose output is checked against the contract (see :func:`contract`)."""

    denoiser: Denoiser
    vocab_size: int
    debug: bool = False

    def __call__(self, x_t: Array, t: Array) -> Array:
        out = self.denoiser(x_t, t)
        want = (*x_t.shape, self.vocab_size)
        shape = getattr(out, "shape", None)
        if shape != want:
            classes = "" if shape is None or len(shape) == 0 else f" ({shape[-1]} classes)"
            hint = (
                f"; log-probs are over the {self.vocab_size} data tokens, never the mask: "
                "convert network logits with dd.parameterizations.logits_to_log_probs"
                if shape is not None and len(shape) == len(want) and shape[:-1] == want[:-1]
                else ""
            )
            raise ValueError(
                f"the denoiser returned shape {shape}{classes} for x_t {tuple(x_t.shape)}; "
                f"expected {want} (process.vocab_size = {self.vocab_size}){hint}"
            )
        check(
            jnp.issubdtype(out.dtype, jnp.floating),
            f"the denoiser must return float log-probabilities, got dtype {out.dtype}",
        )
        out = out.astype(jnp.float32)
        if self.debug:
            checkify.check(
                ~jnp.any(jnp.isnan(out)), "the denoiser returned NaN at t = {t}", t=t.reshape(-1)[0]
            )
            checkify.check(
                ~jnp.any(out == jnp.inf),
                "the denoiser returned +inf at t = {t}",
                t=t.reshape(-1)[0],
            )
        return out


def contract(denoiser: Denoiser, vocab_size: int, *, debug: bool = False) -> Checked:
    """The denoiser with its output checked against the contract.

    The output must be float log-probabilities of shape [B, L, K] for x_t [B, L], K =
    ``vocab_size`` data tokens (never the mask): anything else is a ValueError at trace
    time, naming the shapes. With ``debug=True`` a ``checkify`` check reports NaN
    outputs from inside the compiled loop (see :func:`ddjax.samplers.driver.sample`).
    ``.denoiser`` is the unchecked one (e.g. to recognise a value function built on it).
    """
    return Checked(denoiser, vocab_size, debug)
