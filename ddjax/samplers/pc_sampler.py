"""PC-Sampler: position-aware, frequency-calibrated confidence decoding (Huang et al.
2025, "PC-Sampler: position-aware calibration of decoding bias in masked diffusion
models"), masking processes only.

Each step draws a token v_i ~ p(. | x) at every masked position and scores it by

    score_i = exp(-decay * i) * C_i,   C_i = p(v_i)                       (no frequencies)
                    C_i = min(p(v_i) * -log max(f(v_i), freq_floor), clip)  (with f)

where i is the position index (0 = leftmost), p the (transformed) denoiser and f the
reference token frequencies (``token_frequencies``, e.g. unigram frequencies of a corpus):
the position weight steers decoding towards left to right, and the calibration
-log f suppresses frequent, uninformative tokens that the raw confidence decodes first;
``clip`` (the paper's alpha, 10 in all its published runs) caps the calibrated score so a
rare token is not decoded on its rarity alone. This is the scoring of the authors' code
(NEUIR/PC-Sampler, ``pc_sampler_function``), with position i counted from the sequence
start: a shift of i multiplies every weight by one constant, so the order is the same.
The highest-scored masked positions are decoded (ties to the lower index) on a linear
count schedule (:func:`decode_counts`), the others stay masked.

Also :func:`decode_counts` and :func:`network_time`, the count schedule and the time the
denoiser sees, shared with :mod:`ddjax.samplers.aps`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np
from jax import Array

from ddjax._struct import check, concrete
from ddjax.arrays import take_last
from ddjax.random import draw_tokens
from ddjax.samplers import driver
from ddjax.samplers.masking import top_ranked

__all__ = ["PCSampler", "pc_sampler", "decode_counts", "network_time"]


def decode_counts(ctx: driver.Context, x: Array, i: Array, last: bool) -> tuple[Array, Array]:
    """(masked bool[B, L], number to decode int32[B]) at step ``i`` (0-based) of ``ctx.steps``.

    Linear count schedule: after step i, floor(n (1 - (i + 1) / steps)) of the n free
    positions stay masked, with at least one decoded per step while any is masked; the
    last step decodes every mask. With ``steps`` = n it decodes one token per step.
    """
    b, length = x.shape
    n_free = jnp.full((b,), length) if ctx.fixed is None else (ctx.fixed < 0).sum(-1)
    masked = x == ctx.process.mask_id
    n_masked = masked.sum(-1)
    keep = (n_free * (ctx.steps - 1 - i)) // ctx.steps  # integer floor, exact
    if last:
        keep = jnp.zeros_like(keep)
    n_next = jnp.clip(jnp.minimum(n_masked - 1, keep), 0)
    return masked, (n_masked - n_next).astype(jnp.int32)


def network_time(ctx: driver.Context, x: Array) -> Array:
    """The time whose masked fraction 1 - alpha(t) equals the current one: float32[B]."""
    b, length = x.shape
    n_free = jnp.full((b,), length) if ctx.fixed is None else (ctx.fixed < 0).sum(-1)
    frac = (x == ctx.process.mask_id).sum(-1) / jnp.maximum(n_free, 1).astype(jnp.float32)
    return jnp.clip(ctx.process.schedule.t_of_alpha(1.0 - frac), 0.0, 1.0).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class PCSampler(driver.Step):
    """PC-Sampler decoding: position weight exp(-decay i) times calibrated confidence.

    Every step draws a token at each masked position from the denoiser (at the time whose
    masked fraction matches the current one) and decodes the highest-scored ones,
    score_i = exp(-decay * i) * p(v_i) [* -log max(f(v_i), freq_floor), capped at clip],
    on a linear count schedule (``steps`` = L: one token per step); the last step fills
    every mask (``final_step="argmax"``: with the mode).

    A heuristic, not a sampler of the model's law. Its limits: decay = 0 without
    frequencies is the pure confidence order (MaskGIT without noise, on a linear count);
    a large decay decodes left to right, and with ``steps`` = L it then draws each token
    from p(x_i | x_<i) and is exact with an exact denoiser.

    Options:
      decay: lambda >= 0 of the position weight exp(-lambda i) (0: no position bias).
      token_frequencies: float[K] reference frequencies f (normalised here), or None for
        no calibration.
      freq_floor: the floor on f inside the log (rare or unseen tokens), in (0, 1).
      clip: the cap on the calibrated score p(v) * -log f(v) (the paper's alpha), > 0, or
        None for no cap; used only with token_frequencies.
    """

    decay: float = 0.1
    token_frequencies: Any = None
    freq_floor: float = 1e-6
    clip: float | None = 10.0

    name: ClassVar[str] = "pc_sampler"
    needs: ClassVar[tuple[str, ...]] = ("continuous_time", "mask", "schedule")

    def validate(self, process: Any, shape: tuple[int, int], steps: int | None) -> None:
        driver.check_number("decay", self.decay, 0.0)
        driver.check_number("freq_floor", self.freq_floor, 0.0, 1.0, open_lo=True)
        if self.clip is not None:
            driver.check_number("clip", self.clip, 0.0, open_lo=True)
        if self.token_frequencies is None:
            return
        f = concrete(self.token_frequencies)
        check(
            f is not None and f.shape == (process.vocab_size,),
            f"token_frequencies must be float[{process.vocab_size}] (one per data token), "
            f"got shape {np.shape(self.token_frequencies)}",
        )
        check(
            bool(np.all(np.isfinite(f)) and np.all(f >= 0) and f.sum() > 0),
            "token_frequencies must be finite, >= 0 and not all 0",
        )

    def calibration(self) -> Array | None:
        """-log max(f, freq_floor) per token, float32[K], or None."""
        if self.token_frequencies is None:
            return None
        f = jnp.asarray(self.token_frequencies, jnp.float32)
        f = f / f.sum()
        return -jnp.log(jnp.maximum(f, self.freq_floor))

    def score(self, log_probs: Array, tokens: Array) -> Array:
        """log score_i float32[B, L] of the drawn ``tokens`` under ``log_probs`` [B, L, K].

        In log space, -decay * i + log p(v_i) [+ log(-log max(f(v_i), freq_floor)), capped
        at log clip], so a large decay does not underflow the weights to ties.
        """
        log_conf = take_last(log_probs, tokens)
        cal = self.calibration()
        if cal is not None:
            log_conf = log_conf + jnp.log(cal)[tokens]
            if self.clip is not None:
                log_conf = jnp.minimum(log_conf, jnp.log(jnp.float32(self.clip)))
        pos = jnp.arange(tokens.shape[-1], dtype=jnp.float32)
        return log_conf - self.decay * pos[None, :]

    def step(
        self, key: Array, ctx: driver.Context, x: Array, aux: Any, at: driver.StepInfo
    ) -> tuple[Array, Any]:
        masked, n_decode = decode_counts(ctx, x, at.index, at.last)
        log_probs = ctx.denoise(x, network_time(ctx, x))
        tokens = draw_tokens(key, log_probs, argmax=at.last and ctx.argmax)
        decode = top_ranked(self.score(log_probs, tokens), masked, n_decode)
        return jnp.where(decode, tokens, x), aux


pc_sampler = driver.public(PCSampler)
