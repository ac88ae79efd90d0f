"""GPT-2 checkpoints (the Hugging Face layout) as a ddjax CausalTransformer, and its tokenizer.

GPT-2 is the CausalTransformer with ``norm='affine'`` (``torch.nn.LayerNorm``, epsilon
``layer_norm_epsilon``), no adaLN, learned absolute positions, biased attention
projections, the readout tied to the token embedding with no bias, and no BOS shift: the
logits at position i predict token i + 1, exactly as ``GPT2LMHeadModel`` returns them.
"""

from __future__ import annotations

import pathlib
import re
import types
from collections.abc import Mapping
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
    Pretrained,
    assign,
    check_config,
    extract,
    matmul_precision,
    read_config,
    read_state_dict,
    strip_prefix,
    write_checkpoint,
)
from ddjax.models import CausalTransformer

__all__ = ["GPT2_OPTIONS", "gpt2_model", "load_gpt2", "save_gpt2", "gpt2_tokenizer"]

#: CausalTransformer options that make it GPT-2 (add ``norm_eps``).
GPT2_OPTIONS: Mapping[str, Any] = types.MappingProxyType(
    {
        "norm": "affine",
        "adaln": False,
        "positions": "learned",
        "attention_bias": True,
        "tie_embeddings": True,
        "readout_bias": False,
        "bos_shift": False,
    }
)

# buffers of older GPT-2 checkpoints (the causal mask), not weights
_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")


def _entries(num_layers: int) -> list[Entry]:
    e = [Entry("wte.weight", ("embed", "embedding")), Entry("wpe.weight", ("pos_embed",))]
    for i in range(num_layers):
        h, blk = f"h.{i}.", ("blocks", i)
        e += [
            Entry(h + "ln_1.weight", (*blk, "norm1", "scale")),
            Entry(h + "ln_1.bias", (*blk, "norm1", "bias")),
            Entry(h + "attn.c_attn.weight", (*blk, "attn", "qkv", "kernel")),
            Entry(h + "attn.c_attn.bias", (*blk, "attn", "qkv", "bias")),
            Entry(h + "attn.c_proj.weight", (*blk, "attn", "out", "kernel")),
            Entry(h + "attn.c_proj.bias", (*blk, "attn", "out", "bias")),
            Entry(h + "ln_2.weight", (*blk, "norm2", "scale")),
            Entry(h + "ln_2.bias", (*blk, "norm2", "bias")),
            Entry(h + "mlp.c_fc.weight", (*blk, "fc1", "kernel")),
            Entry(h + "mlp.c_fc.bias", (*blk, "fc1", "bias")),
            Entry(h + "mlp.c_proj.weight", (*blk, "fc2", "kernel")),
            Entry(h + "mlp.c_proj.bias", (*blk, "fc2", "bias")),
        ]
    e += [Entry("ln_f.weight", ("final_norm", "scale")), Entry("ln_f.bias", ("final_norm", "bias"))]
    return e


def _check_gpt2_config(
    cfg: Mapping[str, Any], path: pathlib.Path, state: Mapping[str, np.ndarray]
) -> None:
    """Every GPT2Config size against the weights, before they size the model."""
    for key in ("wte.weight", "wpe.weight", "h.0.mlp.c_fc.weight"):
        if key not in state:
            raise CheckpointError(f"missing key in the checkpoint: {key!r}")
    vocab, width = state["wte.weight"].shape
    layers = {int(k.split(".")[1]) for k in state if k.startswith("h.")}
    if layers != set(range(len(layers))):
        raise CheckpointError(f"layer indices 'h.<i>' are not 0..n-1: {sorted(layers)}")
    checks = [
        (("vocab_size",), vocab, "rows of 'wte.weight'"),
        (("n_embd",), width, "columns of 'wte.weight'"),
        (("n_layer",), len(layers), "the 'h.<i>.*' keys"),
        (("n_positions",), state["wpe.weight"].shape[0], "rows of 'wpe.weight'"),
        (("n_inner",), state["h.0.mlp.c_fc.weight"].shape[1], "columns of 'h.0.mlp.c_fc.weight'"),
    ]
    check_config(cfg, path, checks)
    for key in ("vocab_size", "n_embd", "n_layer", "n_positions", "n_head"):
        if key not in cfg:
            raise CheckpointError(f"config.json of {path} has no {key!r}")
    heads = cfg["n_head"]
    if not isinstance(heads, int) or heads <= 0 or width % heads:
        raise CheckpointError(
            f"config.json of {path}: n_head={heads!r} does not divide the width {width} "
            "(columns of 'wte.weight'; no weight holds the head count)"
        )


