"""The config of a run that already exists: which keys may change when it is resumed.

A run's workdir holds ``config.json`` (written by ``--mode=train``) next to its
checkpoints. Every later command on that workdir (train to resume, eval, sample)
compares its config with that file first, through :func:`check_resume_config`: a
difference in a key outside :data:`RESUMABLE` is a :class:`ConfigMismatchError` that
lists each such key with both values, raised before anything is built or written, so
the checkpoints stay as they are. Most of those keys shape the parameters or the
optimiser state (``model.*``, ``optim.*``, ``data.seq_len``, ...); the others define
what the run trains on and how (``loss.*``, ``process.*``, ``seed``, the data
position through ``train.batch_size``), so changing them means a new run: a new
``--workdir``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from experiments.common import ConfigError

CONFIG_FILE = "config.json"

# Keys that may differ from the run's config.json: cadence, outputs, evaluation and
# sampling, where the data comes from, and the memory / speed knobs that leave the
# saved state as it is. A name ending in "." covers every key below it.
RESUMABLE: tuple[str, ...] = (
    "train.num_steps",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "train.max_to_keep",
    "train.async_checkpoint",
    "train.tensorboard",
    "train.final_eval",
    "train.grad_accum",
    "train.fsdp",
    "model.remat",
    "model.dtype",
    "data.path",
    "data.download",
    "eval.",
    "sample.",
)


class ConfigMismatchError(ConfigError):
    """The given config differs from a run's saved config in keys that cannot change.

    Attributes:
      differences: ``{key: (saved value, given value)}`` for each such key.
    """

    def __init__(self, message: str, differences: dict[str, tuple[Any, Any]]):
        super().__init__(message)
        self.differences = differences


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as one dict with dotted keys ('model.width', ...)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def is_resumable(key: str) -> bool:
    """True when the dotted ``key`` may change on resume (it is in :data:`RESUMABLE`)."""
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def fixed_differences(saved: dict[str, Any], given: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved, given)}`` for each non-resumable leaf whose values differ.

    Both arguments are nested config dicts as JSON holds them (tuples as lists). A key
    that only one side has is skipped: a key added to the configs later, with its
    default, describes the old run too.
    """
    a, b = flatten(saved), flatten(given)
    return {
        k: (a[k], b[k]) for k in sorted(a.keys() & b.keys()) if a[k] != b[k] and not is_resumable(k)
    }


def read_saved_config(workdir: str) -> dict[str, Any] | None:
    """``WORKDIR/config.json`` as a dict, or None when there is none."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _has_checkpoint(workdir: str) -> bool:
    d = os.path.join(workdir, "checkpoints")
    return os.path.isdir(d) and any(f.isdigit() for f in os.listdir(d))


def check_resume_config(cfg: Any, workdir: str) -> None:
    """Raises :class:`ConfigMismatchError` when ``cfg`` cannot continue the run in ``workdir``.

    Compares ``cfg`` (a ConfigDict) with ``WORKDIR/config.json``; reads only, and does
    nothing when the workdir holds no checkpoint (a run that never saved one may be
    started again with another config) or no config.json.
    """
    if not _has_checkpoint(workdir):
        return
    saved = read_saved_config(workdir)
    if saved is None:
        return
    diff = fixed_differences(saved, json.loads(cfg.to_json()))
    if not diff:
        return
    path = os.path.join(workdir, CONFIG_FILE)
    lines = [f"  {k}: saved={old!r} given={new!r}" for k, (old, new) in diff.items()]
    raise ConfigMismatchError(
        f"the config does not match the run in {workdir} ({path}); these keys cannot "
        "change on resume:\n" + "\n".join(lines) + "\nuse the saved values or a new "
        "--workdir (--help lists the keys that may change)",
        diff,
    )
