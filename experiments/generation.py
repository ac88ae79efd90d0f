"""Drawing samples from an experiment's model as ``cfg.sample`` asks.

:func:`sampler_call` reads the config once into a :class:`SamplerCall` (sampler, shape,
options, labels, guidance); :func:`generate_global` runs it on one of three paths: the
whole sequence at once, block by block (block diffusion), or left to right (the AR
model), with the rows split over the devices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import Array

from ddjax import guidance as guidance_lib
from ddjax import models, samplers, training
from experiments.common import ConfigError, say
from experiments.evaluation import gather
from experiments.model import Experiment
from experiments.prompts import prefix_prompt, prompt_tokens
from experiments.sample_config import (
    check_guidance,
    class_labels,
    eos_token,
    get_sampler,
    sample_block_size,
    sampler_options,
)


@dataclasses.dataclass(frozen=True)
class SamplerCall:
    """One draw of ``shape[0]`` samples as ``cfg.sample`` asks (see :func:`sampler_call`).

    Attributes:
      name: ``sample.sampler``, or ``"ar"`` for the autoregressive model.
      sampler: the ddjax sampler, called ``sampler(key, denoiser, process, shape,
        **options)``; on the block path ``block_diffusion`` runs it (by ``name``) inside
        each block with ``options``; the AR model's is :func:`sample_ar`, called
        ``sample_ar(key, graphdef, params, shape, **options)``.
      shape: (num, seq_len).
      options: the keyword arguments: ``steps``, ``sample.options``, ``temperature``
        (when not 1; the AR model always), ``threshold`` (when > 0), ``fixed`` (a prompt
        or template; the AR model: ``prompt``, its prefix), ``eos_id`` (when set),
        ``time_independent`` (any_order_nll with ancestral, whole sequence).
      block_size: positions per block of block diffusion; 0: the whole sequence at once.
      labels: int32[num] class labels of a class-conditional model, else None.
      guidance: ``sample.guidance`` (none | cfg).
      gamma: the guidance strength ``sample.gamma``.
    """

    name: str
    sampler: Callable
    shape: tuple[int, int]
    options: dict[str, Any]
    block_size: int = 0
    labels: Array | None = None
    guidance: str = "none"
    gamma: float = 1.0


def sampler_call(exp: Experiment, num: int) -> SamplerCall:
    """The sampler call that draws ``num`` samples with ``exp.cfg.sample``, every value
    read and checked here (a ConfigError names the key that cannot work)."""
    cfg = exp.cfg
    shape = (num, exp.data.seq_len)
    temperature = float(cfg.sample.temperature)
    fixed = prompt_tokens(exp, num)
    eos = eos_token(exp)
    if exp.objective.name == "ar":
        sampler_options(cfg)  # the AR model takes none: set ones are an error
        options = {"temperature": temperature, "prompt": prefix_prompt(fixed), "eos_id": eos}
        return SamplerCall("ar", sample_ar, shape, options)
    name = str(cfg.sample.sampler)
    sampler = get_sampler(name)
    block_size = sample_block_size(cfg)
    steps = int(cfg.sample.steps)
    process = exp.objective.process
    if process.is_discrete_time:
        steps = min(steps, process.num_steps)
    options: dict[str, Any] = {"steps": steps, **sampler_options(cfg)}
    if temperature != 1.0:
        options["temperature"] = temperature
    # the whole-sequence path only: block_diffusion's inner steps never got it
    if exp.objective.name == "any_order_nll" and name == "ancestral" and not block_size:
        options["time_independent"] = True
    if float(cfg.sample.get("threshold", 0.0)) > 0:
        options["threshold"] = float(cfg.sample.threshold)
    if eos is not None:
        options["eos_id"] = eos
    if fixed is not None:
        options["fixed"] = fixed
    return SamplerCall(
        name, sampler, shape, options, block_size=block_size,
        labels=class_labels(cfg, num), guidance=check_guidance(cfg),
        gamma=float(cfg.sample.gamma),
    )  # fmt: skip


def sample_ar(
    key: Array,
    graphdef: Any,
    params: Any,
    shape: tuple[int, int],
    temperature: float,
    *,
    prompt: Array | None = None,
    cache: bool = True,
    eos_id: int | None = None,
) -> Array:
    """Left-to-right sampling from the causal model: int32[B, L], with the exact KV cache
    (``dd.samplers.autoregressive``: L one-token passes; ``cache=False``: L full passes);
    with ``eos_id`` each row stops at its first drawn EOS, the positions after it EOS too."""
    out = samplers.autoregressive(
        key, (graphdef, params), shape, temperature=temperature, prompt=prompt, cache=cache,
        eos_id=eos_id,
    )  # fmt: skip
    return out if eos_id is None else out[0]


def generate(exp: Experiment, params: Any, num: int, seed: int) -> np.ndarray:
    """``num`` samples from the model, int32[num, seq_len], with ``cfg.sample``, on every
    process (see :func:`generate_global` for how the rows are split)."""
    x = gather(generate_global(exp, params, num, seed))
    try:  # the samplers mark rows that were not distributions with -1, without a sync
        return samplers.check_samples(x)
    except ValueError as e:
        raise training.NonFiniteError(f"sampling failed: {e}") from None


def generate_global(exp: Experiment, params: Any, num: int, seed: int) -> jax.Array:
    """:func:`generate` as one global array: when ``num`` divides by the device count
    its rows are split over the devices of every process (each process computes its
    share; the draws are those of one device), else every device draws every row."""
    call = sampler_call(exp, num)
    if exp.objective.name == "ar":
        run = _ar_run(exp, call)
    elif call.block_size:
        run = _blocks_run(exp, call)
    else:
        run = _whole_run(exp, call)
    key = jax.random.PRNGKey(seed)
    return jax.jit(run, out_shardings=_out_sharding(exp, num))(params, key)


def _ar_run(exp: Experiment, call: SamplerCall) -> Callable[[Any, Array], Array]:
    """``(params, key) -> int32[num, seq_len]``: the AR model left to right."""

    def run(p: Any, k: Array) -> Array:
        return call.sampler(k, exp.graphdef, p, call.shape, **call.options)

    return run


def _whole_run(exp: Experiment, call: SamplerCall) -> Callable[[Any, Array], Array]:
    """``(params, key) -> int32[num, seq_len]``: the sampler on the whole sequence, with
    classifier-free guidance when ``call.guidance`` is cfg."""
    process = exp.objective.process
    num = call.shape[0]

    def run(p: Any, k: Array) -> Array:
        denoiser = exp.objective.denoiser(p, call.labels)
        if call.guidance == "cfg":
            null = jnp.full((num,), int(exp.cfg.model.num_classes), jnp.int32)
            denoiser = guidance_lib.cfg(denoiser, exp.objective.denoiser(p, null), call.gamma)
        return call.sampler(k, denoiser, process, call.shape, **call.options)

    return run


def _blocks_run(exp: Experiment, call: SamplerCall) -> Callable[[Any, Array], Array]:
    """``(params, key) -> int32[num, seq_len]``: block diffusion (see
    :func:`~experiments.sample_config.sample_block_size`) with the exact KV cache when
    the block size is the model's (a time-free block-causal DiT), else the uncached block
    denoiser; ``call.name`` inside each block."""
    bs = call.block_size
    module = nnx.merge(exp.graphdef, exp.params)
    if getattr(module, "causal", False) or not hasattr(module, "init_cache"):
        raise ConfigError("sample.block_size needs a DiT model (model.name='dit')")
    time_cond = bool(exp.cfg.model.time_conditioning)
    cache = module.block_size == bs and not time_cond
    if not cache:
        say(
            f"note: block diffusion without the KV cache (the model's block size is "
            f"{module.block_size}, sampling with {bs}; time conditioning {time_cond})"
        )
    process = exp.objective.process
    eos = call.options.get("eos_id")

    def run(p: Any, k: Array) -> Array:
        bd = models.block_denoiser(
            (exp.graphdef, p), process, block_size=bs, cache=cache,
            time_conditioning=time_cond, labels=call.labels,
        )  # fmt: skip
        out = samplers.block_diffusion(
            k, bd, process, call.shape, block_size=bs, inner=call.name, **call.options
        )
        return out if eos is None else out[0]  # the pads after EOS are eos_id

    return run


def _out_sharding(exp: Experiment, num: int) -> Any:
    """Rows split over the mesh's devices (so over processes) when ``num`` divides by
    the device count, else None (every device draws every row)."""
    n = exp.mesh.devices.size
    return training.batch_sharding(exp.mesh) if n > 1 and num % n == 0 else None
