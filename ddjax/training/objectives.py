"""Training objectives: the loss named in a config, wired to a network and a process.

An :class:`Objective` turns a network ``apply_fn(params, x, t, labels) -> logits`` into

* ``loss(params, x0, labels, u, keys)``: nats per sequence, float32[B], an unbiased
  estimate of the negative ELBO (or exact NLL for ``ar``). ``u`` float32[B] in
  [0, 1) is the per-sequence uniform that picks the noise level (a time, a D3PM
  step index or a number of masked tokens), so training can pass antithetic
  uniforms and evaluation stratified ones; ``keys`` holds one PRNG key per
  sequence (``jax.random.split(key, B)``), so every row's noise is the same
  whether the batch is split into micro-batches or over devices.
* ``denoiser(params, labels)``: the ``denoiser(x_t, t) -> log_probs`` contract for
  the samplers.

Losses live here and in :mod:`ddjax.losses`, never inside a Flax module. Tokens
are always flat ``[B, L]``; an image model's ``apply_fn`` reshapes them itself.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from ddjax import losses, parameterizations, schedules
from ddjax.processes import D3PM, Masking, Process, Uniform, require

__all__ = ["LOSSES", "Objective", "make_process", "make_schedule", "output_size"]

ApplyFn = Callable[..., Array]

# config name -> (what the network outputs, which loss)
LOSSES = (
    "masked_elbo",
    "score_entropy",
    "uniform_elbo",
    "d3pm_hybrid",
    "d3pm_vb",
    "any_order_nll",
    "dfm",
    "ar",
    "block_masked_elbo",
)


def make_schedule(cfg: Any) -> schedules.Schedule:
    """A schedule from ``cfg.schedule`` ('loglinear', 'linear', 'cosine', 'polynomial',
    'geometric') and ``cfg.schedule_eps`` / ``cfg.schedule_power``."""
    name = cfg.schedule
    if name == "loglinear":
        return schedules.LogLinear(eps=float(cfg.schedule_eps))
    if name == "linear":
        return schedules.Linear()
    if name == "cosine":
        return schedules.Cosine()
    if name == "polynomial":
        return schedules.Polynomial(power=float(cfg.schedule_power))
    if name == "geometric":
        return schedules.Geometric()
    raise ValueError(
        f"unknown process.schedule {name!r}; known: loglinear, linear, cosine, polynomial, "
        "geometric"
    )


def make_process(cfg: Any, vocab_size: int) -> Process | None:
    """The forward process named by ``cfg.name``; None for 'none' (autoregressive).

    Names: 'masking', 'uniform' (continuous time); 'd3pm_absorbing', 'd3pm_uniform',
    'd3pm_gaussian' (discrete time, ``cfg.num_steps`` steps, ``cfg.bandwidth`` for the
    Gaussian, 0 meaning no band limit).
    """
    name = cfg.name
    if name == "none":
        return None
    if name == "masking":
        return Masking(vocab_size=vocab_size, schedule=make_schedule(cfg))
    if name == "uniform":
        return Uniform(vocab_size=vocab_size, schedule=make_schedule(cfg))
    if name == "d3pm_absorbing":
        return D3PM.absorbing(vocab_size, int(cfg.num_steps))
    if name == "d3pm_uniform":
        return D3PM.uniform(vocab_size, int(cfg.num_steps))
    if name == "d3pm_gaussian":
        band = int(cfg.bandwidth) or None
        return D3PM.gaussian(vocab_size, int(cfg.num_steps), bandwidth=band)
    raise ValueError(
        f"unknown process.name {name!r}; known: none, masking, uniform, d3pm_absorbing, "
        "d3pm_uniform, d3pm_gaussian"
    )


def output_size(loss: str, process: Process | None, vocab_size: int) -> int:
    """Width of the network's last axis: the process's states for score entropy
    (log-scores over every state), else the K data tokens."""
    if loss == "score_entropy":
        assert process is not None
        return process.num_states
    return vocab_size


def _per_row(keys: Array, fn: Callable[[Array, Array], Array], *xs: Array) -> Array:
    """``fn(key, row...)`` for each row with its own key (vmapped)."""
    return jax.vmap(fn)(keys, *xs)


def _uniform_to_index(u: Array, n: int) -> Array:
    """u in [0, 1) to an int32 in 1..n (uniform when u is)."""
    return jnp.clip(1 + jnp.floor(u * n).astype(jnp.int32), 1, n)


@dataclasses.dataclass(frozen=True)
class Objective:
    """A loss from :data:`LOSSES` bound to a network and a process.

    Attributes:
      name: one of :data:`LOSSES`.
      process: the forward process (None for 'ar').
      apply_fn: ``apply_fn(params, x, t, labels) -> float[B, L, out]`` with ``x``
        int32[B, L], ``t`` float32[B] or None (time-free networks), ``labels``
        int32[B] or None. For 'ar', ``x`` is the clean sequence and position i's
        logits may only depend on tokens before i.
      time_conditioning: whether the network receives ``t`` (False: it gets None).
      plugin: the papers' plug-in posterior (uniform_elbo, d3pm_*).
      aux_weight: D3PM hybrid cross-entropy weight.
      scale_by_sigma: SEDD with masking: log-score = output - log(expm1(sigma_bar(t)))
        - log K, so that an untrained network already has the right scale.
      t_min: times are drawn in [t_min, 1 - t_min].
      dropout: pass a ``dropout_key`` to ``apply_fn`` in :meth:`loss` (never in
        :meth:`nelbo` or the denoiser).
      block_size: 'block_masked_elbo' (BD3-LM): positions per block. The network is
        called once as ``apply_fn(params, x_t, None, labels, x0=x0)``, a block-causal
        model's pass over [x_t ; x0] (``ddjax.models.DiT(block_size=...)``), with every
        block noised at its own time; it must be time-free (``time_conditioning=False``).
      mask_rate: BD3-LM's clipped schedule (beta, omega) for :meth:`loss` (training):
        noise levels with mask rate 1 - alpha(t) ~ U[beta, omega]
        (:func:`ddjax.losses.mask_rate_times`); :meth:`nelbo` always uses the full
        schedule. None (the default) is the ordinary uniform time. Continuous-time
        losses only.
    """

    name: str
    process: Process | None
    apply_fn: ApplyFn
    time_conditioning: bool = True
    plugin: bool = False
    aux_weight: float = 0.01
    scale_by_sigma: bool = True
    t_min: float = 1e-5
    dropout: bool = False
    block_size: int | None = None
    mask_rate: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise ValueError(f"unknown loss.name {self.name!r}; known: {', '.join(LOSSES)}")
        needs = {
            "masked_elbo": Masking,
            "any_order_nll": Masking,
            "d3pm_hybrid": D3PM,
            "d3pm_vb": D3PM,
        }.get(self.name)
        if needs is not None and not isinstance(self.process, needs):
            raise ValueError(
                f"loss {self.name!r} needs a {needs.__name__} process, got "
                f"{type(self.process).__name__}"
            )
        if self.name in ("score_entropy", "uniform_elbo", "dfm") and (
            self.process is None or self.process.is_discrete_time
        ):
            raise ValueError(f"loss {self.name!r} needs a continuous-time process")
        if self.name == "block_masked_elbo":
            require(self.process, ("continuous_time", "mask", "schedule"), "block_masked_elbo")
            bs = self.block_size
            if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
                raise ValueError(f"block_masked_elbo needs block_size >= 1, got {bs!r}")
            if self.time_conditioning:
                raise ValueError(
                    "block_masked_elbo draws one time per block, which a network taking one "
                    "time per sequence cannot see: use time_conditioning=False"
                )
        elif self.block_size is not None:
            raise ValueError(f"block_size is for loss 'block_masked_elbo', not {self.name!r}")
        if self.mask_rate is not None:
            losses.check_mask_rate(self.mask_rate)
            if (
                self.process is None
                or self.process.is_discrete_time
                or self.name == "any_order_nll"
            ):
                raise ValueError(
                    "mask_rate (the clipped schedule) needs a continuous-time loss that draws "
                    f"times, not {self.name!r}"
                )

    # -- helpers -------------------------------------------------------------

    @property
    def is_exact(self) -> bool:
        """True when :meth:`loss` is the exact NLL (no noise to average over)."""
        return self.name == "ar"

    def _net(
        self,
        params: Any,
        x: Array,
        t: Array | None,
        labels: Array | None,
        dropout_key: Array | None = None,
    ) -> Array:
        t_in = t if (self.time_conditioning and t is not None) else None
        if dropout_key is None:
            out = self.apply_fn(params, x, t_in, labels)
        else:
            out = self.apply_fn(params, x, t_in, labels, dropout_key=dropout_key)
        return out.astype(jnp.float32)

    def _model_time(self, t: Array) -> Array:
        """The network's time input: t itself, or the step index / T for D3PM."""
        if self.process.is_discrete_time:
            return t.astype(jnp.float32) / self.process.num_steps
        return t.astype(jnp.float32)

    def _log_score(self, out: Array, t: Array) -> Array:
        if self.scale_by_sigma and self.process.mask_id is not None:
            sb = self.process.schedule.sigma_bar(t)
            shift = jnp.log(jnp.expm1(sb)) + math.log(self.process.vocab_size)
            return out - shift[:, None, None]
        return out

    def log_probs(self, out: Array, x_t: Array, t: Array) -> Array:
        """Network output to the denoiser contract log p(x0_i | x_t): float32[B, L, K]."""
        if self.name == "score_entropy":
            return parameterizations.log_probs_from_log_score(
                self._log_score(out, t), x_t, t, self.process
            )
        if self.name == "ar":
            return jax.nn.log_softmax(out, axis=-1)
        return parameterizations.logits_to_log_probs(out, x_t, self.process)

    # -- the loss -------------------------------------------------------------

    def loss(self, params: Any, x0: Array, labels: Array | None, u: Array, keys: Array) -> Array:
        """Nats per sequence, float32[B]; for x0 int32[B, L], u float32[B] in [0, 1) and
        ``keys`` one PRNG key per sequence (uint32[B, 2] or typed keys [B]).

        Its expectation over ``u ~ U[0, 1)`` and ``keys`` is the negative ELBO (for
        'd3pm_hybrid' plus the auxiliary term; use :meth:`nelbo` for evaluation).
        """
        return self._loss(params, x0, labels, u, keys, train=True)

    def nelbo(self, params: Any, x0: Array, labels: Array | None, u: Array, keys: Array) -> Array:
        """Like :meth:`loss` but always the bound itself (no auxiliary terms)."""
        return self._loss(params, x0, labels, u, keys, train=False)

    def _loss(
        self,
        params: Any,
        x0: Array,
        labels: Array | None,
        u: Array,
        keys: Array,
        *,
        train: bool,
    ) -> Array:
        x0 = x0.astype(jnp.int32)
        p = self.process
        dkey = None
        if train and self.dropout:
            # One dropout key per (micro-)batch, derived from its first row's key.
            dkey = jax.random.fold_in(keys[0], 0x0D)
        if self.name == "ar":
            out = self._net(params, x0, None, labels, dkey)
            return losses.cross_entropy(jax.nn.log_softmax(out, -1), x0)
        if self.name == "any_order_nll":
            seq_len = x0.shape[-1]
            k = _uniform_to_index(u, seq_len)
            scores = _per_row(keys, lambda k, _: jax.random.uniform(k, x0.shape[1:]), x0)
            rank = jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)
            mask = rank < k[:, None]
            x_t = jnp.where(mask, p.mask_id, x0)
            out = self._net(params, x_t, None, labels, dkey)
            log_probs = parameterizations.subs(out, x_t, p.mask_id)
            return losses.any_order_nll(log_probs, x0, mask)
        if p.is_discrete_time:
            t_index = _uniform_to_index(u, p.num_steps)
            x_t = _per_row(keys, lambda k, x, t: p.sample(k, x[None], t[None])[0], x0, t_index)
            out = self._net(params, x_t, self._model_time(t_index), labels, dkey)
            log_probs = parameterizations.logits_to_log_probs(out, x_t, p)
            if train and self.name == "d3pm_hybrid":
                return losses.d3pm_hybrid(
                    log_probs, x0, x_t, t_index, p, self.aux_weight, plugin=self.plugin
                )
            return losses.d3pm_vb(log_probs, x0, x_t, t_index, p, plugin=self.plugin)
        if self.name == "block_masked_elbo":
            return self._block_loss(params, x0, labels, u, keys, dkey, train=train)
        t = self._times(u.astype(jnp.float32), train)
        x_t = _per_row(keys, lambda k, x, tt: p.sample(k, x[None], tt[None])[0], x0, t)
        out = self._net(params, x_t, t, labels, dkey)
        if self.name == "score_entropy":
            return losses.score_entropy(self._log_score(out, t), x0, x_t, t, p)
        log_probs = self.log_probs(out, x_t, t)
        if self.name == "masked_elbo":
            return losses.masked_elbo(log_probs, x0, x_t, t, p)
        if self.name == "uniform_elbo":
            return losses.uniform_elbo(log_probs, x0, x_t, t, p, plugin=self.plugin)
        return losses.dfm_generalized_kl(log_probs, x0, x_t, t, p)

    def _times(self, u: Array, train: bool) -> Array:
        """Noise levels from uniforms: the clipped schedule in training when ``mask_rate``."""
        if train and self.mask_rate is not None:
            return losses.mask_rate_times(u, self.process.schedule, self.mask_rate, self.t_min)
        return self.t_min + (1.0 - 2.0 * self.t_min) * u

    def block_times(self, u: Array, keys: Array, num_blocks: int, train: bool) -> Array:
        """Per-block times float32[B, num_blocks] from one uniform per sequence.

        Row i's blocks get u_ij = (u_i + pi_i(j) / num_blocks) mod 1 with a random
        permutation pi_i from the row's key: each u_ij is uniform when u_i is, and each
        row's blocks are stratified over [0, 1) (lower variance of the sum over blocks).
        """
        perm = _per_row(
            keys,
            lambda k, _: jax.random.permutation(jax.random.fold_in(k, 0xB10C), num_blocks),
            u,
        )
        ub = (u[:, None] + perm.astype(jnp.float32) / num_blocks) % 1.0
        return self._times(ub, train)

    def _block_loss(
        self,
        params: Any,
        x0: Array,
        labels: Array | None,
        u: Array,
        keys: Array,
        dkey: Array | None,
        *,
        train: bool,
    ) -> Array:
        """BD3-LM: every block noised at its own time, one pass over [x_t ; x0]."""
        p, bs = self.process, self.block_size
        length = x0.shape[-1]
        if length % bs:
            raise ValueError(f"block_size {bs} must divide the sequence length {length}")
        nb = length // bs
        t = self.block_times(u.astype(jnp.float32), keys, nb, train)  # [B, nb]
        x_t = _per_row(keys, lambda k, x, tt: p.sample(k, x.reshape(nb, bs), tt).reshape(-1), x0, t)
        kwargs = {"x0": x0} if dkey is None else {"x0": x0, "dropout_key": dkey}
        out = self.apply_fn(params, x_t, None, labels, **kwargs).astype(jnp.float32)
        log_probs = parameterizations.logits_to_log_probs(out, x_t, p)
        return losses.block_masked_elbo(log_probs, x0, x_t, t, p, bs)

    # -- sampling -------------------------------------------------------------

    def denoiser(self, params: Any, labels: Array | None = None) -> Callable[[Array, Array], Array]:
        """``denoiser(x_t int32[B, L], t float32[B] (int32 steps for D3PM)) -> log_probs``.

        For 'block_masked_elbo' this is the block-causal network's plain call: position i
        sees its own block and the earlier blocks of ``x_t`` as given, which is the block
        sampler's contract when those blocks are clean (``dd.samplers.block_diffusion``).
        """
        if self.name == "ar":
            raise ValueError("an autoregressive model has no denoiser; use sample_ar")

        def denoiser(x_t: Array, t: Array) -> Array:
            t = jnp.broadcast_to(jnp.asarray(t), x_t.shape[:1])
            time_free = self.name == "any_order_nll"
            model_t = None if time_free else self._model_time(t)
            out = self._net(params, x_t, model_t, labels)
            return self.log_probs(out, x_t, t.astype(jnp.float32))

        return denoiser
