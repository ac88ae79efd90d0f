"""Small helpers shared by the experiment modules."""

from __future__ import annotations

import jax


class ConfigError(ValueError):
    """A config value that cannot work; ``experiments.main`` reports it without a traceback."""


def say(msg: str) -> None:
    """Prints a progress or result line (process 0 only)."""
    if jax.process_index() == 0:
        print(msg, flush=True)
