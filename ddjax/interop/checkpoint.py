"""Reading and writing published checkpoints: state dicts, config files, parameter maps.

A checkpoint is read into a flat ``{name: np.ndarray}`` state dict (safetensors through
``safetensors.numpy``; ``torch.save`` archives, Lightning ``.ckpt`` included, through the
restricted reader of :mod:`ddjax.interop.torch_pickle`, which needs no torch and runs no
pickled code; only ``weights_only=False`` and the pre-1.6 torch format use
``torch.load``) and mapped onto an
``nnx`` module by a list of :class:`Entry` rows (reference name, module path, transpose).
Every reference name must be used and every module parameter filled, with the shapes
the row implies; anything else is an error that names the key. A loaded checkpoint is a
:class:`Pretrained`, whichever family it comes from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import Array

from ddjax import processes
from ddjax.interop.torch_pickle import Opaque, TorchPickleError, is_torch_zip, read_torch_zip

__all__ = [
    "CheckpointError",
    "Entry",
    "Pretrained",
    "config_get",
    "config_require",
    "read_state_dict",
    "read_config",
    "config_value",
    "check_config",
    "write_checkpoint",
    "assign",
    "extract",
    "matmul_precision",
    "strip_prefix",
]

_SAFETENSORS = ("model.safetensors",)
_TORCH = ("pytorch_model.bin", "model.pth", "model.pt")
_TORCH_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint that does not match the architecture: the message names the key."""


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """A published checkpoint loaded into ddjax.

    Attributes:
      model: the ddjax network (:class:`ddjax.models.DiT` or ``CausalTransformer``).
      process: the forward process with the checkpoint's schedule (None for GPT-2).
      apply: ``(x_t int32[B, L], t float32[B]) -> float32[B, L, V]``, exactly what the
        reference network returns (see each loader); for GPT-2 ``t`` is ignored and the
        output is the logits; BD3-LM's also takes ``x0=`` (its training pass).
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


@dataclasses.dataclass(frozen=True)
class Entry:
    """One parameter: ``key`` in the reference state dict, ``path`` in the ddjax module.

    ``transpose``: the reference stores the matrix as [out, in] (``torch.nn.Linear``);
    ddjax kernels are [in, out].
    """

    key: str
    path: tuple[str | int, ...]
    transpose: bool = False


def matmul_precision(precision: str | None) -> contextlib.AbstractContextManager:
    """``jax.default_matmul_precision(precision)``, or nothing for None (used while tracing)."""
    return (
        contextlib.nullcontext() if precision is None else jax.default_matmul_precision(precision)
    )


def _safetensors_numpy() -> Any:
    try:
        import safetensors.numpy
    except ImportError as err:
        raise ImportError(
            "reading safetensors checkpoints needs the safetensors package: "
            "pip install 'ddjax[interop]' (or pip install safetensors)"
        ) from err
    return safetensors.numpy


def _torch_load(path: pathlib.Path, weights_only: bool) -> Any:
    """A torch pickle: the restricted reader, or ``torch.load`` where it must be torch."""
    if weights_only and is_torch_zip(path):
        try:
            return read_torch_zip(path)
        except TorchPickleError as err:
            raise CheckpointError(str(err)) from err
    try:
        import torch
    except ImportError as err:
        why = "weights_only=False" if weights_only is False else "the pre-1.6 torch format"
        raise ImportError(
            f"{path}: {why} is read with torch.load, which needs torch (pip install "
            "'ddjax[torch]'); or convert it to safetensors"
        ) from err
    return torch.load(path, map_location="cpu", weights_only=weights_only)


def _to_numpy(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for k, v in state.items():
        if hasattr(v, "detach"):  # a torch tensor (torch.load)
            v = v.detach().cpu().float().numpy() if v.is_floating_point() else v.cpu().numpy()
        if isinstance(v, Opaque):  # the restricted reader met no tensor here
            raise CheckpointError(f"{k!r} is a pickled {v.global_name}, not a tensor")
        out[k] = np.asarray(v)
    return out


def _ema_state(ckpt: Mapping[str, Any], state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Lightning checkpoints of MDLM / Duo / BD3-LM keep EMA weights as an ordered list."""
    shadow = ckpt["ema"]["shadow_params"]
    names = [k for k in state if k.startswith(prefix) and not k.endswith("rotary_emb.inv_freq")]
    if len(shadow) < len(names):
        raise CheckpointError(
            f"the checkpoint's EMA has {len(shadow)} tensors for {len(names)} parameters"
        )
    ema = dict(state)
    for name, value in zip(names, shadow, strict=False):
        if tuple(value.shape) != tuple(state[name].shape):
            raise CheckpointError(
                f"EMA tensor for {name!r} has shape {tuple(value.shape)}, the weight "
                f"{tuple(state[name].shape)}"
            )
        ema[name] = value
    return ema


