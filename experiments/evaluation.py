"""Validation NELBO (exact NLL for the AR model) and the ``--mode=eval`` job."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ddjax import training
from experiments.common import say
from experiments.model import Experiment, eval_params, restore_for_inference


def make_eval_fn(exp: Experiment) -> Callable:
    """A jitted eval step for ``exp``: ``fn(params, batch, key) -> nats float32[B]``.

    Each call builds (and later compiles) a new one: keep it and pass it to
    :func:`evaluate_nelbo` to evaluate more than once without recompiling.
    """
    fn = training.make_eval_step(
        exp.objective,
        int(exp.cfg.eval.num_time_samples),
        num_classes=int(exp.cfg.model.num_classes),
    )
    return training.jit_eval_step(fn, exp.mesh, exp.params, fsdp=bool(exp.cfg.train.fsdp))


def gather(x: jax.Array) -> np.ndarray:
    """``x`` as one host array holding every process's rows."""
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def evaluate_nelbo(
    exp: Experiment,
    params: Any,
    *,
    max_batches: int | None = None,
    eval_fn: Callable | None = None,
) -> dict:
    """Validation negative ELBO (exact NLL for AR) in bits and perplexity per position.

    ``eval_fn`` is a step from :func:`make_eval_fn` (a new one is built when None).
    """
    cfg = exp.cfg
    n_dev = exp.mesh.devices.size
    bs = int(cfg.eval.batch_size)
    bs = max(n_dev, (bs // n_dev) * n_dev)
    x = exp.data.eval_x
    labels = exp.data.eval_labels
    max_batches = int(cfg.eval.max_batches) if max_batches is None else max_batches
    if max_batches > 0:
        x = x[: max_batches * bs]
        labels = None if labels is None else labels[: max_batches * bs]
    n = len(x)
    if n == 0:
        raise ValueError("the evaluation split is shorter than one sequence")
    pad = (-n) % bs
    xp = np.concatenate([x, np.repeat(x[-1:], pad, 0)], 0)
    lp = None if labels is None else np.concatenate([labels, np.repeat(labels[-1:], pad, 0)])
    step = make_eval_fn(exp) if eval_fn is None else eval_fn
    key = jax.random.PRNGKey(int(cfg.eval.seed))
    pc, pi = jax.process_count(), jax.process_index()
    per = bs // pc
    total = []
    for i in range(len(xp) // bs):
        rows = slice(i * bs + pi * per, i * bs + (pi + 1) * per)
        batch = {"x": xp[rows]}
        if lp is not None:
            batch["label"] = lp[rows]
        nats = step(params, training.put_batch(batch, exp.mesh), jax.random.fold_in(key, i))
        total.append(gather(nats))
    nats = np.concatenate(total)[:n]
    bad = ~np.isfinite(nats)
    if bad.any():
        raise training.NonFiniteError(
            f"the validation NELBO is not finite for {int(bad.sum())} of {n} sequences: the "
            "model's output holds NaN or inf"
        )
    per_pos = float(nats.sum() / (n * exp.data.seq_len))
    bits = nats / (exp.data.seq_len * math.log(2.0))
    return {
        "nelbo_bits_per_" + exp.data.unit: per_pos / math.log(2.0),
        # standard error of the mean over sequences (noise levels and data together)
        "stderr_bits": float(bits.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
        "perplexity": math.exp(per_pos),
        "num_sequences": n,
    }


def report_eval(exp: Experiment, ev: dict[str, Any]) -> None:
    """Prints the validation line for the result of :func:`evaluate_nelbo`."""
    unit = exp.data.unit
    bits = ev["nelbo_bits_per_" + unit]
    bound = "" if exp.objective.is_exact else " (upper bound: negative ELBO)"
    say(
        f"validation bits per {unit}: {bits:.4f} +- {ev['stderr_bits']:.4f}{bound}; "
        f"perplexity {ev['perplexity']:.3f} over {ev['num_sequences']} sequences"
    )


def evaluate(cfg: Any, workdir: str) -> dict[str, Any]:
    """Validation (``cfg.eval.split``) NELBO of the latest checkpoint."""
    exp, state = restore_for_inference(cfg, workdir)
    ev = evaluate_nelbo(exp, eval_params(cfg, state))
    report_eval(exp, ev)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, f"eval_step{int(state.step)}.json"), "w") as f:
            json.dump(ev, f, indent=2)
    return ev
