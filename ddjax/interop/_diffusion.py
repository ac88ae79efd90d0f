"""MDLM, SEDD and Duo checkpoints as ddjax DiT models.

All three references share one network (the "DDiT" of SEDD, reused by MDLM and Duo):
token embedding, a sinusoidal embedding of the noise level sigma (not of t, and not
multiplied by 1000) through a SiLU MLP to a ``cond_dim`` vector, pre-norm blocks whose
layer norms carry a learned weight (no bias, epsilon 1e-5), adaLN modulation in the order
(shift, scale, gate) x (attention, MLP), non-interleaved rotary attention, a tanh-GELU
MLP, and a final adaLN + linear readout. In ddjax that is :class:`ddjax.models.DiT` with
``cond_dim``, ``time_scale=1``, ``norm='scale'``, ``norm_eps=1e-5`` (see
:data:`REFERENCE_DIT_OPTIONS`); SEDD adds ``scale_by_sigma`` and ``zero_at_input``.

What each reference feeds and returns (``apply``):
  MDLM: sigma = sigma_bar(t) under the log-linear schedule, or 0 when the checkpoint is
    not time-conditioned (mdlm-owt is not); returns the SUBS log-probs over the K + 1
    states (mask column and carried-over rows at -1e6, as in MDLM's code).
  SEDD: sigma = sigma_bar(t) (log-linear or geometric); returns the log-score over all
    states after its sigma scaling, 0 at the input token.
  Duo: sigma = -log alpha(t) under the log-linear schedule; returns log-softmax over K.
"""

from __future__ import annotations

import dataclasses
import pathlib
import types
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import Array
from jax.typing import ArrayLike

from ddjax import parameterizations, processes, schedules
from ddjax.interop._checkpoint import (
    CheckpointError,
    Entry,
    assign,
    check_config,
    config_value,
    extract,
    matmul_precision,
    read_config,
    read_state_dict,
    strip_prefix,
    write_checkpoint,
)
from ddjax.models import DiT

__all__ = [
    "Pretrained",
    "REFERENCE_DIT_OPTIONS",
    "reference_dit",
    "load_mdlm",
    "load_sedd",
    "load_duo",
    "load_bd3lm",
    "save_mdlm",
    "save_sedd",
    "save_duo",
    "save_bd3lm",
]

#: The DiT options that make a ddjax DiT the references' network.
REFERENCE_DIT_OPTIONS: Mapping[str, Any] = types.MappingProxyType(
    {"time_scale": 1.0, "norm": "scale", "norm_eps": 1e-5, "time_conditioning": True}
)

MDLM_NEG_INFINITY = -1000000.0  # MDLM's Diffusion.neg_infinity


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """A published checkpoint loaded into ddjax.

    Attributes:
      model: the ddjax network (:class:`ddjax.models.DiT` or ``CausalTransformer``).
      process: the forward process with the checkpoint's schedule (None for GPT-2).
      apply: ``(x_t int32[B, L], t float32[B]) -> float32[B, L, V]``, exactly what the
        reference network returns (see the module docstring); for GPT-2 ``t`` is ignored
        and the output is the logits; BD3-LM's also takes ``x0=`` (its training pass).
      denoiser: ``(x_t, t) -> float32[B, L, K]`` log p(x0 | x_t), the ddjax contract
        (None for GPT-2).
      kind: 'mdlm', 'sedd', 'duo', 'bd3lm' or 'gpt2'.
      config: the checkpoint's configuration as read (config.json).
    """

    model: nnx.Module
    process: processes.Process | None
    apply: Callable[..., Array]
    denoiser: Callable[[Array, Array], Array] | None
    kind: str
    config: Mapping[str, Any]


