"""Config names to library objects: schedules, processes and losses.

``process.name`` and ``loss.name`` are a name in :data:`PROCESSES` / the library's
``ddjax.training.LOSSES``, or an import path ``package.module:attribute`` naming a user's
own: a process builder ``builder(process_cfg, data) -> process`` (``data`` an
:class:`experiments.data.Data`, with ``vocab_size`` and the training tokens) or a
``ddjax.training.Loss``. Nothing under ``ddjax/`` or ``experiments/`` changes for a new
process or loss. An unknown name or a bad import path is a ConfigError naming the key.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ddjax import schedules
from ddjax.processes import D3PM, MarginalPrior, Masking, Process, Uniform
from ddjax.training import LOSSES, Loss
from experiments.common import ConfigError

ProcessBuilder = Callable[[Any, Any], Process | None]

SCHEDULES: Mapping[str, Callable[[Any], schedules.Schedule]] = types.MappingProxyType(
    {
        "loglinear": lambda c: schedules.LogLinear(eps=float(c.schedule_eps)),
        "linear": lambda c: schedules.Linear(),
        "cosine": lambda c: schedules.Cosine(),
        "polynomial": lambda c: schedules.Polynomial(power=float(c.schedule_power)),
        "geometric": lambda c: schedules.Geometric(),
    }
)
"""``process.schedule`` -> ``builder(process_cfg)`` (``schedule_eps``, ``schedule_power``)."""

# Batches read to estimate the token marginals when the data set keeps no token array.
MARGINAL_BATCHES = 64


def make_schedule(cfg: Any) -> schedules.Schedule:
    """The schedule named by ``cfg.schedule`` (``cfg`` the process section)."""
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(
            f"unknown process.schedule {cfg.schedule!r}; valid: {', '.join(SCHEDULES)}"
        )
    return SCHEDULES[cfg.schedule](cfg)


def token_marginals(data: Any, *, batch_size: int = 64, seed: int = 0) -> np.ndarray:
    """The training data's unigram frequencies, float64[K], add-one smoothed (every token
    keeps a positive noise probability).

    Counted over ``data.train_tokens`` when the data set keeps them (character text),
    else over the first :data:`MARGINAL_BATCHES` training batches.
    """
    k = int(data.vocab_size)
    counts = np.ones(k, np.float64)
    if data.train_tokens is not None:
        counts += np.bincount(np.asarray(data.train_tokens).ravel(), minlength=k)[:k]
    else:
        batches = data.make_train_iter(batch_size, seed)
        for _, batch in zip(range(MARGINAL_BATCHES), batches, strict=False):
            counts += np.bincount(np.asarray(batch["x"]).ravel(), minlength=k)[:k]
    return counts / counts.sum()


def marginal_prior(cfg: Any, data: Any) -> MarginalPrior:
    """Noise towards the training data's token marginals (:func:`token_marginals`)."""
    probs = token_marginals(data).astype(np.float32)
    return MarginalPrior(probs=probs / probs.sum(), schedule=make_schedule(cfg))


PROCESSES: Mapping[str, ProcessBuilder] = types.MappingProxyType(
    {
        "none": lambda c, d: None,  # autoregressive (loss.name='ar')
        "masking": lambda c, d: Masking(vocab_size=d.vocab_size, schedule=make_schedule(c)),
        "uniform": lambda c, d: Uniform(vocab_size=d.vocab_size, schedule=make_schedule(c)),
        "marginal": marginal_prior,
        "d3pm_absorbing": lambda c, d: D3PM.absorbing(d.vocab_size, int(c.num_steps)),
        "d3pm_uniform": lambda c, d: D3PM.uniform(d.vocab_size, int(c.num_steps)),
        # bandwidth 0: no band limit
        "d3pm_gaussian": lambda c, d: D3PM.gaussian(
            d.vocab_size, int(c.num_steps), bandwidth=int(c.bandwidth) or None
        ),
    }
)
"""``process.name`` -> ``builder(process_cfg, data) -> process`` (None: autoregressive).

masking, uniform and marginal are continuous time (``process.schedule``); the D3PM ones
discrete time with ``process.num_steps`` steps (``process.bandwidth`` for the Gaussian).
"""

CONTINUOUS_PROCESSES = ("masking", "uniform", "marginal")


def is_import_path(name: str) -> bool:
    """Whether a config name is an import path ``package.module:attribute``."""
    return isinstance(name, str) and ":" in name


def resolve(key: str, name: Any, table: Mapping[str, Any]) -> Any:
    """``table[name]``, or the attribute an import path ``module:attribute`` names.

    Raises:
      ConfigError: naming ``key``, for an unknown name, a module that does not import or
        a missing attribute.
    """
    if not isinstance(name, str):
        raise ConfigError(f"{key} must be a name or 'package.module:attribute', got {name!r}")
    if not is_import_path(name):
        if name not in table:
            raise ConfigError(
                f"unknown {key} {name!r}; valid: {', '.join(table)}, or an import path "
                "'package.module:attribute'"
            )
        return table[name]
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"{key}={name!r}: cannot import {module_name!r} ({e})") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{key}={name!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def make_loss(cfg: Any) -> Loss:
    """The :class:`~ddjax.training.Loss` that ``cfg.loss.name`` names."""
    loss = resolve("loss.name", cfg.loss.name, LOSSES)
    if not isinstance(loss, Loss):
        raise ConfigError(
            f"loss.name={cfg.loss.name!r} names a {type(loss).__name__}, not a ddjax.training.Loss"
        )
    return loss


def process_builder(cfg: Any) -> ProcessBuilder:
    """The builder that ``cfg.process.name`` names (checked callable)."""
    builder = resolve("process.name", cfg.process.name, PROCESSES)
    if not callable(builder):
        raise ConfigError(
            f"process.name={cfg.process.name!r} names a {type(builder).__name__}, not a "
            "builder(process_cfg, data) -> process"
        )
    return builder


def make_process(cfg: Any, data: Any) -> Process | None:
    """The forward process for ``cfg`` (the whole config) and ``data``; None for 'none'."""
    return process_builder(cfg)(cfg.process, data)
