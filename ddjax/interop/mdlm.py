"""MDLM checkpoints (kuleshov-group/mdlm-owt, MDLM's Lightning ``.ckpt``) as a ddjax DiT.

The network is the references' DiT (:mod:`ddjax.interop.dit_weights`) over the K + 1
states, mask last. ``apply`` feeds sigma = sigma_bar(t) under the log-linear schedule,
or 0 when the checkpoint is not time-conditioned (mdlm-owt is not), and returns the SUBS
log-probs over the K + 1 states (mask column and carried-over rows at -1e6, as in MDLM's
code: :func:`mdlm_subs`).
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from ddjax import parameterizations, processes, schedules
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
    dit_state,
    jit_model,
)
from ddjax.models import DiT

__all__ = ["load_mdlm", "mdlm_subs", "save_mdlm"]

MDLM_NEG_INFINITY = -1000000.0  # MDLM's Diffusion.neg_infinity


def mdlm_subs(logits: Array, x_t: Array, mask_id: int) -> Array:
    """MDLM's SUBS exactly as its code computes it: float32[B, L, K + 1].

    The mask column gets -1e6 added before the log-softmax; at unmasked positions every
    entry is -1e6 except 0 at the input token.
    """
    logits = logits.at[..., mask_id].add(MDLM_NEG_INFINITY)
    logits = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
    carry = jnp.where(jax.nn.one_hot(x_t, logits.shape[-1], dtype=bool), 0.0, MDLM_NEG_INFINITY)
    return jnp.where((x_t == mask_id)[..., None], logits, carry)


def load_mdlm(
    path: str | pathlib.Path,
    *,
    num_heads: int | None = None,
    time_conditioning: bool | None = None,
    eps: float = 1e-3,
    ema: bool = True,
    weights_only: bool = True,
    dtype: Any = jnp.float32,
    precision: str | None = "highest",
) -> Pretrained:
    """Loads an MDLM checkpoint (kuleshov-group/mdlm-owt and the repository's own).

    Args:
      path: the Hugging Face folder (``config.json`` with ``n_heads``, ``model_length``,
        ``time_conditioning``; ``model.safetensors`` or ``pytorch_model.bin`` with keys
        ``backbone.*``), a single safetensors / torch file of the same keys, or MDLM's
        Lightning ``.ckpt`` (needs torch; ``num_heads`` and ``time_conditioning`` then
        come from the keywords when there is no config.json).
      num_heads, time_conditioning: override or supply what config.json says.
      eps: the log-linear schedule's eps (MDLM's default 1e-3).
      ema: read the EMA weights of a Lightning checkpoint (what MDLM evaluates).
      weights_only: for torch pickles: True reads them without torch and without
        running pickled code (OmegaConf configs, tokenizers and other objects in a
        Lightning ``.ckpt`` are skipped as data); False uses ``torch.load(
        weights_only=False)`` (trusted files only). See :func:`read_state_dict`.
      dtype: matmul dtype of the network (float32 for exact logits).
      precision: float32 matmul precision inside ``apply`` ('highest': true float32, as
        the float32 reference; None: JAX's default, which may be TF32 on NVIDIA GPUs).

    Returns:
      :class:`Pretrained` with process ``Masking(K, LogLinear(eps))``, K = vocab - 1 (the
      mask is the last id, as in ddjax), ``apply`` = the SUBS log-probs over K + 1 states
      and ``denoiser`` = :func:`ddjax.parameterizations.subs` over K.

    Raises:
      CheckpointError: unknown / missing keys or mismatched shapes (the message names the
        key), a config.json size the weights contradict (it names the field), or a
        config without the head count.
    """
    path = pathlib.Path(path)
    cfg = read_config(path)
    state = backbone_state(read_state_dict(path, ema=ema, weights_only=weights_only))
    check_dit_config(cfg, path, state, HF_FIELDS, num_heads=num_heads)
    heads = num_heads or int(config_require(cfg, path, "n_heads", "model.n_heads"))
    length = int(config_get(cfg, "model_length", "model.length", default=1024))
    if time_conditioning is None:
        time_conditioning = bool(
            config_get(cfg, "time_conditioning", "algo.time_conditioning", default=False)
        )
    model = build_dit(state, num_heads=heads, max_len=length, dtype=dtype)
    vocab = model.vocab_size
    if model.out_size != vocab:
        raise CheckpointError(
            f"'output_layer.linear.weight' has {model.out_size} outputs for {vocab} input ids; "
            "MDLM predicts over its full vocabulary (mask included)"
        )
    mask_id = vocab - 1
    process = processes.Masking(vocab_size=mask_id, schedule=schedules.LogLinear(eps=eps))
    net = jit_model(model, precision)

    def apply(x_t: ArrayLike, t: ArrayLike) -> Array:
        x_t = jnp.asarray(x_t, jnp.int32)
        sigma = process.schedule.sigma_bar(batch_times(t, x_t))
        if not time_conditioning:
            sigma = jnp.zeros_like(sigma)
        return mdlm_subs(net(x_t, sigma), x_t, mask_id)

    def denoiser(x_t: Array, t: Array) -> Array:
        return parameterizations.subs(apply(x_t, t), x_t, mask_id)

    return Pretrained(model, process, apply, denoiser, "mdlm", cfg)


def save_mdlm(
    model: DiT | Pretrained,
    path: str | pathlib.Path,
    *,
    time_conditioning: bool = False,
) -> pathlib.Path:
    """Writes ``model`` in the mdlm-owt Hugging Face layout (``backbone.*`` safetensors).

    ``model`` must be a :func:`ddjax.interop.reference_dit` with vocab = out = K + 1. The
    config.json carries MDLMConfig's fields; ``time_conditioning`` says whether MDLM should feed
    sigma (False: sigma = 0, as mdlm-owt).
    """
    if isinstance(model, Pretrained):
        time_conditioning = bool(
            config_get(model.config, "time_conditioning", default=time_conditioning)
        )
        model = model.model
    check_reference_dit(model, "mdlm")
    n = len(model.blocks)
    width = model.embed.embedding.get_value().shape[1]
    config = {
        "architectures": ["MDLM"],
        "model_type": "mdlm",
        "vocab_size": model.vocab_size,
        "model_length": model.max_len,
        "hidden_dim": width,
        "cond_dim": model.time_embed.fc1.kernel.get_value().shape[1],
        "n_blocks": n,
        "n_heads": model.num_heads,
        "dropout": 0.1,
        "time_conditioning": time_conditioning,
    }
    return write_checkpoint(path, dit_state(model, n, "backbone."), config)
