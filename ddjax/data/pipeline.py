"""Deterministic, resumable, process-sharded batch iterators (plain NumPy).

Both iterators walk an infinite stream of epochs. Epoch ``e`` visits the items
(sequence chunks or array rows) in the order ``np.random.default_rng([seed, e, 0])
.permutation(n)``; the stream is cut into global batches of
``batch_size * process_count`` items and process ``p`` takes the ``p``-th slice
of ``batch_size`` items of each one, so the processes of one step see disjoint
data and together see exactly the global batch.

The iterator's position is one integer (global batches emitted). ``get_state()``
returns it with a fingerprint of the configuration as a JSON-serialisable dict;
``set_state()`` resumes exactly, on any process (the state is the same on all).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["SequenceBatches", "ArrayBatches", "sequence_batches", "array_batches", "chunk"]


class _Shuffled:
    kind = "base"

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        *,
        seed: int,
        process_index: int,
        process_count: int,
        drop_remainder: bool,
        what: str,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ValueError(
                f"need 0 <= process_index < process_count, got {process_index}, {process_count}"
            )
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        global_batch = batch_size * process_count
        if num_items < 1:
            raise ValueError(f"no {what} to draw batches from")
        if drop_remainder and num_items < global_batch:
            raise ValueError(
                f"only {num_items} {what} but the global batch is {global_batch} "
                f"({batch_size} x {process_count} processes); use drop_remainder=False or a "
                "smaller batch"
            )
        self.num_items = int(num_items)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.process_index = int(process_index)
        self.process_count = int(process_count)
        self.drop_remainder = bool(drop_remainder)
        self.global_batch_size = global_batch
        self._position = 0
        self._perms: dict[int, np.ndarray] = {}

    # -- ordering ---------------------------------------------------------------------------

    def _perm(self, epoch: int) -> np.ndarray:
        perm = self._perms.get(epoch)
        if perm is None:
            if len(self._perms) >= 2:
                self._perms.pop(min(self._perms))
            perm = np.random.default_rng([self.seed, epoch, 0]).permutation(self.num_items)
            self._perms[epoch] = perm
        return perm

    @property
    def batches_per_epoch(self) -> int | None:
        """Global batches per epoch with ``drop_remainder``; None when batches straddle epochs."""
        return self.num_items // self.global_batch_size if self.drop_remainder else None

    def _indices(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """(epoch, item) of each of this process's ``batch_size`` items at a global batch."""
        offset = self.process_index * self.batch_size
        slots = np.arange(self.batch_size, dtype=np.int64) + offset
        if self.drop_remainder:
            per_epoch = self.num_items // self.global_batch_size
            epoch, b = divmod(position, per_epoch)
            epochs = np.full(self.batch_size, epoch, np.int64)
            within = b * self.global_batch_size + slots
        else:
            q = position * self.global_batch_size + slots
            epochs, within = np.divmod(q, self.num_items)
        items = np.empty(self.batch_size, np.int64)
        for e in np.unique(epochs):
            sel = epochs == e
            items[sel] = self._perm(int(e))[within[sel]]
        return epochs, items

    # -- iterator protocol --------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        batch = self._make(*self._indices(self._position))
        self._position += 1
        return batch

    def _make(self, epochs: np.ndarray, items: np.ndarray) -> Any:
        raise NotImplementedError

    def _fingerprint(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "seed": self.seed,
            "num_items": self.num_items,
            "global_batch_size": self.global_batch_size,
            "drop_remainder": self.drop_remainder,
        }

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable position: ``{'position': global batches emitted, ...config}``."""
        return {"position": self._position, **self._fingerprint()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Resumes at a position from :meth:`get_state` (of any process of the same run).

        Raises:
          ValueError: the state belongs to a differently configured pipeline.
        """
        mine = self._fingerprint()
        diff = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"data state does not match this pipeline ({detail})")
        position = int(state["position"])
        if position < 0:
            raise ValueError(f"position must be >= 0, got {position}")
        self._position = position

    @property
    def position(self) -> int:
        """Global batches emitted so far."""
        return self._position


