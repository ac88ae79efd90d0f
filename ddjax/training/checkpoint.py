"""Checkpoints: Orbax CheckpointManager over TrainState + the data position (JSON).

* Saves are validated first: every leaf must be a numeric array and every float
  leaf finite, and the data position must be JSON-serialisable. A state with a
  non-finite value raises :class:`NonFiniteError` and nothing is written (an async
  save that failed later would also hang the process at exit for minutes).
* Orbax writes each step into a temporary folder and renames it when complete, so a
  process killed mid-save leaves no half-written step behind (stale temporary
  folders are removed on the next start).
* :meth:`Checkpointer.restore_latest` tries the newest step first; a step that
  cannot be read (partial or corrupt files, non-finite values) is moved aside to
  ``corrupt-<step>-<time>`` with a one-line :class:`UnreadableCheckpointWarning` and
  the previous one is tried.
* A checkpoint that reads fine but holds another tree than the template (other leaf
  paths or shapes: another model or optimiser) is not corrupt: restoring it raises
  :class:`CheckpointMismatchError` and nothing is moved. The saved tree is compared
  with the template from Orbax's metadata before any array is read.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from ddjax.training.state import TrainState

__all__ = [
    "CheckpointMismatchError",
    "Checkpointer",
    "NonFiniteError",
    "UnreadableCheckpointWarning",
    "all_finite",
    "tree_mismatch",
    "validate_for_save",
]


_LOOP_CLOSED_LINES = (
    "asyncio/base_events.py",
    "self._check_closed()",
    "raise RuntimeError('Event loop is closed')",
    "RuntimeError: Event loop is closed",
)


def _drop_closed_loop_tracebacks(text: str) -> str:
    """Removes the lines of "Event loop is closed" tracebacks (possibly interleaved)."""
    lines = text.splitlines(keepends=True)
    noise = [any(m in line for m in _LOOP_CLOSED_LINES) for line in lines]
    keep = []
    for i, line in enumerate(lines):
        if noise[i]:
            continue
        if line.startswith("Traceback (most recent call last):") and i + 1 < len(lines):
            if noise[i + 1] or lines[i + 1].startswith("Traceback"):
                continue
        keep.append(line)
    return "".join(keep)


@contextlib.contextmanager
def _without_closed_loop_tracebacks() -> Iterator[None]:
    """Drops the "Event loop is closed" tracebacks of a failed Orbax restore.

    After a read fails, TensorStore's I/O threads still deliver the other reads to
    Orbax's closed asyncio loop, and each prints a traceback straight to file
    descriptor 2. This captures fd 2 for the duration, then writes back everything
    except those tracebacks.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. a captured stderr in tests
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        except BaseException:
            # The stragglers arrive for a moment after the failure: wait until quiet.
            last, quiet, deadline = -1, 0, time.monotonic() + 3.0
            while quiet < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
                size = os.fstat(tmp.fileno()).st_size
                quiet, last = (quiet + 1, last) if size == last else (0, size)
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            sys.stderr.write(_drop_closed_loop_tracebacks(text))
            sys.stderr.flush()


def _is_abandoned_read(unraisable: Any) -> bool:
    """True for the "Exception ignored" reports that a failed Orbax read leaves behind:
    its other read coroutines, closed when collected (each with a TensorStore repr),
    and their callbacks into the closed asyncio loop."""
    exc = unraisable.exc_value
    if isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc):
        return True
    code = getattr(unraisable.object, "cr_code", None)
    return code is not None and "orbax" in code.co_filename


@contextlib.contextmanager
def _quiet_abandoned_reads(failures: list[int]) -> Iterator[None]:
    """Collects the debris of failed reads (when ``failures`` is non-empty on exit)
    without its reports: asyncio's "Task exception was never retrieved" and the
    "Exception ignored in <coroutine ...>" of each abandoned read.

    The collection runs on exit, once the failed reads' exceptions (whose tracebacks
    keep the coroutines alive) are released; left to a later collection, the reports
    would come out at a random moment, kilobytes each.
    """
    hook = sys.unraisablehook
    asyncio_log = logging.getLogger("asyncio")
    level = asyncio_log.level

    def quiet(unraisable: Any) -> None:
        if not _is_abandoned_read(unraisable):
            hook(unraisable)

    sys.unraisablehook = quiet
    asyncio_log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        try:
            if failures:
                gc.collect()
        finally:
            sys.unraisablehook = hook
            asyncio_log.setLevel(level)