def reference_dit(
    *,
    vocab_size: int,
    out_size: int,
    num_layers: int,
    width: int,
    num_heads: int,
    cond_dim: int,
    max_len: int,
    mlp_ratio: int = 4,
    sedd: bool = False,
    abstract: bool = False,
    seed: int = 0,
    **options: Any,
) -> DiT:
    """A ddjax DiT with the references' architecture (train it in ddjax, export with save_*).

    Args:
      vocab_size, out_size: input ids and outputs (MDLM: K + 1 both; SEDD absorb: K + 1
        both; SEDD uniform and Duo: K both).
      num_layers, width, num_heads, cond_dim, max_len, mlp_ratio: network size.
      sedd: add SEDD's output scaling by sigma (absorbing) and the zero log-score at the
        input token.
      abstract: build shapes only (for loading: every parameter is then assigned).
      seed: initialisation seed.
      options: further :class:`ddjax.models.DiT` options (dtype, attention_implementation).
    """
    kwargs = dict(REFERENCE_DIT_OPTIONS)
    kwargs.update(
        vocab_size=vocab_size,
        out_size=out_size,
        num_layers=num_layers,
        width=width,
        num_heads=num_heads,
        cond_dim=cond_dim,
        max_len=max_len,
        mlp_ratio=mlp_ratio,
        zero_at_input=sedd,
    )
    kwargs.update(options)

    def ctor() -> DiT:
        return DiT(**kwargs, rngs=nnx.Rngs(params=seed))

    return nnx.eval_shape(ctor) if abstract else ctor()


def _dit_entries(num_layers: int) -> list[Entry]:
    e = [
        Entry("vocab_embed.embedding", ("embed", "embedding")),
        Entry("sigma_map.mlp.0.weight", ("time_embed", "fc1", "kernel"), True),
        Entry("sigma_map.mlp.0.bias", ("time_embed", "fc1", "bias")),
        Entry("sigma_map.mlp.2.weight", ("time_embed", "fc2", "kernel"), True),
        Entry("sigma_map.mlp.2.bias", ("time_embed", "fc2", "bias")),
    ]
    for i in range(num_layers):
        b, blk = f"blocks.{i}.", ("blocks", i)
        e += [
            Entry(b + "norm1.weight", (*blk, "norm1", "scale")),
            Entry(b + "attn_qkv.weight", (*blk, "attn", "qkv", "kernel"), True),
            Entry(b + "attn_out.weight", (*blk, "attn", "out", "kernel"), True),
            Entry(b + "norm2.weight", (*blk, "norm2", "scale")),
            Entry(b + "mlp.0.weight", (*blk, "fc1", "kernel"), True),
            Entry(b + "mlp.0.bias", (*blk, "fc1", "bias")),
            Entry(b + "mlp.2.weight", (*blk, "fc2", "kernel"), True),
            Entry(b + "mlp.2.bias", (*blk, "fc2", "bias")),
            Entry(b + "adaLN_modulation.weight", (*blk, "modulation", "linear", "kernel"), True),
            Entry(b + "adaLN_modulation.bias", (*blk, "modulation", "linear", "bias")),
        ]
    e += [
        Entry("output_layer.norm_final.weight", ("final_norm", "scale")),
        Entry(
            "output_layer.adaLN_modulation.weight", ("final_modulation", "linear", "kernel"), True
        ),
        Entry("output_layer.adaLN_modulation.bias", ("final_modulation", "linear", "bias")),
        Entry("output_layer.linear.weight", ("readout", "kernel"), True),
        Entry("output_layer.linear.bias", ("readout", "bias")),
    ]
    return e


# non-network entries of the references' wrappers (Lightning modules, HF models)
_WRAPPER_KEYS = ("noise.", "sampling_eps_min", "sampling_eps_max", "teacher.")


def _backbone(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The network's state dict: keys under 'backbone.' (wrapper buffers dropped), or all."""
    if not any(k.startswith("backbone.") for k in state):
        return dict(state)
    other = [k for k in state if not k.startswith("backbone.") and not k.startswith(_WRAPPER_KEYS)]
    if other:
        raise CheckpointError(
            f"unknown key(s) beside 'backbone.*': {', '.join(map(repr, other[:10]))}"
        )
    return {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}


def _rotary_inv_freq(head_dim: int) -> np.ndarray:
    return (1.0 / (10_000.0 ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))).astype(
        np.float32
    )


