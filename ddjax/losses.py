"""Losses: pure functions returning nats per sequence, float32[B].

For each loss, its mean over ``t ~ U(0, 1)`` (``t_index ~ U{1..T}`` for D3PM) and
``x_t ~ q(x_t | x0)`` is the negative ELBO of ``x0``, with the prior term
made negligible by the schedule's ``eps`` (continuous time) or included (D3PM).
With the exact posterior ``p(x0_i | x_t)`` every continuous-time loss has
expectation equal to the exact NLL ``-log p(x0)``; ``tests/test_losses.py`` checks
this against the enumerating oracle in :mod:`ddjax.testing`.

Shapes: ``log_probs`` float[B, L, K]; ``x0``, ``x_t`` int32[B, L]; ``t`` float32[B].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from ddjax._struct import check
from ddjax._validation import validate_tokens
from ddjax.arrays import onehot, sequence_times
from ddjax.processes import D3PM, Interpolating, Masking, Process, require
from ddjax.schedules import Schedule

__all__ = [
    "sample_times",
    "mask_rate_times",
    "check_mask_rate",
    "masked_elbo",
    "block_masked_elbo",
    "uniform_elbo",
    "score_entropy",
    "d3pm_vb",
    "d3pm_hybrid",
    "any_order_nll",
    "dfm_generalized_kl",
    "cross_entropy",
]

_LOG_FLOOR = 1e-30


def sample_times(
    key: Array,
    batch: int,
    antithetic: bool = True,
    t_min: float = 1e-5,
    *,
    mask_rate: tuple[float, float] | None = None,
    schedule: Schedule | None = None,
) -> Array:
    """Training times in [t_min, 1 - t_min]: float32[batch].

    ``antithetic=True`` stratifies one uniform over the batch (MD4's low-discrepancy
    sampler): t_i = (u + i / B) mod 1, which lowers the variance of the batch mean.
    ``mask_rate=(beta, omega)`` (with ``schedule``) draws BD3-LM's clipped schedule
    instead: see :func:`mask_rate_times`.
    """
    if antithetic:
        u = (jax.random.uniform(key, ()) + jnp.arange(batch) / batch) % 1.0
    else:
        u = jax.random.uniform(key, (batch,))
    if mask_rate is not None:
        check(schedule is not None, "mask_rate needs the schedule that maps it to times")
        return mask_rate_times(u, schedule, mask_rate, t_min)
    return t_min + (1.0 - 2.0 * t_min) * u


def check_mask_rate(mask_rate: tuple[float, float]) -> tuple[float, float]:
    """``(beta, omega)`` as floats after checking 0 <= beta < omega <= 1."""
    check(
        len(tuple(mask_rate)) == 2,
        f"mask_rate must be a pair (beta, omega), got {mask_rate!r}",
    )
    beta, omega = (float(v) for v in mask_rate)
    check(
        0.0 <= beta < omega <= 1.0,
        f"mask_rate (beta, omega) needs 0 <= beta < omega <= 1, got ({beta}, {omega})",
    )
    return beta, omega


def mask_rate_times(
    u: ArrayLike, schedule: Schedule, mask_rate: tuple[float, float], t_min: float = 1e-5
) -> Array:
    """BD3-LM's clipped schedule: times whose mask rate 1 - alpha(t) ~ U[beta, omega].

    ``t = t_of_alpha(1 - m)`` with m = beta + (omega - beta) u, clipped to
    [t_min, 1 - t_min] (the rates the schedule cannot reach, e.g. m = 1 under
    LogLinear's eps, land on the end). The loss is unchanged (its weight stays
    -alpha'(t) / (1 - alpha(t)) at the drawn t), as in BD3-LM: for a schedule linear in
    the mask rate (LogLinear, Linear) its mean is 1 / (omega - beta) times the part of
    the NELBO with mask rates in [beta, omega], a biased objective of lower variance
    for training only; (0, 1) is the ordinary uniform time. Evaluate with the full
    schedule.

    Args:
      u: float32[...] uniforms in [0, 1).
      schedule: the process's schedule (``t_of_alpha``).
      mask_rate: (beta, omega), 0 <= beta < omega <= 1.

    Returns:
      float32[...], times of the shape of ``u``.
    """
    beta, omega = check_mask_rate(mask_rate)
    m = beta + (omega - beta) * jnp.asarray(u, jnp.float32)
    t = schedule.t_of_alpha(1.0 - m)
    return jnp.clip(t, t_min, 1.0 - t_min)


def _check_args(
    log_probs: ArrayLike, x0: ArrayLike, x_t: ArrayLike, process: Process, name: str = "log_probs"
) -> tuple[Array, Array, Array]:
    log_probs = jnp.asarray(log_probs, jnp.float32)
    # the protocol's members only (a user's process need not have ProcessBase's checks)
    validate_tokens(x0, process.vocab_size, "x0")
    validate_tokens(x_t, process.num_states, "x_t")
    x0, x_t = jnp.asarray(x0, jnp.int32), jnp.asarray(x_t, jnp.int32)
    check(x0.shape == x_t.shape, f"x0 has shape {x0.shape} but x_t has shape {x_t.shape}")
    check(
        log_probs.shape[:-1] == x0.shape,
        f"{name} has shape {log_probs.shape} but x0 has shape {x0.shape}",
    )
    # log-probs are over the K data tokens; scores over every state
    classes = process.num_states if name == "log_score" else process.vocab_size
    check(
        log_probs.shape[-1] == classes,
        f"{name} has {log_probs.shape[-1]} classes but the process has "
        + (f"{classes} states" if name == "log_score" else f"{classes} data tokens (vocab_size)")
        + "; convert network logits with dd.parameterizations.logits_to_log_probs",
    )
    return log_probs, x0, x_t


def _data_nll(log_probs: Array, x0: Array) -> Array:
    """-log p(x0_i) per position: float32[B, L]."""
    return -jnp.take_along_axis(log_probs, x0[..., None], axis=-1)[..., 0]


# The process capabilities each loss reads (ddjax.processes.CAPABILITIES): the
# continuous-time closed forms are those of a schedule with the noise law prior_probs.
_NEEDS = {
    "masked_elbo": ("continuous_time", "mask", "schedule"),
    "score_entropy": ("continuous_time", "schedule", "prior_probs", "forward_rate_into"),
    "uniform_elbo": ("continuous_time", "schedule", "prior_probs", "forward_rate_into"),
    "dfm_generalized_kl": ("continuous_time", "schedule", "prior_probs"),
}


def _require(process: Process, loss: str) -> None:
    require(process, _NEEDS[loss], loss)


def cross_entropy(log_probs: ArrayLike, x0: ArrayLike) -> Array:
    """Sum over positions of -log p(x0_i): float32[B] (the autoregressive loss)."""
    log_probs = jnp.asarray(log_probs, jnp.float32)
    x0 = jnp.asarray(x0, jnp.int32)
    check(
        log_probs.shape[:-1] == x0.shape,
        f"log_probs has shape {log_probs.shape} but x0 has shape {x0.shape}",
    )
    return _data_nll(log_probs, x0).sum(-1)


def masked_elbo(
    log_probs: ArrayLike, x0: ArrayLike, x_t: ArrayLike, t: ArrayLike, process: Masking
) -> Array:
    """MDLM / MD4 continuous-time NELBO: (-a'_t / (1 - a_t)) sum_{masked i} -log p(x0_i)."""
    _require(process, "masked_elbo")
    log_probs, x0, x_t = _check_args(log_probs, x0, x_t, process)
    t = sequence_times(t, x0)
    masked = x_t == process.mask_id
    ce = jnp.where(masked, _data_nll(log_probs, x0), 0.0).sum(-1)
    return process.schedule.masking_rate(t) * ce


def _take(v: Array, index: Array) -> Array:
    """v[..., index] per position: float[B, L] for v [B, L, N] and index [B, L]."""
    return jnp.take_along_axis(v, index[..., None], axis=-1)[..., 0]


def _entropy_terms(s: Array, r: Array) -> Array:
    """The score-entropy summand s - r + r log(r / s), as r (u - 1 - log u) with u = s / r.

    In this form the rounding of s and r costs r * eps * |u - 1| rather than eps * r: the
    summand is second order in s - r, and near the optimum s ~ r that matters. Where
    r = 0 the summand is s; s is floored at 1e-30 inside the log.
    """
    safe_r = jnp.where(r > 0, r, 1.0)
    u = s / safe_r
    return jnp.where(r > 0, r * ((u - 1.0) - jnp.log(jnp.maximum(s, _LOG_FLOOR) / safe_r)), s)


def _true_ratio(a: Array, c: Array, pi: Array, x0: Array, x_t: Array) -> tuple[Array, Array, Array]:
    """The true ratios r_y = q_t(y | x0) / q_t(x_t | x0) = cr pi_y + [y = x0] a / q.

    Returns arrays of the shape of ``x0``: ``cr`` = c / q, ``r_0`` = r at y = x0, and
    whether x0 != x_t (otherwise y = x0 is the excluded y = x_t).
    """
    differs = x0 != x_t
    q = jnp.maximum(jnp.where(differs, 0.0, a) + c * pi[x_t], _LOG_FLOOR)
    cr = c / q
    return cr, cr * pi[x0] + a / q, differs


# Elements of a [B, L, K] input handled per step by :func:`_per_position`: 4M keeps every
# temporary near 16 MB whatever B, L and K are.
_CHUNK_ELEMENTS = 2**22


def _per_position(fn, big: Array, *small: Array) -> Array:
    """``fn(rows [R, K], *per_row [R]) -> [R]`` over every position of ``big`` [..., L, K].

    XLA's CPU backend materialises the elementwise input of a reduction, so a sum over
    K of an expression of ``big`` would cost a [B, L, K] temporary. Running ``fn`` on
    chunks of positions along L (a loop over dynamic slices of ``big``, no copy of it;
    the batch axes stay whole, so a batch-sharded input stays local) bounds the
    temporaries by the chunk. The last chunk is shifted back to end at position L - 1;
    its overlap with the previous chunk is recomputed and overwritten with the same
    values. Returns float32[..., L].
    """
    lead, k = big.shape[:-1], big.shape[-1]
    length, batch = lead[-1], int(np.prod(lead[:-1], dtype=np.int64))
    per_row = [jnp.broadcast_to(v, lead) for v in small]
    chunk = max(1, min(length, _CHUNK_ELEMENTS // max(batch * k, 1)))
    steps = -(-length // chunk)

    def run(piece: Array, args: list[Array]) -> Array:
        out = fn(piece.reshape(-1, k), *[v.reshape(-1) for v in args])
        return out.reshape(piece.shape[:-1])

    if steps <= 1:
        return run(big, per_row)
    axis = len(lead) - 1  # the L axis

    def body(i: Array, out: Array) -> Array:
        start = jnp.minimum(i * chunk, length - chunk)
        piece = jax.lax.dynamic_slice_in_dim(big, start, chunk, axis)
        args = [jax.lax.dynamic_slice_in_dim(v, start, chunk, axis) for v in per_row]
        return jax.lax.dynamic_update_slice_in_dim(out, run(piece, args), start, axis)

    return jax.lax.fori_loop(0, steps, body, jnp.zeros(lead, jnp.float32))


def score_entropy(
    log_score: ArrayLike, x0: ArrayLike, x_t: ArrayLike, t: ArrayLike, process: Interpolating
) -> Array:
    """SEDD's denoising score entropy for any interpolating process.

    Per position: R_t(y -> x_t) sum_{y != x_t} [s_y - r_y log s_y + r_y (log r_y - 1)],
    with s = exp(log_score) the model's ratios and r_y = q_t(y | x0) / q_t(x_t | x0) the
    true ones. The forward rate into x_t is sigma_bar'(t) pi(x_t), so masked positions of
    the masking process carry weight sigma_bar'(t) and unmasked ones 0.

    No [B, L, N] temporary: off y = x0 the true ratio is (c / q) pi_y, built on the fly
    from per-position scalars, and the sum over y runs on chunks of positions.

    Args:
      log_score: float[B, L, num_states]; the entry at y = x_t is ignored.
    """
    _require(process, "score_entropy")
    log_score, x0, x_t = _check_args(log_score, x0, x_t, process, "log_score")
    n = process.num_states
    check(
        log_score.shape[-1] == n,
        f"log_score must have {n} states on its last axis, got {log_score.shape[-1]}",
    )
    t = sequence_times(t, x0)
    pi = process.prior_probs()
    weight = process.forward_rate_into(x_t, t)  # [B, L]

    def rows(ls: Array, x0: Array, x_t: Array, a: Array, c: Array) -> Array:
        cr, r_0, differs = _true_ratio(a, c, pi, x0, x_t)
        # every y except x_t and x0: s_y - r_y + r_y (log r_y - log s_y), r_y = cr pi_y
        states = jnp.arange(n)
        rest = (states != x_t[:, None]) & (states != x0[:, None])
        r = cr[:, None] * pi
        log_r = jnp.log(jnp.where(r > 0, r, 1.0))
        terms = jnp.exp(ls) - r + jnp.where(r > 0, r * (log_r - ls), 0.0)
        per_pos = jnp.where(rest, terms, 0.0).sum(-1)
        # y = x0 when it differs from x_t
        ls_0 = _take(ls, x0)
        log_r_0 = jnp.log(jnp.where(r_0 > 0, r_0, 1.0))
        term_0 = jnp.exp(ls_0) - r_0 + jnp.where(r_0 > 0, r_0 * (log_r_0 - ls_0), 0.0)
        return per_pos + jnp.where(differs, term_0, 0.0)

    a = process.schedule.alpha(t)[..., None]
    c = process.schedule.one_minus_alpha(t)[..., None]
    per_pos = _per_position(rows, log_score, x0, x_t, a, c)
    return jnp.where(weight > 0, weight * per_pos, 0.0).sum(-1)


def uniform_elbo(
    log_probs: ArrayLike,
    x0: ArrayLike,
    x_t: ArrayLike,
    t: ArrayLike,
    process: Interpolating,
    *,
    plugin: bool = False,
) -> Array:
    """Continuous-time NELBO for uniform (or any interpolating) noise from x0 log-probs.

    Default: the score entropy of the score implied by reading ``log_probs`` as the
    posterior p(x0_i | x_t) (design.md section 5.2), computed in O(K) per token
    without materialising the score (no [B, L, K] temporary: two sums over K per
    position, run on chunks of positions). ``plugin=True``: UDLM's published form, which
    plugs ``p`` into the one-hot posterior formula (exact only for p(x0_i | rest)).
    """
    _require(process, "uniform_elbo")
    log_probs, x0, x_t = _check_args(log_probs, x0, x_t, process)
    t = sequence_times(t, x0)
    if plugin:
        return _udlm_plugin_elbo(log_probs, x0, x_t, t, process)
    k, n = process.vocab_size, process.num_states
    pi = process.prior_probs()
    weight = process.forward_rate_into(x_t, t)

    def rows(lp: Array, x0: Array, x_t: Array, a: Array, c: Array) -> Array:
        # Model score s_y = a w_y + c pi_y W with w_y = p(y) / q_t(x_t | y), W = sum_y w_y;
        # q_t(x_t | y) is c pi(x_t) for y != x_t and c pi(x_t) + a at y = x_t. So off x_t,
        # s_y = scale p(y) + base pi_y with per-position scalars scale and base.
        lik_other = c * pi[x_t]
        lik_x = lik_other + a
        inv_other = jnp.where(lik_other > 0, 1.0 / jnp.where(lik_other > 0, lik_other, 1.0), 0.0)
        p_x = jnp.where(x_t < k, jnp.exp(_take(lp, jnp.minimum(x_t, k - 1))), 0.0)
        w_x = jnp.where(lik_x > 0, p_x / jnp.where(lik_x > 0, lik_x, 1.0), 0.0)
        data = jnp.arange(k)
        p_rest = jnp.where(data != x_t[:, None], jnp.exp(lp), 0.0).sum(-1)  # sum_{y != x_t} p
        w_sum = p_rest * inv_other + w_x
        scale, base = a * inv_other, c * w_sum
        cr, r_0, differs = _true_ratio(a, c, pi, x0, x_t)
        # data tokens other than x_t and x0, where r_y = cr pi_y
        rest = (data != x_t[:, None]) & (data != x0[:, None])
        s = scale[:, None] * jnp.exp(lp) + base[:, None] * pi[:k]
        terms = _entropy_terms(s, cr[:, None] * pi[:k])
        per_pos = jnp.where(rest, terms, 0.0).sum(-1)
        if n > k:  # states beyond the data (the mask): s_y = base pi_y there
            extra = jnp.arange(k, n) != x_t[:, None]
            terms_e = _entropy_terms(base[:, None] * pi[k:], cr[:, None] * pi[k:])
            per_pos += jnp.where(extra, terms_e, 0.0).sum(-1)
        # y = x0 when it differs from x_t
        s_0 = scale * jnp.exp(_take(lp, x0)) + base * pi[x0]
        return per_pos + jnp.where(differs, _entropy_terms(s_0, r_0), 0.0)

    a = process.schedule.alpha(t)[..., None]
    c = process.schedule.one_minus_alpha(t)[..., None]
    per_pos = _per_position(rows, log_probs, x0, x_t, a, c)
    return jnp.where(weight > 0, weight * per_pos, 0.0).sum(-1)


def _udlm_plugin_elbo(
    log_probs: Array, x0: Array, x_t: Array, t: Array, process: Interpolating
) -> Array:
    """UDLM's NELBO: (-a'/(K a)) [K/xt_theta[z] - K/xt[z] + sum_j (xt_j/xt[z]) log(...)]."""
    k = process.vocab_size
    check(
        process.num_states == k,
        "the plug-in uniform ELBO needs a process over data tokens only (no mask state)",
    )
    a = process.schedule.alpha(t)[..., None]
    one_minus_a = process.schedule.one_minus_alpha(t)[..., None]
    coef = (-process.schedule.alpha_prime(t) / (k * process.schedule.alpha(t)))[..., None]
    xbar = k * a[..., None] * onehot(x0, k) + one_minus_a[..., None]
    xbar_theta = k * a[..., None] * jnp.exp(log_probs) + one_minus_a[..., None]
    take = lambda v: jnp.take_along_axis(v, x_t[..., None], axis=-1)  # noqa: E731
    xbar_z, xbar_theta_z = take(xbar), take(xbar_theta)
    log_ratio = jnp.log(xbar) + jnp.log(xbar_theta_z) - jnp.log(xbar_z) - jnp.log(xbar_theta)
    per_pos = k / xbar_theta_z[..., 0] - k / xbar_z[..., 0] + ((xbar / xbar_z) * log_ratio).sum(-1)
    return (coef * per_pos).sum(-1)


def _kl_rows(p: Array, q: Array) -> Array:
    """KL(p || q) over the last axis with 0 log 0 = 0."""
    safe_p = jnp.where(p > 0, p, 1.0)
    return jnp.where(p > 0, p * (jnp.log(safe_p) - jnp.log(jnp.maximum(q, _LOG_FLOOR))), 0.0).sum(
        -1
    )


def d3pm_vb(
    log_probs: ArrayLike,
    x0: ArrayLike,
    x_t: ArrayLike,
    t_index: ArrayLike,
    process: D3PM,
    *,
    plugin: bool = False,
) -> Array:
    """D3PM's variational bound, one random step: T * L_{t-1} + L_T, nats per sequence.

    L_{t-1} = KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) for t >= 2 and -log p(x0 | x_1)
    for t = 1 (the same expression, since q(x_0 | x_1, x0) is the point mass on x0);
    L_T = KL(q(x_T | x0) || prior). The model step is the posterior mixture over
    ``log_probs`` (``plugin=True``: D3PM's plug-in step). Its mean over t ~ U{1..T} and
    x_t ~ q(x_t | x0) is the whole bound.

    Args:
      t_index: int32[B] in 1..T.
    """
    check(
        process.is_discrete_time and hasattr(process, "qbar"),
        f"d3pm_vb needs a discrete-time D3PM process (step matrices qbar), got "
        f"{type(process).__name__}",
        TypeError,
    )
    log_probs, x0, x_t = _check_args(log_probs, x0, x_t, process)
    t = process.check_steps(t_index, x0, "t_index", lo=1)
    n = process.num_states
    true_post = process.posterior_probs(x_t, onehot(x0, process.vocab_size), t - 1, t)
    posterior = process.plugin_posterior_probs if plugin else process.posterior_probs
    model_post = posterior(x_t, jnp.exp(log_probs), t - 1, t)
    step_kl = _kl_rows(true_post, model_post).sum(-1)
    q_final = process.qbar[process.num_steps][x0]  # [B, L, N]
    prior_kl = _kl_rows(q_final, jnp.broadcast_to(process.prior, (*x0.shape, n))).sum(-1)
    return process.num_steps * step_kl + prior_kl


def d3pm_hybrid(
    log_probs: ArrayLike,
    x0: ArrayLike,
    x_t: ArrayLike,
    t_index: ArrayLike,
    process: D3PM,
    aux_weight: float = 0.01,
    *,
    plugin: bool = False,
) -> Array:
    """D3PM's hybrid loss: d3pm_vb + aux_weight * sum_i -log p(x0_i | x_t)."""
    vb = d3pm_vb(log_probs, x0, x_t, t_index, process, plugin=plugin)
    return vb + aux_weight * cross_entropy(log_probs, x0)


def any_order_nll(log_probs: ArrayLike, x0: ArrayLike, mask: ArrayLike) -> Array:
    """RADD's k-DCE: (L / k) sum_{masked i} -log p(x0_i | unmasked), k = mask.sum(-1).

    With k ~ U{1..L} and a uniformly random set of k masked positions its mean is the
    any-order autoregressive NLL. A row with nothing masked contributes 0.

    Args:
      mask: bool[B, L], True where the token is masked (predicted).
    """
    log_probs = jnp.asarray(log_probs, jnp.float32)
    x0 = jnp.asarray(x0, jnp.int32)
    mask = jnp.asarray(mask)
    check(mask.dtype == jnp.bool_, f"mask must be a bool array, got {mask.dtype}", TypeError)
    check(mask.shape == x0.shape, f"mask has shape {mask.shape} but x0 has shape {x0.shape}")
    check(
        log_probs.shape[:-1] == x0.shape,
        f"log_probs has shape {log_probs.shape} but x0 has shape {x0.shape}",
    )
    seq_len = x0.shape[-1]
    k = mask.sum(-1)
    ce = jnp.where(mask, _data_nll(log_probs, x0), 0.0).sum(-1)
    return jnp.where(k > 0, seq_len / jnp.maximum(k, 1) * ce, 0.0)


def dfm_generalized_kl(
    log_probs: ArrayLike, x0: ArrayLike, x_t: ArrayLike, t: ArrayLike, process: Interpolating
) -> Array:
    """Discrete flow matching's generalised KL for the mixture path (Shaul et al.).

    In our time direction kappa = alpha(t); per position
    (-a'/(1 - a)) [delta(x0, x_t) - p(x_t) - (1 - delta(x0, x_t)) log p(x0)],
    where p(x_t) = 0 when x_t is the mask. For masking it equals :func:`masked_elbo`
    (under SUBS) and so the NLL with the exact posterior; for other sources (uniform
    noise) it is a bound of the mixture-path generator, not the NLL, even with the exact
    posterior (one token: 0.488 / 2.006 / 2.923 nats against 0.357 / 1.609 / 2.303).
    """
    _require(process, "dfm_generalized_kl")
    log_probs, x0, x_t = _check_args(log_probs, x0, x_t, process)
    t = sequence_times(t, x0)
    k = process.vocab_size
    same = x_t == x0
    p_xt = jnp.where(
        x_t < k,
        jnp.exp(jnp.take_along_axis(log_probs, jnp.minimum(x_t, k - 1)[..., None], -1)[..., 0]),
        0.0,
    )
    per_pos = jnp.where(same, 1.0 - p_xt, _data_nll(log_probs, x0) - p_xt)
    return process.schedule.masking_rate(t) * per_pos.sum(-1)


# -- block diffusion (BD3-LM) --------------------------------------------------------


def block_masked_elbo(
    log_probs: ArrayLike,
    x0: ArrayLike,
    x_t: ArrayLike,
    t: ArrayLike,
    process: Masking,
    block_size: int,
) -> Array:
    """BD3-LM's block diffusion NELBO: the masked ELBO of every block at its own time.

    The sequence is cut into ``L // block_size`` blocks of consecutive positions; block b
    is noised at its own time ``t[..., b]`` and predicted given the clean earlier blocks,
    so the loss is sum_b (-a'(t_b) / (1 - a(t_b))) sum_{masked i in b} -log p(x0_i). Its
    mean over independent ``t_b ~ U(0, 1)`` and ``x_t ~ q(x_t | x0)`` is the negative
    ELBO of the block-autoregressive model p(x) = prod_b p(x_b | x_<b); with the exact
    block conditionals (``ExactTarget.block_training_denoiser``) it is the exact NLL.
    Block size 1 is the autoregressive NLL, block size L is :func:`masked_elbo`.

    Args:
      log_probs: float[B, L, K]; position i's prediction given its noisy block and the
        clean earlier blocks (BD3-LM's one pass over [x_t ; x0]).
      x0, x_t: int32[B, L]; x_t's block b drawn at time ``t[:, b]``.
      t: float32[B, L // block_size], one time per block.
      process: a masking process.
      block_size: positions per block, dividing L.

    Returns:
      float32[B], nats per sequence.
    """
    require(process, _NEEDS["masked_elbo"], "block_masked_elbo")
    log_probs, x0, x_t = _check_args(log_probs, x0, x_t, process)
    check(
        isinstance(block_size, (int, np.integer)) and not isinstance(block_size, bool),
        f"block_size must be an int, got {block_size!r}",
        TypeError,
    )
    length = x0.shape[-1]
    check(
        block_size >= 1 and length % block_size == 0,
        f"block_size {block_size} must be >= 1 and divide the sequence length {length}",
    )
    num_blocks = length // block_size
    t = jnp.asarray(t, jnp.float32)
    want = (*x0.shape[:-1], num_blocks)
    check(
        t.shape == want,
        f"t has shape {t.shape} but needs one time per block: {want} "
        f"(L = {length}, block_size = {block_size})",
    )
    blocks = (*x0.shape[:-1], num_blocks, block_size)
    per_block = masked_elbo(
        log_probs.reshape(*blocks, log_probs.shape[-1]),
        x0.reshape(blocks),
        x_t.reshape(blocks),
        t,
        process,
    )  # [B, num_blocks]
    return per_block.sum(-1)


# --------------------------------------------------------------------------
# DDPD planner (kept at the end of the file: one block per addition, for merges)
# --------------------------------------------------------------------------

__all__ += ["ddpd_planner"]


def ddpd_planner(planner_logits: ArrayLike, x0: ArrayLike, x_t: ArrayLike) -> Array:
    """DDPD's planner loss: binary cross-entropy on the corruption indicator, nats [B].

    sum_i BCE(sigmoid(planner_logits_i), [x_t,i != x0_i]), with ``planner_logits``
    float32[B, L] the logit of P(x_t,i != x0_i | x_t) (:mod:`ddjax.samplers.ddpd`) and
    x0, x_t int32[B, L] (x_t ~ q(x_t | x0) at the time the planner saw). Its expectation
    over (x0, x_t) is minimised by the exact planner, where it equals the conditional
    entropy sum_i H(x_t,i != x0_i | x_t) (tests/test_posterior_sampling.py).
    """
    logits = jnp.asarray(planner_logits, jnp.float32)
    x0, x_t = jnp.asarray(x0), jnp.asarray(x_t)
    check(x0.shape == x_t.shape, f"x0 has shape {x0.shape} but x_t has shape {x_t.shape}")
    check(
        logits.shape == x0.shape,
        f"planner_logits must have the token shape {x0.shape} (one logit per position), "
        f"got {logits.shape}",
    )
    noise = x_t != x0
    # -log sigmoid(l) = softplus(-l); -log(1 - sigmoid(l)) = softplus(l)
    return jnp.where(noise, jax.nn.softplus(-logits), jax.nn.softplus(logits)).sum(-1)
