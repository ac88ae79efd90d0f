"""The references' shared network ("DDiT") as a ddjax DiT: builder, weight map, checks.

SEDD's network, reused by MDLM, Duo and BD3-LM: token embedding, a sinusoidal embedding
of the noise level sigma (not of t, and not multiplied by 1000) through a SiLU MLP to a
``cond_dim`` vector, pre-norm blocks whose layer norms carry a learned weight (no bias,
epsilon 1e-5), adaLN modulation in the order (shift, scale, gate) x (attention, MLP),
non-interleaved rotary attention, a tanh-GELU MLP, and a final adaLN + linear readout.
In ddjax that is :class:`ddjax.models.DiT` with ``cond_dim``, ``time_scale=1``,
``norm='scale'``, ``norm_eps=1e-5`` (:data:`REFERENCE_DIT_OPTIONS`); BD3-LM adds
``block_size``. What each family feeds the network and does with its output (SUBS,
SEDD's log-score, log-softmax) lives in that family's module (:mod:`ddjax.interop.mdlm`,
:mod:`~ddjax.interop.sedd`, :mod:`~ddjax.interop.duo`, :mod:`~ddjax.interop.bd3lm`); this
module is what they share: the state-dict layout (``vocab_embed``, ``sigma_map``,
``blocks.<i>``, ``output_layer``, ``rotary_emb.inv_freq``), the config.json size checks
and the jitted call.
"""

from __future__ import annotations

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

from ddjax.interop.checkpoint import (
    CheckpointError,
    Entry,
    assign,
    check_config,
    config_get,
    config_value,
    extract,
    matmul_precision,
)
from ddjax.models import DiT

__all__ = [
    "HF_FIELDS",
    "REFERENCE_DIT_OPTIONS",
    "backbone_state",
    "batch_times",
    "build_dit",
    "check_dit_config",
    "check_reference_dit",
    "dit_entries",
    "dit_model_config",
    "dit_state",
    "jit_model",
    "reference_dit",
]

#: The DiT options that make a ddjax DiT the references' network.
REFERENCE_DIT_OPTIONS: Mapping[str, Any] = types.MappingProxyType(
    {"time_scale": 1.0, "norm": "scale", "norm_eps": 1e-5, "time_conditioning": True}
)

# config.json sizes of the Hugging Face layouts (MDLMConfig, BD3LMConfig; Duo's hub code
# writes these too) and of the references' own Hydra 'model' block
HF_FIELDS: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {
        "vocab": ("vocab_size",),
        "out": ("vocab_size",),
        "width": ("hidden_dim", "model.hidden_size"),
        "cond_dim": ("cond_dim", "model.cond_dim"),
        "n_blocks": ("n_blocks", "model.n_blocks"),
        "n_heads": ("n_heads", "model.n_heads"),
    }
)


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
    abstract: bool = False,
    seed: int = 0,
    **options: Any,
) -> DiT:
    """A ddjax DiT with the references' architecture (train it in ddjax, export with save_*).

    Args:
      vocab_size, out_size: input ids and outputs (MDLM: K + 1 both; SEDD absorb: K + 1
        both; SEDD uniform and Duo: K both).
      num_layers, width, num_heads, cond_dim, max_len, mlp_ratio: network size.
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
    )
    kwargs.update(options)

    def ctor() -> DiT:
        return DiT(**kwargs, rngs=nnx.Rngs(params=seed))

    return nnx.eval_shape(ctor) if abstract else ctor()


def dit_entries(num_layers: int) -> list[Entry]:
    """The parameter map of a ``num_layers``-block reference network (keys without
    ``backbone.``; the rotary table is a buffer, not an entry)."""
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


def backbone_state(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
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


def check_dit_config(
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


def build_dit(
    state: Mapping[str, np.ndarray],
    *,
    num_heads: int,
    max_len: int,
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
    assign(model, state, dit_entries(num_layers), ignore=lambda k: k == "rotary_emb.inv_freq")
    return model


def dit_model_config(model: DiT, base: Mapping[str, Any]) -> dict[str, Any]:
    """The ``model`` block of a SEDD / Duo config.json for ``model`` (over ``base``'s)."""
    return {
        **dict(config_get(base, "model", default={})),
        "hidden_size": model.embed.embedding.get_value().shape[1],
        "cond_dim": model.time_embed.fc1.kernel.get_value().shape[1],
        "length": model.max_len,
        "n_blocks": len(model.blocks),
        "n_heads": model.num_heads,
        "dropout": config_get(base, "model.dropout", default=0.1),
    }


def dit_state(model: DiT, num_layers: int, prefix: str = "") -> dict[str, np.ndarray]:
    """The reference state dict of ``model`` (rotary table included), keys ``prefix + ...``."""
    state = extract(model, dit_entries(num_layers))
    head_dim = model.embed.embedding.get_value().shape[1] // model.num_heads
    state["rotary_emb.inv_freq"] = _rotary_inv_freq(head_dim)
    return {prefix + k: v for k, v in sorted(state.items())}


def check_reference_dit(model: DiT, kind: str) -> None:
    """Raises unless the references' own code can load ``model`` as a ``kind`` network."""
    bad = []
    width = model.embed.embedding.get_value().shape[1]
    if model.blocks[0].fc1.kernel.get_value().shape[1] != 4 * width:
        bad.append("mlp_ratio=4 (the references' DDiTBlock fixes it)")
    if (model.block_size is not None) != (kind == "bd3lm"):
        bad.append("block_size only for BD3-LM")
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


def jit_model(
    model: nnx.Module,
    precision: str | None,
    head: Callable[[Array, Array, Array], Array] | None = None,
) -> Callable[[Array, Array], Array]:
    """``(x int32[B, L], sigma float32[B]) -> model(x, sigma)`` jitted, under ``precision``.

    ``head(out, x, sigma)``, if given, post-processes the output inside the same program
    (SEDD's log-score scaling).
    """
    graphdef, params = nnx.split(model, nnx.Param)

    @jax.jit
    def run(params: nnx.State, x: Array, t: Array) -> Array:
        with matmul_precision(precision):
            out = nnx.merge(graphdef, params)(x, t)
        return out if head is None else head(out, x, t)

    return lambda x, t: run(params, x, t)


def batch_times(t: ArrayLike, x: Array) -> Array:
    """``t`` (a scalar or float32[B]) as float32[B], B = x.shape[0]."""
    return jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))