def gpt2_model(
    *,
    vocab_size: int = 50257,
    num_layers: int = 12,
    width: int = 768,
    num_heads: int = 12,
    max_len: int = 1024,
    norm_eps: float = 1e-5,
    mlp_ratio: int = 4,
    abstract: bool = False,
    seed: int = 0,
    **options: Any,
) -> CausalTransformer:
    """A CausalTransformer with GPT-2's architecture (defaults: GPT-2 small's sizes)."""

    def ctor() -> CausalTransformer:
        return CausalTransformer(
            vocab_size=vocab_size,
            num_layers=num_layers,
            width=width,
            num_heads=num_heads,
            max_len=max_len,
            mlp_ratio=mlp_ratio,
            norm_eps=norm_eps,
            rngs=nnx.Rngs(params=seed),
            **GPT2_OPTIONS,
            **options,
        )

    return nnx.eval_shape(ctor) if abstract else ctor()


def load_gpt2(
    path: str | pathlib.Path,
    *,
    dtype: Any = jnp.float32,
    weights_only: bool = True,
    precision: str | None = "highest",
) -> Pretrained:
    """Loads a GPT-2 checkpoint in the Hugging Face layout (gpt2, gpt2-medium, gpt2-large, ...).

    Args:
      path: a folder with ``config.json`` and ``model.safetensors`` (or
        ``pytorch_model.bin``, needs torch), keys with or without ``transformer.``; an
        ``lm_head.weight``, if present, must equal the token embedding (GPT-2 ties them).
      dtype: matmul dtype.
      weights_only: for a torch ``.bin``: True reads it without running pickled code
        (no torch needed for the zip format of torch >= 1.6; the older format goes to
        ``torch.load(weights_only=True)``); False uses ``torch.load(weights_only=False)``
        (trusted files only). See :func:`ddjax.interop.read_state_dict`.
      precision: float32 matmul precision inside ``apply`` ('highest': true float32;
        None: JAX's default, which may be TF32 on NVIDIA GPUs).

    Returns:
      :class:`Pretrained` with ``process=None``, ``denoiser=None`` and
      ``apply(x int32[B, L], t=None) -> float32[B, L, V]`` = GPT-2's logits (position i
      predicts token i + 1).

    Raises:
      CheckpointError: unsupported config options, a config.json size the weights
        contradict (the message names the field), unknown / missing keys or shapes.
    """
    path = pathlib.Path(path)
    cfg = read_config(path)
    if not cfg:
        raise CheckpointError(f"no config.json for the GPT-2 checkpoint {path}")
    for key, want in [
        ("activation_function", "gelu_new"),
        ("scale_attn_by_inverse_layer_idx", False),
        ("reorder_and_upcast_attn", False),
        ("scale_attn_weights", True),
    ]:
        if cfg.get(key, want) != want:
            raise CheckpointError(f"config.json: {key}={cfg[key]!r} is not supported ({want!r})")
    if cfg.get("tie_word_embeddings", True) is not True:
        raise CheckpointError("config.json: untied GPT-2 heads are not supported")
    state = read_state_dict(path, weights_only=weights_only)
    head = state.pop("lm_head.weight", None)
    state = strip_prefix(state, ("transformer.",))
    if head is not None and (
        head.shape != state.get("wte.weight", np.zeros(0)).shape
        or not np.array_equal(head, state["wte.weight"])
    ):
        raise CheckpointError("'lm_head.weight' differs from 'wte.weight' (GPT-2 ties them)")
    _check_gpt2_config(cfg, path, state)
    n_inner = cfg.get("n_inner") or 4 * cfg["n_embd"]
    if n_inner % cfg["n_embd"]:
        raise CheckpointError(f"n_inner={n_inner} is not a multiple of n_embd={cfg['n_embd']}")
    model = gpt2_model(
        vocab_size=int(cfg["vocab_size"]),
        num_layers=int(cfg["n_layer"]),
        width=int(cfg["n_embd"]),
        num_heads=int(cfg["n_head"]),
        max_len=int(cfg["n_positions"]),
        norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
        mlp_ratio=n_inner // cfg["n_embd"],
        abstract=True,
        dtype=dtype,
    )
    assign(model, state, _entries(int(cfg["n_layer"])), ignore=lambda k: bool(_BUFFER.match(k)))
    graphdef, params = nnx.split(model, nnx.Param)

    @jax.jit
    def run(params: nnx.State, x: Array) -> Array:
        with matmul_precision(precision):
            return nnx.merge(graphdef, params)(x)

    def apply(x: ArrayLike, t: ArrayLike | None = None) -> Array:
        del t
        return run(params, jnp.asarray(x, jnp.int32))

    return Pretrained(model, None, apply, None, "gpt2", cfg)


