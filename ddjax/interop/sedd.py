"""SEDD checkpoints (louaaron/sedd-small, sedd-medium, SEDD's ``checkpoint.pth``) as a ddjax DiT.

The network is the references' DiT (:mod:`ddjax.interop.dit_weights`); what makes its
output SEDD's log-score is a head on the network's output, not an architecture change:
:func:`sedd_log_score` subtracts ``log(e^sigma - 1) + log(V - 1)`` (``scale_by_sigma``,
the absorbing graph) and sets the entry of each position's input token to 0 (the
log-score of staying put). ``apply`` feeds sigma = sigma_bar(t) (log-linear or
geometric noise) and returns that log-score over all states.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
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
    strip_prefix,
    write_checkpoint,
)
from ddjax.interop.dit_weights import (
    batch_times,
    build_dit,
    check_dit_config,
    check_reference_dit,
    dit_model_config,
    dit_state,
    jit_model,
)
from ddjax.models import DiT

__all__ = ["load_sedd", "save_sedd", "sedd_log_score"]


def sedd_log_score(out: Array, x_t: Array, sigma: Array, *, scale_by_sigma: bool) -> Array:
    """SEDD's log-score from its network's output, exactly as its code computes it.

    Args:
      out: float32[B, L, V] the network's output.
      x_t: int32[B, L] its input.
      sigma: float32[B] the total noise it was fed (sigma_bar(t)).
      scale_by_sigma: subtract ``log(e^sigma - 1) + log(V - 1)`` (SEDD's absorbing
        models; ``expm1`` below sigma = 0.5, as SEDD's code).

    Returns:
      float32[B, L, V], 0 at each position's input token (log 1: staying put).
    """
    sigma = jnp.asarray(sigma, jnp.float32)
    if scale_by_sigma:
        esigm1 = jnp.where(sigma < 0.5, jnp.expm1(sigma), jnp.exp(sigma) - 1.0)
        out = out - jnp.log(esigm1)[:, None, None] - jnp.log(out.shape[-1] - 1.0)
    return jnp.where(jax.nn.one_hot(x_t, out.shape[-1], dtype=bool), 0.0, out)


def _sedd_schedule(cfg: Mapping[str, Any], path: pathlib.Path) -> schedules.Schedule:
    kind = config_get(cfg, "noise.type", default="loglinear")
    if kind == "loglinear":
        return schedules.LogLinear(eps=1e-3)  # SEDD's LogLinearNoise fixes eps = 1e-3
    if kind == "geometric":
        return schedules.Geometric(
            sigma_min=float(config_require(cfg, path, "noise.sigma_min")),
            sigma_max=float(config_require(cfg, path, "noise.sigma_max")),
        )
    raise CheckpointError(f"unknown SEDD noise type {kind!r} in {path} (loglinear, geometric)")


def load_sedd(
    path: str | pathlib.Path,
    *,
    num_heads: int | None = None,
    ema: bool = True,
    weights_only: bool = True,
    dtype: Any = jnp.float32,
    precision: str | None = "highest",
) -> Pretrained:
    """Loads a SEDD checkpoint (louaaron/sedd-small, sedd-medium, or the repository's own).

    Args:
      path: the folder its ``PyTorchModelHubMixin`` writes (``config.json`` with
        ``graph.type``, ``noise``, ``tokens``, ``model.n_heads``, ``model.length``,
        ``model.scale_by_sigma``; ``model.safetensors`` or ``pytorch_model.bin``), or
        SEDD's training ``checkpoint.pth`` (needs torch and a config.json beside it).
      num_heads: override the config's head count.
      ema: read the EMA weights of a training checkpoint (what SEDD samples from).
      weights_only: for torch pickles (see :func:`ddjax.interop.load_mdlm`).
      dtype: matmul dtype.
      precision: float32 matmul precision inside ``apply`` (see :func:`ddjax.interop.load_mdlm`).

    Returns:
      :class:`Pretrained` with process ``Masking(tokens)`` (graph 'absorb') or
      ``Uniform(tokens)`` (graph 'uniform') under the checkpoint's noise; ``apply`` is
      SEDD's log-score over all states (sigma = sigma_bar(t); :func:`sedd_log_score` of
      the network's output), and ``denoiser`` converts it with
      :func:`ddjax.parameterizations.log_probs_from_log_score`. ``model`` is the bare
      network (its output before the log-score head).
    """
    path = pathlib.Path(path)
    cfg = read_config(path)
    state = read_state_dict(path, ema=ema, weights_only=weights_only)
    state = strip_prefix(state, ("module.", "score_model."))
    graph = config_get(cfg, "graph.type", default="absorb")
    if graph not in ("absorb", "uniform"):
        raise CheckpointError(f"unknown SEDD graph type {graph!r} in {path} (absorb, uniform)")
    absorb = graph == "absorb"
    fields = {
        "tokens": ("tokens",),
        "width": ("model.hidden_size",),
        "cond_dim": ("model.cond_dim",),
        "n_blocks": ("model.n_blocks",),
        "n_heads": ("model.n_heads",),
    }
    check_dit_config(cfg, path, state, fields, num_heads=num_heads, mask_states=int(absorb))
    scale_by_sigma = bool(config_get(cfg, "model.scale_by_sigma", default=absorb))
    if scale_by_sigma and not absorb:
        raise CheckpointError("SEDD's scale_by_sigma is defined for the absorbing graph only")
    heads = num_heads or int(config_require(cfg, path, "model.n_heads"))
    length = int(config_get(cfg, "model.length", default=1024))
    model = build_dit(state, num_heads=heads, max_len=length, dtype=dtype)
    tokens = int(config_get(cfg, "tokens", default=model.vocab_size - int(absorb)))
    if model.vocab_size != tokens + int(absorb) or model.out_size != model.vocab_size:
        raise CheckpointError(
            f"'vocab_embed.embedding' has {model.vocab_size} rows and 'output_layer.linear."
            f"weight' {model.out_size}; a SEDD {graph} model over {tokens} tokens has "
            f"{tokens + int(absorb)} of both"
        )
    schedule = _sedd_schedule(cfg, path)
    if absorb:
        process: processes.Process = processes.Masking(vocab_size=tokens, schedule=schedule)
    else:
        process = processes.Uniform(vocab_size=tokens, schedule=schedule)

    def head(out: Array, x: Array, sigma: Array) -> Array:
        return sedd_log_score(out, x, sigma, scale_by_sigma=scale_by_sigma)

    net = jit_model(model, precision, head)

    def apply(x_t: ArrayLike, t: ArrayLike) -> Array:
        x_t = jnp.asarray(x_t, jnp.int32)
        return net(x_t, schedule.sigma_bar(batch_times(t, x_t)))

    def denoiser(x_t: Array, t: Array) -> Array:
        return parameterizations.log_probs_from_log_score(apply(x_t, t), x_t, t, process)

    return Pretrained(model, process, apply, denoiser, "sedd", cfg)


def save_sedd(
    model: DiT | Pretrained,
    path: str | pathlib.Path,
    *,
    graph: str | None = None,
    noise: Mapping[str, Any] | None = None,
    scale_by_sigma: bool | None = None,
) -> pathlib.Path:
    """Writes ``model`` in SEDD's hub layout (config.json + model.safetensors).

    Args:
      model: a :func:`ddjax.interop.reference_dit` with vocab = out = tokens + 1
        ('absorb') or tokens ('uniform'), or a :class:`Pretrained` from :func:`load_sedd`.
      graph: 'absorb' or 'uniform' (default: from the Pretrained, else 'absorb').
      noise: SEDD's noise config, e.g. ``{'type': 'loglinear'}`` or
        ``{'type': 'geometric', 'sigma_min': 1e-4, 'sigma_max': 20}``.
      scale_by_sigma: whether SEDD's code scales the network's output by sigma
        (:func:`sedd_log_score`); default: the Pretrained's config, else True exactly
        for 'absorb' (SEDD's default, and ddjax's ``score_entropy`` loss default).
    """
    base: Mapping[str, Any] = {}
    if isinstance(model, Pretrained):
        base = model.config
        model = model.model
    check_reference_dit(model, "sedd")
    graph = graph or config_get(base, "graph.type", default="absorb")
    absorb = graph == "absorb"
    if scale_by_sigma is None:
        scale_by_sigma = bool(config_get(base, "model.scale_by_sigma", default=absorb))
    if scale_by_sigma and not absorb:
        raise ValueError("SEDD's scale_by_sigma is defined for the absorbing graph only")
    noise = dict(noise or config_get(base, "noise", default={"type": "loglinear"}))
    n = len(model.blocks)
    config = {k: v for k, v in base.items() if k not in ("graph", "noise", "model", "tokens")}
    config.update(
        tokens=model.vocab_size - int(absorb),
        graph={**dict(config_get(base, "graph", default={})), "type": graph},
        noise=noise,
        model={**dit_model_config(model, base), "scale_by_sigma": scale_by_sigma},
    )
    return write_checkpoint(path, dit_state(model, n), config)
