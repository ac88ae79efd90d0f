"""The training losses as a table: one :class:`Loss` entry per loss.

A :class:`Loss` says what a loss needs from the process (capabilities checked with
:func:`ddjax.processes.require`), how wide the network's output is, how the output
becomes the denoiser's log-probabilities, whether the loss is exact, time-free or
block-wise, and holds the function that computes it::

    nats(objective, params, x0, labels, u, keys, dropout_key, train) -> float32[B]

with ``x0`` int32[B, L], ``labels`` int32[B] or None, ``u`` float32[B] in [0, 1) (the
per-sequence uniform that picks the noise level), ``keys`` one PRNG key per sequence,
``dropout_key`` a key or None and ``train`` False for the bound itself (no auxiliary
terms, the full schedule). The function reaches the network and the process through the
:class:`~ddjax.training.Objective` it gets (``objective.network``, ``objective.times``,
``objective.process``, ...). :data:`LOSSES` holds the built-in entries; a loss written
outside ddjax is a ``Loss`` passed to ``Objective`` in place of a name.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jax import Array

from ddjax import losses, parameterizations
from ddjax.processes import Process

if TYPE_CHECKING:
    from ddjax.training.objectives import Objective

__all__ = [
    "LOSSES",
    "Loss",
    "data_tokens",
    "every_state",
    "logits_log_probs",
    "per_row",
    "sedd_log_score",
    "sample_rows",
    "uniform_to_index",
]

NatsFn = Callable[..., Array]
LogProbsFn = Callable[["Objective", Array, Array, Array], Array]


def data_tokens(process: Process | None, vocab_size: int) -> int:
    """Output width K: one logit per data token."""
    del process
    return vocab_size


def every_state(process: Process | None, vocab_size: int) -> int:
    """Output width N: one log-score per process state (score entropy)."""
    del vocab_size
    assert process is not None
    return process.num_states


def logits_log_probs(objective: Objective, out: Array, x_t: Array, t: Array) -> Array:
    """Logits to log p(x0 | x_t), float32[B, L, K]: SUBS with a mask, else log-softmax."""
    del t
    return parameterizations.logits_to_log_probs(out, x_t, objective.process)


@dataclasses.dataclass(frozen=True)
class Loss:
    """One training loss: its needs, its network output and the nats it computes.

    Attributes:
      name: the loss's name (``loss.name`` in a config, the key in :data:`LOSSES`).
      nats: ``nats(objective, params, x0, labels, u, keys, dropout_key, train)
        -> float32[B]`` (module doc); its mean over ``u ~ U[0, 1)`` and ``keys`` is the
        negative ELBO (``train=False``) or the training loss (``train=True``: may add
        auxiliary terms, e.g. D3PM hybrid's cross-entropy, and use ``mask_rate``).
      needs: process capabilities (:data:`ddjax.processes.CAPABILITIES`, plus
        'continuous_time' / 'mask', or any attribute name) checked with
        :func:`ddjax.processes.require` when an Objective is built.
      output_size: ``output_size(process, vocab_size) -> int``, the network's last axis.
      log_probs: ``log_probs(objective, out, x_t, t) -> float32[B, L, K]``, the network
        output ``out`` as the denoiser contract.
      exact: the loss is the exact NLL (nothing to average over: one evaluation pass).
      time_free: the network gets no time (the loss draws none; no ``mask_rate``).
      blocks: the loss draws one time per block of ``objective.block_size`` positions
        and calls a block-causal network once over [x_t ; x0] (BD3-LM).
    """

    name: str
    nats: NatsFn
    needs: tuple[str, ...] = ()
    output_size: Callable[[Process | None, int], int] = data_tokens
    log_probs: LogProbsFn = logits_log_probs
    exact: bool = False
    time_free: bool = False
    blocks: bool = False


# -- helpers for loss functions ----------------------------------------------------------


def per_row(keys: Array, fn: Callable[..., Array], *xs: Array) -> Array:
    """``fn(key, row...)`` for each row with its own key (vmapped): every row's noise is
    the same however the batch is split."""
    return jax.vmap(fn)(keys, *xs)


def uniform_to_index(u: Array, n: int) -> Array:
    """u float32[B] in [0, 1) to an int32[B] in 1..n (uniform when u is)."""
    return jnp.clip(1 + jnp.floor(u * n).astype(jnp.int32), 1, n)


def sample_rows(process: Process, keys: Array, x0: Array, t: Array) -> Array:
    """x_t ~ q(x_t | x0) row by row, each with its key: int32[B, L] for x0 int32[B, L],
    t [B]."""
    return per_row(keys, lambda k, x, tt: process.sample(k, x[None], tt[None])[0], x0, t)


def sedd_log_score(objective: Objective, out: Array, t: Array) -> Array:
    """SEDD's log-score: with ``scale_by_sigma`` and a mask state, the output offset by
    -log(expm1(sigma_bar(t))) - log K so an untrained network has the right scale."""
    p = objective.process
    if objective.scale_by_sigma and p.mask_id is not None:
        sb = p.schedule.sigma_bar(t)
        shift = jnp.log(jnp.expm1(sb)) + math.log(p.vocab_size)
        return out - shift[:, None, None]
    return out


def _score_log_probs(objective: Objective, out: Array, x_t: Array, t: Array) -> Array:
    return parameterizations.log_probs_from_log_score(
        sedd_log_score(objective, out, t), x_t, t, objective.process
    )


def _softmax_log_probs(objective: Objective, out: Array, x_t: Array, t: Array) -> Array:
    del objective, x_t, t
    return jax.nn.log_softmax(out, axis=-1)


# -- the built-in losses -------------------------------------------------------------------


def _ar(
    obj: Objective,
    params: Any,
    x0: Array,
    labels: Any,
    u: Array,
    keys: Array,
    dkey: Any,
    train: bool,
) -> Array:
    del u, keys, train
    out = obj.network(params, x0, None, labels, dkey)
    return losses.cross_entropy(jax.nn.log_softmax(out, -1), x0)


def _any_order_nll(
    obj: Objective,
    params: Any,
    x0: Array,
    labels: Any,
    u: Array,
    keys: Array,
    dkey: Any,
    train: bool,
) -> Array:
    del train
    p = obj.process
    k = uniform_to_index(u, x0.shape[-1])
    scores = per_row(keys, lambda key, _: jax.random.uniform(key, x0.shape[1:]), x0)
    rank = jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)
    mask = rank < k[:, None]
    x_t = jnp.where(mask, p.mask_id, x0)
    out = obj.network(params, x_t, None, labels, dkey)
    log_probs = parameterizations.subs(out, x_t, p.mask_id)
    return losses.any_order_nll(log_probs, x0, mask)


def _d3pm(hybrid: bool) -> NatsFn:
    def nats(
        obj: Objective,
        params: Any,
        x0: Array,
        labels: Any,
        u: Array,
        keys: Array,
        dkey: Any,
        train: bool,
    ) -> Array:
        p = obj.process
        t_index = uniform_to_index(u, p.num_steps)
        x_t = sample_rows(p, keys, x0, t_index)
        out = obj.network(params, x_t, obj.model_time(t_index), labels, dkey)
        log_probs = parameterizations.logits_to_log_probs(out, x_t, p)
        if train and hybrid:
            return losses.d3pm_hybrid(
                log_probs, x0, x_t, t_index, p, obj.aux_weight, plugin=obj.plugin
            )
        return losses.d3pm_vb(log_probs, x0, x_t, t_index, p, plugin=obj.plugin)

    return nats


def _continuous(
    of_output: Callable[[Objective, Array, Array, Array, Array], Array],
) -> NatsFn:
    """A continuous-time loss: t from u, x_t ~ q(x_t | x0), one network call, then
    ``of_output(objective, out, x0, x_t, t)``."""

    def nats(
        obj: Objective,
        params: Any,
        x0: Array,
        labels: Any,
        u: Array,
        keys: Array,
        dkey: Any,
        train: bool,
    ) -> Array:
        t = obj.times(u.astype(jnp.float32), train)
        x_t = sample_rows(obj.process, keys, x0, t)
        out = obj.network(params, x_t, t, labels, dkey)
        return of_output(obj, out, x0, x_t, t)

    return nats


def _masked_elbo(obj: Objective, out: Array, x0: Array, x_t: Array, t: Array) -> Array:
    return losses.masked_elbo(obj.log_probs(out, x_t, t), x0, x_t, t, obj.process)


def _score_entropy(obj: Objective, out: Array, x0: Array, x_t: Array, t: Array) -> Array:
    return losses.score_entropy(sedd_log_score(obj, out, t), x0, x_t, t, obj.process)


def _uniform_elbo(obj: Objective, out: Array, x0: Array, x_t: Array, t: Array) -> Array:
    log_probs = obj.log_probs(out, x_t, t)
    return losses.uniform_elbo(log_probs, x0, x_t, t, obj.process, plugin=obj.plugin)


def _dfm(obj: Objective, out: Array, x0: Array, x_t: Array, t: Array) -> Array:
    return losses.dfm_generalized_kl(obj.log_probs(out, x_t, t), x0, x_t, t, obj.process)


def _block_masked_elbo(
    obj: Objective,
    params: Any,
    x0: Array,
    labels: Any,
    u: Array,
    keys: Array,
    dkey: Any,
    train: bool,
) -> Array:
    """BD3-LM: every block noised at its own time, one pass over [x_t ; x0]."""
    p, bs = obj.process, obj.block_size
    length = x0.shape[-1]
    if length % bs:
        raise ValueError(f"block_size {bs} must divide the sequence length {length}")
    nb = length // bs
    t = obj.block_times(u.astype(jnp.float32), keys, nb, train)  # [B, nb]
    x_t = per_row(keys, lambda k, x, tt: p.sample(k, x.reshape(nb, bs), tt).reshape(-1), x0, t)
    kwargs = {"x0": x0} if dkey is None else {"x0": x0, "dropout_key": dkey}
    out = obj.apply_fn(params, x_t, None, labels, **kwargs).astype(jnp.float32)
    log_probs = parameterizations.logits_to_log_probs(out, x_t, p)
    return losses.block_masked_elbo(log_probs, x0, x_t, t, p, bs)


# The needs are those the ddjax.losses functions (and the denoiser's conversion) check.
_MASKED = ("continuous_time", "mask", "schedule")
_INTERPOLATING = ("continuous_time", "schedule", "prior_probs", "forward_rate_into")
_D3PM = ("qbar", "prior", "check_steps", "num_steps")

LOSSES: Mapping[str, Loss] = types.MappingProxyType(
    {
        loss.name: loss
        for loss in (
            Loss("masked_elbo", _continuous(_masked_elbo), _MASKED),
            Loss(
                "score_entropy",
                _continuous(_score_entropy),
                (*_INTERPOLATING, "score"),
                output_size=every_state,
                log_probs=_score_log_probs,
            ),
            Loss("uniform_elbo", _continuous(_uniform_elbo), _INTERPOLATING),
            Loss("d3pm_hybrid", _d3pm(hybrid=True), _D3PM),
            Loss("d3pm_vb", _d3pm(hybrid=False), _D3PM),
            Loss("any_order_nll", _any_order_nll, ("mask",), time_free=True),
            Loss("dfm", _continuous(_dfm), ("continuous_time", "schedule", "prior_probs")),
            Loss("ar", _ar, log_probs=_softmax_log_probs, exact=True, time_free=True),
            Loss("block_masked_elbo", _block_masked_elbo, _MASKED, blocks=True),
        )
    }
)
"""The built-in losses by name (read-only): masked_elbo, score_entropy, uniform_elbo,
d3pm_hybrid, d3pm_vb, any_order_nll, dfm, ar, block_masked_elbo."""