def _num_layers(state: Mapping[str, Any]) -> int:
    layers = {int(k.split(".")[1]) for k in state if k.startswith("blocks.")}
    if layers != set(range(len(layers))):
        raise CheckpointError(f"block indices are not 0..n-1: {sorted(layers)}")
    return len(layers)


def _shape(state: Mapping[str, np.ndarray], key: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"missing key in the checkpoint: {key!r}")
    return tuple(state[key].shape)


def _check_dit_config(
    cfg: Mapping[str, Any],
    path: pathlib.Path,
    state: Mapping[str, np.ndarray],
    fields: Mapping[str, tuple[str, ...]],
    *,
    num_heads: int | None = None,
    mask_states: int = 0,
) -> None:
    """Raises unless config.json's sizes are the weights' (the message names the field).

    ``fields`` maps what the weights hold ('vocab', 'out', 'tokens' = vocab -
    ``mask_states``, 'width', 'cond_dim', 'n_blocks', 'n_heads') to the field's
    spellings in this reference's config.json. 'n_heads' is checked against the rotary
    table (head size = 2 x its length) unless the ``num_heads`` keyword overrides it.
    """
    vocab, width = _shape(state, "vocab_embed.embedding")
    held = {
        "vocab": (vocab, "rows of 'vocab_embed.embedding'"),
        "tokens": (vocab - mask_states, f"rows of 'vocab_embed.embedding' less {mask_states}"),
        "out": (
            _shape(state, "output_layer.linear.weight")[0],
            "rows of 'output_layer.linear.weight'",
        ),
        "width": (width, "columns of 'vocab_embed.embedding'"),
        "cond_dim": (
            _shape(state, "sigma_map.mlp.0.weight")[0],
            "rows of 'sigma_map.mlp.0.weight'",
        ),
        "n_blocks": (_num_layers(state), "the 'blocks.<i>.*' keys"),
    }
    check_config(cfg, path, [(keys, *held[role]) for role, keys in fields.items() if role in held])
    key, heads = config_value(cfg, *fields.get("n_heads", ()))
    if key is None or num_heads is not None:
        return
    inv = state.get("rotary_emb.inv_freq")
    if inv is not None and inv.ndim == 1 and inv.size and width % (2 * inv.size) == 0:
        where = f"'rotary_emb.inv_freq' is the table of head size {2 * inv.size}, width {width}"
        check_config(cfg, path, [((key,), width // (2 * inv.size), where)])
    elif not isinstance(heads, int) or heads <= 0 or width % heads:
        raise CheckpointError(
            f"config.json of {path}: {key}={heads!r} does not divide the width {width} "
            "(columns of 'vocab_embed.embedding')"
        )


def _build_dit(
    state: Mapping[str, np.ndarray],
    *,
    num_heads: int,
    max_len: int,
    sedd: bool = False,
    scale_by_sigma: bool = False,
    block_size: int | None = None,
    dtype: Any = jnp.float32,
) -> DiT:
    """A DiT sized from the state dict's shapes and filled from it."""
    vocab, width = _shape(state, "vocab_embed.embedding")
    cond_dim = _shape(state, "sigma_map.mlp.0.weight")[0]
    out_size = _shape(state, "output_layer.linear.weight")[0]
    hidden = _shape(state, "blocks.0.mlp.0.weight")[0]
    num_layers = _num_layers(state)
    if hidden % width:
        raise CheckpointError(
            f"MLP width {hidden} of 'blocks.0.mlp.0.weight' is not a multiple of {width}"
        )
    model = reference_dit(
        vocab_size=vocab,
        out_size=out_size,
        num_layers=num_layers,
        width=width,
        num_heads=num_heads,
        cond_dim=cond_dim,
        max_len=max_len,
        mlp_ratio=hidden // width,
        sedd=sedd,
        scale_by_sigma=scale_by_sigma,
        block_size=block_size,
        abstract=True,
        dtype=dtype,
    )
    inv_freq = _rotary_inv_freq(width // num_heads)
    for key in [k for k in state if k.endswith("rotary_emb.inv_freq")]:
        if state[key].shape != inv_freq.shape or not np.allclose(state[key], inv_freq, rtol=1e-5):
            raise CheckpointError(
                f"{key!r} is not the base-10000 rotary table for head size {width // num_heads} "
                f"(num_heads={num_heads})"
            )
    assign(model, state, _dit_entries(num_layers), ignore=lambda k: k == "rotary_emb.inv_freq")
    return model


def _dit_model_config(model: DiT, base: Mapping[str, Any]) -> dict[str, Any]:
    """The ``model`` block of a SEDD / Duo config.json for ``model`` (over ``base``'s)."""
    return {
        **dict(_get(base, "model", default={})),
        "hidden_size": model.embed.embedding.get_value().shape[1],
        "cond_dim": model.time_embed.fc1.kernel.get_value().shape[1],
        "length": model.max_len,
        "n_blocks": len(model.blocks),
        "n_heads": model.num_heads,
        "dropout": _get(base, "model.dropout", default=0.1),
    }


def _dit_state(model: DiT, num_layers: int, prefix: str = "") -> dict[str, np.ndarray]:
    state = extract(model, _dit_entries(num_layers))
    head_dim = model.embed.embedding.get_value().shape[1] // model.num_heads
    state["rotary_emb.inv_freq"] = _rotary_inv_freq(head_dim)
    return {prefix + k: v for k, v in sorted(state.items())}


def _check_reference_dit(model: DiT, kind: str) -> None:
    """Raises unless the references' own code can load ``model`` as a ``kind`` network."""
    bad = []
    width = model.embed.embedding.get_value().shape[1]
    if model.blocks[0].fc1.kernel.get_value().shape[1] != 4 * width:
        bad.append("mlp_ratio=4 (the references' DDiTBlock fixes it)")
    if (model.block_size is not None) != (kind == "bd3lm"):
        bad.append("block_size only for BD3-LM")
    if model.zero_at_input != (kind == "sedd") or (model.scale_by_sigma and kind != "sedd"):
        bad.append("sedd=True exactly for SEDD")
    if model.time_embed is None or model.time_embed.scale != 1.0:
        bad.append("time_conditioning=True, time_scale=1.0")
    if model.blocks[0].norm1 is None or model.blocks[0].norm1.bias is not None:
        bad.append("norm='scale'")
    if model.blocks[0].norm_eps != 1e-5:
        bad.append("norm_eps=1e-5")
    if model.causal or model.pos_embed is not None or model.readout is None:
        bad.append("bidirectional rotary attention and an untied readout")
    if model.blocks[0].attn.rotary_interleaved:
        bad.append("rotary_interleaved=False")
    if model.label_embed is not None:
        bad.append("no classes")
    if bad:
        raise ValueError(
            "this DiT cannot be written in the reference layout; build it with "
            "ddjax.interop.reference_dit (needs " + "; ".join(bad) + ")"
        )


def _jit_model(model: nnx.Module, precision: str | None) -> Callable[[Array, Array], Array]:
    graphdef, params = nnx.split(model, nnx.Param)

    @jax.jit
    def run(params: nnx.State, x: Array, t: Array) -> Array:
        with matmul_precision(precision):
            return nnx.merge(graphdef, params)(x, t)

    return lambda x, t: run(params, x, t)


def _batch_times(t: ArrayLike, x: Array) -> Array:
    return jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))


def _get(cfg: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        node: Any = cfg
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            return node
    return default


def _require(cfg: Mapping[str, Any], path: pathlib.Path, *keys: str) -> Any:
    value = _get(cfg, *keys)
    if value is None:
        raise CheckpointError(
            f"config.json of {path} has none of {', '.join(map(repr, keys))} "
            "(needed for the architecture); pass it as a keyword"
        )
    return value


# --------------------------------------------------------------------------- MDLM

# config.json sizes of the Hugging Face layouts (MDLMConfig, BD3LMConfig; Duo's hub code
# writes these too) and of the references' own Hydra 'model' block
_HF_FIELDS: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {
        "vocab": ("vocab_size",),
        "out": ("vocab_size",),
        "width": ("hidden_dim", "model.hidden_size"),
        "cond_dim": ("cond_dim", "model.cond_dim"),
        "n_blocks": ("n_blocks", "model.n_blocks"),
        "n_heads": ("n_heads", "model.n_heads"),
    }
)


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
    state = _backbone(read_state_dict(path, ema=ema, weights_only=weights_only))
    _check_dit_config(cfg, path, state, _HF_FIELDS, num_heads=num_heads)
    heads = num_heads or int(_require(cfg, path, "n_heads", "model.n_heads"))
    length = int(_get(cfg, "model_length", "model.length", default=1024))
    if time_conditioning is None:
        time_conditioning = bool(
            _get(cfg, "time_conditioning", "algo.time_conditioning", default=False)
        )
    model = _build_dit(state, num_heads=heads, max_len=length, dtype=dtype)
    vocab = model.vocab_size
    if model.out_size != vocab:
        raise CheckpointError(
            f"'output_layer.linear.weight' has {model.out_size} outputs for {vocab} input ids; "
            "MDLM predicts over its full vocabulary (mask included)"
        )
    mask_id = vocab - 1
    process = processes.Masking(vocab_size=mask_id, schedule=schedules.LogLinear(eps=eps))
    net = _jit_model(model, precision)

    def apply(x_t: ArrayLike, t: ArrayLike) -> Array:
        x_t = jnp.asarray(x_t, jnp.int32)
        sigma = process.schedule.sigma_bar(_batch_times(t, x_t))
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

    ``model`` must be a :func:`reference_dit` with vocab = out = K + 1. The config.json
    carries MDLMConfig's fields; ``time_conditioning`` says whether MDLM should feed
    sigma (False: sigma = 0, as mdlm-owt).
    """
    if isinstance(model, Pretrained):
        time_conditioning = bool(_get(model.config, "time_conditioning", default=time_conditioning))
        model = model.model
    _check_reference_dit(model, "mdlm")
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
    return write_checkpoint(path, _dit_state(model, n, "backbone."), config)


# --------------------------------------------------------------------------- SEDD


def _sedd_schedule(cfg: Mapping[str, Any], path: pathlib.Path) -> schedules.Schedule:
    kind = _get(cfg, "noise.type", default="loglinear")
    if kind == "loglinear":
        return schedules.LogLinear(eps=1e-3)  # SEDD's LogLinearNoise fixes eps = 1e-3
    if kind == "geometric":
        return schedules.Geometric(
            sigma_min=float(_require(cfg, path, "noise.sigma_min")),
            sigma_max=float(_require(cfg, path, "noise.sigma_max")),
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
      weights_only: for torch pickles (see :func:`load_mdlm`).
      dtype: matmul dtype.
      precision: float32 matmul precision inside ``apply`` (see :func:`load_mdlm`).

    Returns:
      :class:`Pretrained` with process ``Masking(tokens)`` (graph 'absorb') or
      ``Uniform(tokens)`` (graph 'uniform') under the checkpoint's noise; ``apply`` is
      SEDD's log-score over all states (sigma = sigma_bar(t)), and ``denoiser`` converts
      it with :func:`ddjax.parameterizations.log_probs_from_log_score`.
    """
    path = pathlib.Path(path)
    cfg = read_config(path)
    state = read_state_dict(path, ema=ema, weights_only=weights_only)
    state = strip_prefix(state, ("module.", "score_model."))
    graph = _get(cfg, "graph.type", default="absorb")
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
    _check_dit_config(cfg, path, state, fields, num_heads=num_heads, mask_states=int(absorb))
    scale_by_sigma = bool(_get(cfg, "model.scale_by_sigma", default=absorb))
    if scale_by_sigma and not absorb:
        raise CheckpointError("SEDD's scale_by_sigma is defined for the absorbing graph only")
    heads = num_heads or int(_require(cfg, path, "model.n_heads"))
    length = int(_get(cfg, "model.length", default=1024))
    model = _build_dit(
        state,
        num_heads=heads,
        max_len=length,
        sedd=True,
        scale_by_sigma=scale_by_sigma,
        dtype=dtype,
    )
    tokens = int(_get(cfg, "tokens", default=model.vocab_size - int(absorb)))
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
    net = _jit_model(model, precision)

    def apply(x_t: ArrayLike, t: ArrayLike) -> Array:
        x_t = jnp.asarray(x_t, jnp.int32)
        return net(x_t, schedule.sigma_bar(_batch_times(t, x_t)))

    def denoiser(x_t: Array, t: Array) -> Array:
        return parameterizations.log_probs_from_log_score(apply(x_t, t), x_t, t, process)

    return Pretrained(model, process, apply, denoiser, "sedd", cfg)


def save_sedd(
    model: DiT | Pretrained,
    path: str | pathlib.Path,
    *,
    graph: str | None = None,
    noise: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Writes ``model`` in SEDD's hub layout (config.json + model.safetensors).

    Args:
      model: a :func:`reference_dit` built with ``sedd=True`` (and ``scale_by_sigma``
        for 'absorb'), or a :class:`Pretrained` from :func:`load_sedd`.
      graph: 'absorb' or 'uniform' (default: from the Pretrained, else 'absorb').
      noise: SEDD's noise config, e.g. ``{'type': 'loglinear'}`` or
        ``{'type': 'geometric', 'sigma_min': 1e-4, 'sigma_max': 20}``.
    """
    base: Mapping[str, Any] = {}
    if isinstance(model, Pretrained):
        base = model.config
        model = model.model
    _check_reference_dit(model, "sedd")
    if not model.zero_at_input:
        raise ValueError("a SEDD network has zero_at_input=True (build with sedd=True)")
    graph = graph or _get(base, "graph.type", default="absorb")
    absorb = graph == "absorb"
    noise = dict(noise or _get(base, "noise", default={"type": "loglinear"}))
    n = len(model.blocks)
    config = {k: v for k, v in base.items() if k not in ("graph", "noise", "model", "tokens")}
    config.update(
        tokens=model.vocab_size - int(absorb),
        graph={**dict(_get(base, "graph", default={})), "type": graph},
        noise=noise,
        model={**_dit_model_config(model, base), "scale_by_sigma": model.scale_by_sigma},
    )
    return write_checkpoint(path, _dit_state(model, n), config)


# --------------------------------------------------------------------------- Duo


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
      weights_only: for torch pickles (see :func:`load_mdlm`).
      dtype: matmul dtype.
      precision: float32 matmul precision inside ``apply`` (see :func:`load_mdlm`).

    Returns:
      :class:`Pretrained` with process ``Uniform(K, LogLinear(eps))``, ``apply`` = Duo's
      log-softmax output (sigma = -log alpha(t)) and ``denoiser`` = the same array (Duo's
      network predicts the clean token's distribution).
    """
    path = pathlib.Path(path)
    cfg = read_config(path)
    state = _backbone(read_state_dict(path, ema=ema, weights_only=weights_only))
    if _get(cfg, "algo.causal_attention", default=False):
        raise CheckpointError("causal Duo backbones (algo.causal_attention) are not supported")
    _check_dit_config(cfg, path, state, _HF_FIELDS, num_heads=num_heads)
    heads = num_heads or int(_require(cfg, path, "model.n_heads", "n_heads"))
    length = int(_get(cfg, "model.length", "model_length", default=1024))
    model = _build_dit(state, num_heads=heads, max_len=length, dtype=dtype)
    vocab = model.out_size
    process = processes.Uniform(vocab_size=vocab, schedule=schedules.LogLinear(eps=eps))
    net = _jit_model(model, precision)

    def apply(x_t: ArrayLike, t: ArrayLike) -> Array:
        x_t = jnp.asarray(x_t, jnp.int32)
        sigma = process.schedule.sigma_bar(_batch_times(t, x_t))
        return jax.nn.log_softmax(net(x_t, sigma), axis=-1)

    return Pretrained(model, process, apply, apply, "duo", cfg)


def save_duo(model: DiT | Pretrained, path: str | pathlib.Path) -> pathlib.Path:
    """Writes ``model`` in Duo's DIT hub layout (config.json + model.safetensors)."""
    base: Mapping[str, Any] = {}
    if isinstance(model, Pretrained):
        base = model.config
        model = model.model
    _check_reference_dit(model, "duo")
    n = len(model.blocks)
    config = {k: v for k, v in base.items() if k not in ("model", "vocab_size")}
    config.setdefault("algo", {"causal_attention": False})
    config.update(
        vocab_size=model.out_size,
        model=_dit_model_config(model, base),
    )
    return write_checkpoint(path, _dit_state(model, n), config)


# --------------------------------------------------------------------------- BD3-LM


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

    The network is MDLM's with block-causal attention: a :func:`reference_dit` with
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
      weights_only: for torch pickles (see :func:`load_mdlm`).
      dtype: matmul dtype.
      precision: float32 matmul precision inside ``apply`` (see :func:`load_mdlm`).

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
    if not _get(cfg, "cross_attn", default=True) or not _get(cfg, "adaln", default=True):
        raise CheckpointError("BD3-LM checkpoints without cross_attn or adaLN are not supported")
    if _get(cfg, "causal", default=False):
        raise CheckpointError("causal BD3-LM backbones (config causal=true) are not supported")
    state = _backbone(read_state_dict(path, ema=ema, weights_only=weights_only))
    _check_dit_config(cfg, path, state, _HF_FIELDS, num_heads=num_heads)
    heads = num_heads or int(_require(cfg, path, "n_heads", "model.n_heads"))
    block = block_size or int(_require(cfg, path, "block_size", "block_size"))
    length = int(_get(cfg, "model_length", "model.length", default=1024))
    if block <= 0 or length % block:
        raise CheckpointError(
            f"block_size={block} does not divide model_length={length} (config.json of {path})"
        )
    if time_conditioning is None:
        time_conditioning = bool(_get(cfg, "time_conditioning", default=False))
    model = _build_dit(state, num_heads=heads, max_len=length, block_size=block, dtype=dtype)
    mask_id = model.vocab_size - 1
    process = processes.Masking(vocab_size=mask_id, schedule=schedules.LogLinear(eps=eps))
    graphdef, params = nnx.split(model, nnx.Param)

    @jax.jit
    def run(params: nnx.State, x: Array, sigma: Array, x0: Array | None) -> Array:
        with matmul_precision(precision):
            return nnx.merge(graphdef, params)(x, sigma, x0=x0)

    def apply(x_t: ArrayLike, t: ArrayLike, x0: ArrayLike | None = None) -> Array:
        x_t = jnp.asarray(x_t, jnp.int32)
        sigma = process.schedule.sigma_bar(_batch_times(t, x_t))
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
    """Writes a block-causal :func:`reference_dit` in the bd3lm-owt Hugging Face layout."""
    base: Mapping[str, Any] = {}
    if isinstance(model, Pretrained):
        base = model.config
        time_conditioning = bool(_get(base, "time_conditioning", default=time_conditioning))
        model = model.model
    _check_reference_dit(model, "bd3lm")
    if model.block_size is None:
        raise ValueError("not a block-causal DiT: build it with reference_dit(block_size=...)")
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
    state = _dit_state(model, n, "backbone.")
    state["sampling_eps_min"] = np.asarray(config["sampling_eps_min"], np.float32)
    state["sampling_eps_max"] = np.asarray(config["sampling_eps_max"], np.float32)
    return write_checkpoint(path, state, config)
