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

from experiments.common import ConfigError

MODEL_NAMES = ("dit", "ar", "unet")
PROCESS_NAMES = ("none", "masking", "uniform", "d3pm_absorbing", "d3pm_uniform", "d3pm_gaussian")
SCHEDULES = ("loglinear", "linear", "cosine", "polynomial", "geometric")
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
    from ddjax.training import LOSSES
    from experiments.data import IMAGE_DATASETS, TEXT_DATASETS

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
    _choice("process.name", cfg.process.name, PROCESS_NAMES)
    if cfg.process.name in ("masking", "uniform"):
        _choice("process.schedule", cfg.process.schedule, SCHEDULES)
    _choice("loss.name", cfg.loss.name, LOSSES)
    if (cfg.loss.name == "ar") != (cfg.process.name == "none"):
        raise ConfigError("loss.name='ar' goes with process.name='none' and only with it")
    if (cfg.loss.name == "ar") != (cfg.model.name == "ar"):
        raise ConfigError("loss.name='ar' needs model.name='ar' (and the 'ar' model needs it)")
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
    _choice("sample.guidance", cfg.sample.guidance, ("none", "cfg"))
    num_classes = int(cfg.model.num_classes)
    if cfg.sample.guidance == "cfg" and num_classes == 0:
        raise ConfigError(
            "sample.guidance='cfg' needs a class-conditional model (model.num_classes > 0)"
        )
    if num_classes > 0 and not -1 <= int(cfg.sample.class_label) < num_classes:
        raise ConfigError(
            f"sample.class_label={cfg.sample.class_label} must be -1 (every class) or "
            f"0..{num_classes - 1}"
        )
    if cfg.sample.prompt and cfg.sample.template:
        raise ConfigError("give sample.prompt or sample.template, not both")
    if float(cfg.sample.temperature) <= 0:
        raise ConfigError(f"sample.temperature must be > 0, got {cfg.sample.temperature}")
    from experiments.sampling import sampler_options

    sampler_options(cfg)  # sample.sampler and sample.options
