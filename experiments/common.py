"""Small helpers shared by the experiment modules."""

from __future__ import annotations

import os

import jax


class ConfigError(ValueError):
    """A config value that cannot work; ``experiments.main`` reports it without a traceback."""


def say(msg: str) -> None:
    """Prints a progress or result line (process 0 only)."""
    if jax.process_index() == 0:
        print(msg, flush=True)


def check_workdir(workdir: str) -> None:
    """A ConfigError naming ``--workdir`` when it cannot be a writable directory.

    Creates nothing (a config error found later must leave no folder behind): the path,
    or its nearest existing parent, must be a directory this process can write to.
    """
    path = os.path.abspath(workdir)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"--workdir={workdir}: {path} is a file, not a directory")
    if os.path.isdir(path) and not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"--workdir={workdir}: {path} is not writable")


def make_workdir(workdir: str) -> None:
    """``os.makedirs(workdir)``, with an OSError as a ConfigError naming ``--workdir``."""
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"--workdir={workdir}: cannot create directory ({e.strerror or e})"
        ) from None
