"""Duo checkpoints (s-sahoo/duo, duo-distilled, Duo's Lightning ``.ckpt``) as a ddjax DiT.

The network is the references' DiT (:mod:`ddjax.interop.dit_weights`) over K tokens.
``apply`` feeds sigma = -log alpha(t) under the log-linear schedule and returns the
log-softmax over K (Duo's network predicts the clean token's distribution).
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from ddjax import processes, schedules
from ddjax.interop.checkpoint import (
    CheckpointError,
    Pretrained,
    config_get,
    config_require,
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
    dit_model_config,
    dit_state,
    jit_model,
)
from ddjax.models import DiT

__all__ = ["load_duo", "save_duo"]


def load_duo(
    path: str | pathlib.Path,
    *,
    num_heads: int | None = None,
    eps: float = 1e-3,
    ema: bool = True,
    weights_only: bool = True,
    dtype: Any = jnp.float32,
    precision: str | None = "highest",
) -> Pretrained:
    """Loads a Duo checkpoint (s-sahoo/duo, duo-distilled, or the repository's own).

    Args:
      path: a folder with ``config.json`` (Duo's DIT hub layout: ``model.n_heads``,
        ``model.length``; or the Hugging Face layout with ``n_heads``) and
        ``model.safetensors`` / ``pytorch_model.bin`` (keys with or without
        ``backbone.``), or Duo's Lightning ``.ckpt`` (needs torch).
      num_heads: override the config's head count.
      eps: the log-linear schedule's eps (Duo's default 1e-3).
      ema: read the EMA weights of a Lightning checkpoint.
      weights_only: for torch pickles (see :func:`ddjax.interop.load_mdlm`).
      dtype: matmul dtype.
      precision: float32 matmul precision inside ``apply`` (see :func:`ddjax.interop.load_mdlm`).

    Returns:
      :class:`Pretrained` with process ``Uniform(K, LogLinear(eps))``, ``apply`` = Duo's
      log-softmax output (sigma = -log alpha(t)) and ``denoiser`` = the same array (Duo's
      network predicts the clean token's distribution).
    """
    path = pathlib.Path(path)
    cfg = read_config(path)
    state = backbone_state(read_state_dict(path, ema=ema, weights_only=weights_only))
    if config_get(cfg, "algo.causal_attention", default=False):
        raise CheckpointError("causal Duo backbones (algo.causal_attention) are not supported")
    check_dit_config(cfg, path, state, HF_FIELDS, num_heads=num_heads)
    heads = num_heads or int(config_require(cfg, path, "model.n_heads", "n_heads"))
    length = int(config_get(cfg, "model.length", "model_length", default=1024))
    model = build_dit(state, num_heads=heads, max_len=length, dtype=dtype)
    vocab = model.out_size
    process = processes.Uniform(vocab_size=vocab, schedule=schedules.LogLinear(eps=eps))
    net = jit_model(model, precision)

    def apply(x_t: ArrayLike, t: ArrayLike) -> Array:
        x_t = jnp.asarray(x_t, jnp.int32)
        sigma = process.schedule.sigma_bar(batch_times(t, x_t))
        return jax.nn.log_softmax(net(x_t, sigma), axis=-1)

    return Pretrained(model, process, apply, apply, "duo", cfg)


def save_duo(model: DiT | Pretrained, path: str | pathlib.Path) -> pathlib.Path:
    """Writes ``model`` in Duo's DIT hub layout (config.json + model.safetensors)."""
    base: Mapping[str, Any] = {}
    if isinstance(model, Pretrained):
        base = model.config
        model = model.model
    check_reference_dit(model, "duo")
    n = len(model.blocks)
    config = {k: v for k, v in base.items() if k not in ("model", "vocab_size")}
    config.setdefault("algo", {"causal_attention": False})
    config.update(
        vocab_size=model.out_size,
        model=dit_model_config(model, base),
    )
    return write_checkpoint(path, dit_state(model, n), config)
