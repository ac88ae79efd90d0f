"""Exact samples from the oracle targets of :mod:`ddjax.testing`."""

from __future__ import annotations

import jax
import numpy as np

from ddjax.testing import ExactTarget

__all__ = ["synthetic"]


def synthetic(target: ExactTarget, n: int, seed: int) -> np.ndarray:
    """``n`` exact draws from an enumerated target: int32[n, L], deterministic given ``seed``.

    Feed them to :func:`ddjax.data.array_batches` to train on a distribution whose NLL,
    denoiser and samples are known exactly.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return np.asarray(target.sample(jax.random.key(seed), n), np.int32)
