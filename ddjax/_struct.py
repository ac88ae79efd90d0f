"""Frozen pytree dataclasses and eager argument checks.

Dataclasses registered here are rebuilt by JAX on every unflatten (under jit the
fields are tracers, and tree utilities may pass placeholder objects), so the
checks in ``__post_init__`` only look at values that are concrete.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import numpy as np

T = TypeVar("T")


def static_field(**kwargs: Any) -> Any:
    """A dataclass field that is pytree metadata (hashable, part of the jit cache key)."""
    return dataclasses.field(metadata={"static": True}, **kwargs)


def pytree_dataclass(cls: type[T]) -> type[T]:
    """Makes ``cls`` a frozen dataclass registered as a pytree.

    Fields declared with :func:`static_field` are metadata; all others are leaves.
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(cls)
    meta = [f.name for f in fields if f.metadata.get("static", False)]
    data = [f.name for f in fields if not f.metadata.get("static", False)]
    jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)
    return cls


def concrete(x: Any) -> np.ndarray | None:
    """``x`` as a NumPy array when its value is known on the host, else None.

    Tracers and the placeholder objects that tree utilities pass give None, so a
    check written with it never syncs inside jitted code.
    """
    if isinstance(x, jax.core.Tracer):
        return None
    if isinstance(x, (int, float, np.ndarray, np.generic)):
        return np.asarray(x)
    if isinstance(x, (list, tuple)):  # nested Python sequences (a batch from a pipeline)
        try:
            return np.asarray(x)
        except Exception:  # noqa: BLE001 - e.g. a list holding tracers
            return None
    if isinstance(x, jax.Array):
        try:
            return np.asarray(x)
        except Exception:  # noqa: BLE001 - e.g. arrays spread over non-addressable devices
            return None
    return None


def check(condition: bool, message: str, error: Callable[[str], Exception] = ValueError) -> None:
    """Raises ``error(message)`` when ``condition`` is false."""
    if not condition:
        raise error(message)
