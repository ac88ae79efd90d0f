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

    TensorBoard files are written with ``tensorboardX`` when it is installed
    (``pip install tensorboardX``); otherwise only the JSON lines are written and a
    note says so once. Only process 0 writes.
    """

    def __init__(self, workdir: str, *, tensorboard: bool = True):
        self.enabled = jax.process_index() == 0
        self._tb = None
        self.note = ""
        if not self.enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")  # noqa: SIM115
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter  # type: ignore[import-not-found]

                self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
            except ImportError:
                self.note = "tensorboardX is not installed: writing metrics.jsonl only"

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


def _host_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    host = jax.device_get(metrics)
    return {k: float(np.asarray(v)) for k, v in host.items()}


def _check_finite(m: dict[str, float]) -> None:
    if m.get("finite", 1.0) != 1.0 or not math.isfinite(m["loss"]):
        step = int(m["step"]) + 1
        raise NonFiniteError(
            f"non-finite loss at step {step} (loss={m['loss']}, grad_norm={m.get('grad_norm')}); "
            "stopping. No checkpoint of this state was written; lower optim.lr or raise "
            "optim.warmup_steps and restart (the run resumes from the last checkpoint)"
        )


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
) -> TrainState:
    """Runs ``train_step`` from ``state.step`` to ``num_steps``; returns the final state.

    ``batches`` yields this process's rows of each global batch: dicts ``{'x', 'label'}``
    or bare token arrays (taken as ``{'x': array}``).

    Every ``checkpoint_every`` steps and at the end the state and ``batches``' position
    are saved (after checking that the loss up to that step was finite). A non-finite
    loss raises :class:`NonFiniteError` naming the step. A progress line (step, loss,
    steps/s, tokens/s, time left) is printed every ``log_every`` steps.
    """
    say = print_fn or (lambda s: print(s, file=sys.stderr, flush=True))
    start = int(state.step)
    pending: dict[str, Any] | None = None
    window: list[dict[str, float]] = []
    t_window, s_window = time.time(), start
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
        if n % max(log_every, 1) == 0 or n == num_steps:
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
    drain()
    if checkpointer is not None:
        checkpointer.wait()
    return state
