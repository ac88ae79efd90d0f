r"""Train, evaluate or sample a discrete diffusion model from a config file.

    python -m experiments.main --config=experiments/configs/shakespeare_mdlm.py \
        --workdir=runs/shakespeare_mdlm [--config.KEY=VALUE ...] [--mode=train|eval|sample]

A run resumes from ``WORKDIR/checkpoints`` when it holds a checkpoint, so the same
command continues a stopped run. On several hosts every process runs this same
command (``--distributed=auto`` detects SLURM, Cloud TPU, Open MPI and
``JAX_COORDINATOR_ADDRESS``).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and samples go.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to do.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed",
    "auto",
    ["auto", "yes", "no"],
    "Call jax.distributed.initialize(): auto = when a multi-process launch is detected.",
)

EXIT_USAGE = 2


def config_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every leaf key of a ConfigDict, dotted ('model.width', ...)."""
    out = []
    for k, v in cfg.items():
        if hasattr(v, "items"):
            out.extend(config_keys(v, f"{prefix}{k}."))
        else:
            out.append(prefix + k)
    return out


def _load_config_file(spec: str) -> Any:
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    module_spec = importlib.util.spec_from_file_location("_ddjax_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def check_overrides(argv: Sequence[str]) -> str | None:
    """An error message when ``argv`` overrides a config key the config lacks, else None."""
    spec = None
    overrides = []
    args = list(argv[1:])
    for i, a in enumerate(args):
        if a.startswith("--config="):
            spec = a.split("=", 1)[1]
        elif a == "--config" and i + 1 < len(args):
            spec = args[i + 1]
        elif a.startswith("--config."):
            overrides.append(a[len("--config.") :].split("=", 1)[0])
    if spec is None:
        return "missing --config=PATH (e.g. --config=experiments/configs/shakespeare_mdlm.py)"
    try:
        cfg = _load_config_file(spec)
    except FileNotFoundError as e:
        return str(e)
    keys = config_keys(cfg)
    for key in overrides:
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=3)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            return (
                f"unknown config key {key!r} in --config.{key}.{hint}\n"
                f"valid keys: {', '.join(keys)}"
            )
    return None


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    from ddjax import training

    training.maybe_initialize_distributed(_DISTRIBUTED.value)
    from experiments import run

    cfg = _CONFIG.value
    cfg.lock()
    try:
        run.run(cfg, _WORKDIR.value, _MODE.value)
    except FileNotFoundError as e:
        logging.error("%s", e)
        sys.exit(f"error: {e}")
    except training.NonFiniteError as e:
        logging.error("%s", e)
        sys.exit(f"error: {e}")


def cli() -> None:
    """Entry point: checks config overrides, then runs absl's app."""
    message = check_overrides(sys.argv)
    if message is not None:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    app.run(main)


if __name__ == "__main__":
    cli()
