"""Left-to-right sampling from a causal model, with or without the exact KV cache.

The AR baseline of the samplers' tables: with ``cache=True`` each position is one
network pass over a single token (``CausalTransformer.cached_step``: its keys and values
enter a fixed-size buffer, static shapes), L passes of one token in all; with
``cache=False`` every position reruns the whole sequence (L passes of L tokens). Both
draw token i with the key ``fold_in(key, i)`` from the same logits (up to float
round-off), so they give the same tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from ddjax._struct import check
from ddjax._validation import validate_tokens
from ddjax.random import categorical
from ddjax.samplers import eos, transforms

__all__ = ["autoregressive"]


def autoregressive(
    key: Array,
    model: Any,
    shape: tuple[int, int],
    *,
    temperature: Any = 1.0,
    top_k: int | None = None,
    top_p: Any = None,
    prompt: Any = None,
    cache: bool = True,
    labels: Any = None,
    eos_id: int | None = None,
    pad_id: int | None = None,
) -> Array | tuple[Array, Array]:
    """Samples int32[B, L] from a causal model, left to right (one ``lax.while_loop``).

    Args:
      key: PRNG key; token i is drawn with ``fold_in(key, i)``.
      model: a :class:`ddjax.models.CausalTransformer` or its ``(graphdef, params)``
        split (pass the split inside ``jax.jit``); with ``cache=False`` also any
        ``logits_fn(x int32[B, L]) -> float[B, L, V]`` with the BOS shift (the logits
        at i give token i from tokens < i).
      shape: (B, L), L <= the model's max_len.
      temperature, top_k, top_p: row transforms of each position's distribution
        (:mod:`ddjax.samplers.transforms`).
      prompt: int32[B, P], P <= L: the first P tokens, held (P > L is a ValueError; a
        model without the BOS shift needs P >= 1).
      cache: decode with the KV cache (L one-token passes) instead of L full passes.
      labels: int32[B] class labels for a class-conditional model.
      eos_id: end-of-sequence token: a row is done once it draws EOS (after the prompt);
        the loop ends once every row is done (or at L), and the positions after each
        row's first drawn EOS are set to ``pad_id``.
      pad_id: the token after EOS; default ``eos_id``.

    Returns:
      int32[B, L] tokens; with ``eos_id``, ``(tokens, lengths int32[B])`` where lengths
      count the tokens up to and including the first drawn EOS (L when there is none),
      as :func:`ddjax.samplers.block_diffusion`.
    """
    check(
        isinstance(shape, tuple) and len(shape) == 2 and all(isinstance(d, int) for d in shape),
        f"shape must be a (batch, length) tuple of ints, got {shape!r}",
    )
    b, length = shape
    if isinstance(model, tuple):
        graphdef, params = model
        module = nnx.merge(graphdef, params)
    elif isinstance(model, nnx.Module):
        module = model
        graphdef, params = nnx.split(model, nnx.Param)
    else:
        check(not cache, "cache=True needs a CausalTransformer (or its split)", TypeError)
        check(callable(model), f"model must be a CausalTransformer or a function, got {model!r}")
        module = None
    if module is not None:
        check(
            getattr(module, "causal", False),
            "autoregressive needs a causal model (CausalTransformer)",
            TypeError,
        )
        check(
            length <= module.max_len,
            f"sequence length {length} exceeds the model's max_len={module.max_len}",
        )
    shift = True if module is None else bool(module.bos_shift)
    pad_id = eos.check_eos(eos_id, pad_id, None if module is None else module.vocab_size)
    n_prompt = 0
    x = jnp.zeros(shape, jnp.int32)
    if prompt is not None:
        prompt = jnp.asarray(prompt)
        check(
            prompt.ndim == 2 and prompt.shape[0] == b,
            f"prompt must be int32[{b}, P], got shape {prompt.shape}",
        )
        n_prompt = prompt.shape[1]
        check(
            n_prompt <= length,
            f"the prompt has {n_prompt} tokens, more than the maximum length {length}",
        )
        vocab = None if module is None else module.vocab_size
        if vocab is not None:
            validate_tokens(prompt, vocab, "prompt")
        x = x.at[:, :n_prompt].set(prompt.astype(jnp.int32))
    check(shift or n_prompt >= 1, "a model without the BOS shift needs a prompt of >= 1 token")
    rows = transforms.option_rows(temperature, top_k, top_p)
    first = 0 if shift else 1

    def draw(i: Array, x: Array, logits: Array, done: Array) -> tuple[Array, Array]:
        lp = rows(jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1))
        tok = jnp.where(i < n_prompt, x[:, i], categorical(jax.random.fold_in(key, i), lp))
        if eos_id is not None:
            done = done | ((tok == eos_id) & (i >= n_prompt))
        return x.at[:, i].set(tok), done

    def loop(body: Callable[[Array, Any, Array], tuple[Any, Array]], state: Any) -> Array:
        """Positions first..L-1; stops early once every row is done (with ``eos_id``)."""

        def cond(carry: tuple) -> Array:
            i, _, done = carry
            return (i < length) & ~jnp.all(done)

        def step(carry: tuple) -> tuple:
            i, state, done = carry
            state, done = body(i, state, done)
            return i + 1, state, done

        start = (jnp.int32(first), state, jnp.zeros((b,), bool))
        return jax.lax.while_loop(cond, step, start)[1]

    if cache:

        def body(i: Array, carry: tuple[Array, Any], done: Array) -> tuple[Any, Array]:
            x, kv = carry
            m = nnx.merge(graphdef, params)
            token = x[:, jnp.maximum(i - 1, 0)]
            logits, kv = m.cached_step(token, kv, i if shift else i - 1, labels)
            x, done = draw(i, x, logits, done)
            return (x, kv), done

        x, _ = loop(body, (x, module.init_cache(b)))
    else:
        if module is None:
            logits_fn: Callable[[Array], Array] = model
        else:

            def logits_fn(x: Array) -> Array:
                return nnx.merge(graphdef, params)(x, None, labels)

        def body_full(i: Array, x: Array, done: Array) -> tuple[Array, Array]:
            out = logits_fn(x)
            row = jax.lax.dynamic_index_in_dim(out, i if shift else i - 1, axis=1, keepdims=False)
            return draw(i, x, row, done)

        x = loop(body_full, x)
    if eos_id is None:
        return x
    free = (jnp.arange(length) >= n_prompt)[None, :]
    return eos.pad_after_eos(x, eos_id, pad_id, free)
