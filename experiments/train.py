"""The ``--mode=train`` job: train (resuming from the latest checkpoint), evaluate, sample."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import jax

from ddjax import training
from experiments import outputs
from experiments.checks import check_config
from experiments.common import ConfigError, make_workdir, say
from experiments.evaluation import evaluate_nelbo, make_eval_fn, report_eval
from experiments.model import build, checkpointer, eval_params, make_state
from experiments.prompts import prompt_tokens
from experiments.run_config import flatten
from experiments.sampling import sample_and_write

log = logging.getLogger(__name__)


def write_config(cfg: Any, workdir: str) -> None:
    """Writes ``WORKDIR/config.json``, noting the keys that differ from an earlier one."""
    if jax.process_index() != 0:
        return
    make_workdir(workdir)
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


def train(cfg: Any, workdir: str) -> dict[str, Any]:
    """Trains (resuming from the latest checkpoint), then evaluates and samples."""
    t_start = time.time()
    check_config(cfg)  # every value that names something, before anything is built
    exp = build(cfg)
    prompt_tokens(exp, 1)  # a template character outside the alphabet fails now
    write_config(cfg, workdir)
    state, tx = make_state(exp)
    bs = int(cfg.train.batch_size)
    try:
        batches = exp.data.make_train_iter(bs // jax.process_count(), int(cfg.seed))
    except ValueError as e:
        seq = exp.data.seq_len
        raise ConfigError(f"train.batch_size={bs} with data.seq_len={seq}: {e}") from None
    ckpt = checkpointer(cfg, workdir)
    try:
        state = _resume(ckpt, state, batches)
        return _train(cfg, workdir, exp, state, tx, batches, ckpt, t_start)
    finally:
        ckpt.close()  # also on errors: a pending async save is finished, not abandoned


def _resume(ckpt: Any, state: training.TrainState, batches: Any) -> training.TrainState:
    """The latest readable checkpoint's state (and data position), else ``state``."""
    restored = ckpt.restore_latest(state)
    if restored is not None:
        state, data_state, step = restored
        try:
            batches.set_state(data_state)
        except ValueError as e:
            raise ConfigError(
                f"cannot resume from {ckpt.directory} at step {step}: {e}; keep the data "
                "settings of the run (train.batch_size, data.*) or use a new --workdir"
            ) from None
        say(f"resumed from {ckpt.directory} at step {step}")
    elif ckpt.unreadable:
        say(
            f"warning: every checkpoint in {ckpt.directory} is unreadable (steps "
            f"{', '.join(map(str, ckpt.unreadable))}, moved aside to corrupt-*): "
            "starting from step 0"
        )
    return state


def _train(
    cfg: Any,
    workdir: str,
    exp: Any,
    state: training.TrainState,
    tx: Any,
    batches: Any,
    ckpt: Any,
    t_start: float,
) -> dict[str, Any]:
    """The training proper, from ``state`` (see :func:`train`)."""
    num_steps = int(cfg.train.num_steps)
    n_dev = exp.mesh.devices.size
    bs = int(cfg.train.batch_size)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    say(
        f"{cfg.loss.name} on {cfg.data.name}: {n_params / 1e6:.2f}M params, "
        f"{n_dev} device(s) ({jax.devices()[0].platform}), batch {bs} x {exp.data.seq_len}, "
        f"{num_steps} steps, {cfg.model.dtype} compute"
    )
    tensorboard = bool(cfg.train.tensorboard)
    writer = training.MetricWriter(workdir, tensorboard=tensorboard, start_step=int(state.step))
    if writer.note:
        say(f"note: {writer.note}")
    text = exp.data.decode is not None
    say(outputs.describe_files(workdir, tensorboard and not writer.note, text))
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

    def on_eval(s: training.TrainState, results: dict[str, float]) -> None:
        outputs.plot_losses(workdir)
        if int(cfg.sample.num_samples) > 0:
            sample_and_write(exp, eval_params(cfg, s), workdir, int(s.step))

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
        on_eval=on_eval,
    )
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
    png = outputs.plot_losses(workdir)
    results["seconds"] = time.time() - t_start
    say(f"done in {training.format_duration(results['seconds'])}")
    if jax.process_index() == 0:
        say(outputs.describe_files(workdir, tensorboard and not writer.note, text))
        if png:
            say(f"loss curve: {png}")
    return results
