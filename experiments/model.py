"""Building an experiment from a config: data, process, model, objective, mesh, state.

Also restoring a trained one from its workdir for evaluation or sampling.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from jax import Array

from ddjax import training
from ddjax.training import Objective
from experiments import components
from experiments.common import ConfigError, say
from experiments.data import Data, load_data


@dataclasses.dataclass
class Experiment:
    """Everything built from a config."""

    cfg: Any
    data: Data
    objective: Objective
    graphdef: Any
    params: Any
    apply_fn: Callable[..., Array]
    mesh: Any

    def with_sample(self, **sample: Any) -> Experiment:
        """The same experiment (model, data, parameters) with ``cfg.sample`` options
        changed, e.g. ``exp.with_sample(prompt="To be", steps=64)``; ``self`` is unchanged."""
        cfg = self.cfg.copy_and_resolve_references()
        cfg.sample.update(sample)
        return dataclasses.replace(self, cfg=cfg)


def make_apply_fn(graphdef: Any, cfg: Any, image_shape: tuple[int, ...] | None) -> Callable:
    """``apply_fn(params, x int32[B, L], t, labels, dropout_key=None, x0=None)
    -> float32[B, L, out]``.

    Image models get ``x`` reshaped to ``[B, *image_shape]``; the causal model ignores t.
    ``x0`` (block-causal DiTs, loss 'block_masked_elbo') runs BD3-LM's training pass
    over [x ; x0].
    """
    from ddjax import models

    name = cfg.model.name

    def apply_fn(
        params: Any,
        x: Array,
        t: Array | None,
        labels: Array | None,
        dropout_key: Any = None,
        x0: Array | None = None,
    ) -> Array:
        b = x.shape[0]
        if x0 is not None:
            out = models.apply(graphdef, params, x, t, labels, dropout_key=dropout_key, x0=x0)
            return out.reshape(b, -1, out.shape[-1])
        if image_shape is not None and name == "unet":
            x = x.reshape(b, *image_shape)
        if name == "ar":
            out = models.apply(graphdef, params, x, None, labels, dropout_key=dropout_key)
        else:
            out = models.apply(graphdef, params, x, t, labels, dropout_key=dropout_key)
        return out.reshape(b, -1, out.shape[-1])

    return apply_fn


def build(cfg: Any, *, mesh: Any = None, data: Data | None = None) -> Experiment:
    """Data, process, model, objective and mesh from ``cfg``.

    ``data`` replaces :func:`experiments.data.load_data` (e.g. synthetic tokens). The
    loss and the process come from :mod:`experiments.components` (a table name or a
    user's import path); a loss the process cannot serve is a ConfigError.
    """
    from ddjax import models

    data = load_data(cfg) if data is None else data
    loss = components.make_loss(cfg)
    process = components.make_process(cfg, data)
    if (cfg.loss.name == "ar") != (process is None):
        raise ValueError("loss.name='ar' goes with process.name='none' and only with it")
    if (cfg.loss.name == "ar") != (cfg.model.name == "ar"):
        raise ValueError("loss.name='ar' needs model.name='ar' (and the 'ar' model needs it)")
    in_vocab = data.vocab_size if process is None else process.num_states
    out = loss.output_size(process, data.vocab_size)
    model_cfg = cfg.model
    if loss.blocks:  # the loss's blocks are the model's attention blocks
        model_cfg = {**cfg.model.to_dict(), "block_size": int(cfg.loss.block_size)}
    model = build_model(model_cfg, in_vocab, out, seed=int(cfg.seed))
    graphdef, params = models.split(model)
    apply_fn = make_apply_fn(graphdef, cfg, data.image_shape)
    try:
        objective = Objective(
            loss,
            process=process,
            apply_fn=apply_fn,
            time_conditioning=bool(cfg.model.time_conditioning),
            plugin=bool(cfg.loss.plugin),
            aux_weight=float(cfg.loss.aux_weight),
            scale_by_sigma=bool(cfg.loss.scale_by_sigma),
            t_min=float(cfg.loss.t_min),
            dropout=float(cfg.model.dropout) > 0,
            block_size=int(cfg.loss.block_size) if loss.blocks else None,
            mask_rate=mask_rate(cfg),
        )
    except TypeError as e:  # a capability the loss needs (ddjax.processes.require)
        raise ConfigError(
            f"loss.name={cfg.loss.name!r} cannot train process.name={cfg.process.name!r}: {e}"
        ) from None
    mesh = mesh if mesh is not None else training.make_mesh()
    return Experiment(cfg, data, objective, graphdef, params, apply_fn, mesh)


MODEL_NAMES = ("dit", "ar", "unet")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def _get(cfg: Any, key: str, default: Any) -> Any:
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None and default is not None else value


def build_model(cfg: Any, vocab_size: int, out_size: int, *, seed: int = 0) -> Any:
    """An initialised ``ddjax.models`` network from the ``model`` config section.

    Args:
      cfg: an ``ml_collections.ConfigDict`` (or any mapping) with ``name`` in
        :data:`MODEL_NAMES` and, as needed, ``num_layers``, ``width``, ``num_heads``,
        ``max_len``, ``time_conditioning``, ``num_classes``, ``dtype`` ('float32' |
        'bfloat16' | 'float16'), ``dropout``, ``mlp_ratio``, ``remat``,
        ``attention_implementation`` (transformers: None | 'xla' | 'cudnn'), ``block_size``
        (DiT: block-causal attention, BD3-LM; None or 0 = full attention) and
        ``base_channels``, ``channel_mults``, ``in_channels`` (U-Net). Missing optional
        keys take the class defaults.
      vocab_size: number of input token ids (include the mask id for masking processes).
      out_size: logits per position (ignored by 'ar', which predicts ``vocab_size``).
      seed: initialisation seed.

    Returns:
      the initialised ``nnx.Module``.

    Raises:
      ValueError: unknown ``name`` or ``dtype``.
    """
    from ddjax import models

    name = _get(cfg, "name", None)
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    dtype_name = _get(cfg, "dtype", "float32")
    if dtype_name not in DTYPES:
        raise ValueError(f"unknown model dtype {dtype_name!r}; valid: {', '.join(DTYPES)}")
    dtype = DTYPES[dtype_name]
    num_classes = _get(cfg, "num_classes", None)
    num_classes = None if num_classes in (None, 0) else int(num_classes)
    dropout = float(_get(cfg, "dropout", 0.0))
    if name == "unet":
        cls: type = models.UNet
        kwargs: dict[str, Any] = dict(
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
    else:
        kwargs = dict(
            vocab_size=vocab_size,
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
            cls = models.CausalTransformer
        else:
            cls = models.DiT
            kwargs.update(
                out_size=out_size, time_conditioning=bool(_get(cfg, "time_conditioning", True))
            )
            block_size = _get(cfg, "block_size", None)
            if block_size:  # block-causal attention (BD3-LM); None / 0 = full attention
                kwargs["block_size"] = int(block_size)
    # the compiled initialiser is shared by every build of the same architecture
    cache_key = (cls, tuple(sorted((k, str(v)) for k, v in kwargs.items())))
    return models.init(lambda rngs: cls(**kwargs, rngs=rngs), seed, cache_key=cache_key)


def mask_rate(cfg: Any) -> tuple[float, float] | None:
    """BD3-LM's clipped schedule (loss.mask_rate_min, loss.mask_rate_max), or None when it
    is the full (0, 1) range."""
    lo, hi = float(cfg.loss.mask_rate_min), float(cfg.loss.mask_rate_max)
    return None if (lo, hi) == (0.0, 1.0) else (lo, hi)


def make_state(exp: Experiment) -> tuple[training.TrainState, Any]:
    """A fresh placed TrainState and the optimiser."""
    cfg = exp.cfg
    tx = training.make_optimizer(cfg.optim, int(cfg.train.num_steps))
    state = training.init_train_state(exp.params, tx, int(cfg.seed))
    state = training.put_replicated(state, exp.mesh, bool(cfg.train.fsdp))
    return state, tx


def eval_params(cfg: Any, state: training.TrainState) -> Any:
    """The parameters to evaluate and sample with: the EMA ones when ``eval.use_ema``."""
    return state.ema_params if bool(cfg.eval.use_ema) else state.params


def checkpointer(cfg: Any, workdir: str, *, create: bool = True) -> training.Checkpointer:
    """The run's checkpoint manager, over ``WORKDIR/checkpoints``."""
    return training.Checkpointer(
        os.path.join(workdir, "checkpoints"),
        max_to_keep=int(cfg.train.max_to_keep),
        async_save=bool(cfg.train.async_checkpoint),
        create=create,
    )


def saved_steps(workdir: str) -> list[int]:
    """The step folders in ``WORKDIR/checkpoints`` (without opening Orbax), ascending."""
    d = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(d):
        return []
    return sorted(int(f) for f in os.listdir(d) if f.isdigit())


def restore_for_inference(cfg: Any, workdir: str) -> tuple[Experiment, training.TrainState]:
    """The experiment built from ``cfg`` and the latest checkpoint's state in ``workdir``.

    Raises FileNotFoundError (nothing created in ``workdir``) when it holds no checkpoint
    or when every checkpoint is unreadable.
    """
    ckdir = os.path.join(workdir, "checkpoints")
    if not saved_steps(workdir):
        raise FileNotFoundError(
            f"no checkpoint in {ckdir}; train first with --mode=train and the same --workdir"
        )
    exp = build(cfg)
    state, _ = make_state(exp)
    ckpt = checkpointer(cfg, workdir, create=False)
    try:
        restored = ckpt.restore_latest(state)
    finally:
        ckpt.close()
    if restored is None:
        raise FileNotFoundError(
            f"every checkpoint in {ckdir} is unreadable (steps "
            f"{', '.join(map(str, ckpt.unreadable))}, moved aside to corrupt-*); "
            "train again with --mode=train"
        )
    state, _, step = restored
    say(f"restored step {step} from {workdir}")
    return exp, state