def read_state_dict(
    path: str | pathlib.Path, *, ema: bool = False, weights_only: bool = True
) -> dict[str, np.ndarray]:
    """The flat state dict of a checkpoint file or folder, as float32 / int NumPy arrays.

    Args:
      path: a folder holding ``model.safetensors`` (or a sharded
        ``model.safetensors.index.json``, or ``pytorch_model.bin``), or a single
        ``.safetensors`` / ``.bin`` / ``.pth`` / ``.pt`` / ``.ckpt`` file. Lightning
        ``.ckpt`` files (the training checkpoints of MDLM, Duo, BD3-LM) are read from
        their ``state_dict``.
      ema: for Lightning checkpoints (and SEDD's ``checkpoint.pth``), substitute the EMA
        weights (``ckpt['ema']['shadow_params']``, the weights the papers evaluate) for
        the raw ones, in parameter order (the state dict's order without buffers).
      weights_only: for torch pickles (``.bin`` / ``.pth`` / ``.pt`` / ``.ckpt``). True
        (the default): ``torch.save`` zip archives are read by
        :func:`ddjax.interop.read_torch_zip`, without torch and without running pickled
        code (tensors and plain containers are read; OmegaConf configs, tokenizers and any
        other object become inert :class:`ddjax.interop.Opaque` placeholders); the
        pre-1.6 format goes to ``torch.load(weights_only=True)``. False: ``torch.load(
        weights_only=False)``, which runs the pickle's code (only for files you trust).

    Raises:
      FileNotFoundError: no checkpoint file at ``path``.
      ImportError: ``weights_only=False`` or a pre-1.6 torch pickle without torch, or
        safetensors without the package.
      CheckpointError: a torch pickle the restricted reader cannot read as data.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        index = path / "model.safetensors.index.json"
        if index.exists():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, np.ndarray] = {}
            for shard in shards:
                state.update(_safetensors_numpy().load_file(str(path / shard)))
            return state
        for name in _SAFETENSORS + _TORCH:
            if (path / name).exists():
                return read_state_dict(path / name, ema=ema, weights_only=weights_only)
        raise FileNotFoundError(
            f"no checkpoint in {path}: expected one of "
            f"{', '.join(_SAFETENSORS + _TORCH)} or model.safetensors.index.json"
        )
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint file {path}")
    if path.suffix == ".safetensors":
        return _safetensors_numpy().load_file(str(path))
    if path.suffix in _TORCH_SUFFIXES:
        obj = _torch_load(path, weights_only)
        if isinstance(obj, Mapping) and "state_dict" in obj:
            state = dict(obj["state_dict"])
            if ema and "ema" in obj:
                state = _ema_state(obj, state, "backbone.")
            return _to_numpy(state)
        if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
            state = dict(obj["model"])  # SEDD's own training checkpoints
            if ema and "ema" in obj:
                state = _ema_state(obj, state, "")
            return _to_numpy(state)
        if isinstance(obj, Mapping):
            return _to_numpy(obj)
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    raise CheckpointError(
        f"unknown checkpoint format {path.suffix!r} for {path}: use .safetensors, "
        f"{', '.join(_TORCH_SUFFIXES)} or a folder"
    )


def read_config(path: str | pathlib.Path) -> dict[str, Any]:
    """``config.json`` next to (or inside) ``path``; {} if there is none."""
    path = pathlib.Path(path)
    folder = path if path.is_dir() else path.parent
    config = folder / "config.json"
    return json.loads(config.read_text()) if config.exists() else {}


def config_value(cfg: Mapping[str, Any], *keys: str) -> tuple[str | None, Any]:
    """``(key, value)`` of the first of ``keys`` (dotted paths) in ``cfg``; (None, None)."""
    for key in keys:
        node: Any = cfg
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            if node is not None:
                return key, node
    return None, None


def config_get(cfg: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    """The value of the first of ``keys`` (dotted paths) present in ``cfg`` (None kept), or
    ``default`` when none is."""
    for key in keys:
        node: Any = cfg
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            return node
    return default


def config_require(cfg: Mapping[str, Any], path: pathlib.Path, *keys: str) -> Any:
    """:func:`config_get` of a field the architecture needs; raises CheckpointError if absent."""
    value = config_get(cfg, *keys)
    if value is None:
        raise CheckpointError(
            f"config.json of {path} has none of {', '.join(map(repr, keys))} "
            "(needed for the architecture); pass it as a keyword"
        )
    return value


def check_config(
    cfg: Mapping[str, Any],
    path: str | pathlib.Path,
    checks: Iterable[tuple[Sequence[str], int, str]],
) -> None:
    """Raises unless every config field that sizes a weight agrees with the weights.

    Args:
      cfg: the parsed config.json.
      path: the checkpoint (for the message).
      checks: rows ``(field spellings, what the weights hold, which weight says so)``; a
        field absent from ``cfg`` is not checked (the weights decide).

    Raises:
      CheckpointError: the message names the field, its value and what the weights hold.
    """
    for keys, held, where in checks:
        key, value = config_value(cfg, *keys)
        if key is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value != held:
            raise CheckpointError(
                f"config.json of {path}: {key}={value!r}, but the weights hold {held} ({where})"
            )


def strip_prefix(state: Mapping[str, np.ndarray], prefixes: Sequence[str]) -> dict[str, Any]:
    """Drops the first of ``prefixes`` that every key starts with (e.g. 'backbone.')."""
    for prefix in prefixes:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def _resolve(module: Any, path: Sequence[str | int]) -> Any:
    node = module
    for step in path:
        node = node[step] if isinstance(step, int) else getattr(node, step)
    return node


def assign(
    module: nnx.Module,
    state: Mapping[str, np.ndarray],
    entries: Iterable[Entry],
    *,
    ignore: Callable[[str], bool] = lambda key: False,
) -> None:
    """Fills every parameter of ``module`` from ``state`` (in place).

    Raises:
      CheckpointError: a key the architecture does not know (and ``ignore`` does not
        accept), a missing key, a shape mismatch, or a module parameter left unfilled;
        the message names the key.
    """
    entries = list(entries)
    expected = {e.key for e in entries}
    unknown = sorted(k for k in state if k not in expected and not ignore(k))
    if unknown:
        raise CheckpointError(
            f"unknown key(s) in the checkpoint: {', '.join(map(repr, unknown[:10]))}"
            + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        )
    missing = sorted(expected - set(state))
    if missing:
        raise CheckpointError(
            f"missing key(s) in the checkpoint: {', '.join(map(repr, missing[:10]))}"
            + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        )
    filled = set()
    for e in entries:
        param = _resolve(module, e.path)
        value = np.asarray(state[e.key])
        if e.transpose:
            value = value.T
        want = tuple(param.get_value().shape)
        if tuple(value.shape) != want:
            shown = tuple(reversed(want)) if e.transpose else want
            raise CheckpointError(
                f"shape mismatch for key {e.key!r}: checkpoint {tuple(np.shape(state[e.key]))}, "
                f"architecture expects {shown}"
            )
        param.set_value(jnp.asarray(value, jnp.float32))
        filled.add(id(param))
    left = [
        "/".join(map(str, p))
        for p, v in nnx.iter_graph(module)
        if isinstance(v, nnx.Param) and id(v) not in filled
    ]
    if left:
        raise CheckpointError(f"parameters not filled from the checkpoint: {', '.join(left)}")


def extract(module: nnx.Module, entries: Iterable[Entry]) -> dict[str, np.ndarray]:
    """The inverse of :func:`assign`: the reference state dict of ``module``."""
    out = {}
    for e in entries:
        value = np.asarray(_resolve(module, e.path).get_value(), np.float32)
        out[e.key] = np.ascontiguousarray(value.T if e.transpose else value)
    return out


def write_checkpoint(
    path: str | pathlib.Path, state: Mapping[str, np.ndarray], config: Mapping[str, Any]
) -> pathlib.Path:
    """Writes ``model.safetensors`` and ``config.json`` into the folder ``path``."""
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
    _safetensors_numpy().save_file(arrays, str(path / "model.safetensors"), {"format": "pt"})
    (path / "config.json").write_text(json.dumps(dict(config), indent=2, sort_keys=True) + "\n")
    return path
