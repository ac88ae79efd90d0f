"""Importance weights for the steering samplers (smc, svdd, edlm): checks, draws, resampling.

Shapes: B independent systems of N particles / candidates; log-weights float32[B, N].

NaN policy (every steering sampler): ``-inf`` is a valid log weight (weight 0; a system
whose weights are all ``-inf`` draws uniformly). NaN and ``+inf`` are errors: with
``debug=True`` a ``checkify`` check names the user function that returned them (outside
``jax.jit``; under jit wrap the call in ``checkify.checkify``); without it nothing is
checked inside the loop (no host sync): such a weight counts as 0 in the draws, and smc's
``info.log_normalizer`` of that row is NaN.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array
from jax.experimental import checkify

from ddjax._struct import check
from ddjax.random import categorical

__all__ = ["scores", "usable", "pick", "ess", "systematic", "select_rows", "repeat_rows"]


def scores(name: str, fn: Any, values: Any, rows: int, debug: bool = False) -> Array:
    """``values`` returned by the user function ``name`` on ``rows`` rows: float32[rows].

    The shape is checked at trace time (ValueError naming ``name``); with ``debug`` a
    checkify check rejects NaN and +inf inside the loop.
    """
    values = jnp.asarray(values)
    check(
        values.shape == (rows,),
        f"{name} must return float32[N] (one value per row, N = {rows}), got shape "
        f"{values.shape} from {getattr(fn, '__name__', fn)!r}",
    )
    check(
        jnp.issubdtype(values.dtype, jnp.floating) or jnp.issubdtype(values.dtype, jnp.integer),
        f"{name} must return real numbers, got dtype {values.dtype}",
    )
    values = values.astype(jnp.float32)
    if debug:
        checkify.check(
            jnp.all(~jnp.isnan(values) & (values != jnp.inf)),
            f"{name} returned NaN or +inf (-inf is allowed: weight 0)",
        )
    return values


def usable(log_w: Array) -> Array:
    """NaN and +inf replaced by -inf (weight 0), for the draws."""
    return jnp.where(jnp.isnan(log_w) | (log_w == jnp.inf), -jnp.inf, log_w)


def _uniform_if_empty(log_w: Array) -> Array:
    empty = jnp.all(log_w == -jnp.inf, axis=-1, keepdims=True)
    return jnp.where(empty, 0.0, log_w)


def pick(key: Array, log_w: Array) -> Array:
    """One index per system drawn with probability proportional to exp(log_w): int32[B]."""
    return categorical(key, _uniform_if_empty(usable(log_w)))


def ess(log_w: Array) -> Array:
    """Effective sample size (sum w)^2 / sum w^2 per system: float32[B] in [1, N]."""
    log_w = _uniform_if_empty(usable(log_w))
    w = jax.nn.softmax(log_w, axis=-1)
    return 1.0 / jnp.sum(w * w, axis=-1)


def systematic(key: Array, log_w: Array) -> Array:
    """Systematic resampling: N ancestor indices per system, int32[B, N].

    One uniform u per system; index j takes the particle whose cumulative normalised
    weight first exceeds (u + j) / N, so particle i gets floor or ceil of N w_i copies.
    """
    b, n = log_w.shape
    w = jax.nn.softmax(_uniform_if_empty(usable(log_w)), axis=-1)
    cdf = jnp.cumsum(w, axis=-1)
    u = jax.random.uniform(key, (b, 1))
    pos = (u + jnp.arange(n, dtype=jnp.float32)[None, :]) / n
    idx = jax.vmap(lambda c, p: jnp.searchsorted(c, p, side="right"))(cdf, pos)
    return jnp.minimum(idx, n - 1).astype(jnp.int32)


def select_rows(tree: Any, idx: Array) -> Any:
    """Rows ``b * N + idx[b, j]`` of every array in ``tree`` (leading axis B * N).

    ``idx`` is int32[B, N'] (the result has B * N' rows) or int32[B] (B rows).
    """
    flat = idx.ndim == 1
    idx = idx[:, None] if flat else idx
    b = idx.shape[0]

    def one(a: Array) -> Array:
        n = a.shape[0] // b
        rows = (jnp.arange(b, dtype=jnp.int32)[:, None] * n + idx).reshape(-1)
        return a[rows]

    return jax.tree.map(one, tree)


def repeat_rows(tree: Any, copies: int) -> Any:
    """Every row repeated ``copies`` times in place (row b -> rows b * copies + j)."""
    return jax.tree.map(lambda a: jnp.repeat(a, copies, axis=0), tree)