class SequenceBatches(_Shuffled):
    """Iterator of int32[batch_size, seq_len] crops of a 1-D token array (see module doc).

    The array is cut into ``n = len(tokens) // seq_len`` non-overlapping windows. Each
    epoch starts its windows at a fresh random offset in ``[0, len(tokens) - n * seq_len]``
    so crops differ between epochs when the length is not a multiple of ``seq_len``.
    """

    kind = "sequence"

    def __init__(
        self,
        tokens: np.ndarray,
        seq_len: int,
        batch_size: int,
        *,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        drop_remainder: bool = True,
    ) -> None:
        tokens = np.asarray(tokens) if not isinstance(tokens, np.memmap) else tokens
        if tokens.ndim != 1:
            raise ValueError(f"tokens must be 1-D, got shape {tokens.shape}")
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if len(tokens) < seq_len:
            raise ValueError(f"only {len(tokens)} tokens, fewer than seq_len={seq_len}")
        self.tokens = tokens
        self.seq_len = int(seq_len)
        self._slack = len(tokens) - (len(tokens) // seq_len) * seq_len
        super().__init__(
            len(tokens) // seq_len,
            batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
            drop_remainder=drop_remainder,
            what=f"windows of {seq_len} tokens",
        )

    def _offset(self, epoch: int) -> int:
        if self._slack == 0:
            return 0
        return int(np.random.default_rng([self.seed, epoch, 1]).integers(0, self._slack + 1))

    def _make(self, epochs: np.ndarray, items: np.ndarray) -> np.ndarray:
        offsets = np.array([self._offset(int(e)) for e in epochs], np.int64)
        starts = offsets + items * self.seq_len
        return np.asarray(self.tokens[starts[:, None] + np.arange(self.seq_len)], np.int32)

    def _fingerprint(self) -> dict[str, Any]:
        return {**super()._fingerprint(), "seq_len": self.seq_len, "num_tokens": len(self.tokens)}


class ArrayBatches(_Shuffled):
    """Iterator of ``{'x': array[idx], 'label': labels[idx]}`` dicts over rows of an array.

    ``'label'`` is present only when ``labels`` is given. Dtypes are preserved.
    """

    kind = "array"

    def __init__(
        self,
        array: np.ndarray,
        batch_size: int,
        *,
        seed: int,
        labels: np.ndarray | None = None,
        process_index: int = 0,
        process_count: int = 1,
        drop_remainder: bool = True,
    ) -> None:
        array = np.asarray(array)
        if labels is not None:
            labels = np.asarray(labels)
            if len(labels) != len(array):
                raise ValueError(f"{len(labels)} labels for {len(array)} rows")
        self.array, self.labels = array, labels
        super().__init__(
            len(array),
            batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
            drop_remainder=drop_remainder,
            what="rows",
        )

    def _make(self, epochs: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
        out = {"x": self.array[items]}
        if self.labels is not None:
            out["label"] = self.labels[items]
        return out


def sequence_batches(
    tokens: np.ndarray,
    seq_len: int,
    batch_size: int,
    *,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    drop_remainder: bool = True,
) -> SequenceBatches:
    """Infinite, shuffled, resumable iterator of int32[batch_size, seq_len] token crops.

    Args:
      tokens: 1-D integer token array (a memory map works; crops are read on demand).
      seq_len: tokens per sequence.
      batch_size: sequences per batch *on this process*; the global batch is
        ``batch_size * process_count``.
      seed: non-negative integer; the same seed gives the same stream.
      process_index, process_count: this process's slice of every global batch
        (``jax.process_index()``, ``jax.process_count()``).
      drop_remainder: True: each epoch yields ``n // global_batch`` batches and drops the
        remaining windows; False: batches run on into the next epoch, so every window of
        every epoch is used (and the dataset may be smaller than one batch).

    Returns:
      a :class:`SequenceBatches` with ``get_state()`` / ``set_state()``.
    """
    return SequenceBatches(
        tokens,
        seq_len,
        batch_size,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        drop_remainder=drop_remainder,
    )


def array_batches(
    array: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    labels: np.ndarray | None = None,
    process_index: int = 0,
    process_count: int = 1,
    drop_remainder: bool = True,
) -> ArrayBatches:
    """Infinite, shuffled, resumable iterator of ``{'x': rows, 'label': labels}`` batches.

    Same ordering, sharding and state semantics as :func:`sequence_batches`, over the
    rows of ``array`` (e.g. int32[N, H, W] images).
    """
    return ArrayBatches(
        array,
        batch_size,
        seed=seed,
        labels=labels,
        process_index=process_index,
        process_count=process_count,
        drop_remainder=drop_remainder,
    )


def chunk(tokens: np.ndarray, seq_len: int, max_sequences: int | None = None) -> np.ndarray:
    """Non-overlapping, in-order windows for evaluation: int32[n, seq_len].

    ``n = len(tokens) // seq_len`` (the tail shorter than ``seq_len`` is dropped), capped at
    ``max_sequences``.
    """
    n = len(tokens) // seq_len
    if max_sequences is not None:
        n = min(n, max_sequences)
    return np.asarray(tokens[: n * seq_len], np.int32).reshape(n, seq_len)
