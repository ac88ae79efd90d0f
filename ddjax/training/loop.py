"""The training loop: steps, progress, metrics files, checkpoints, non-finite checks.

The loop is deliberately plain: fetch a batch, run the jitted step, and read the
previous step's metrics back while the current one runs (so the host never stalls
the device, yet a non-finite loss is caught at the exact step that produced it).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import jax
import numpy as np
from jax.sharding import Mesh

from ddjax.training.checkpoint import Checkpointer, NonFiniteError
from ddjax.training.sharding import put_batch
from ddjax.training.state import TrainState

__all__ = ["MetricWriter", "StatefulIterator", "train_loop", "format_duration"]


class StatefulIterator(Protocol):
    """A batch iterator whose position can be saved and restored exactly."""

    def __iter__(self) -> Iterator[Any]: ...

    def __next__(self) -> Any: ...

    def get_state(self) -> dict[str, Any]: ...

    def set_state(self, state: dict[str, Any]) -> None: ...


def format_duration(seconds: float) -> str:
    """``3725 -> '1h02m05s'``, ``65 -> '1m05s'``, ``4.2 -> '4s'``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


class MetricWriter:
    """Appends metrics to ``WORKDIR/metrics.jsonl`` and TensorBoard event files.

    TensorBoard files (``WORKDIR/tensorboard``) are written with ``tensorboardX`` (in
    ddjax's install_requires); without it only the JSON lines are written and
    :attr:`note` says so. Only process 0 writes.

    ``start_step``: the step a run starts (or resumes) from. Records of later steps,
    left by a run that went on past its last checkpoint, are dropped from
    metrics.jsonl (and purged from TensorBoard), so re-run steps are not duplicated.
    """

    def __init__(self, workdir: str, *, tensorboard: bool = True, start_step: int | None = None):
        self.enabled = jax.process_index() == 0
        self._tb = None
        self.note = ""
        self.path = os.path.join(workdir, "metrics.jsonl")
        if not self.enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        if start_step is not None and os.path.exists(self.path):
            _drop_records_after(self.path, int(start_step))
        self._jsonl = open(self.path, "a")  # noqa: SIM115
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter  # type: ignore[import-not-found]

                kwargs = {} if start_step is None else {"purge_step": int(start_step) + 1}
                self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), **kwargs)
            except ImportError:
                self.note = (
                    "tensorboardX is not installed (pip install tensorboardX): writing "
                    "metrics.jsonl only"
                )

    def write(self, step: int, metrics: dict[str, float], prefix: str = "") -> None:
        """One record: ``{"step": step, prefix + name: value, ...}``."""
        if not self.enabled:
            return
        record = {"step": int(step), "time": round(time.time(), 3)}
        record.update({prefix + k: float(v) for k, v in metrics.items()})
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(prefix + k, float(v), int(step))

    def close(self) -> None:
        """Flushes and closes the files."""
        if not self.enabled:
            return
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def _drop_records_after(path: str, step: int) -> None:
    """Rewrites the JSON-lines file ``path`` without the records of steps > ``step``."""
    with open(path) as f:
        lines = f.readlines()
    keep = []
    for line in lines:
        try:
            if int(json.loads(line).get("step", 0)) <= step:
                keep.append(line)
        except (ValueError, AttributeError):
            continue  # a torn last line of a killed run
    if len(keep) != len(lines):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(keep)
        os.replace(tmp, path)


def _host_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    host = jax.device_get(metrics)
    return {k: float(np.asarray(v)) for k, v in host.items()}


def _check_finite(m: dict[str, float]) -> None:
    loss, gnorm = m["loss"], m.get("grad_norm", 0.0)
    if m.get("finite", 1.0) == 1.0 and math.isfinite(loss):
        return
    step = int(m["step"]) + 1
    if math.isfinite(loss):
        what = f"non-finite gradient norm at step {step} (grad_norm={gnorm}; the loss {loss:.4g}"
        what += " is finite)"
    else:
        what = f"non-finite loss at step {step} (loss={loss}, grad_norm={gnorm})"
    raise NonFiniteError(
        f"{what}; stopping. No checkpoint of this state was written; lower optim.lr or "
        "raise optim.warmup_steps and restart (the run resumes from the last checkpoint)"
    )


# Progress lines before the first ``log_every`` boundary, so a run shows life at once.
EARLY_STEPS = (1, 2, 5, 10, 20, 50)


