"""Block diffusion (BD3-LM, Arriola et al. 2025): blocks left to right, each block
sampled by an inner masking sampler given the clean blocks before it.

Block size 1 is autoregressive sampling, block size L is the inner sampler on the whole
sequence. The loop over blocks is one ``lax.while_loop`` whose body (the inner
sampler's own compiled loop on a ``[B, block_size]`` state) is traced once, so the
program does not grow with the length. Not a driver step (it is not in ``STEPS``): it
runs the driver once per block.

The block denoiser is a function ``(x, t, block) -> log-probs`` or an object of the
:class:`BlockDenoiser` protocol, whose state (e.g. a KV cache) the loop threads through
the blocks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jax import Array
from jax.experimental import checkify

from ddjax._struct import check
from ddjax._validation import validate_tokens
from ddjax.processes import require
from ddjax.samplers import driver, eos

__all__ = ["BlockDenoiser", "FunctionBlockDenoiser", "as_block_denoiser", "block_diffusion"]

# driver options the inner sampler takes through block_diffusion (fixed is split per
# block here; a trajectory has no fixed length across blocks)
INNER_COMMON = tuple(k for k in driver.COMMON_OPTIONS if k not in ("fixed", "return_trajectory"))


@runtime_checkable
class BlockDenoiser(Protocol):
    """A block denoiser with state threaded through the blocks (e.g. a KV cache).

    * ``init(batch) -> state`` (any pytree, or None), before the first block;
    * ``__call__(state, x int32[B, L], t float32[B], block int32) -> float32[B,
      block_size, K]``: log p(x0 | x) for the positions of block ``block``; x holds
      clean tokens before the block, the noisy block in place, and anything after
      (which must be ignored);
    * ``commit(state, x, block) -> state``, once block ``block`` of x is final.
    """

    def init(self, batch: int) -> Any: ...

    def __call__(self, state: Any, x: Array, t: Array, block: Array) -> Array: ...

    def commit(self, state: Any, x: Array, block: Array) -> Any: ...


@dataclasses.dataclass(frozen=True)
class FunctionBlockDenoiser:
    """The protocol for a plain function ``fn(x, t, block)`` (no state)."""

    fn: Callable[[Array, Array, Array], Array]

    def init(self, batch: int) -> Any:
        return None

    def __call__(self, state: Any, x: Array, t: Array, block: Array) -> Array:
        return self.fn(x, t, block)

    def commit(self, state: Any, x: Array, block: Array) -> Any:
        return state


def as_block_denoiser(block_denoiser: Any) -> BlockDenoiser:
    """``block_denoiser`` itself if it has ``init`` and ``commit``, else the function
    wrapped in :class:`FunctionBlockDenoiser`."""
    if hasattr(block_denoiser, "init") and hasattr(block_denoiser, "commit"):
        return block_denoiser
    check(
        callable(block_denoiser),
        f"block_denoiser must be a function (x, t, block) -> log-probs or a BlockDenoiser, "
        f"got {type(block_denoiser).__name__}",
        TypeError,
    )
    return FunctionBlockDenoiser(block_denoiser)


def _prompt_to_fixed(prompt: Any, shape: tuple[int, int]) -> Array:
    prompt = jnp.asarray(prompt)
    b, length = shape
    check(
        prompt.ndim == 2 and prompt.shape[0] == b,
        f"prompt must be int32[{b}, P] (-1 where free), got shape {prompt.shape}",
    )
    check(
        prompt.shape[1] <= length,
        f"the prompt has {prompt.shape[1]} positions, more than the maximum length "
        f"{length} (shape[1])",
    )
    pad = jnp.full((b, length - prompt.shape[1]), -1, prompt.dtype)
    return jnp.concatenate([prompt, pad], axis=1)


def block_diffusion(
    key: Array,
    block_denoiser: Any,
    process: Any,
    shape: tuple[int, int],
    *,
    block_size: int,
    steps: int | None,
    inner: str = "ancestral",
    fixed: Any = None,
    prompt: Any = None,
    eos_id: int | None = None,
    pad_id: int | None = None,
    return_calls: bool = False,
    **inner_options: Any,
) -> Array | tuple[Array, ...]:
    """Block diffusion: the blocks of ``block_size`` positions left to right, each drawn
    by the inner sampler ``inner`` with ``steps`` steps given the clean earlier blocks.

    Block b's inner run is ``driver.sample`` on shape (B, block_size) with the denoiser
    ``(x_b, t) -> block_denoiser(x with x_b in block b, t, b)``; the block then enters x
    and ``block_denoiser.commit`` (a KV cache write) runs once. The block's key is
    ``fold_in(key, b)``. With the exact block-conditional denoiser and an exact inner
    sampler the output law is the target's (the chain rule over blocks).

    Args:
      key: PRNG key.
      block_denoiser: ``fn(x int32[B, L], t float32[B], block int32) -> float32[B,
        block_size, K]`` (x: clean tokens before block ``block``, the noisy block in
        place, anything after, which it must ignore), or a :class:`BlockDenoiser` with
        state (e.g. ``ddjax.models.block_denoiser(model, process)``, the KV cache).
      process: a masking process (mask id K).
      shape: (B, L); L is the maximum length and a multiple of ``block_size``.
      block_size: positions per block, dividing L.
      steps: the inner sampler's steps per block (None for samplers that ignore it).
      inner: the inner sampler's name in ``dd.samplers.STEP_CLASSES`` (ancestral,
        first_hitting, confidence, remdm, ...), any that runs on ``process``.
      fixed: int32[B, L], -1 where free: tokens held in place (prompts, infilling);
        blocks fully fixed in every row are copied, without inner calls.
      prompt: int32[B, P], P <= L (-1 where free): a prefix prompt, i.e. ``fixed`` with
        its first P columns; P > L is a ValueError. Give ``fixed`` or ``prompt``.
      eos_id: end-of-sequence token: a row stops after the block that holds its first
        EOS at a free position; the loop ends once every row has stopped (or at L). The
        positions after that EOS (fixed ones included) are set to ``pad_id``.
      pad_id: the token after EOS; default ``eos_id`` (rows stay sequences of data
        tokens; ``lengths`` tells where each ends). Any id in 0..K (K: the mask).
      return_calls: also return the number of block-denoiser calls (int32 scalar,
        batched: one call serves every row; copied blocks make none; commits not
        counted), see ``dd.samplers.driver.count_calls``.
      inner_options: the inner sampler's own options (e.g. ``threshold`` for
        confidence, ``eta`` for remdm) and the common ones: temperature, top_k, top_p,
        final_step, t_max, debug.

    Returns:
      int32[B, L] samples; with ``eos_id``, ``(samples, lengths int32[B])`` where
      lengths counts the tokens up to and including the first free EOS (L when there is
      none); with ``return_calls``, the call count comes last.
    """
    from ddjax.samplers import STEP_CLASSES  # the registry imports this module

    check(
        isinstance(shape, tuple) and len(shape) == 2 and all(isinstance(d, int) for d in shape),
        f"shape must be a (batch, length) tuple of ints, got {shape!r}",
    )
    batch, length = shape
    check(
        isinstance(block_size, int) and not isinstance(block_size, bool) and block_size >= 1,
        f"block_size must be a positive int, got {block_size!r}",
    )
    check(
        length % block_size == 0,
        f"block_size={block_size} must divide the sequence length L={length}",
    )
    check(
        inner in STEP_CLASSES,
        f"unknown inner sampler {inner!r}; known: {sorted(STEP_CLASSES)}",
    )
    require(process, ("mask", "prior_sample"), "block_diffusion")
    cls = STEP_CLASSES[inner]
    own_names = [f.name for f in dataclasses.fields(cls)]
    valid = sorted({*INNER_COMMON, *own_names})
    unknown = sorted(set(inner_options) - set(valid))
    if unknown:
        raise TypeError(
            f"block_diffusion(inner={inner!r}) got unknown options {unknown}; valid inner "
            f"options: {valid} (and block_diffusion's own: fixed, prompt, eos_id, pad_id, "
            "return_calls)"
        )
    common = {k: inner_options.pop(k) for k in INNER_COMMON if k in inner_options}
    step = cls(**inner_options)
    debug = bool(common.pop("debug", False))
    if steps is None:
        check(cls.steps_optional, f"inner sampler {inner!r} needs steps=", TypeError)

    check(fixed is None or prompt is None, "give fixed or prompt, not both")
    if prompt is not None:
        fixed = _prompt_to_fixed(prompt, shape)
    if fixed is not None:
        fixed = jnp.asarray(fixed)
        check(
            fixed.shape == shape,
            f"fixed must have the sample shape {shape} (-1 where free), got {fixed.shape}",
        )
        validate_tokens(jnp.where(fixed < 0, 0, fixed), process.vocab_size, "fixed")
        fixed = fixed.astype(jnp.int32)
    pad_id = eos.check_eos(eos_id, pad_id, process.vocab_size)

    bd = as_block_denoiser(block_denoiser)
    mask_id = process.mask_id
    n_blocks = length // block_size
    x_init = jnp.full(shape, mask_id, jnp.int32)
    if fixed is not None:
        x_init = jnp.where(fixed >= 0, fixed, x_init)

    def body(carry: tuple) -> tuple:
        b, x, state, done, calls = carry
        start = b * block_size
        fixed_b = (
            None
            if fixed is None
            else jax.lax.dynamic_slice_in_dim(fixed, start, block_size, axis=1)
        )

        def den(xb: Array, t: Array) -> Array:
            return bd(state, jax.lax.dynamic_update_slice_in_dim(x, xb, start, axis=1), t, b)

        def run_block() -> tuple[Array, Array]:
            return driver.sample(
                step, jax.random.fold_in(key, b), den, process, (batch, block_size),
                steps=steps, fixed=fixed_b, return_calls=True, debug=debug, **common,
            )  # fmt: skip

        if fixed is None:
            xb, c = run_block()
        else:
            xb, c = jax.lax.cond(jnp.all(fixed_b >= 0), lambda: (fixed_b, jnp.int32(0)), run_block)
        x = jax.lax.dynamic_update_slice_in_dim(x, xb, start, axis=1)
        state = bd.commit(state, x, b)
        if eos_id is not None:
            free = jnp.ones_like(xb, bool) if fixed_b is None else fixed_b < 0
            done = done | jnp.any((xb == eos_id) & free, axis=-1)
        return b + 1, x, state, done, calls + c

    def cond(carry: tuple) -> Array:
        b, _, _, done, _ = carry
        return (b < n_blocks) & ~jnp.all(done)

    def run() -> tuple[Array, Array]:
        carry = (jnp.int32(0), x_init, bd.init(batch), jnp.zeros((batch,), bool), jnp.int32(0))
        _, x, _, _, calls = jax.lax.while_loop(cond, body, carry)
        return x, calls

    if debug:
        err, (x, calls) = checkify.checkify(run)()
        if isinstance(key, jax.core.Tracer):
            checkify.check_error(err)
        else:
            err.throw()
    else:
        x, calls = run()
    out: tuple[Array, ...] = (x,)
    if eos_id is not None:
        out = eos.pad_after_eos(x, eos_id, pad_id, None if fixed is None else fixed < 0)
    if return_calls:
        out = (*out, calls)
    return out[0] if len(out) == 1 else out
