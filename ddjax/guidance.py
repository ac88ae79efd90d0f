"""Guidance: classifier-free (Ho & Salimans; Schiff et al. for discrete diffusion)
and classifier guidance (Nisonoff et al.), as denoiser transformers.

Each function takes denoisers ``(x_t, t) -> log p(x0 | x_t)`` and returns one, so
every sampler takes guidance without knowing about it.

* :func:`cfg` mixes x0 log-probabilities, gamma log p(.|c) + (1 - gamma) log p(.|null),
  renormalised. For masking this is exact at gamma = 1 (the conditional denoiser) and 0.
  For uniform noise Schiff et al. mix the log *posteriors* over x_s instead; the
  ``mode="posterior"`` denoiser (:class:`GuidedPosterior`) carries that reverse step as a
  declared capability, which :func:`ddjax.samplers.ancestral` uses.
* :func:`classifier` tilts the x0 distribution at each position i by the classifier's
  change when position i is set to y: p(y) exp(gamma [log p(c | x^{i<-y}) - log p(c | x)]).
  For masking, with the exact time-t classifier and gamma = 1, this is exactly the
  conditional denoiser p(x0_i | x_t, c). ``exact=True`` evaluates all L * K
  substitutions (chunked to bound memory); ``exact=False`` uses the first-order
  Taylor expansion around the one-hot input (one gradient).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from ddjax._struct import check
from ddjax.processes import Process

__all__ = ["cfg", "classifier", "GuidedDenoiser", "GuidedPosterior"]

Denoiser = Callable[[Array, Array], Array]
RowTransform = Callable[[Array], Array]
LogClassifier = Callable[[Array, Array], Array]


@dataclasses.dataclass(frozen=True)
class GuidedDenoiser:
    """A classifier-free-guided denoiser: the mixed x0 log-probabilities (``mode="x0"``)."""

    cond: Denoiser
    uncond: Denoiser
    gamma: float

    mode: ClassVar[str] = "x0"

    def __call__(self, x_t: Array, t: Array) -> Array:
        mixed = self.gamma * self.cond(x_t, t) + (1.0 - self.gamma) * self.uncond(x_t, t)
        return jax.nn.log_softmax(mixed, axis=-1)


@dataclasses.dataclass(frozen=True)
class GuidedPosterior(GuidedDenoiser):
    """Schiff et al.'s guided reverse step (``mode="posterior"``).

    Calling it still gives the mixed x0 log-probabilities; :meth:`posterior_probs` (the
    :class:`ddjax.samplers.transforms.OwnPosterior` capability) gives the normalised
    geometric mixture of the two posteriors, which the ancestral sampler uses in place
    of the posterior of the mixed x0 distribution. Samplers that cannot use it refuse it.
    """

    mode: ClassVar[str] = "posterior"

    def posterior_probs(
        self, process: Process, x_t: Array, s: Array, t: Array, rows: RowTransform | None = None
    ) -> Array:
        """Guided q(x_s | x_t) float32[B, L, N], proportional to post_c**gamma *
        post_null**(1 - gamma); ``rows`` (the sampler's row transforms, e.g. a
        temperature) act on each x0 distribution first."""
        rows = rows or (lambda lp: lp)
        post_c = process.posterior_probs(x_t, jnp.exp(rows(self.cond(x_t, t))), s, t)
        post_u = process.posterior_probs(x_t, jnp.exp(rows(self.uncond(x_t, t))), s, t)
        log_mix = self.gamma * jnp.log(jnp.maximum(post_c, 1e-30)) + (1.0 - self.gamma) * jnp.log(
            jnp.maximum(post_u, 1e-30)
        )
        support = (post_c > 0) | (post_u > 0)
        return jax.nn.softmax(jnp.where(support, log_mix, -jnp.inf), axis=-1)


def cfg(
    cond_denoiser: Denoiser, uncond_denoiser: Denoiser, gamma: float, mode: str = "x0"
) -> GuidedDenoiser:
    """Classifier-free guidance: gamma = 0 is unconditional, 1 conditional, > 1 sharper.

    Args:
      cond_denoiser: log p(x0 | x_t, c), float32[B, L, K] (close over the class).
      uncond_denoiser: log p(x0 | x_t) (the null class).
      gamma: guidance strength.
      mode: "x0" (mix x0 log-probs; default, the natural form for masking) or
        "posterior" (Schiff et al.'s mix of reverse-step posteriors, for uniform noise;
        a :class:`GuidedPosterior`, which only samplers that use a denoiser's own reverse
        step accept, e.g. ancestral; the others raise TypeError).
    """
    check(mode in ("x0", "posterior"), f"mode must be 'x0' or 'posterior', got {mode!r}")
    cls = GuidedPosterior if mode == "posterior" else GuidedDenoiser
    return cls(cond_denoiser, uncond_denoiser, float(gamma))


def _substitution_gain_exact(
    log_classifier: LogClassifier, x_t: Array, t: Array, vocab_size: int, chunk: int
) -> Array:
    """log p(c | x^{i<-y}) - log p(c | x) for every i and data token y: float32[B, L, K]."""
    batch, length = x_t.shape
    base = log_classifier(x_t, t)  # [B]
    pairs = jnp.stack(
        jnp.meshgrid(jnp.arange(length), jnp.arange(vocab_size), indexing="ij"), -1
    ).reshape(-1, 2)  # [L*K, 2]
    num = pairs.shape[0]
    pad = (-num) % chunk
    pairs = jnp.concatenate([pairs, jnp.zeros((pad, 2), pairs.dtype)], 0).reshape(-1, chunk, 2)

    def one_chunk(_: None, block: Array) -> tuple[None, Array]:
        pos, tok = block[:, 0], block[:, 1]
        # [chunk, B, L]: x with position pos set to tok
        xs = jnp.where(
            jnp.arange(length)[None, None, :] == pos[:, None, None], tok[:, None, None], x_t[None]
        )
        vals = jax.vmap(lambda x: log_classifier(x, t))(xs)  # [chunk, B]
        return None, vals

    _, vals = jax.lax.scan(one_chunk, None, pairs)
    vals = vals.reshape(-1, batch)[:num].T.reshape(batch, length, vocab_size)
    return vals - base[:, None, None]


def _substitution_gain_taylor(
    log_classifier: LogClassifier, x_t: Array, t: Array, num_states: int, vocab_size: int
) -> Array:
    """First-order estimate of the gain: g[i, y] - g[i, x_i], g = d log p(c | x) / d onehot."""
    onehot = jax.nn.one_hot(x_t, num_states, dtype=jnp.float32)
    grad = jax.grad(lambda oh: log_classifier(oh, t).sum())(onehot)  # [B, L, N]
    current = jnp.take_along_axis(grad, x_t[..., None], axis=-1)
    return (grad - current)[..., :vocab_size]


def classifier(
    denoiser: Denoiser,
    log_classifier: LogClassifier,
    gamma: float,
    exact: bool = False,
    *,
    process: Process | None = None,
    chunk: int = 64,
) -> Denoiser:
    """Classifier guidance on the x0 distribution.

    Args:
      denoiser: log p(x0 | x_t), float32[B, L, K].
      log_classifier: ``(x_t, t) -> float32[B]`` = log p_t(c | x_t) for the wanted class
        (close over c). With ``exact=False`` it must also accept a float one-hot input
        float32[B, L, num_states] in place of the tokens (it is differentiated there).
      gamma: guidance strength (0: none; 1: the conditional law with an exact classifier).
      exact: evaluate every substitution (L * K classifier calls, ``chunk`` at a time).
      process: needed for ``exact=False`` (the one-hot width, num_states); optional otherwise.
    Returns:
      the guided denoiser. Unmasked positions of a masking process keep their point mass.
    """
    check(
        exact or process is not None,
        "classifier(exact=False) needs process= to know the one-hot width",
    )
    check(chunk >= 1, f"chunk must be >= 1, got {chunk}")

    def guided(x_t: Array, t: Array) -> Array:
        log_probs = denoiser(x_t, t)
        vocab = log_probs.shape[-1]
        if exact:
            gain = _substitution_gain_exact(log_classifier, x_t, t, vocab, chunk)
        else:
            gain = _substitution_gain_taylor(log_classifier, x_t, t, process.num_states, vocab)
        return jax.nn.log_softmax(log_probs + gamma * gain, axis=-1)

    return guided
