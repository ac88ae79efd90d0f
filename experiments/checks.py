"""Config checks that run before anything is built, so a bad value fails at step 0.

:func:`check_config` looks at every value that names something (data set, tokenizer,
model, process, schedule, loss, sampler, ...) and at the numbers that must be
positive or divisible, and raises :class:`~experiments.common.ConfigError` naming the
config key and the valid values. ``experiments.main`` prints that one line and exits
non-zero, before any training step or any file in the workdir.
"""

from __future__ import annotations

from typing import Any

import jax

from experiments import components
from experiments.common import ConfigError
from experiments.data import IMAGE_DATASETS, TEXT_DATASETS
from experiments.sample_config import check_sample

MODEL_NAMES = ("dit", "ar", "unet")
DTYPES = ("float32", "bfloat16", "float16")
TEXT_MODES = ("text8", "raw", "gpt2")


def _choice(key: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"unknown {key} {value!r}; valid: {', '.join(valid)}")


def _positive(cfg: Any, *keys: str, zero_ok: bool = False) -> None:
    for key in keys:
        section, name = key.split(".")
        value = cfg[section][name]
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        if value < 0 or (value == 0 and not zero_ok):
            need = ">= 0" if zero_ok else "> 0"
            raise ConfigError(f"{key} must be {need}, got {value}")


def check_config(cfg: Any) -> None:
    """Raises ConfigError for the first config value that cannot work (see module doc)."""
    d = cfg.data
    _choice("data.name", d.name, TEXT_DATASETS + IMAGE_DATASETS)
    if d.name in TEXT_DATASETS and d.name not in ("tokens", "owt", "lm1b"):
        _choice("data.mode", d.mode, TEXT_MODES)
    if d.name in ("file", "tokens") and not d.path:
        what = "a UTF-8 text file" if d.name == "file" else "a folder of train.bin / val.bin"
        raise ConfigError(
            f"data.name={d.name!r} needs data.path: pass --config.data.path=PATH ({what})"
        )
    _positive(cfg, "data.seq_len")
    _choice("model.name", cfg.model.name, MODEL_NAMES)
    _choice("model.dtype", cfg.model.dtype, DTYPES)
    if cfg.model.name != "unet" and d.name in TEXT_DATASETS:
        if int(d.seq_len) > int(cfg.model.max_len):
            raise ConfigError(
                f"data.seq_len={d.seq_len} is longer than model.max_len={cfg.model.max_len}"
            )
        if int(cfg.model.width) % int(cfg.model.num_heads):
            raise ConfigError(
                f"model.width={cfg.model.width} must be divisible by "
                f"model.num_heads={cfg.model.num_heads}"
            )
    # a table name or a user's import path (experiments.components), resolved here
    components.process_builder(cfg)
    if cfg.process.name in components.CONTINUOUS_PROCESSES:
        _choice("process.schedule", cfg.process.schedule, tuple(components.SCHEDULES))
    components.make_loss(cfg)
    if (cfg.loss.name == "ar") != (cfg.process.name == "none"):
        raise ConfigError("loss.name='ar' goes with process.name='none' and only with it")
    if (cfg.loss.name == "ar") != (cfg.model.name == "ar"):
        raise ConfigError("loss.name='ar' needs model.name='ar' (and the 'ar' model needs it)")
    _check_blocks(cfg)
    _choice("optim.decay", cfg.optim.decay, ("constant", "cosine"))
    if not float(cfg.optim.lr) > 0:
        raise ConfigError(f"optim.lr must be > 0, got {cfg.optim.lr}")
    _positive(cfg, "train.batch_size", "train.grad_accum", "train.log_every")
    _positive(cfg, "train.num_steps", "train.checkpoint_every", "train.eval_every", zero_ok=True)
    _positive(cfg, "eval.batch_size", "eval.num_time_samples")
    _positive(cfg, "sample.num_samples", zero_ok=True)
    _positive(cfg, "sample.steps")
    n_dev, n_proc = jax.device_count(), jax.process_count()
    bs = int(cfg.train.batch_size)
    if bs % n_dev or bs % n_proc:
        raise ConfigError(
            f"train.batch_size={bs} must be divisible by the {n_dev} devices ({n_proc} processes)"
        )
    _choice("eval.split", cfg.eval.split, ("valid", "test"))
    check_sample(cfg)  # the sample section, as experiments.generation reads it


def _check_blocks(cfg: Any) -> None:
    """loss.block_size (block_masked_elbo, BD3-LM) and the clipped schedule's range."""
    loss = cfg.loss
    bs = loss.block_size
    if not isinstance(bs, int) or isinstance(bs, bool) or bs < 0:
        raise ConfigError(f"loss.block_size must be an integer >= 0, got {bs!r}")
    if loss.name == "block_masked_elbo":
        seq_len = int(cfg.data.seq_len)
        if bs < 1:
            raise ConfigError("loss.name='block_masked_elbo' needs loss.block_size >= 1")
        if seq_len % bs:
            raise ConfigError(
                f"loss.block_size={bs} must divide data.seq_len={seq_len} (whole blocks)"
            )
        if cfg.process.name != "masking" and not components.is_import_path(cfg.process.name):
            raise ConfigError(
                f"loss.name='block_masked_elbo' needs process.name='masking', got "
                f"{cfg.process.name!r}"
            )
        if cfg.model.name != "dit":
            raise ConfigError(
                f"loss.name='block_masked_elbo' needs model.name='dit' (block-causal "
                f"attention), got {cfg.model.name!r}"
            )
        if bool(cfg.model.time_conditioning):
            raise ConfigError(
                "loss.name='block_masked_elbo' draws one time per block: set "
                "model.time_conditioning=False"
            )
    elif bs:
        raise ConfigError(
            f"loss.block_size={bs} is for loss.name='block_masked_elbo', not {loss.name!r}; "
            "set it to 0"
        )
    lo, hi = loss.mask_rate_min, loss.mask_rate_max
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
        raise ConfigError(f"loss.mask_rate_min/max must be numbers, got {lo!r}, {hi!r}")
    if not 0.0 <= float(lo) < float(hi) <= 1.0:
        raise ConfigError(
            f"loss.mask_rate_min={lo}, loss.mask_rate_max={hi}: need 0 <= min < max <= 1"
        )
    # a user's process (an import path) is checked when the objective is built
    name = cfg.process.name
    continuous = name in components.CONTINUOUS_PROCESSES or components.is_import_path(name)
    if (float(lo), float(hi)) != (0.0, 1.0) and (
        not continuous or cfg.loss.name == "any_order_nll"
    ):
        raise ConfigError(
            "loss.mask_rate_min/max (the clipped schedule) needs a continuous-time process "
            f"({' | '.join(components.CONTINUOUS_PROCESSES)}) and a loss that draws times"
        )
