"""The DiT as a block denoiser for :func:`ddjax.samplers.block_diffusion`, with and
without the exact KV cache.

:func:`block_denoiser` returns an object of the block-denoiser protocol
(:class:`ddjax.samplers.block_diffusion.BlockDenoiser`): ``init(batch) -> state``,
``__call__(state, x, t, block) -> float32[B, block_size, K]`` and
``commit(state, x, block) -> state``.

* ``cache=False`` recomputes the whole sequence at every call: positions after the block
  are set to the mask id (ignored by a block-causal model; for a bidirectional MDLM
  model this is semi-autoregressive, LLaDA-style, block decoding). Works for any DiT.
* ``cache=True`` keeps the clean prefix's keys and values in a fixed-size buffer
  (``model.init_cache``: per layer float32[B, max_len, heads, head_dim]): a call runs the
  network on the block's ``block_size`` positions only, reading the buffer
  (``cached_block(write=False)``), and ``commit`` writes the finished block's keys and
  values once (``cached_block``, one extra pass over the block). Shapes are static, so
  one compiled program serves every block and every length. Exact for a block-causal
  DiT whose ``block_size`` is the sampling block size.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from ddjax._struct import check
from ddjax.parameterizations import logits_to_log_probs

__all__ = ["DiTBlockDenoiser", "block_denoiser"]


@dataclasses.dataclass(frozen=True)
class DiTBlockDenoiser:
    """A DiT as a block denoiser (see the module docstring; build it with
    :func:`block_denoiser`). A pytree: ``params``, ``process`` and ``labels`` are its
    leaves, so it can be passed into ``jax.jit``.

    Attributes:
      graphdef, params: the model, split (``ddjax.models.split``).
      process: the masking process (mask id, SUBS output).
      block_size: positions per block.
      cache: use the KV cache.
      time_conditioning: feed the block's time to the network (False feeds t = 0, as
        BD3-LM samples; needed by the cache).
      labels: int32[B] class labels or None.
    """

    graphdef: Any
    params: Any
    process: Any
    block_size: int
    cache: bool
    time_conditioning: bool
    labels: Any = None

    def _model(self) -> Any:
        return nnx.merge(self.graphdef, self.params)

    def _time(self, t: Array, batch: int) -> Array:
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (batch,))
        return t if self.time_conditioning else jnp.zeros_like(t)

    def init(self, batch: int) -> Any:
        """The empty KV cache (cache=True) or None."""
        return self._model().init_cache(batch) if self.cache else None

    def __call__(self, state: Any, x: Array, t: Array, block: Array) -> Array:
        """log p(x0 | clean blocks < block, noisy block): float32[B, block_size, K]."""
        model = self._model()
        b, length = x.shape
        check(
            length <= model.max_len,
            f"sequence length {length} exceeds the model's max_len={model.max_len}",
        )
        start = jnp.asarray(block, jnp.int32) * self.block_size
        xb = jax.lax.dynamic_slice_in_dim(x, start, self.block_size, axis=1)
        if self.cache:
            logits, _ = model.cached_block(
                xb, self._time(t, b), state, start, self.labels, write=False
            )
        else:
            after = jnp.arange(length)[None, :] >= start + self.block_size
            x_in = jnp.where(after, self.process.mask_id, x)
            out = model(x_in, self._time(t, b), self.labels)
            logits = jax.lax.dynamic_slice_in_dim(out, start, self.block_size, axis=1)
        return logits_to_log_probs(logits, xb, self.process)

    def commit(self, state: Any, x: Array, block: Array) -> Any:
        """Writes the clean block's keys and values into the cache (cache=True)."""
        if not self.cache:
            return state
        start = jnp.asarray(block, jnp.int32) * self.block_size
        xb = jax.lax.dynamic_slice_in_dim(x, start, self.block_size, axis=1)
        _, state = self._model().cached_block(
            xb, self._time(jnp.zeros(()), x.shape[0]), state, start, self.labels
        )
        return state


jax.tree_util.register_dataclass(
    DiTBlockDenoiser,
    data_fields=["params", "process", "labels"],
    meta_fields=["graphdef", "block_size", "cache", "time_conditioning"],
)


def block_denoiser(
    model: Any,
    process: Any,
    *,
    block_size: int | None = None,
    cache: bool = True,
    time_conditioning: bool | None = None,
    labels: Any = None,
) -> DiTBlockDenoiser:
    """A DiT as a block denoiser for :func:`ddjax.samplers.block_diffusion`.

    Args:
      model: a :class:`ddjax.models.DiT` (or its ``(graphdef, params)`` split; pass
        the split inside ``jax.jit`` so the parameters are traced, not constants).
      process: the masking process the model was trained for.
      block_size: positions per block; default the model's ``block_size``.
      cache: the exact KV cache (needs a block-causal model with this block size, rotary
        positions, and a time-free network input: ``time_conditioning=False``).
      time_conditioning: pass the block's time to the network; default: whether the
        model has time conditioning. False feeds t = 0 (BD3-LM's sampling).
      labels: int32[B] class labels (class-conditional models) or None.

    Returns:
      a :class:`DiTBlockDenoiser`.
    """
    if isinstance(model, tuple):
        graphdef, params = model
        module = nnx.merge(graphdef, params)
    else:
        module = model
        graphdef, params = nnx.split(model, nnx.Param)
    check(
        not getattr(module, "causal", False),
        "block_denoiser needs a non-causal DiT (use dd.samplers.autoregressive for a causal one)",
        TypeError,
    )
    check(getattr(process, "mask_id", None) is not None, "block_denoiser needs a masking process")
    model_block = getattr(module, "block_size", None)
    block_size = model_block if block_size is None else block_size
    check(
        isinstance(block_size, int) and block_size >= 1,
        f"block_size must be a positive int (the model has none), got {block_size!r}",
    )
    if time_conditioning is None:
        time_conditioning = module.time_embed is not None
    if cache:
        check(
            model_block == block_size,
            f"the KV cache is exact only for a block-causal model with the sampling block "
            f"size: the model's block_size is {model_block}, sampling with {block_size}; "
            "pass cache=False",
        )
        check(
            not time_conditioning,
            "the KV cache stores the clean prefix's keys once, but a time-conditioned "
            "network's keys depend on each call's time: pass time_conditioning=False "
            "(t = 0, as BD3-LM) or cache=False",
        )
        check(
            module.pos_embed is None and module.bos is None,
            "the KV cache needs rotary positions and no BOS shift",
        )
    return DiTBlockDenoiser(
        graphdef, params, process, block_size, bool(cache), bool(time_conditioning), labels
    )
