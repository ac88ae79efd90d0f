"""Restoring a CLI run for inference from Python: :func:`load_run`.

import jax, experiments, ddjax as dd

run = experiments.load_run("runs/default")
x = dd.samplers.block_diffusion(jax.random.key(0), run.block_denoiser(), run.process,
                                (4, run.seq_len), block_size=run.block_size, steps=8)
print(run.decode(x))
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from jax import Array

from experiments.model import Experiment, eval_params, restore_for_inference


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained run, ready to sample or score.

    Attributes:
      cfg: the run's config (``WORKDIR/config.json``).
      step: the checkpoint's training step.
      process: the forward process (None for an autoregressive run).
      denoiser: ``denoiser(x_t int32[B, L], t float32[B]) -> log p(x0 | x_t)
        float32[B, L, K]``, the ddjax denoiser contract (D3PM runs: int32 step indices);
        None for an autoregressive run. A BD3-LM's plain call: use
        :meth:`block_denoiser` to sample it block by block.
      model: ``(graphdef, params)`` of the network (for ``dd.samplers.autoregressive``
        on an AR run, ``dd.models.block_denoiser``, or your own calls).
      decode: token rows int32[N, L] -> list of N strings (None for images).
      encode: a string -> int32 token ids (None for images).
      seq_len: tokens per sequence; vocab_size: K data tokens.
      block_size: the BD3-LM block size (0 for other runs).
      experiment: everything :func:`experiments.model.build` made (data, objective, mesh).
    """

    cfg: Any
    step: int
    process: Any
    denoiser: Callable[[Array, Array], Array] | None
    model: tuple[Any, Any]
    decode: Callable[[np.ndarray], list[str]] | None
    encode: Callable[[str], np.ndarray] | None
    seq_len: int
    vocab_size: int
    block_size: int
    experiment: Experiment

    def block_denoiser(self, *, cache: bool = True) -> Any:
        """The network as a block denoiser for ``dd.samplers.block_diffusion`` (a BD3-LM
        run: the exact KV cache at the run's block size)."""
        from ddjax import models

        if not self.block_size:
            raise ValueError("block_denoiser needs a BD3-LM run (loss.name='block_masked_elbo')")
        return models.block_denoiser(
            self.model, self.process, block_size=self.block_size, cache=cache,
            time_conditioning=bool(self.cfg.model.time_conditioning),
        )  # fmt: skip


def load_run(workdir: str, *, ema: bool | None = None) -> Run:
    """The run trained by ``python -m experiments.main --workdir=WORKDIR``, restored from
    its config (``WORKDIR/config.json``) and latest checkpoint.

    ``ema``: sample with the EMA parameters (default: the run's ``eval.use_ema``, which is
    what ``--mode=sample`` uses). Raises FileNotFoundError without a config or checkpoint.
    """
    import ml_collections

    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no {path}: load_run reads a workdir written by "
            "python -m experiments.main --mode=train --workdir=DIR"
        )
    with open(path) as f:
        cfg = ml_collections.ConfigDict(json.load(f))
    if ema is not None:
        cfg.eval.use_ema = bool(ema)
    exp, state = restore_for_inference(cfg, workdir)  # the same restore as --mode=sample
    params = eval_params(cfg, state)
    objective = exp.objective
    ar = objective.name == "ar"
    block = int(cfg.loss.block_size) if objective.name == "block_masked_elbo" else 0
    return Run(
        cfg=cfg,
        step=int(state.step),
        process=objective.process,
        denoiser=None if ar else objective.denoiser(params),
        model=(exp.graphdef, params),
        decode=exp.data.decode,
        encode=exp.data.encode,
        seq_len=int(exp.data.seq_len),
        vocab_size=int(exp.data.vocab_size),
        block_size=block,
        experiment=exp,
    )
