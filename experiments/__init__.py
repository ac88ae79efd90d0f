"""Experiment scripts: the CLI (``python -m experiments.main``), configs and tables.

``experiments.load_run(workdir)`` restores a trained run for sampling from Python
(:mod:`experiments.inference`).
"""

from typing import Any

__all__ = ["Run", "load_run"]


def __getattr__(name: str) -> Any:
    # lazy: importing experiments.configs or experiments.main must not build JAX state
    if name in __all__:
        from experiments import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'experiments' has no attribute {name!r}")
