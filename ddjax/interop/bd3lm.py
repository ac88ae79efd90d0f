"""BD3-LM checkpoints (kuleshov-group/bd3lm-owt-block_size4/8/16, its ``.ckpt``) as a ddjax DiT.

The network is MDLM's (:mod:`ddjax.interop.mdlm`) with block-causal attention: the
references' DiT with ``block_size``. ``apply`` returns the SUBS log-probs of the
sampling pass (block-causal over ``x``), or with ``x0=`` of the training pass over
[x_t ; x0]; ``model.init_cache`` / ``model.cached_block`` give the exact KV cache.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import Array
from jax.typing import ArrayLike

from ddjax import parameterizations, processes, schedules
from ddjax.interop.checkpoint import (
    CheckpointError,
    Pretrained,
    config_get,
    config_require,
    matmul_precision,
    read_config,
    read_state_dict,
    write_checkpoint,
)
from ddjax.interop.dit_weights import (
    HF_FIELDS,
    backbone_state,
    batch_times,
    build_dit,
    check_dit_config,
    check_reference_dit,
    dit_state,
)
from ddjax.interop.mdlm import mdlm_subs
from ddjax.models import DiT

__all__ = ["load_bd3lm", "save_bd3lm"]


def load_bd3lm(
    path: str | pathlib.Path,
    *,
    num_heads: int | None = None,
    block_size: int | None = None,
    time_conditioning: bool | None = None,
    eps: float = 1e-3,
    ema: bool = True,
    weights_only: bool = True,
    dtype: Any = jnp.float32,
    precision: str | None = "highest",
) -> Pretrained:
    """Loads a BD3-LM checkpoint (kuleshov-group/bd3lm-owt-block_size4/8/16, or a .ckpt).

    The network is MDLM's with block-causal attention: a :func:`ddjax.interop.reference_dit` with
    ``block_size``.

    Args:
      path: the Hugging Face folder (BD3LMConfig's config.json: ``block_size``,
        ``n_heads``, ``model_length``, ``time_conditioning``, ``cross_attn``,
        ``adaln``; ``model.safetensors`` with ``backbone.*`` and the
        ``sampling_eps_min`` / ``max`` buffers), or the repository's Lightning ``.ckpt``
        (needs torch; pass ``num_heads`` and ``block_size`` without a config.json).
      num_heads, block_size, time_conditioning: override or supply the config.
      eps: the log-linear schedule's eps.
      ema: read the EMA weights of a Lightning checkpoint.
      weights_only: for torch pickles (see :func:`ddjax.interop.load_mdlm`).
      dtype: matmul dtype.
      precision: float32 matmul precision inside ``apply`` (see :func:`ddjax.interop.load_mdlm`).

    Returns:
      :class:`Pretrained` with process ``Masking(K, LogLinear(eps))`` and
      ``apply(x, t, x0=None)``: the SUBS log-probs over K + 1 of the reference's
      sampling pass (block-causal over ``x``: clean blocks, then the noisy block), or,
      with ``x0``, of its training pass over [x_t ; x0]; ``denoiser`` is the
      block-causal pass as ddjax log-probs over K. ``model.init_cache`` /
      ``model.cached_block`` give the exact KV cache of the reference's sampler.
    """
    path = pathlib.Path(path)
    cfg = read_config(path)
    if not config_get(cfg, "cross_attn", default=True) or not config_get(
        cfg, "adaln", default=True
    ):
        raise CheckpointError("BD3-LM checkpoints without cross_attn or adaLN are not supported")
    if config_get(cfg, "causal", default=False):
        raise CheckpointError("causal BD3-LM backbones (config causal=true) are not supported")
    state = backbone_state(read_state_dict(path, ema=ema, weights_only=weights_only))
    check_dit_config(cfg, path, state, HF_FIELDS, num_heads=num_heads)
    heads = num_heads or int(config_require(cfg, path, "n_heads", "model.n_heads"))
    block = block_size or int(config_require(cfg, path, "block_size", "block_size"))
    length = int(config_get(cfg, "model_length", "model.length", default=1024))
    if block <= 0 or length % block:
        raise CheckpointError(
            f"block_size={block} does not divide model_length={length} (config.json of {path})"
        )
    if time_conditioning is None:
        time_conditioning = bool(config_get(cfg, "time_conditioning", default=False))
    model = build_dit(state, num_heads=heads, max_len=length, block_size=block, dtype=dtype)
    mask_id = model.vocab_size - 1
    process = processes.Masking(vocab_size=mask_id, schedule=schedules.LogLinear(eps=eps))
    graphdef, params = nnx.split(model, nnx.Param)

    @jax.jit
    def run(params: nnx.State, x: Array, sigma: Array, x0: Array | None) -> Array:
        with matmul_precision(precision):
            return nnx.merge(graphdef, params)(x, sigma, x0=x0)

    def apply(x_t: ArrayLike, t: ArrayLike, x0: ArrayLike | None = None) -> Array:
        x_t = jnp.asarray(x_t, jnp.int32)
        sigma = process.schedule.sigma_bar(batch_times(t, x_t))
        if not time_conditioning:
            sigma = jnp.zeros_like(sigma)
        x0 = None if x0 is None else jnp.asarray(x0, jnp.int32)
        return mdlm_subs(run(params, x_t, sigma, x0), x_t, mask_id)

    def denoiser(x_t: Array, t: Array) -> Array:
        return parameterizations.subs(apply(x_t, t), x_t, mask_id)

    return Pretrained(model, process, apply, denoiser, "bd3lm", cfg)


def save_bd3lm(
    model: DiT | Pretrained, path: str | pathlib.Path, *, time_conditioning: bool = False
) -> pathlib.Path:
    """Writes a block-causal :func:`ddjax.interop.reference_dit` in the bd3lm-owt Hugging
    Face layout."""
    base: Mapping[str, Any] = {}
    if isinstance(model, Pretrained):
        base = model.config
        time_conditioning = bool(config_get(base, "time_conditioning", default=time_conditioning))
        model = model.model
    check_reference_dit(model, "bd3lm")
    if model.block_size is None:
        raise ValueError(
            "not a block-causal DiT: build it with ddjax.interop.reference_dit(block_size=...)"
        )
    n = len(model.blocks)
    config = {
        "architectures": ["BD3LM"],
        "model_type": "bd3lm",
        "attn_backend": "sdpa",
        "var_min": True,
        "sampling_eps_min": 1e-3,
        "sampling_eps_max": 0.999,
        "dropout": 0.1,
        **{k: v for k, v in base.items() if k not in ("transformers_version",)},
    }
    config.update(
        block_size=model.block_size,
        vocab_size=model.vocab_size,
        model_length=model.max_len,
        hidden_dim=model.embed.embedding.get_value().shape[1],
        cond_dim=model.time_embed.fc1.kernel.get_value().shape[1],
        n_blocks=n,
        n_heads=model.num_heads,
        cross_attn=True,
        adaln=True,
        causal=False,
        time_conditioning=time_conditioning,
    )
    state = dit_state(model, n, "backbone.")
    state["sampling_eps_min"] = np.asarray(config["sampling_eps_min"], np.float32)
    state["sampling_eps_max"] = np.asarray(config["sampling_eps_max"], np.float32)
    return write_checkpoint(path, state, config)
