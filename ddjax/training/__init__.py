"""Training: train state, objectives, pure train/eval steps, sharding, checkpoints, loop.

Typical use (see ``experiments/run.py`` for the config-driven version)::

    objective = Objective("masked_elbo", process, apply_fn)  # or a Loss: training.LOSSES
    tx = make_optimizer(cfg.optim, num_steps)
    state = init_train_state(params, tx, seed)
    mesh = make_mesh()
    step = jit_train_step(make_train_step(objective, tx), mesh, state)
    state, metrics = step(state, put_batch({"x": tokens}, mesh))
"""

from ddjax.training.checkpoint import (
    Checkpointer,
    CheckpointMismatchError,
    NonFiniteError,
    UnreadableCheckpointWarning,
    all_finite,
    validate_for_save,
)
from ddjax.training.loop import MetricWriter, format_duration, train_loop
from ddjax.training.loss_table import LOSSES, Loss
from ddjax.training.objectives import Objective
from ddjax.training.optim import ema_update, make_lr_schedule, make_optimizer
from ddjax.training.sharding import (
    batch_sharding,
    make_mesh,
    maybe_initialize_distributed,
    put_batch,
    put_replicated,
    replicated,
    state_sharding,
)
from ddjax.training.state import TrainState, init_train_state
from ddjax.training.steps import (
    antithetic_uniforms,
    jit_eval_step,
    jit_train_step,
    make_eval_step,
    make_loss_and_grad,
    make_train_step,
)

__all__ = [
    "LOSSES",
    "CheckpointMismatchError",
    "Checkpointer",
    "Loss",
    "MetricWriter",
    "NonFiniteError",
    "Objective",
    "TrainState",
    "UnreadableCheckpointWarning",
    "all_finite",
    "antithetic_uniforms",
    "batch_sharding",
    "ema_update",
    "format_duration",
    "init_train_state",
    "jit_eval_step",
    "jit_train_step",
    "make_eval_step",
    "make_loss_and_grad",
    "make_lr_schedule",
    "make_mesh",
    "make_optimizer",
    "make_train_step",
    "maybe_initialize_distributed",
    "put_batch",
    "put_replicated",
    "replicated",
    "state_sharding",
    "train_loop",
    "validate_for_save",
]
