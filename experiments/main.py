r"""Train, evaluate or sample a discrete diffusion model from a config file.

    python -m experiments.main --config=experiments/configs/shakespeare_mdlm.py \
        --workdir=runs/shakespeare_mdlm [--config.KEY=VALUE ...] [--mode=train|eval|sample]

A run resumes from ``WORKDIR/checkpoints`` when it holds a checkpoint, so the same
command continues a stopped run. Every mode first compares the config with the run's
``WORKDIR/config.json``: only the keys listed under "resuming" below may differ. On
several hosts every process runs this same command (``--distributed=auto`` detects
SLURM, Cloud TPU, Open MPI and ``JAX_COORDINATOR_ADDRESS``).

``--config.sample.options.NAME=VALUE`` passes any keyword option to the sampler
(``eta`` for remdm, ``theta``, ``n_corrector``, ``multi_jump``, ``tokens_per_call``,
...); VALUE is read as a Python literal (else as a string), and an option the sampler
lacks is an error that lists the valid ones, before training starts.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import inspect
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import ml_collections
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
OPTIONS_FLAG = "--config.sample.options."


def config_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every leaf key of a ConfigDict, dotted ('model.width', ...)."""
    out = []
    for k, v in cfg.items():
        if hasattr(v, "items"):
            out.extend(config_keys(v, f"{prefix}{k}."))
        else:
            out.append(prefix + k)
    return out


class ConfigFileError(ValueError):
    """A ``--config=`` value that is not a loadable config file (the message names it)."""


def _load_config_file(spec: str) -> Any:
    """``get_config([ARG])`` of the file in ``spec`` (``PATH[:ARG]``).

    Raises FileNotFoundError for a missing file and ConfigFileError for one that is not a
    config file (not Python, no ``get_config``, an ``:ARG`` it does not take, no
    ConfigDict returned), each naming the ``--config=`` value.
    """
    path, _, arg = spec.partition(":")
    flag = f"--config={spec}"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    # spec_from_file_location gives None for a non-.py file (README.md): say so instead
    module_spec = importlib.util.spec_from_file_location("_ddjax_config", path)
    if module_spec is None or not path.endswith(".py"):
        raise ConfigFileError(
            f"{flag}: not a Python config file (a .py file defining get_config(), e.g. "
            "experiments/configs/shakespeare_mdlm.py)"
        )
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigFileError(f"{flag}: invalid Python (line {e.lineno}: {e.msg})") from None
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigFileError(
            f"{flag}: {path} defines no get_config(); a config file returns its "
            "ml_collections.ConfigDict from get_config() (see experiments/configs/)"
        )
    if arg:
        try:
            inspect.signature(get_config).bind(arg)
        except TypeError:
            raise ConfigFileError(
                f"{flag}: get_config() in {path} takes no argument; drop ':{arg}'"
            ) from None
    cfg = get_config(arg) if arg else get_config()
    if not hasattr(cfg, "items"):
        raise ConfigFileError(
            f"{flag}: get_config() returned a {type(cfg).__name__}, not an "
            "ml_collections.ConfigDict"
        )
    return cfg


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
        elif a.startswith(OPTIONS_FLAG):
            continue  # any name: checked against the sampler's signature later
        elif a.startswith("--config."):
            overrides.append(a[len("--config.") :].split("=", 1)[0])
    if spec is None:
        return "missing --config=PATH (e.g. --config=experiments/configs/shakespeare_mdlm.py)"
    try:
        cfg = _load_config_file(spec)
    except (FileNotFoundError, ConfigFileError) as e:
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


def flag_value(argv: Sequence[str], name: str) -> str | None:
    """The value of ``--NAME=VALUE`` or ``--NAME VALUE`` in ``argv`` (the last one), else None."""
    value = None
    args = list(argv[1:])
    for i, a in enumerate(args):
        if a.startswith(f"--{name}="):
            value = a.split("=", 1)[1]
        elif a == f"--{name}" and i + 1 < len(args):
            value = args[i + 1]
    return value