def save_gpt2(model: CausalTransformer | Pretrained, path: str | pathlib.Path) -> pathlib.Path:
    """Writes a GPT-2-architecture CausalTransformer in the Hugging Face layout.

    The config.json has GPT2Config's fields; the weights are saved under
    ``transformer.*`` with the head tied (as ``GPT2LMHeadModel.save_pretrained`` does).
    """
    base: dict[str, Any] = {}
    if isinstance(model, Pretrained):
        base = dict(model.config)
        model = model.model
    if model.pos_embed is None or model.readout is not None or model.bos is not None:
        raise ValueError("not a GPT-2-architecture model: build it with ddjax.interop.gpt2_model")
    n = len(model.blocks)
    vocab, width = model.embed.embedding.get_value().shape
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "n_ctx": model.max_len,
        "n_positions": model.max_len,
        "n_embd": width,
        "n_head": model.num_heads,
        "n_layer": n,
        "n_inner": None,
        "vocab_size": vocab,
        "layer_norm_epsilon": model.norm_eps,
        "tie_word_embeddings": True,
        "bos_token_id": vocab - 1,
        "eos_token_id": vocab - 1,
    }
    hidden = model.blocks[0].fc1.kernel.get_value().shape[1]
    if hidden != 4 * width:
        config["n_inner"] = hidden
    config = {**base, **config} if base else config
    state = {"transformer." + k: v for k, v in extract(model, _entries(n)).items()}
    return write_checkpoint(path, state, config)


def gpt2_tokenizer(path: str | pathlib.Path | None = None) -> Any:
    """GPT-2's BPE tokenizer, offline from local files when ``path`` is given.

    Args:
      path: a folder (or a file inside it) with GPT-2's ``vocab.json`` and
        ``merges.txt`` (every Hugging Face GPT-2 folder has them; they are OpenAI's
        ``encoder.json`` and ``vocab.bpe``), or a ``.tiktoken`` rank file. None uses
        tiktoken's 'gpt2' encoding, which downloads its files on first use.

    Returns:
      a :class:`ddjax.data.text.BPETokenizer` (``encode`` / ``decode``, ``eot_id``).

    Raises:
      ImportError: tiktoken is not installed.
      FileNotFoundError: ``path`` holds neither file set.
      RuntimeError: ``path=None`` and tiktoken cannot download its files.
    """
    from ddjax.data.text import BPETokenizer, import_tiktoken

    tiktoken = import_tiktoken()
    pattern = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    if path is None:
        try:
            return BPETokenizer(tiktoken.get_encoding("gpt2"))
        except Exception as err:  # network errors come in many types
            raise RuntimeError(
                "tiktoken needs a network connection the first time it loads 'gpt2' (it "
                "downloads vocab.bpe and encoder.json); offline, pass a local GPT-2 "
                "tokenizer folder (vocab.json + merges.txt) as gpt2_tokenizer(path), or "
                "pre-populate TIKTOKEN_CACHE_DIR"
            ) from err
    import tiktoken.load

    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no GPT-2 tokenizer at {path}: expected a folder with vocab.json + merges.txt"
        )
    folder = path if path.is_dir() else path.parent
    if path.suffix == ".tiktoken":
        ranks = tiktoken.load.load_tiktoken_bpe(str(path))
    elif (folder / "vocab.json").exists() and (folder / "merges.txt").exists():
        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(folder / "merges.txt"), encoder_json_file=str(folder / "vocab.json")
        )
    elif (folder / "encoder.json").exists() and (folder / "vocab.bpe").exists():
        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(folder / "vocab.bpe"), encoder_json_file=str(folder / "encoder.json")
        )
    else:
        raise FileNotFoundError(
            f"no GPT-2 tokenizer files in {folder}: expected vocab.json + merges.txt "
            "(Hugging Face), encoder.json + vocab.bpe (OpenAI) or a .tiktoken file"
        )
    eot = len(ranks)
    encoding = tiktoken.Encoding(
        name=f"gpt2-local-{folder.name}",
        pat_str=pattern,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": eot},
    )
    return BPETokenizer(encoding)
