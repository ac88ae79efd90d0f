"""The ``sample`` section of a config, read and checked: the sampler and its options,
block diffusion, EOS stopping, class labels and guidance.

Every function here reads the config only (``eos_token`` also the data's vocabulary), so
:mod:`experiments.checks` runs the same checks before anything is built that
:mod:`experiments.generation` runs when it draws.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from jax import Array

from ddjax import samplers
from experiments.common import ConfigError
from experiments.model import Experiment

GUIDANCE = ("none", "cfg")

# What the job passes to every sampler itself, and the config key that sets it.
JOB_ARGUMENTS = {
    "key": "sample.seed",
    "denoiser": "the model",
    "process": "process.*",
    "shape": "sample.num_samples and data.seq_len",
    "steps": "sample.steps",
    "temperature": "sample.temperature",
    "fixed": "sample.prompt / sample.template",
    "return_trajectory": "the job writes final samples only",
}


def get_sampler(name: str) -> Callable:
    """``ddjax.samplers.SAMPLERS[name]``, or a ConfigError that lists the known names."""
    if name not in samplers.SAMPLERS:
        raise ConfigError(f"unknown sample.sampler {name!r}; known: {sorted(samplers.SAMPLERS)}")
    return samplers.SAMPLERS[name]


def job_arguments(cfg: Any) -> dict[str, str]:
    """Arguments the job sets itself for ``cfg`` (name -> what sets it)."""
    job = dict(JOB_ARGUMENTS)
    if cfg.loss.name == "any_order_nll" and cfg.sample.sampler == "ancestral":
        job["time_independent"] = "set for any_order_nll models"
    if cfg.sample.sampler == "confidence":
        job["threshold"] = "sample.threshold"
    return job


def sample_block_size(cfg: Any) -> int:
    """The block size of block diffusion for ``cfg`` (0: the whole sequence at once):
    ``sample.block_size``, else the model's (``loss.block_size`` of a BD3-LM), else the
    sequence length when ``sample.eos_id`` asks for EOS stopping (one block)."""
    bs = int(cfg.sample.get("block_size", 0))
    if not bs and cfg.loss.name == "block_masked_elbo":
        bs = int(cfg.loss.block_size)
    if not bs and int(cfg.sample.get("eos_id", -1)) >= 0:
        bs = int(cfg.data.seq_len)
    return bs


def user_options(cfg: Any) -> dict[str, Any]:
    """``cfg.sample.options`` as a plain dict (empty when the config has none)."""
    options = cfg.sample.get("options", None)
    if options is None:
        return {}
    return options.to_dict() if hasattr(options, "to_dict") else dict(options)


def valid_options(cfg: Any) -> list[str]:
    """The keyword options of ``cfg.sample.sampler`` that ``sample.options`` may set."""
    params = inspect.signature(get_sampler(str(cfg.sample.sampler))).parameters.values()
    job = job_arguments(cfg)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds and p.name not in job]


def sampler_options(cfg: Any) -> dict[str, Any]:
    """Checks ``sample.sampler`` and ``sample.options`` against the sampler's signature.

    Returns the options to pass through. Raises ConfigError for an unknown sampler (with
    the known names), or an option the sampler lacks or the job sets itself (with the
    valid options). Run it before training so a typo fails at step 0, not at the end.
    """
    options = user_options(cfg)
    if cfg.loss.name == "ar":
        if options:
            raise ConfigError(
                f"sample.options {sorted(options)}: the AR model samples left to right "
                "and takes no sampler options"
            )
        return {}
    name = str(cfg.sample.sampler)
    valid = valid_options(cfg)
    job = job_arguments(cfg)
    for key in options:
        if key in valid:
            continue
        why = f" is set by the job ({job[key]})" if key in job else " is unknown"
        raise ConfigError(
            f"sample.options.{key}{why} for sampler {name!r}; valid options: {', '.join(valid)}"
        )
    return options


def eos_token(exp: Experiment) -> int | None:
    """``sample.eos_id`` as a token id of the data, or None (-1: off)."""
    eos = int(exp.cfg.sample.eos_id)
    if eos < 0:
        return None
    vocab = int(exp.data.vocab_size)
    if eos >= vocab:
        raise ConfigError(f"sample.eos_id={eos} is not a token id of the data (0..{vocab - 1})")
    return eos


def check_guidance(cfg: Any) -> str:
    """``sample.guidance`` (none | cfg), checked: cfg needs a class-conditional model and
    neither works with block diffusion (see :func:`sample_block_size`)."""
    guidance = cfg.sample.guidance
    if guidance not in GUIDANCE:
        raise ConfigError(f"unknown sample.guidance {guidance!r}; valid: {', '.join(GUIDANCE)}")
    if guidance == "cfg" and int(cfg.model.num_classes) == 0:
        raise ConfigError(
            "sample.guidance='cfg' needs a class-conditional model (model.num_classes > 0)"
        )
    if guidance != "none" and sample_block_size(cfg):
        raise ConfigError("sample.guidance is not available with block diffusion")
    return str(guidance)


def check_class_label(cfg: Any) -> None:
    """``sample.class_label`` of a class-conditional model: -1 (every class) or a class."""
    num_classes = int(cfg.model.num_classes)
    label = int(cfg.sample.class_label)
    if num_classes > 0 and not -1 <= label < num_classes:
        raise ConfigError(
            f"sample.class_label={label} must be -1 (every class) or 0..{num_classes - 1}"
        )


def class_labels(cfg: Any, num: int) -> Array | None:
    """The class labels of ``num`` samples, int32[num]: ``sample.class_label``, or with -1
    the classes in turn (0, 1, ..., 0, 1, ...); None for an unconditional model."""
    check_class_label(cfg)
    num_classes = int(cfg.model.num_classes)
    if num_classes == 0:
        return None
    label = int(cfg.sample.class_label)
    if label >= 0:
        return jnp.full((num,), label, jnp.int32)
    return jnp.arange(num, dtype=jnp.int32) % num_classes


def check_sample(cfg: Any) -> None:
    """Raises ConfigError for the first ``sample.*`` value that cannot work (the sampler,
    its options, guidance, class label, prompt, temperature, block diffusion, EOS,
    threshold); :func:`experiments.checks.check_config` runs it before anything is built."""
    s = cfg.sample
    for key, lo in (("block_size", 0), ("eos_id", -1)):
        value = s[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < lo:
            raise ConfigError(f"sample.{key} must be an integer >= {lo}, got {value!r}")
    check_guidance(cfg)
    check_class_label(cfg)
    if s.prompt and s.template:
        raise ConfigError("give sample.prompt or sample.template, not both")
    if float(s.temperature) <= 0:
        raise ConfigError(f"sample.temperature must be > 0, got {s.temperature}")
    sampler_options(cfg)
    bs, seq_len = int(s.block_size), int(cfg.data.seq_len)
    masking = cfg.process.name == "masking"
    if bs and seq_len % bs:
        raise ConfigError(f"sample.block_size={bs} must divide data.seq_len={seq_len}")
    ar = cfg.loss.name == "ar"  # the AR sampler stops at EOS itself
    if (bs or (s.eos_id >= 0 and not ar)) and not masking:
        key = "sample.block_size" if bs else "sample.eos_id"
        raise ConfigError(
            f"{key} (block diffusion) needs process.name='masking' (or an AR model for "
            f"sample.eos_id), got {cfg.process.name!r}"
        )
    thr = s.threshold
    if not isinstance(thr, (int, float)) or isinstance(thr, bool) or not 0.0 <= thr <= 1.0:
        raise ConfigError(f"sample.threshold must be a number in [0, 1] (0 = off), got {thr!r}")
    if thr > 0 and s.sampler != "confidence":
        raise ConfigError(
            f"sample.threshold (threshold decoding) needs sample.sampler='confidence', "
            f"got {s.sampler!r}"
        )
