"""Host-side checks for tokens and probability vectors (never inside jit)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ddjax._struct import check, concrete


def validate_tokens(x: Any, num_states: int, name: str = "tokens") -> np.ndarray:
    """Checks that ``x`` holds integer token ids in ``0..num_states-1``.

    Meant for data pipelines and eager calls: it reads the values on the host.
    Traced values (inside jit) are returned unchecked.

    Returns:
      ``x`` as an int32 NumPy array (or ``x`` itself when traced).
    Raises:
      TypeError: ``x`` is not an integer array.
      ValueError: a token is out of range; the message names ``name``.
    """
    arr = concrete(x)
    if arr is None:
        return x
    check(
        np.issubdtype(arr.dtype, np.integer),
        f"{name} must be an integer array of token ids, got dtype {arr.dtype}",
        TypeError,
    )
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        check(
            lo >= 0 and hi < num_states,
            f"{name} has token ids in [{lo}, {hi}], outside 0..{num_states - 1}",
        )
    return arr.astype(np.int32)


def validate_probs(p: Any, name: str = "probs", axis: int = -1, atol: float = 1e-4) -> None:
    """Checks that ``p`` is non-negative and sums to 1 along ``axis`` (when concrete)."""
    arr = concrete(p)
    if arr is None:
        return
    check(np.all(np.isfinite(arr)), f"{name} has non-finite entries")
    check(np.all(arr >= 0), f"{name} has negative entries (min {arr.min():.3g})")
    sums = arr.sum(axis=axis)
    check(
        np.allclose(sums, 1.0, atol=atol),
        f"{name} must sum to 1 along axis {axis}; sums range over "
        f"[{sums.min():.6g}, {sums.max():.6g}]",
    )


def validate_same_shape(name_a: str, a: Any, name_b: str, b: Any) -> None:
    """Checks two arrays have the same shape (static, works under jit)."""
    check(
        tuple(np.shape(a)) == tuple(np.shape(b)),
        f"{name_a} has shape {tuple(np.shape(a))} but {name_b} has shape {tuple(np.shape(b))}",
    )
