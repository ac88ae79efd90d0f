"""Flax NNX networks that map tokens to logits (no loss inside a module).

- :class:`DiT`: bidirectional transformer denoiser, rotary attention, adaLN-zero
  conditioning on time (optional) and class labels (optional, with a null class).
- :class:`CausalTransformer`: the same backbone with a causal mask, the autoregressive
  baseline and generative-perplexity evaluator (:func:`ar_log_likelihood`).
- :class:`UNet`: a small U-Net for 2-D pixel grids.
- :func:`block_denoiser`: a DiT as the block denoiser of
  :func:`ddjax.samplers.block_diffusion`, with or without the exact KV cache.
- :func:`build`: a model from an ``ml_collections`` config.
- :func:`split` / :func:`apply`: the functional form used inside ``jax.jit``
  (graphdef + params pytree in, arrays out; much cheaper per call than ``nnx.jit``).

Models hold only ``nnx.Param`` state; dropout randomness is passed per call as
``dropout_key``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
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
    "build",
    "init",
    "split",
    "apply",
    "num_params",
    "MODEL_NAMES",
]

MODEL_NAMES = ("dit", "ar", "unet")

M = TypeVar("M", bound=nnx.Module)

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def _get(cfg: Any, key: str, default: Any) -> Any:
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None and default is not None else value


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


def build(cfg: Any, vocab_size: int, out_size: int, *, seed: int = 0) -> nnx.Module:
    """Builds a model from a config.

    Args:
      cfg: an ``ml_collections.ConfigDict`` (or any mapping) with ``name`` in
        ``('dit', 'ar', 'unet')`` and, as needed, ``num_layers``, ``width``, ``num_heads``,
        ``max_len``, ``time_conditioning``, ``num_classes``, ``dtype`` ('float32' |
        'bfloat16'), ``dropout``, ``mlp_ratio``, ``remat``, ``attention_implementation``
        (transformers: None | 'xla' | 'cudnn'), ``block_size`` (DiT: block-causal
        attention, BD3-LM; None or 0 = full attention) and
        ``base_channels``, ``channel_mults`` (U-Net). Missing optional keys take the class
        defaults.
      vocab_size: number of input token ids (include the mask id for masking processes).
      out_size: logits per position (ignored by 'ar', which predicts ``vocab_size``).
      seed: initialisation seed.

    Returns:
      the initialised ``nnx.Module``.

    Raises:
      ValueError: unknown ``name`` or ``dtype``.
    """
    name = _get(cfg, "name", None)
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    dtype_name = _get(cfg, "dtype", "float32")
    if dtype_name not in _DTYPES:
        raise ValueError(f"unknown model dtype {dtype_name!r}; valid: {', '.join(_DTYPES)}")
    dtype = _DTYPES[dtype_name]
    num_classes = _get(cfg, "num_classes", None)
    num_classes = None if num_classes in (None, 0) else int(num_classes)
    dropout = float(_get(cfg, "dropout", 0.0))
    if name == "unet":
        kwargs = dict(
            vocab_size=vocab_size,
            out_size=out_size,
            base_channels=int(_get(cfg, "base_channels", 32)),
            channel_mults=tuple(int(m) for m in _get(cfg, "channel_mults", (1, 2))),
            num_classes=num_classes,
            time_conditioning=bool(_get(cfg, "time_conditioning", True)),
            dropout=dropout,
            dtype=dtype,
            in_channels=int(_get(cfg, "in_channels", 1)),
        )
        return init(lambda rngs: UNet(**kwargs, rngs=rngs), seed, cache_key=_key(UNet, kwargs))
    common = dict(
        num_layers=int(cfg["num_layers"]),
        width=int(cfg["width"]),
        num_heads=int(cfg["num_heads"]),
        max_len=int(cfg["max_len"]),
        num_classes=num_classes,
        mlp_ratio=int(_get(cfg, "mlp_ratio", 4)),
        dropout=dropout,
        dtype=dtype,
        remat=bool(_get(cfg, "remat", False)),
        attention_implementation=_get(cfg, "attention_implementation", None) or None,
    )
    if name == "ar":
        kwargs = dict(vocab_size=vocab_size, **common)
        cls = CausalTransformer
    else:
        time_conditioning = bool(_get(cfg, "time_conditioning", True))
        kwargs = dict(
            vocab_size=vocab_size, out_size=out_size, time_conditioning=time_conditioning, **common
        )
        block_size = _get(cfg, "block_size", None)
        if block_size:  # block-causal attention (BD3-LM); None / 0 = full attention
            kwargs["block_size"] = int(block_size)
        cls = DiT
    return init(lambda rngs: cls(**kwargs, rngs=rngs), seed, cache_key=_key(cls, kwargs))


def _key(cls: type, kwargs: dict[str, Any]) -> Hashable:
    return (cls, tuple(sorted((k, str(v)) for k, v in kwargs.items())))


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