def train_loop(
    state: TrainState,
    train_step: Callable[[TrainState, Any], tuple[TrainState, dict[str, Any]]],
    batches: StatefulIterator,
    *,
    num_steps: int,
    mesh: Mesh,
    checkpointer: Checkpointer | None = None,
    checkpoint_every: int = 0,
    log_every: int = 50,
    eval_fn: Callable[[TrainState], dict[str, float]] | None = None,
    eval_every: int = 0,
    writer: MetricWriter | None = None,
    tokens_per_step: int = 0,
    print_fn: Callable[[str], None] | None = None,
    on_eval: Callable[[TrainState, dict[str, float]], None] | None = None,
) -> TrainState:
    """Runs ``train_step`` from ``state.step`` to ``num_steps``; returns the final state.

    ``batches`` yields this process's rows of each global batch: dicts ``{'x', 'label'}``
    or bare token arrays (taken as ``{'x': array}``).

    Every ``checkpoint_every`` steps and at the end the state and ``batches``' position
    are saved (after checking that the loss up to that step was finite). A non-finite
    loss raises :class:`NonFiniteError` naming the step. A progress line (step, loss,
    steps/s, tokens/s, time left) is printed every ``log_every`` steps, and from the
    start: after the first step (with its time, mostly compilation) and after steps
    2, 5, 10, 20 and 50 when they come before the first ``log_every`` boundary.
    ``on_eval(state, results)`` runs after each evaluation's results are written.
    """

    def say(line: str) -> None:  # process 0 only, unless print_fn says otherwise
        if print_fn is not None:
            print_fn(line)
        elif jax.process_index() == 0:
            print(line, file=sys.stderr, flush=True)

    start = int(state.step)
    pending: dict[str, Any] | None = None
    window: list[dict[str, float]] = []
    t_window, s_window = time.time(), start
    t_loop, first_step_s = t_window, float("nan")
    first_boundary = (start // max(log_every, 1) + 1) * max(log_every, 1)
    rate = float("nan")

    def drain() -> None:
        nonlocal pending
        if pending is not None:
            m = _host_metrics(pending)
            pending = None
            _check_finite(m)
            window.append(m)

    for step in range(start, num_steps):
        batch = next(batches)
        batch = put_batch(batch if isinstance(batch, dict) else {"x": batch}, mesh)
        state, metrics = train_step(state, batch)
        drain()
        pending = metrics
        n = step + 1
        if n == start + 1:  # time from the end of the first (compiling) step
            drain()
            t_window, s_window = time.time(), n
            first_step_s = t_window - t_loop
        boundary = n % max(log_every, 1) == 0 or n == num_steps
        if not boundary and n - start in EARLY_STEPS and n < first_boundary:
            drain()
            last = window[-1]
            if n == start + 1:
                speed = f"first step {first_step_s:.1f}s (compiling)"
            else:
                r = (n - s_window) / max(time.time() - t_window, 1e-9)
                speed = f"{r:.2f} steps/s"
                if tokens_per_step:
                    speed += f" | {r * tokens_per_step / 1e3:.1f}k tok/s"
                speed += f" | left {format_duration((num_steps - n) / r)}"
            say(
                f"step {n}/{num_steps} | loss {last['loss']:.4f} "
                f"({last['bits_per_token']:.3f} bits/token) | {speed}"
            )
        if boundary:
            drain()
            now = time.time()
            if n > s_window:
                rate = (n - s_window) / max(now - t_window, 1e-9)
            t_window, s_window = now, n
            mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            mean.pop("step", None)
            mean.pop("finite", None)
            window.clear()
            if not math.isnan(rate):
                mean["steps_per_sec"] = rate
                if tokens_per_step:
                    mean["tokens_per_sec"] = rate * tokens_per_step
            if writer is not None:
                writer.write(n, mean, "train/")
            left = (num_steps - n) / rate if rate > 0 else float("nan")
            speed = "? steps/s" if math.isnan(rate) else f"{rate:.2f} steps/s"
            if tokens_per_step and not math.isnan(rate):
                speed += f" | {mean['tokens_per_sec'] / 1e3:.1f}k tok/s"
            say(
                f"step {n}/{num_steps} | loss {mean['loss']:.4f} "
                f"({mean['bits_per_token']:.3f} bits/token) | {speed} | "
                f"left {format_duration(left)}"
            )
        if checkpointer is not None and (
            (checkpoint_every and n % checkpoint_every == 0) or n == num_steps
        ):
            drain()
            checkpointer.save(state, batches.get_state())
        if eval_fn is not None and eval_every and n % eval_every == 0 and n != num_steps:
            drain()
            results = eval_fn(state)
            if writer is not None:
                writer.write(n, results, "eval/")
            say(f"step {n}: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
            if on_eval is not None:
                on_eval(state, results)
    drain()
    if checkpointer is not None:
        checkpointer.wait()
    return state
