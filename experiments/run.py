"""The mode dispatch behind ``experiments.main``.

The jobs live in their own modules: :mod:`experiments.train` (``--mode=train``),
:mod:`experiments.evaluation` (``--mode=eval``) and :mod:`experiments.sampling`
(``--mode=sample``, drawing through :mod:`experiments.generation`); the data sets in
:mod:`experiments.data` and the model in :mod:`experiments.model`.
"""

from __future__ import annotations

import sys
from typing import Any

from experiments import model
from experiments.checks import check_config
from experiments.data import Data, load_data
from experiments.evaluation import evaluate, evaluate_nelbo
from experiments.generation import generate
from experiments.model import Experiment, make_state
from experiments.run_config import check_resume_config
from experiments.sampling import sample
from experiments.train import train

# Old entry points kept for benchmarks/train.py and tests/test_training.py (outside this
# package's owners); new code imports them from the modules above.
__all__ = [
    "Data",
    "Experiment",
    "build",
    "evaluate",
    "evaluate_nelbo",
    "generate",
    "load_data",
    "make_state",
    "run",
    "sample",
    "train",
]


def build(cfg: Any, *, mesh: Any = None) -> Experiment:
    """:func:`experiments.model.build` with the data from this module's ``load_data``.

    benchmarks/train.py replaces ``run.load_data`` with synthetic tokens before calling
    this; new code passes ``data=`` to :func:`experiments.model.build` instead.
    """
    return model.build(cfg, mesh=mesh, data=load_data(cfg))


def run(cfg: Any, workdir: str, mode: str) -> dict[str, Any]:
    """Dispatches to :func:`train`, :func:`evaluate` or :func:`sample` after
    :func:`experiments.checks.check_config` (a bad value fails before anything runs) and
    :func:`experiments.run_config.check_resume_config` (a config that cannot continue
    the run already in ``workdir`` fails before anything is read or written)."""
    if mode not in ("train", "eval", "sample"):
        raise ValueError(f"unknown mode {mode!r}; use train, eval or sample")
    check_config(cfg)
    check_resume_config(cfg, workdir)
    if mode == "train":
        return train(cfg, workdir)
    if mode == "eval":
        return evaluate(cfg, workdir)
    if mode == "sample":
        return sample(cfg, workdir)
    raise ValueError(f"unknown mode {mode!r}; use train, eval or sample")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run this through: python -m experiments.main --config=... --workdir=...")
