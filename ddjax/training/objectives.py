"""Training objectives: a loss (a :class:`~ddjax.training.Loss`) bound to a network and
a process.

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

The losses are the entries of :data:`~ddjax.training.LOSSES` (``ddjax.training.loss_table``)
and any :class:`~ddjax.training.Loss` written elsewhere; their maths lives in
:mod:`ddjax.losses`, never inside a Flax module. Tokens are always flat ``[B, L]``; an
image model's ``apply_fn`` reshapes them itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from ddjax import losses
from ddjax.processes import Process, require
from ddjax.training.loss_table import LOSSES, Loss, per_row

__all__ = ["LOSSES", "Loss", "Objective"]

ApplyFn = Callable[..., Array]


@dataclasses.dataclass(frozen=True)
class Objective:
    """A loss bound to a network and a process.

    Attributes:
      spec: the loss, a :class:`~ddjax.training.Loss`, or the name of one in
        :data:`~ddjax.training.LOSSES` (replaced by its entry). ``name`` is its name.
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
      block_size: block losses ('block_masked_elbo', BD3-LM): positions per block. The
        network is called once as ``apply_fn(params, x_t, None, labels, x0=x0)``, a
        block-causal model's pass over [x_t ; x0] (``ddjax.models.DiT(block_size=...)``),
        with every block noised at its own time; it must be time-free
        (``time_conditioning=False``).
      mask_rate: BD3-LM's clipped schedule (beta, omega) for :meth:`loss` (training):
        noise levels with mask rate 1 - alpha(t) ~ U[beta, omega]
        (:func:`ddjax.losses.mask_rate_times`); :meth:`nelbo` always uses the full
        schedule. None (the default) is the ordinary uniform time. Continuous-time
        losses that draw times only.
    """

    spec: Loss | str
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
        if isinstance(self.spec, str):  # a name: its table entry
            if self.spec not in LOSSES:
                raise ValueError(f"unknown loss.name {self.spec!r}; known: {', '.join(LOSSES)}")
            object.__setattr__(self, "spec", LOSSES[self.spec])
        loss = self.spec
        if loss.needs:
            require(self.process, loss.needs, f"loss {loss.name!r}")
        if loss.blocks:
            bs = self.block_size
            if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
                raise ValueError(f"{loss.name} needs block_size >= 1, got {bs!r}")
            if self.time_conditioning:
                raise ValueError(
                    f"{loss.name} draws one time per block, which a network taking one "
                    "time per sequence cannot see: use time_conditioning=False"
                )
        elif self.block_size is not None:
            raise ValueError(
                f"block_size is for block losses ('block_masked_elbo'), not {loss.name!r}"
            )
        if self.mask_rate is not None:
            losses.check_mask_rate(self.mask_rate)
            if self.process is None or self.process.is_discrete_time or loss.time_free:
                raise ValueError(
                    "mask_rate (the clipped schedule) needs a continuous-time loss that draws "
                    f"times, not {loss.name!r}"
                )

    # -- what a loss function uses --------------------------------------------

    @property
    def name(self) -> str:
        """The loss's name."""
        return self.spec.name

    @property
    def is_exact(self) -> bool:
        """True when :meth:`loss` is the exact NLL (no noise to average over)."""
        return self.spec.exact

    def network(
        self,
        params: Any,
        x: Array,
        t: Array | None,
        labels: Array | None,
        dropout_key: Array | None = None,
    ) -> Array:
        """``apply_fn`` as float32[B, L, out]; ``t`` is dropped (None) when the network is
        not time-conditioned."""
        t_in = t if (self.time_conditioning and t is not None) else None
        if dropout_key is None:
            out = self.apply_fn(params, x, t_in, labels)
        else:
            out = self.apply_fn(params, x, t_in, labels, dropout_key=dropout_key)
        return out.astype(jnp.float32)

    def model_time(self, t: Array) -> Array:
        """The network's time input float32[B]: t itself, or the step index / T for D3PM."""
        if self.process.is_discrete_time:
            return t.astype(jnp.float32) / self.process.num_steps
        return t.astype(jnp.float32)

    def log_probs(self, out: Array, x_t: Array, t: Array) -> Array:
        """Network output to the denoiser contract log p(x0_i | x_t): float32[B, L, K]."""
        return self.spec.log_probs(self, out, x_t, t)

    def times(self, u: Array, train: bool) -> Array:
        """Noise levels float32[...] from uniforms ``u`` [...] in [0, 1): t in
        [t_min, 1 - t_min], or the clipped schedule in training when ``mask_rate``."""
        if train and self.mask_rate is not None:
            return losses.mask_rate_times(u, self.process.schedule, self.mask_rate, self.t_min)
        return self.t_min + (1.0 - 2.0 * self.t_min) * u

    def block_times(self, u: Array, keys: Array, num_blocks: int, train: bool) -> Array:
        """Per-block times float32[B, num_blocks] from one uniform per sequence.

        Row i's blocks get u_ij = (u_i + pi_i(j) / num_blocks) mod 1 with a random
        permutation pi_i from the row's key: each u_ij is uniform when u_i is, and each
        row's blocks are stratified over [0, 1) (lower variance of the sum over blocks).
        """
        perm = per_row(
            keys,
            lambda k, _: jax.random.permutation(jax.random.fold_in(k, 0xB10C), num_blocks),
            u,
        )
        ub = (u[:, None] + perm.astype(jnp.float32) / num_blocks) % 1.0
        return self.times(ub, train)

    # -- the loss -------------------------------------------------------------

    def loss(self, params: Any, x0: Array, labels: Array | None, u: Array, keys: Array) -> Array:
        """Nats per sequence, float32[B]; for x0 int32[B, L], u float32[B] in [0, 1) and
        ``keys`` one PRNG key per sequence (uint32[B, 2] or typed keys [B]).

        Its expectation over ``u ~ U[0, 1)`` and ``keys`` is the negative ELBO (for
        'd3pm_hybrid' plus the auxiliary term; use :meth:`nelbo` for evaluation).
        """
        return self._nats(params, x0, labels, u, keys, train=True)

    def nelbo(self, params: Any, x0: Array, labels: Array | None, u: Array, keys: Array) -> Array:
        """Like :meth:`loss` but always the bound itself (no auxiliary terms)."""
        return self._nats(params, x0, labels, u, keys, train=False)

    def _nats(
        self,
        params: Any,
        x0: Array,
        labels: Array | None,
        u: Array,
        keys: Array,
        *,
        train: bool,
    ) -> Array:
        dkey = None
        if train and self.dropout:
            # One dropout key per (micro-)batch, derived from its first row's key.
            dkey = jax.random.fold_in(keys[0], 0x0D)
        x0 = x0.astype(jnp.int32)
        return self.spec.nats(self, params, x0, labels, u, keys, dkey, train)

    # -- sampling -------------------------------------------------------------

    def denoiser(self, params: Any, labels: Array | None = None) -> Callable[[Array, Array], Array]:
        """``denoiser(x_t int32[B, L], t float32[B] (int32 steps for D3PM)) -> log_probs``.

        For 'block_masked_elbo' this is the block-causal network's plain call: position i
        sees its own block and the earlier blocks of ``x_t`` as given, which is the block
        sampler's contract when those blocks are clean (``dd.samplers.block_diffusion``).
        """
        if self.process is None:
            raise ValueError("an autoregressive model has no denoiser; use sample_ar")

        def denoiser(x_t: Array, t: Array) -> Array:
            t = jnp.broadcast_to(jnp.asarray(t), x_t.shape[:1])
            model_t = None if self.spec.time_free else self.model_time(t)
            out = self.network(params, x_t, model_t, labels)
            return self.log_probs(out, x_t, t.astype(jnp.float32))

        return denoiser