class NonFiniteError(FloatingPointError):
    """A loss or parameter became NaN or infinite."""


class CheckpointMismatchError(ValueError):
    """A readable checkpoint whose tree (leaf paths or shapes) differs from the template.

    The checkpoint is intact; the state asked for belongs to another model or
    optimiser. It is never moved aside. ``differences`` lists one line per leaf.
    """

    def __init__(self, message: str, differences: list[str]):
        super().__init__(message)
        self.differences = differences


class UnreadableCheckpointWarning(RuntimeWarning):
    """A saved step could not be read and was moved aside (one line, the reason in short)."""


def _path_name(path: tuple[Any, ...]) -> str:
    # DictKey / SequenceKey / GetAttrKey all become plain names: Orbax's metadata tree
    # spells the template's attributes and tuple indices as dict keys.
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def _shapes(tree: Any) -> dict[str, tuple[int, ...] | None]:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {
        _path_name(p): (tuple(x.shape) if getattr(x, "shape", None) is not None else None)
        for p, x in leaves
    }


def tree_mismatch(saved: Any, template: Any) -> list[str]:
    """One line per leaf where the trees ``saved`` and ``template`` differ, else [].

    Compares leaf paths (dict keys, attribute names and sequence indices alike) and
    shapes; dtypes are not compared (a restore casts them). ``saved`` may be Orbax's
    metadata tree of a checkpoint, ``template`` any pytree of arrays.
    """
    a, b = _shapes(saved), _shapes(template)
    out = [
        f"{k}: saved {a[k]}, asked for {b[k]}" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]
    ]
    out += [f"{k}: saved, not in the state asked for" for k in sorted(a.keys() - b.keys())]
    out += [f"{k}: asked for, not saved" for k in sorted(b.keys() - a.keys())]
    return out


def _short_reason(e: BaseException) -> str:
    """``Type: first line`` of an error, without TensorStore's spec repr."""
    text = str(e).split("See full TensorStore details", 1)[0].strip()
    text = text.splitlines()[0] if text else ""
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


@jax.jit
def _finite_flags(leaves: list[jax.Array]) -> jax.Array:
    return jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])


def all_finite(tree: Any) -> bool:
    """True when every floating-point leaf of ``tree`` is finite (one device sync)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    if not leaves:
        return True
    return bool(np.all(np.asarray(_finite_flags(leaves))))


def validate_for_save(state: TrainState, data_state: dict[str, Any] | None) -> None:
    """Raises unless ``state`` is all numeric, finite arrays and ``data_state`` is JSON."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.to_dict()):
        if (
            not isinstance(leaf, (jax.Array, np.ndarray, np.generic))
            or leaf.dtype.kind not in "biuf"
        ):
            raise TypeError(
                f"checkpoint leaf {jax.tree_util.keystr(path)} is {type(leaf).__name__} "
                f"{getattr(leaf, 'dtype', '')}; only numeric arrays can be saved"
            )
    if not all_finite(state.to_dict()):
        raise NonFiniteError(
            f"refusing to save the state at step {int(state.step)}: it holds non-finite values"
        )
    if data_state is not None:
        json.dumps(data_state)  # raises TypeError on anything JSON cannot hold


