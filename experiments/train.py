"""The ``--mode=train`` job: train (resuming from the latest checkpoint), evaluate, sample."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import jax

from ddjax import training
from experiments.common import say
from experiments.evaluation import evaluate_nelbo, make_eval_fn, report_eval
from experiments.model import build, checkpointer, eval_params, make_state
from experiments.sampling import sample_and_write, sampler_options

log = logging.getLogger(__name__)


def write_config(cfg: Any, workdir: str) -> None:
    """Writes ``WORKDIR/config.json``, noting the keys that differ from an earlier one."""
    if jax.process_index() != 0:
        return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    new = json.loads(cfg.to_json())
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old != new:
            changed = sorted(
                k
                for k in set(flatten(old)) | set(flatten(new))
                if flatten(old).get(k) != flatten(new).get(k)
            )
            log.warning("config differs from the one in %s: %s", path, ", ".join(changed))
            say(f"note: the config differs from {path} in: {', '.join(changed)}")
    with open(path, "w") as f:
        json.dump(new, f, indent=2)


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested dict as one dict with dotted keys ('model.width', ...)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def train(cfg: Any, workdir: str) -> dict[str, Any]:
    """Trains (resuming from the latest checkpoint), then evaluates and samples."""
    t_start = time.time()
    sampler_options(cfg)  # a bad sampler or option fails now, not after training
    write_config(cfg, workdir)
    exp = build(cfg)
    state, tx = make_state(exp)
    num_steps = int(cfg.train.num_steps)
    n_dev = exp.mesh.devices.size
    bs = int(cfg.train.batch_size)
    if bs % n_dev or bs % jax.process_count():
        raise ValueError(f"train.batch_size={bs} must be divisible by the {n_dev} devices")
    batches = exp.data.make_train_iter(bs // jax.process_count(), int(cfg.seed))
    ckpt = checkpointer(cfg, workdir)
    restored = ckpt.restore_latest(state)
    if restored is not None:
        state, data_state, step = restored
        batches.set_state(data_state)
        say(f"resumed from {ckpt.directory} at step {step}")
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    say(
        f"{cfg.loss.name} on {cfg.data.name}: {n_params / 1e6:.2f}M params, "
        f"{n_dev} device(s) ({jax.devices()[0].platform}), batch {bs} x {exp.data.seq_len}, "
        f"{num_steps} steps"
    )
    writer = training.MetricWriter(workdir, tensorboard=bool(cfg.train.tensorboard))
    if writer.note:
        say(f"note: {writer.note}")
    lr = training.make_lr_schedule(cfg.optim, num_steps)
    step_fn = training.make_train_step(
        exp.objective,
        tx,
        ema_decay=float(cfg.optim.ema_decay),
        antithetic=bool(cfg.loss.antithetic),
        grad_accum=int(cfg.train.grad_accum),
        num_classes=int(cfg.model.num_classes),
        label_dropout=float(cfg.train.label_dropout),
        lr_schedule=lr,
    )
    jitted = training.jit_train_step(step_fn, exp.mesh, state, fsdp=bool(cfg.train.fsdp))
    eval_step = make_eval_fn(exp)  # one compiled eval step for every evaluation below

    def eval_fn(s: training.TrainState) -> dict[str, float]:
        r = evaluate_nelbo(
            exp,
            eval_params(cfg, s),
            max_batches=int(cfg.eval.during_train_batches),
            eval_fn=eval_step,
        )
        r.pop("num_sequences")
        return r

    try:
        state = training.train_loop(
            state,
            jitted,
            batches,
            num_steps=num_steps,
            mesh=exp.mesh,
            checkpointer=ckpt,
            checkpoint_every=int(cfg.train.checkpoint_every),
            log_every=int(cfg.train.log_every),
            eval_fn=eval_fn,
            eval_every=int(cfg.train.eval_every),
            writer=writer,
            tokens_per_step=bs * exp.data.seq_len,
        )
    finally:
        ckpt.close()
    results: dict[str, Any] = {"step": int(state.step), "train_seconds": time.time() - t_start}
    if bool(cfg.train.final_eval):
        ev = evaluate_nelbo(exp, eval_params(cfg, state), eval_fn=eval_step)
        writer.write(
            int(state.step), {k: v for k, v in ev.items() if k != "num_sequences"}, "eval/"
        )
        results.update(ev)
        report_eval(exp, ev)
    if int(cfg.sample.num_samples) > 0:
        results["samples"] = sample_and_write(
            exp, eval_params(cfg, state), workdir, int(state.step)
        )
    writer.close()
    results["seconds"] = time.time() - t_start
    say(f"done in {training.format_duration(results['seconds'])}")
    return results
