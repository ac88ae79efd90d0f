"""Samplers for the masking process: first-hitting, ReMDM remasking and MaskGIT decoding.

* :func:`first_hitting` (Zheng et al. 2024, "Masked diffusion models are secretly
  time-agnostic masked models and exploit inaccurate categorical sampling"): with n
  masked tokens at time tau the next unmasking happens at
  ``tau' = alpha^{-1}(1 - u^{1/n} (1 - alpha(tau)))``, u ~ U(0, 1), at one uniformly
  chosen masked position, drawn from p(. | x, tau'). One network call per token (L in
  all, whatever ``steps`` is) and O(L K) categorical work; exact with an exact denoiser.
* :func:`remdm` (Wang et al. 2025, ReMDM): each step re-masks decoded tokens with
  probability sigma_t and decodes masked ones with weight
  ``(a_s - (1 - sigma_t) a_t) / (1 - a_t)``; schedules ``cap``, ``rescale``, ``conf``
  and ``loop`` with the paper's defaults. ``eta = 0`` is MDLM's ancestral step.
* :func:`confidence` (MaskGIT, Chang et al. 2022): sample every masked position, keep
  the most confident, re-mask the rest so that the masked count follows a cosine
  schedule.

Cost at large vocabularies. A step changes few tokens, so the per-step work avoids
full ``[B, L, K]`` categorical draws: the decision *whether* a position changes is a
per-position Bernoulli, and tokens are drawn only where a masked position is decoded
(:func:`draw_at`: the log-probabilities of at most ``capacity`` positions per row are
gathered, with an exact fallback to a full draw when more positions change). Draws over
a large vocabulary go through :func:`draw_tokens`, an exact two-stage draw (a group of
about sqrt(K) tokens, then a token within it), both stages through the tail-exact
:func:`~ddjax.samplers.categorical`. The x0 transforms (temperature, top-k, top-p) are
those of :func:`~ddjax.samplers._common.transform_log_probs` applied per position, so
they are applied to the gathered rows only.

Shapes: tokens int32[B, L] with the mask id K; the denoiser gives float32[B, L, K].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ddjax._struct import check
from ddjax.processes import Masking, Process
from ddjax.samplers import _common
from ddjax.samplers.categorical import categorical, gumbel

__all__ = [
    "first_hitting",
    "remdm",
    "confidence",
    "draw_tokens",
    "draw_at",
    "masking_update",
    "REMDM_SCHEDULES",
    "REMDM_DEFAULT_ETA",
    "TWO_STAGE_MIN_VOCAB",
]

# Vocabularies at least this large are drawn with the two-stage draw and, by default,
# only at the positions that change.
TWO_STAGE_MIN_VOCAB = 2048

REMDM_SCHEDULES = ("cap", "rescale", "conf", "loop")
# Defaults of the ReMDM paper's code (eta multiplies the softmax weights for "conf").
REMDM_DEFAULT_ETA = {"cap": 0.008, "rescale": 0.015, "conf": 1.0, "loop": 0.02}

_TINY = 1e-30
Transform = Callable[[Array], Array]


# --------------------------------------------------------------------------
# Draws
# --------------------------------------------------------------------------


def _require_masking(process: Process, name: str) -> Masking:
    check(
        isinstance(process, Masking),
        f"{name} samples the masking process only (dd.processes.Masking), got "
        f"{type(process).__name__}; use ancestral or a CTMC sampler for other processes",
        TypeError,
    )
    return process


def _two_stage(key: Array, log_probs: Array, bits: int | str = 32) -> Array:
    """Exact draw from softmax(log_probs) over the last axis: a group, then a token in it.

    The K classes are split into groups of ``S = isqrt(K)`` consecutive ids (the last
    group may be shorter). Stage 1 draws a group from the group masses, stage 2 a class
    from the chosen group's S logits, so a draw costs about 2 sqrt(K) random words
    instead of K, and one pass over the logits. Both stages use the tail-exact
    :func:`categorical`.
    """
    k = log_probs.shape[-1]
    size = max(1, math.isqrt(k))
    groups = k // size
    batch = log_probs.shape[:-1]
    top = jax.lax.stop_gradient(jnp.max(log_probs, axis=-1, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    lead = log_probs[..., : groups * size].reshape(*batch, groups, size)
    group_logits = jnp.log(jnp.exp(lead - top[..., None]).sum(-1)) + top
    if groups * size < k:
        tail = jax.nn.logsumexp(log_probs[..., groups * size :], axis=-1, keepdims=True)
        group_logits = jnp.concatenate([group_logits, tail], axis=-1)
    k_group, k_token = jax.random.split(key)
    g = categorical(k_group, group_logits, bits=bits)
    idx = g[..., None] * size + jnp.arange(size, dtype=jnp.int32)
    within = jnp.take_along_axis(log_probs, jnp.minimum(idx, k - 1), axis=-1)
    within = jnp.where(idx < k, within, -jnp.inf)
    return g * size + categorical(k_token, within, bits=bits)


def draw_tokens(
    key: Array,
    log_probs: Array,
    argmax: bool = False,
    two_stage: bool | None = None,
    bits: int | str = 32,
) -> Array:
    """One token per row of ``log_probs`` float32[..., K]: int32[...].

    Args:
      argmax: take the mode instead of drawing.
      two_stage: use the exact two-stage draw; None picks it for K >= TWO_STAGE_MIN_VOCAB
        (never for bits="float32", which reproduces JAX's one-stage truncated draw).
      bits: the Gumbel resolution of :func:`categorical`.
    """
    if argmax:
        return jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
    if two_stage is None:
        two_stage = log_probs.shape[-1] >= TWO_STAGE_MIN_VOCAB and bits != "float32"
    if two_stage:
        return _two_stage(key, log_probs, bits)
    return categorical(key, log_probs, bits=bits)


def _token_log_prob(log_probs: Array, tokens: Array) -> Array:
    return jnp.take_along_axis(log_probs, tokens[..., None], axis=-1)[..., 0]


def draw_at(
    key: Array,
    log_probs: Array,
    select: Array,
    *,
    capacity: int | None = None,
    argmax: bool = False,
    transform: Transform | None = None,
    bits: int | str = 32,
) -> tuple[Array, Array]:
    """Tokens drawn from ``transform(log_probs)`` at the ``select``-ed positions.

    Args:
      log_probs: float32[B, L, K].
      select: bool[B, L], where a token is needed.
      capacity: None draws at every position. An int C < L gathers the rows of the
        first C selected positions of each sequence and draws there only; when some
        sequence selects more than C positions the call falls back to the full draw
        (``lax.cond``), so the law is exact either way.
      argmax: take the mode instead of drawing.
      transform: the x0 transform applied per row (temperature, top-k, top-p).
    Returns:
      (tokens int32[B, L], their log-probabilities float32[B, L]), meaningful where
      ``select`` holds.
    """
    transform = transform or (lambda lp: lp)
    b, l, _ = log_probs.shape

    def full() -> tuple[Array, Array]:
        lp = transform(log_probs)
        tokens = draw_tokens(key, lp, argmax, bits=bits)
        return tokens, _token_log_prob(lp, tokens)

    if capacity is None or capacity >= l:
        return full()

    def compact() -> tuple[Array, Array]:
        order = jnp.where(select, l - jnp.arange(l, dtype=jnp.int32), 0)
        idx = jax.lax.top_k(order, capacity)[1]  # [B, C]: the first C selected positions
        rows = transform(jnp.take_along_axis(log_probs, idx[..., None], axis=1))
        tokens = draw_tokens(key, rows, argmax, bits=bits)
        batch = jnp.arange(b)[:, None]
        out_tokens = jnp.zeros((b, l), jnp.int32).at[batch, idx].set(tokens)
        out_lp = jnp.zeros((b, l), jnp.float32).at[batch, idx].set(_token_log_prob(rows, tokens))
        return out_tokens, out_lp

    overflow = jnp.any(select.sum(-1) > capacity)
    return jax.lax.cond(overflow, full, compact)


def masking_update(
    key: Array,
    x: Array,
    log_probs: Array,
    unmask_prob: Array,
    mask_id: int,
    *,
    remask_prob: Array | None = None,
    free: Array | None = None,
    capacity: int | None = None,
    argmax: bool = False,
    transform: Transform | None = None,
    bits: int | str = 32,
) -> tuple[Array, Array, Array]:
    """One factorised masking step: decode masked tokens, optionally re-mask decoded ones.

    A masked position is decoded with probability ``unmask_prob``, to a token drawn from
    its x0 distribution; a decoded (free) position is re-masked with probability
    ``remask_prob``; everything else stays. This is the posterior
    ``unmask_prob * p(v)`` / ``1 - unmask_prob`` over {data, mask} drawn as a Bernoulli
    and then a token, so the token draw happens only where a token is decoded.

    Args:
      x: int32[B, L]; log_probs: float32[B, L, K].
      unmask_prob, remask_prob: float32 broadcastable to [B, L].
      free: bool[B, L], positions allowed to be re-masked (None: all).
    Returns:
      (new x int32[B, L], decoded bool[B, L], log-probability of each decoded token
      float32[B, L]).
    """
    k_u, k_tok = jax.random.split(key)
    u = jax.random.uniform(k_u, x.shape)
    masked = x == mask_id
    decode = masked & (u < unmask_prob)
    tokens, token_lp = draw_at(
        k_tok, log_probs, decode, capacity=capacity, argmax=argmax, transform=transform, bits=bits
    )
    x_new = jnp.where(decode, tokens, x)
    if remask_prob is not None:
        remask = ~masked & (u < remask_prob)  # disjoint from ``decode``: same u is fine
        if free is not None:
            remask = remask & free
        x_new = jnp.where(remask, mask_id, x_new)
    return x_new, decode, token_lp


def _auto_capacity(expected: float, length: int, vocab_size: int) -> int | None:
    """Rows to gather per step for ``expected`` decoded tokens per sequence (None: all).

    Only large vocabularies gather (a full draw is cheap otherwise); the margin of six
    standard deviations makes the full-draw fallback rare.
    """
    if vocab_size < TWO_STAGE_MIN_VOCAB:
        return None
    cap = int(math.ceil(expected + 6.0 * math.sqrt(max(expected, 0.0)) + 8.0))
    return cap if 2 * cap <= length else None


def _check_capacity(capacity: Any) -> None:
    check(
        capacity is None or (isinstance(capacity, int) and capacity >= 1),
        f"draw_capacity must be None or a positive int, got {capacity!r}",
    )


def _transform(temperature: float, top_k: int | None, top_p: float | None) -> Transform:
    return partial(_common.transform_log_probs, temperature=temperature, top_k=top_k, top_p=top_p)


def _number(name: str, value: Any, lo: float, hi: float = math.inf, *, open_lo=False) -> None:
    """Checks a Python number option (traced values pass unchecked)."""
    if isinstance(value, jax.core.Tracer):
        return
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > lo if open_lo else value >= lo) and value <= hi
    side = "(" if open_lo else "["
    check(ok, f"{name} must be a number in {side}{lo}, {hi}], got {value!r}")


# --------------------------------------------------------------------------
# First hitting
# --------------------------------------------------------------------------


def first_hitting(
    key: Array,
    denoiser: _common.Denoiser,
    process: Process,
    shape: tuple[int, int],
    *,
    steps: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    fixed: Any = None,
    final_step: str = "sample",
    return_trajectory: bool = False,
    tokens_per_call: int = 1,
    t_max: float = 1.0,
) -> Array | tuple[Array, Array]:
    """Zheng et al.'s first-hitting sampler: one token per network call.

    With n masked tokens at time tau, the next of them unmasks at the first-hitting
    time ``tau' = alpha^{-1}(1 - u^{1/n} (1 - alpha(tau)))``, u ~ U(0, 1) (the largest
    of n unmasking times drawn given that all lie below tau), at a uniformly chosen
    masked position, with its token drawn from p(. | x, tau'). With an exact denoiser
    the output law is exact. ``tokens_per_call = k`` decodes k positions per call
    (at the first of their k hitting times; time then moves to the k-th), an
    approximation with ceil(L / k) calls.

    Args:
      key, denoiser, process, shape: as for every sampler; ``process`` must be Masking.
      steps: ignored (accepted for a uniform interface; checked when given).
      temperature, top_k, top_p: applied to the x0 distribution.
      fixed: int32[B, L], -1 where free; given positions need no call.
      final_step: "argmax" takes the mode for the call that decodes a sequence's last
        masked tokens.
      return_trajectory: also return the state after every call, int32[ceil(L/k), B, L].
      tokens_per_call: k >= 1.
      t_max: start time.
    Returns:
      int32[B, L] (and the trajectory). The network is called once per loop iteration
      while some sequence still has a masked token: L / k calls without ``fixed``, the
      largest number of free positions / k with it (every iteration under ``vmap``).
    """
    _require_masking(process, "first_hitting")
    fixed = _common.check_common(
        process, shape, 1 if steps is None else steps, fixed, final_step, temperature
    )
    check(
        isinstance(tokens_per_call, int) and tokens_per_call >= 1,
        f"tokens_per_call must be a positive int, got {tokens_per_call!r}",
    )
    _number("t_max", t_max, 0.0, 1.0, open_lo=True)
    b, l = shape
    k = min(tokens_per_call, l)
    num_calls = -(-l // k)
    mask_id = process.mask_id
    schedule = process.schedule
    transform = _transform(temperature, top_k, top_p)
    k_init, k_loop = jax.random.split(key)
    x_init = _common.initial_state(k_init, process, shape, fixed)
    oma_init = schedule.one_minus_alpha(jnp.full((b,), t_max, jnp.float32))
    rows = jnp.arange(b)[:, None]

    def call(x: Array, oma: Array, key: Array) -> tuple[Array, Array]:
        masked = x == mask_id
        n = masked.sum(-1)  # [B]
        k_time, k_pos, k_tok = jax.random.split(key, 3)
        # the next k hitting times: 1 - alpha shrinks by u_j^{1/(n - j)} at each
        u = jax.random.uniform(k_time, (b, k), minval=jnp.finfo(jnp.float32).tiny)
        j = jnp.arange(k)[None, :]
        remaining = n[:, None] - j
        log_shrink = jnp.where(remaining > 0, jnp.log(u) / jnp.maximum(remaining, 1), 0.0)
        oma_events = oma[:, None] * jnp.exp(jnp.cumsum(log_shrink, axis=-1))  # [B, k]
        t_call = jnp.clip(schedule.t_of_alpha(1.0 - oma_events[:, 0]), 0.0, t_max)
        log_probs = denoiser(x, t_call)
        # k uniformly chosen masked positions
        score = jnp.where(masked, jax.random.uniform(k_pos, (b, l)), -1.0)
        top, pos = jax.lax.top_k(score, k)
        valid = top >= 0.0
        chosen = transform(jnp.take_along_axis(log_probs, pos[..., None], axis=1))  # [B,k,K]
        tokens = draw_tokens(k_tok, chosen)
        if final_step == "argmax":
            last = (n <= k)[:, None]
            tokens = jnp.where(last, draw_tokens(k_tok, chosen, argmax=True), tokens)
        old = jnp.take_along_axis(x, pos, axis=1)
        x = x.at[rows, pos].set(jnp.where(valid, tokens, old))
        last_event = jnp.clip(jnp.minimum(n, k) - 1, 0)
        oma_next = jnp.take_along_axis(oma_events, last_event[:, None], axis=1)[:, 0]
        return x, jnp.where(n > 0, oma_next, oma)

    def body(carry: tuple[Array, Array], key: Array) -> tuple[tuple[Array, Array], Any]:
        x, oma = carry
        x, oma = jax.lax.cond(jnp.any(x == mask_id), lambda: call(x, oma, key), lambda: (x, oma))
        return (x, oma), (x if return_trajectory else None)

    keys = jax.random.split(k_loop, num_calls)
    (x, _), traj = jax.lax.scan(body, (x_init, oma_init), keys)
    x = _common.clamp(x, fixed)
    if not return_trajectory:
        return x
    return x, traj


# --------------------------------------------------------------------------
# ReMDM
# --------------------------------------------------------------------------


def _loop_one_minus_alpha(
    t: Array, alpha_start: Array, t_on: float, t_off: float, alpha_on: float
) -> Array:
    """1 - alpha of ReMDM-loop's piecewise-linear schedule at times t.

    alpha rises linearly from ``alpha_start`` (the process's alpha(1)) at t = 1 to
    ``alpha_on`` at ``t_on``, stays there down to ``t_off``, then rises linearly to 1 at 0.
    """
    rise = alpha_start + (alpha_on - alpha_start) * (1.0 - t) / (1.0 - t_on)
    return jnp.where(
        t > t_on,
        1.0 - rise,
        jnp.where(t > t_off, 1.0 - alpha_on, (1.0 - alpha_on) * t / t_off),
    )


def remdm(
    key: Array,
    denoiser: _common.Denoiser,
    process: Process,
    shape: tuple[int, int],
    *,
    steps: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    fixed: Any = None,
    final_step: str = "sample",
    return_trajectory: bool = False,
    schedule: str = "cap",
    eta: float | None = None,
    t_on: float = 0.55,
    t_off: float = 0.05,
    alpha_on: float = 0.9,
    draw_capacity: int | None = None,
    t_max: float = 1.0,
) -> Array | tuple[Array, Array]:
    """ReMDM remasking sampler (Wang et al. 2025) on an even time grid.

    A step from t to s (a_t = alpha(t)): a decoded token is re-masked with probability
    sigma; a masked token is decoded to v with probability
    ``(a_s - (1 - sigma) a_t) / (1 - a_t) p(v)`` and stays masked with
    ``(1 - a_s - sigma a_t) / (1 - a_t)``, with ``0 <= sigma <= sigma_max =
    min(1, (1 - a_s) / a_t)``. These keep the marginals q(x_s | x0) of the forward
    process, so with an exact denoiser the sampler converges to the data law as steps
    grow; sigma = 0 is MDLM's ancestral step.

    Schedules (``eta`` defaults to the paper's values, REMDM_DEFAULT_ETA):
      ``cap``: sigma = min(eta, sigma_max) (eta 0.008).
      ``rescale``: sigma = eta * sigma_max (eta 0.015).
      ``conf``: per decoded token, sigma = eta * softmax(-confidence) * sigma_max over the
        decoded (free) positions, where a token's confidence is its probability when it
        was decoded; masked tokens decode as in MDLM (eta 1.0).
      ``loop``: alpha follows a piecewise-linear path in t: up to ``alpha_on`` at
        ``t_on`` with MDLM steps, constant at ``alpha_on`` down to ``t_off`` with
        sigma = eta remasking (eta 0.02), then MDLM steps to alpha = 1 at t = 0. The
        denoiser sees the process time whose alpha matches.
    The last step (to t = 0) decodes every remaining mask and re-masks nothing.

    Args:
      key, denoiser, process, shape, steps: as for every sampler; Masking only.
      temperature, top_k, top_p, fixed, final_step, return_trajectory: common options.
      schedule: "cap", "rescale", "conf" or "loop".
      eta: remasking strength (>= 0).
      t_on, t_off, alpha_on: the loop schedule (0 < t_off < t_on < 1, 0 < alpha_on < 1).
      draw_capacity: rows gathered per step for the token draws (see :func:`draw_at`);
        None picks one for large vocabularies.
      t_max: start time.
    Returns:
      int32[B, L] (and with ``return_trajectory`` the states after every step,
      int32[steps, B, L]).
    """
    _require_masking(process, "remdm")
    fixed = _common.check_common(process, shape, steps, fixed, final_step, temperature)
    check(
        schedule in REMDM_SCHEDULES,
        f"schedule must be one of {REMDM_SCHEDULES}, got {schedule!r}",
    )
    eta = REMDM_DEFAULT_ETA[schedule] if eta is None else eta
    _number("eta", eta, 0.0)
    _check_capacity(draw_capacity)
    _number("t_max", t_max, 0.0, 1.0, open_lo=True)
    if schedule == "loop":
        _number("alpha_on", alpha_on, 0.0, 1.0, open_lo=True)
        check(alpha_on < 1.0, f"alpha_on must be below 1, got {alpha_on}")
        _number("t_off", t_off, 0.0, 1.0, open_lo=True)
        _number("t_on", t_on, 0.0, 1.0, open_lo=True)
        check(t_off < t_on < 1.0, f"need 0 < t_off < t_on < 1, got t_off={t_off}, t_on={t_on}")

    b, l = shape
    mask_id = process.mask_id
    sched = process.schedule
    transform = _transform(temperature, top_k, top_p)
    free = None if fixed is None else fixed < 0

    def times(t: Array, s: Array) -> tuple[Array, Array, Array, Array, Array]:
        """(a_t, 1 - a_t, 1 - a_s, the denoiser's time, sigma for the cap-like schedules)."""
        if schedule == "loop":
            a_start = sched.alpha(jnp.float32(1.0))
            oma_t = _loop_one_minus_alpha(t, a_start, t_on, t_off, alpha_on)
            oma_s = _loop_one_minus_alpha(s, a_start, t_on, t_off, alpha_on)
            a_t = 1.0 - oma_t
            t_net = jnp.clip(sched.t_of_alpha(a_t), 0.0, 1.0)
        else:
            oma_t, oma_s = sched.one_minus_alpha(t), sched.one_minus_alpha(s)
            a_t, t_net = sched.alpha(t), t
        sigma_max = jnp.where(a_t > 0, jnp.clip(oma_s / jnp.maximum(a_t, _TINY), 0.0, 1.0), 1.0)
        if schedule == "cap":
            sigma = jnp.minimum(eta, sigma_max)
        elif schedule == "rescale":
            sigma = eta * sigma_max
        elif schedule == "loop":
            sigma = jnp.where((t > t_off) & (t <= t_on), jnp.minimum(eta, sigma_max), 0.0)
        else:  # conf: per position, below
            sigma = sigma_max
        return a_t, oma_t, oma_s, t_net, sigma

    capacity = draw_capacity
    if capacity is None:
        with jax.ensure_compile_time_eval():
            grid = np.linspace(t_max, 0.0, steps + 1).astype(np.float32)
            a_t, oma_t, oma_s, _, sigma = times(jnp.asarray(grid[:-1]), jnp.asarray(grid[1:]))
            sigma_m = 0.0 if schedule == "conf" else sigma
            expected = float(np.max(np.asarray(oma_t - oma_s + sigma_m * a_t))) * l
        capacity = _auto_capacity(expected, l, process.vocab_size)

    def make_step(last: bool) -> Callable:
        def step(k: Array, state: tuple[Array, Array], t: Array, s: Array):
            x, conf = state
            a_t, oma_t, oma_s, t_net, sigma = times(t, s)
            a_t, oma_t, oma_s = a_t[:, None], oma_t[:, None], oma_s[:, None]
            sigma = sigma[:, None]
            masked = x == mask_id
            if schedule == "conf":
                decoded = ~masked if free is None else ~masked & free
                z = jnp.where(decoded, -conf, -jnp.inf)
                z_top = jnp.max(z, axis=-1, keepdims=True)
                e = jnp.where(decoded, jnp.exp(z - jnp.where(jnp.isfinite(z_top), z_top, 0.0)), 0.0)
                weights = e / jnp.maximum(e.sum(-1, keepdims=True), _TINY)
                remask_prob = eta * weights * sigma
                sigma_masked = 0.0
            else:
                remask_prob = sigma
                sigma_masked = sigma
            unmask_prob = (oma_t - oma_s + sigma_masked * a_t) / jnp.maximum(oma_t, _TINY)
            if last:  # decode every remaining mask, re-mask nothing
                unmask_prob, remask_prob = jnp.ones_like(unmask_prob), None
            log_probs = denoiser(x, t_net)
            x_new, decoded_now, token_lp = masking_update(
                k,
                x,
                log_probs,
                unmask_prob,
                mask_id,
                remask_prob=remask_prob,
                free=free,
                capacity=capacity,
                argmax=last and final_step == "argmax",
                transform=transform,
            )
            conf = jnp.where(decoded_now, jnp.exp(token_lp), conf)
            return x_new, conf

        return step

    k_init, k_loop = jax.random.split(key)
    x_init = _common.initial_state(k_init, process, shape, fixed)
    grid = _common.time_grid(process, steps, t_max=t_max)
    return _common.run_loop(
        k_loop,
        x_init,
        grid,
        make_step(False),
        make_step(True),
        fixed,
        return_trajectory,
        aux=jnp.zeros((b, l), jnp.float32),
    )


# --------------------------------------------------------------------------
# MaskGIT confidence decoding
# --------------------------------------------------------------------------


def confidence(
    key: Array,
    denoiser: _common.Denoiser,
    process: Process,
    shape: tuple[int, int],
    *,
    steps: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    fixed: Any = None,
    final_step: str = "sample",
    return_trajectory: bool = False,
    noise_scale: float = 0.0,
) -> Array | tuple[Array, Array]:
    """MaskGIT decoding: keep the most confident sampled tokens, cosine count schedule.

    At step i (0-based) every masked position gets a token drawn from the x0
    distribution; its confidence is the token's log-probability plus
    ``noise_scale * (1 - (i + 1) / steps)`` times Gumbel noise. The most confident
    are kept and the rest re-masked so that ``floor(n cos(pi/2 (i + 1) / steps))``
    positions stay masked (n = the number of free positions), with at least one new
    token per step; the last step fills every mask. The denoiser sees the time whose
    masked fraction 1 - alpha(t) equals the current one.

    This is a heuristic, not a sampler of the model's law: picking the most confident
    tokens favours likely ones. With a very large ``noise_scale`` the order becomes
    uniformly random and, at one token per step, the law is exact.

    Args:
      key, denoiser, process, shape, steps: as for every sampler; Masking only.
      temperature, top_k, top_p, fixed, final_step, return_trajectory: common options
        (``final_step="argmax"``: the last step takes the mode at every masked position).
      noise_scale: scale of the Gumbel noise on the confidences (MaskGIT's choice
        temperature, 4.5 in its paper; 0 keeps the pure confidence order).
    Returns:
      int32[B, L] (and the states after every step, int32[steps, B, L]).
    """
    _require_masking(process, "confidence")
    fixed = _common.check_common(process, shape, steps, fixed, final_step, temperature)
    _number("noise_scale", noise_scale, 0.0)
    b, l = shape
    mask_id = process.mask_id
    sched = process.schedule
    denoise = _common.wrap_denoiser(denoiser, temperature, top_k, top_p)
    n_free = (jnp.full((b,), l) if fixed is None else (fixed < 0).sum(-1)).astype(jnp.float32)

    def make_step(last: bool) -> Callable:
        def step(k: Array, state: tuple[Array, Array], t: Array, s: Array):
            del t, s
            x, i = state
            masked = x == mask_id
            n_masked = masked.sum(-1)
            frac = n_masked / jnp.maximum(n_free, 1.0)
            t_net = jnp.clip(sched.t_of_alpha(1.0 - frac), 0.0, 1.0)
            log_probs = denoise(x, t_net)
            k_tok, k_noise = jax.random.split(k)
            tokens = draw_tokens(k_tok, log_probs, argmax=last and final_step == "argmax")
            score = _token_log_prob(log_probs, tokens)
            ratio = (i + 1).astype(jnp.float32) / steps
            if noise_scale > 0:
                score = score + noise_scale * (1.0 - ratio) * gumbel(k_noise, x.shape)
            score = jnp.where(masked, score, -jnp.inf)
            # masked count after this step; the small slack keeps exact integers exact
            target = jnp.floor(n_free * jnp.cos(0.5 * math.pi * ratio) + 1e-3).astype(jnp.int32)
            if last:
                target = jnp.zeros_like(target)
            n_next = jnp.clip(jnp.minimum(n_masked - 1, target), 0)
            n_decode = n_masked - n_next
            order = jnp.argsort(-score, axis=-1, stable=True)
            rank = jnp.argsort(order, axis=-1)
            decode = masked & (rank < n_decode[:, None])
            return jnp.where(decode, tokens, x), i + 1

        return step

    k_init, k_loop = jax.random.split(key)
    x_init = _common.initial_state(k_init, process, shape, fixed)
    grid = _common.time_grid(process, steps)
    return _common.run_loop(
        k_loop,
        x_init,
        grid,
        make_step(False),
        make_step(True),
        fixed,
        return_trajectory,
        aux=jnp.int32(0),
    )