class Checkpointer:
    """Saves and restores :class:`TrainState` and the data position in ``directory``.

    Args:
      directory: the checkpoint folder (``WORKDIR/checkpoints``); created if needed.
      max_to_keep: how many recent steps to keep.
      async_save: write in a background thread (the device-to-host copy still
        happens before :meth:`save` returns, so the state may be changed after).
    """

    def __init__(
        self,
        directory: str,
        *,
        max_to_keep: int = 3,
        async_save: bool = True,
        create: bool = True,
    ):
        self.directory = os.path.abspath(directory)
        if not create and not os.path.isdir(self.directory):
            raise FileNotFoundError(f"no checkpoint folder {self.directory}")
        self.unreadable: list[int] = []  # steps that restore_latest had to move aside
        self._options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
            create=create,
        )
        self._mngr = self._open()

    def _open(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(self.directory, options=self._options)

    def all_steps(self) -> list[int]:
        """Saved steps, ascending."""
        return sorted(self._mngr.all_steps())

    def latest_step(self) -> int | None:
        """The newest saved step, or None."""
        return self._mngr.latest_step()

    def save(self, state: TrainState, data_state: dict[str, Any] | None = None) -> bool:
        """Validates and saves ``state`` at ``state.step``; False if that step exists."""
        validate_for_save(state, data_state)
        step = int(state.step)
        if step in self._mngr.all_steps():
            return False
        self._mngr.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state.to_dict()),
                data=ocp.args.JsonSave(data_state if data_state is not None else {}),
            ),
            force=True,
        )
        return True

    def wait(self) -> None:
        """Blocks until pending async saves are on disk."""
        self._mngr.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager (a second call does nothing)."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self._mngr.wait_until_finished()
        self._mngr.close()

    def restore(self, step: int, template: TrainState) -> tuple[TrainState, dict[str, Any]]:
        """Restores ``step`` into the structure, dtypes and shardings of ``template``.

        Raises FileNotFoundError naming the file when the step's ``state/_METADATA``
        (Orbax's record of the saved tree) is missing, :class:`CheckpointMismatchError`
        when the saved tree's leaf paths or shapes differ from ``template``'s (checked
        before any array is read), and whatever the read raises for damaged files.
        """
        state_dir = os.path.join(self.directory, str(step), "state")
        meta = os.path.join(state_dir, "_METADATA")
        if not os.path.isfile(meta):
            raise FileNotFoundError(f"checkpoint {step} is incomplete: {meta} is missing")
        # Compare the saved tree with the template before reading any array: a shape
        # error from the read itself would look like any other failed read.
        saved = ocp.StandardCheckpointHandler().metadata(epath.Path(state_dir))
        differences = tree_mismatch(saved, template.to_dict())
        if differences:
            shown = "; ".join(differences[:4])
            more = f"; and {len(differences) - 4} more" if len(differences) > 4 else ""
            raise CheckpointMismatchError(
                f"checkpoint {step} in {self.directory} holds another model or optimiser "
                f"state than the one asked for ({len(differences)} leaves differ: "
                f"{shown}{more}); restore it with the config it was trained with",
                differences,
            )
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template.to_dict())
        out = self._mngr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()
            ),
        )
        state = TrainState.from_dict(out["state"])
        if int(state.step) != step:
            raise ValueError(f"checkpoint {step} holds step {int(state.step)}")
        if not all_finite(state.to_dict()):
            raise NonFiniteError(f"checkpoint {step} holds non-finite values")
        return state, dict(out["data"] or {})

    def restore_latest(self, template: TrainState) -> tuple[TrainState, dict[str, Any], int] | None:
        """The newest readable checkpoint as (state, data position, step), or None.

        Unreadable steps (damaged files, non-finite values) are moved to
        ``corrupt-<step>-<time>`` with a one-line :class:`UnreadableCheckpointWarning`
        and listed in :attr:`unreadable`; None with a non-empty ``unreadable`` means that
        every saved step was unreadable (the caller should say so rather than start from
        scratch). A step that holds another tree than ``template`` raises
        :class:`CheckpointMismatchError` and nothing is moved.
        """
        self.unreadable = []
        with _quiet_abandoned_reads(self.unreadable):
            for step in sorted(self._mngr.all_steps(), reverse=True):
                try:
                    with _without_closed_loop_tracebacks():
                        state, data = self.restore(step, template)
                    return state, data, step
                except CheckpointMismatchError:
                    raise  # an intact checkpoint of another model: never "corrupt"
                except Exception as e:  # noqa: BLE001 - any other failure: step unusable
                    self.unreadable.append(step)
                    aside = self._quarantine(step)
                    msg = (
                        f"checkpoint at step {step} in {self.directory} is unreadable "
                        f"({_short_reason(e)}); moved aside to {aside}, trying the previous one"
                    )
                    warnings.warn(msg, UnreadableCheckpointWarning, stacklevel=2)
        return None

    def _quarantine(self, step: int) -> str:
        """Renames step ``step`` to ``corrupt-<step>-<time>``; returns that name."""
        name = f"corrupt-{step}-{int(time.time())}"
        if jax.process_index() == 0:
            src = os.path.join(self.directory, str(step))
            if os.path.isdir(src):
                os.replace(src, os.path.join(self.directory, name))
        self._mngr.reload()
        return name
