"""An exact oracle over small enumerable targets.

``ExactTarget(log_p)`` holds a distribution over all K**L sequences (``log_p`` has
shape ``[K] * L``). Because everything is enumerated it gives the exact posterior
denoiser ``p(x0_i | x_t)`` and the exact concrete score ``p_t(y) / p_t(x)`` for any
process, so a loss can be checked against the true NLL and a sampler against the
true distribution. It is meant for K**L up to a few thousand.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from ddjax._struct import check
from ddjax.arrays import onehot
from ddjax.processes import Process
from ddjax.random import categorical

__all__ = [
    "ExactTarget",
    "random_target",
    "empirical_probs",
    "total_variation",
    "kl",
    "tv_floor",
    "JointTarget",
    "ExactLaw",
    "exact_law",
    "exact_planner",
    "smoothed_log_likelihood",
    "ddpd_law",
    "steering",
    "soft_value",
]

Denoiser = Callable[[Array, Array], Array]


class ExactTarget:
    """A distribution over all sequences of length L on K tokens, enumerated.

    Attributes:
      vocab_size: K.
      length: L.
      log_probs: float32[K**L], normalised, in row-major (``np.ravel_multi_index``) order.
      sequences: int32[K**L, L], the sequence of each entry.
    """

    def __init__(self, log_p: ArrayLike) -> None:
        log_p = np.asarray(log_p, np.float64)
        check(log_p.ndim >= 1, "log_p must have shape [K] * L")
        check(
            all(d == log_p.shape[0] for d in log_p.shape),
            f"log_p must have shape [K] * L, got {log_p.shape}",
        )
        check(log_p.shape[0] >= 2, f"need K >= 2 tokens, got {log_p.shape[0]}")
        self.vocab_size = int(log_p.shape[0])
        self.length = int(log_p.ndim)
        flat = log_p.reshape(-1)
        flat = flat - (np.max(flat) + np.log(np.sum(np.exp(flat - np.max(flat)))))
        self.log_probs = jnp.asarray(flat, jnp.float32)
        self.probs = np.exp(flat)
        self.sequences = jnp.asarray(
            np.array(list(itertools.product(range(self.vocab_size), repeat=self.length))),
            jnp.int32,
        )

    @property
    def num_sequences(self) -> int:
        return self.vocab_size**self.length

    def index(self, x: ArrayLike) -> Array:
        """Row-major index of each sequence: int32[B] for x int32[B, L]."""
        x = jnp.asarray(x, jnp.int32)
        weights = self.vocab_size ** jnp.arange(self.length - 1, -1, -1)
        return (x * weights).sum(-1).astype(jnp.int32)

    def nll(self, x0: ArrayLike) -> Array:
        """Exact -log p(x0): float32[B]."""
        x0 = jnp.asarray(x0, jnp.int32)
        check(
            x0.shape[-1] == self.length,
            f"x0 must have length {self.length}, got shape {x0.shape}",
        )
        return -self.log_probs[self.index(x0)]

    def sample(self, key: Array, n: int) -> Array:
        """n exact samples: int32[n, L]."""
        # ddjax's tail-exact draw (design.md 2: every categorical draw goes through it).
        idx = categorical(key, jnp.broadcast_to(self.log_probs, (n, self.num_sequences)))
        return self.sequences[idx]

    def _log_likelihood(self, process: Process, x_t: Array, t: Array) -> Array:
        """log q(x_t | x0) for every x0 sequence: float32[B, K**L]."""
        k, l = self.vocab_size, self.length
        # table[b, k, i, n] = q(x_t,i = n | x0_i = k) at each batch time (the process may
        # treat positions differently): [B, K, L, N]
        eye = jnp.broadcast_to(jnp.eye(k)[None, :, None, :], (t.shape[0], k, l, k))
        table = process.marginal_probs(eye, jnp.broadcast_to(t[:, None], (t.shape[0], k)))
        if jnp.issubdtype(x_t.dtype, jnp.floating):
            # a (soft) one-hot input [B, L, N]: the likelihood extends linearly in it
            per_pos = jnp.log(jnp.maximum(jnp.einsum("bin,bkin->bik", x_t, table), 1e-38))
        else:
            # per_pos[b, i, k] = log q(x_t[b, i] | x0_i = k)
            idx = jnp.broadcast_to(x_t[:, None, :, None], (t.shape[0], k, l, 1))
            at = jnp.take_along_axis(table, idx, axis=-1)[..., 0]  # [B, K, L]
            per_pos = jnp.log(jnp.maximum(at, 0.0)).swapaxes(1, 2)
        seq = self.sequences  # [S, L]
        gathered = jnp.take_along_axis(per_pos[:, None, :, :], seq[None, :, :, None], axis=-1)[
            ..., 0
        ]  # [B, S, L]
        return gathered.sum(-1)

    def posterior(self, process: Process) -> Callable[[Array, Array], Array]:
        """(x_t [B, L], t [B]) -> exact p(x0 = sequence | x_t): float32[B, K**L]."""

        def fn(x_t: Array, t: Array) -> Array:
            x_t = jnp.asarray(x_t, jnp.int32)
            t = jnp.broadcast_to(jnp.asarray(t), x_t.shape[:-1])
            logits = self.log_probs[None, :] + self._log_likelihood(process, x_t, t)
            return jax.nn.softmax(logits, axis=-1)

        return fn

    def denoiser(self, process: Process) -> Denoiser:
        """The exact denoiser (x_t [B, L], t [B]) -> log p(x0_i = k | x_t): float32[B, L, K].

        For D3PM processes ``t`` is the int32 step index.
        """
        posterior = self.posterior(process)
        onehots = onehot(self.sequences, self.vocab_size)  # [S, L, K]

        def fn(x_t: Array, t: Array) -> Array:
            post = posterior(x_t, t)
            marg = jnp.einsum("bs,slk->blk", post, onehots)
            return jnp.log(jnp.maximum(marg, 1e-38))

        return fn

    def block_denoiser(self, process: Process, block_size: int) -> Callable[..., Array]:
        """The exact block-conditional denoiser (block diffusion's sampler contract).

        ``fn(x int32[B, L], t float32[B], block int32) -> float32[B, block_size, K]``:
        log p(x0_i | clean tokens of x before block ``block``, x's block noisy at time t)
        for the positions i of the block; positions after it are ignored. ``block`` may be
        traced. See :mod:`ddjax.testing.blocks`.
        """
        return blocks.block_denoiser(self, process, block_size)

    def block_training_denoiser(self, process: Process, block_size: int) -> Callable[..., Array]:
        """The exact block denoiser in the loss's form (BD3-LM's one training pass).

        ``fn(x_t int32[B, L], x0 int32[B, L], t float32[B, L // block_size] or float32[B])
        -> float32[B, L, K]``: position i of block b gets
        log p(x0_i | x0 of blocks < b, x_t of block b at time t[:, b]), the input
        :func:`ddjax.losses.block_masked_elbo` expects. See :mod:`ddjax.testing.blocks`.
        """
        return blocks.block_training_denoiser(self, process, block_size)

    def marginal(self, process: Process, t: ArrayLike) -> Array:
        """p_t(x) for every sequence of states at one time t: float32[N] * L."""
        k, n = self.vocab_size, process.num_states
        table = process.marginal_probs(jnp.eye(k)[None], jnp.asarray(t)[None])[0]  # [K, N]
        p = jnp.asarray(self.probs, jnp.float32).reshape([k] * self.length)
        for axis in range(self.length):
            p = jnp.moveaxis(jnp.tensordot(p, table, axes=[[axis], [0]]), -1, axis)
        check(p.shape == (n,) * self.length, "internal: marginal shape")
        return p

    def score(self, process: Process) -> Callable[[Array, Array], Array]:
        """Exact concrete score (x_t, t) -> log p_t(x^{i<-y}) - log p_t(x): float32[B, L, N].

        Computed from the enumerated marginal p_t, independently of the denoiser.
        """
        n = process.num_states

        def fn(x_t: Array, t: Array) -> Array:
            x_t = jnp.asarray(x_t, jnp.int32)
            t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x_t.shape[:-1])

            def one(x: Array, time: Array) -> Array:
                log_pt = jnp.log(self.marginal(process, time))
                base = log_pt[tuple(x)]
                # neighbours: position i set to y
                nbrs = jnp.where(
                    jnp.eye(self.length, dtype=bool)[:, None, :],
                    jnp.arange(n)[None, :, None],
                    x[None, None, :],
                )  # [L, N, L]
                vals = log_pt[tuple(jnp.moveaxis(nbrs, -1, 0))]
                return vals - base

            return jax.vmap(one)(x_t, t)

        return fn

    def values(
        self, fn: Callable[[Array], ArrayLike] | ArrayLike, name: str = "values"
    ) -> np.ndarray:
        """``fn`` on every sequence, float64[K**L] in :attr:`sequences` order (``fn`` may
        already be those values); one value per sequence, no NaN or +inf (-inf allowed)."""
        v = fn(self.sequences) if callable(fn) else fn
        v = np.asarray(v, np.float64).reshape(-1)
        check(
            v.shape == (self.num_sequences,),
            f"{name} must give one value per sequence ({self.num_sequences}), got {v.shape}",
        )
        check(not np.any(np.isnan(v) | (v == np.inf)), f"{name} has NaN or +inf values")
        return v

    def tilted(
        self, log_weight: Callable[[Array], ArrayLike] | ArrayLike, alpha: float = 1.0
    ) -> ExactTarget:
        """The tilted law p(x) exp(w(x) / alpha) / Z as a new target.

        With w = a reward r it is the target of reward steering (SMC, SVDD); with w = a
        log-likelihood log p(y | x) it is the posterior p(x | y).

        Args:
          log_weight: ``w(x int32[S, L]) -> float[S]`` or the values float[K**L] in
            :attr:`sequences` order; -inf removes a sequence.
          alpha: temperature > 0.
        """
        check(alpha > 0, f"alpha must be > 0, got {alpha}")
        w = self.values(log_weight, "log_weight")
        with np.errstate(divide="ignore"):
            log_p = np.log(self.probs) + w / alpha
        check(np.any(np.isfinite(log_p)), "the tilted law has total mass 0")
        return ExactTarget(log_p.reshape([self.vocab_size] * self.length))

    def conditional(self, fixed: ArrayLike) -> np.ndarray:
        """p(x | x_i = fixed_i where fixed_i >= 0) over all sequences: float64[K**L]."""
        fixed = np.asarray(fixed)
        seqs = np.asarray(self.sequences)
        ok = np.all((fixed < 0) | (seqs == fixed), axis=-1)
        p = np.where(ok, self.probs, 0.0)
        check(p.sum() > 0, "the fixed tokens have probability 0 under the target")
        return p / p.sum()


def random_target(
    key: Array,
    vocab_size: int,
    length: int,
    temperature: float = 1.0,
    coupling: float | None = None,
) -> ExactTarget:
    """A target with Gaussian log-probabilities (scaled by 1 / ``temperature``).

    With ``coupling`` = c, log p(x) = sum_i a_i[x_i] + c * g(x) instead: independent
    positions plus a dependent part of scale c, so small c gives a weakly dependent target
    (p(x_i | x_j) / p(x_i) near 1), the regime of Ren et al.'s second-order analysis.
    """
    shape = (vocab_size,) * length
    log_p = jax.random.normal(key, shape) / temperature
    if coupling is not None:
        margs = jax.random.normal(jax.random.fold_in(key, 1), (length, vocab_size)) / temperature
        independent = sum(
            jnp.expand_dims(margs[i], [j for j in range(length) if j != i]) for i in range(length)
        )
        log_p = independent + coupling * log_p
    return ExactTarget(np.asarray(log_p))


def empirical_probs(samples: ArrayLike, vocab_size: int) -> np.ndarray:
    """Histogram of sequences [n, L] over all K**L sequences: float64[K**L]."""
    samples = np.asarray(samples)
    length = samples.shape[-1]
    idx = np.ravel_multi_index(tuple(samples.reshape(-1, length).T), (vocab_size,) * length)
    counts = np.bincount(idx, minlength=vocab_size**length)
    return counts / counts.sum()


def _target_probs(target: ExactTarget | ArrayLike) -> np.ndarray:
    if isinstance(target, ExactTarget):
        return target.probs
    return np.asarray(target, np.float64)


def total_variation(
    samples: ArrayLike, target: ExactTarget | ArrayLike, vocab_size: int | None = None
) -> float:
    """TV distance between the samples' histogram and the target (an ExactTarget or a vector)."""
    p = _target_probs(target)
    k = target.vocab_size if isinstance(target, ExactTarget) else vocab_size
    check(k is not None, "pass vocab_size when target is a probability vector")
    q = empirical_probs(samples, k)
    check(q.shape == p.shape, f"samples give {q.shape[0]} sequences, target has {p.shape[0]}")
    return tv(p, q)


def tv(p: ArrayLike, q: ArrayLike) -> float:
    """Total variation distance between two probability vectors."""
    return float(0.5 * np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)).sum())


def kl(p: ArrayLike, q: ArrayLike) -> float:
    """KL(p || q) in nats between probability vectors (infinite if q misses p's support)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    support = p > 0
    if np.any(q[support] == 0):
        return math.inf
    return float(np.sum(p[support] * (np.log(p[support]) - np.log(q[support]))))


def tv_floor(target: ExactTarget | ArrayLike, n: int) -> float:
    """Expected TV of n exact samples from the target: 0.5 sum_j sqrt(2 p_j (1 - p_j) / (pi n))."""
    p = _target_probs(target)
    return float(0.5 * np.sum(np.sqrt(2.0 * p * (1.0 - p) / (math.pi * n))))


class JointTarget:
    """An enumerated joint law over (class c, sequence x), for guidance tests.

    ``log_p`` has shape ``[C] + [K] * L``. Gives the per-class and marginal
    :class:`ExactTarget` and the exact time-t classifier log p_t(c | x_t).
    """

    def __init__(self, log_p: ArrayLike) -> None:
        log_p = np.asarray(log_p, np.float64)
        check(log_p.ndim >= 2, "log_p must have shape [C] + [K] * L")
        self.num_classes = int(log_p.shape[0])
        flat = log_p.reshape(self.num_classes, -1)
        flat = flat - np.log(np.exp(flat - flat.max()).sum()) - flat.max()
        self._log_joint = flat  # [C, S], normalised over both
        self._marginal = ExactTarget(np.logaddexp.reduce(flat, axis=0).reshape(log_p.shape[1:]))

    def conditional(self, c: int) -> ExactTarget:
        """The target p(x | c)."""
        shape = (self._marginal.vocab_size,) * self._marginal.length
        return ExactTarget(self._log_joint[c].reshape(shape))

    def marginal(self) -> ExactTarget:
        """The target p(x) = sum_c p(c, x)."""
        return self._marginal

    def class_probs(self, x: ArrayLike) -> np.ndarray:
        """p(c | x) for clean sequences x [B, L]: float64[B, C]."""
        idx = np.asarray(self._marginal.index(x))
        log_cond = self._log_joint[:, idx].T
        return np.exp(log_cond - np.logaddexp.reduce(log_cond, axis=1, keepdims=True))

    def log_classifier(self, process: Process, c: int) -> Callable[[Array, Array], Array]:
        """(x_t, t) -> log p_t(c | x_t): float32[B]; x_t int32[B, L] or one-hot float[B, L, N]."""
        target = self._marginal
        log_pc_given_x = jnp.asarray(
            self._log_joint[c] - np.logaddexp.reduce(self._log_joint, axis=0), jnp.float32
        )

        def fn(x_t: Array, t: Array) -> Array:
            t = jnp.broadcast_to(jnp.asarray(t), x_t.shape[:1])
            log_post = jax.nn.log_softmax(
                target.log_probs[None, :] + target._log_likelihood(process, x_t, t), axis=-1
            )
            return jax.nn.logsumexp(log_post + log_pc_given_x[None, :], axis=-1)

        return fn


# Block-conditional denoisers, the exact output laws of samplers (which imports the
# samplers, so these come last) and the exact answers for steering and posterior samplers.
from ddjax.testing import blocks, exact_law, steering  # noqa: E402
from ddjax.testing.exact_law import ExactLaw  # noqa: E402
from ddjax.testing.posterior import ddpd_law, exact_planner, smoothed_log_likelihood  # noqa: E402
from ddjax.testing.steering import soft_value  # noqa: E402
