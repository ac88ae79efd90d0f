"""Any-length generation: stop at an end-of-sequence token, pad what follows.

Shared by the samplers that generate left to right (``block_diffusion`` by blocks,
``autoregressive`` by tokens): a row is done once a free position holds ``eos_id``; after
sampling, the positions after each row's first free EOS become ``pad_id`` and the row's
length counts the tokens up to and including that EOS.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array

from ddjax._struct import check

__all__ = ["check_eos", "pad_after_eos"]


def check_eos(eos_id: int | None, pad_id: int | None, vocab_size: int | None) -> int | None:
    """Checks ``eos_id`` / ``pad_id`` against K = ``vocab_size`` (None: unknown) and returns
    the pad id (default: ``eos_id``, so rows stay sequences of data tokens)."""
    if eos_id is None:
        check(pad_id is None, "pad_id needs eos_id")
        return None
    hi = "" if vocab_size is None else f"..{vocab_size - 1}"
    check(
        isinstance(eos_id, int)
        and not isinstance(eos_id, bool)
        and 0 <= eos_id < (vocab_size or eos_id + 1),
        f"eos_id must be a data token id in 0{hi}, got {eos_id!r}",
    )
    pad_id = eos_id if pad_id is None else pad_id
    check(
        isinstance(pad_id, int)
        and not isinstance(pad_id, bool)
        and 0 <= pad_id <= (vocab_size or pad_id),
        f"pad_id must be a token id in 0..{vocab_size if vocab_size else 'V'} "
        f"(K = the mask), got {pad_id!r}",
    )
    return pad_id


def pad_after_eos(x: Array, eos_id: int, pad_id: int, free: Array | None) -> tuple[Array, Array]:
    """(x with ``pad_id`` after each row's first free EOS, lengths int32[B]).

    Args:
      x: int32[B, L] samples.
      eos_id, pad_id: the end-of-sequence and pad tokens.
      free: bool[B, L] or [1, L], the generated positions (an EOS in a prompt does not
        end the row), or None for all.

    Returns:
      (int32[B, L], int32[B]): lengths count up to and including the first free EOS, L
      when a row has none.
    """
    length = x.shape[-1]
    is_eos = x == eos_id
    if free is not None:
        is_eos = is_eos & free
    first = jnp.argmax(is_eos, axis=-1)
    lengths = jnp.where(jnp.any(is_eos, axis=-1), first + 1, length).astype(jnp.int32)
    x = jnp.where(jnp.arange(length)[None, :] >= lengths[:, None], pad_id, x)
    return x, lengths