def parse_value(text: str) -> Any:
    """A command-line value as a Python literal ('0.02', 'True', '(1, 2)'), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False}.get(text.lower(), text)


def split_sample_options(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """Takes the ``--config.sample.options.NAME=VALUE`` arguments out of ``argv``.

    ml_collections only overrides keys a config defines, and ``sample.options`` is open:
    returns the other arguments and the options (name -> parsed value).
    """
    rest: list[str] = []
    options: dict[str, Any] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith(OPTIONS_FLAG):
            rest.append(a)
            i += 1
            continue
        name, eq, value = a[len(OPTIONS_FLAG) :].partition("=")
        if not eq:  # --config.sample.options.NAME VALUE
            if i + 1 >= len(args):
                raise ValueError(f"{a} needs a value ({a}=VALUE)")
            value = args[i + 1]
            i += 1
        if not name.isidentifier():
            raise ValueError(f"{OPTIONS_FLAG}{name}: an option name is one keyword, e.g. eta")
        options[name] = parse_value(value)
        i += 1
    return rest, options


def show_checkpoint_warnings_as_one_line() -> None:
    """Prints each :class:`ddjax.training.UnreadableCheckpointWarning` as one
    ``warning: ...`` line (without the file, line and source of the caller); other
    warnings keep Python's format."""
    from ddjax.training import UnreadableCheckpointWarning

    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if issubclass(category, UnreadableCheckpointWarning):
            print(f"warning: {message}", file=sys.stderr if file is None else file, flush=True)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: Sequence[str], options: dict[str, Any] | None = None) -> None:
    """Runs the ``--mode`` job; ``options`` go into ``cfg.sample.options``."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    show_checkpoint_warnings_as_one_line()
    from ddjax import training

    training.maybe_initialize_distributed(_DISTRIBUTED.value)
    from experiments import run
    from experiments.common import ConfigError

    cfg = _CONFIG.value
    if options:
        with cfg.unlocked():  # config_flags locks the config it loads
            if "options" not in cfg.sample:
                cfg.sample.options = ml_collections.ConfigDict()
            for name, value in options.items():
                cfg.sample.options[name] = value
    cfg.lock()
    try:
        run.run(cfg, _WORKDIR.value, _MODE.value)
    except (
        ConfigError,
        FileNotFoundError,
        training.NonFiniteError,
        training.CheckpointMismatchError,
    ) as e:
        sys.exit(f"error: {e}")  # printed once, without a traceback


def help_text() -> str:
    """``--help``: this module's doc, the flags, and every config key with its default."""
    from experiments.configs import base

    cfg = base.get_base_config()
    lines = [__doc__.strip(), "", "flags:"]
    lines += [
        "  --config=PATH[:ARG]  an ml_collections config file (experiments/configs/*.py)",
        "  --workdir=DIR        where checkpoints, metrics, plots and samples go",
        "  --mode=train|eval|sample  (default train)",
        "  --distributed=auto|yes|no  call jax.distributed.initialize() (default auto)",
        "  --config.KEY=VALUE   override a config key (below); --config.sample.options.NAME=VALUE",
        "",
        "config keys (--config.KEY=VALUE) and their base defaults (each config file changes some):",
    ]
    flat = {}

    def walk(c: Any, prefix: str) -> None:
        for k, v in c.items():
            if hasattr(v, "items") and k != "options":
                walk(v, f"{prefix}{k}.")
            else:
                flat[prefix + k] = v

    walk(cfg, "")
    width = max(len(k) for k in flat)
    lines += [f"  {k.ljust(width)}  {v!r}" for k, v in flat.items()]
    from experiments.run_config import RESUMABLE

    lines += [
        "",
        "resuming: a command on a workdir that holds checkpoints must keep the config of",
        "its config.json, except these keys (a name ending in '.' covers its section):",
        "  " + ", ".join(RESUMABLE),
        "any other difference is an error that lists the keys; nothing is touched",
    ]
    lines += ["", "absl's own flags: --helpfull"]
    return "\n".join(lines)


def cli() -> None:
    """Entry point: checks config overrides, then runs absl's app."""
    if any(a in ("--help", "-h", "--help=true", "-?") for a in sys.argv[1:]):
        print(help_text())
        sys.exit(0)
    message = check_overrides(sys.argv)
    workdir = flag_value(sys.argv, "workdir")
    if message is None and workdir is None:
        message = "missing --workdir=DIR (where checkpoints, metrics, plots and samples go)"
    if message is None:
        from experiments.common import ConfigError, check_workdir

        try:
            check_workdir(workdir)  # a file or read-only folder: one line, before any work
        except ConfigError as e:
            message = str(e)
    try:
        argv, options = split_sample_options(sys.argv)
    except ValueError as e:
        message = message or str(e)
    if message is not None:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    sys.argv = argv  # config_flags reads its overrides from sys.argv
    app.run(lambda args: main(args, options), argv=argv)


if __name__ == "__main__":
    cli()
