"""Flax NNX networks that map tokens to logits (no loss inside a module).

- :class:`DiT`: bidirectional transformer denoiser, rotary attention, adaLN-zero
  conditioning on time (optional) and class labels (optional, with a null class).
- :class:`CausalTransformer`: the same backbone with a causal mask, the autoregressive
  baseline and generative-perplexity evaluator (:func:`ar_log_likelihood`).
- :class:`UNet`: a small U-Net for 2-D pixel grids.
- :func:`block_denoiser`: a DiT as the block denoiser of
  :func:`ddjax.samplers.block_diffusion`, with or without the exact KV cache.
- :func:`split` / :func:`apply`: the functional form used inside ``jax.jit``
  (graphdef + params pytree in, arrays out; much cheaper per call than ``nnx.jit``).

Models hold only ``nnx.Param`` state; dropout randomness is passed per call as
``dropout_key``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import jax
from flax import nnx

from ddjax.models.blocks import DiTBlockDenoiser, block_denoiser
from ddjax.models.transformer import CausalTransformer, DiT, ar_log_likelihood
from ddjax.models.unet import UNet

__all__ = [
    "DiT",
    "CausalTransformer",
    "UNet",
    "ar_log_likelihood",
    "block_denoiser",
    "DiTBlockDenoiser",
    "init",
    "split",
    "apply",
    "num_params",
]

M = TypeVar("M", bound=nnx.Module)

_INIT_CACHE: dict[Hashable, tuple[nnx.GraphDef, Callable[[jax.Array], nnx.State]]] = {}


def init(ctor: Callable[[nnx.Rngs], M], seed: int = 0, *, cache_key: Hashable = None) -> M:
    """Builds ``ctor(nnx.Rngs(params=seed))`` with its initialisers compiled as one program.

    Constructing an NNX module eagerly runs every initialiser op by op (each new shape is a
    separate compilation: seconds to tens of seconds on a CPU); this traces the
    constructor abstractly for the structure and runs the initialisers under ``jax.jit``.
    The parameters equal the eager construction's up to float rounding.

    Args:
      ctor: ``rngs -> module``.
      seed: initialisation seed.
      cache_key: if given, the compiled initialiser is kept under this key and reused by
        later calls with the same key (any seed); the key must determine the architecture.

    Example: ``model = init(lambda rngs: DiT(vocab_size=28, ..., rngs=rngs), seed=0)``.
    """
    entry = _INIT_CACHE.get(cache_key) if cache_key is not None else None
    if entry is None:
        graphdef, _ = nnx.split(nnx.eval_shape(lambda: ctor(nnx.Rngs(params=0))))
        # the key is an argument, not a constant, so every seed shares one compiled program
        make = jax.jit(lambda key: nnx.split(ctor(nnx.Rngs(params=key)))[1])
        entry = (graphdef, make)
        if cache_key is not None:
            if len(_INIT_CACHE) >= 16:
                _INIT_CACHE.pop(next(iter(_INIT_CACHE)))
            _INIT_CACHE[cache_key] = entry
    graphdef, make = entry
    return nnx.merge(graphdef, make(jax.random.key(seed)))


def split(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State]:
    """``nnx.split(model, nnx.Param)``: the static graph and the parameter pytree.

    The graphdef is hashable (usable as a static jit argument or a closure constant);
    the params are a pytree of float32 arrays for optax, Orbax and ``jax.jit``.

    Raises:
      ValueError: the model holds state other than ``nnx.Param`` (e.g. an ``nnx.Rngs``).
    """
    return nnx.split(model, nnx.Param)


def apply(graphdef: nnx.GraphDef, params: nnx.State, *args: Any, **kwargs: Any) -> Any:
    """Calls the model rebuilt from ``split``: ``nnx.merge(graphdef, params)(*args, **kwargs)``.

    Meant to run inside ``jax.jit`` (merging then costs nothing at run time), e.g.
    ``jax.jit(lambda p, x, t: apply(graphdef, p, x, t))``.
    """
    return nnx.merge(graphdef, params)(*args, **kwargs)


def num_params(params_or_model: nnx.Module | nnx.State) -> int:
    """Number of scalar parameters of a model or a params pytree."""
    if isinstance(params_or_model, nnx.Module):
        _, params_or_model = split(params_or_model)
    return int(sum(x.size for x in jax.tree.leaves(params_or_model)))
