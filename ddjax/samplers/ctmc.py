"""Continuous-time Markov chain (CTMC) samplers for the interpolating processes.

Each sampler walks the reverse CTMC from t = t_max (noise) down to 0 (data) on an
even time grid, step h = t - s (design.md 5.3), for :class:`~ddjax.processes.Masking`,
:class:`~ddjax.processes.Uniform` and :class:`~ddjax.processes.MarginalPrior`:

* :func:`euler`: x_s ~ Cat(onehot(x) + h R^(x, t)), the stay probability clipped at 0.
* :func:`tau_leaping` (Campbell et al. 2022): Poisson jump counts with frozen rates
  h R^(x -> y) per target y; a position that would jump more than once stays.
* :func:`predictor_corrector`: a tau-leaping predictor, then ``n_corrector`` leaps at
  time s with rates R_s + R^_s, whose stationary law is q_s.
* :func:`tweedie` (SEDD's analytic step): p(y) proportional to
  [exp(-dsig Q) s]_y exp(dsig Q)(x, y) with the concrete score s.
* :func:`theta_trapezoidal`, :func:`theta_rk2` (Ren et al. 2025): two-stage
  tau-leaping, second order (trapezoidal, for every theta in (0, 1)).

Every update factorises over positions. Its law at one position is a categorical
over the ``num_states`` states, drawn with the tail-exact
:func:`~ddjax.samplers.categorical`. A Poisson tau-leap is drawn through its exact
law: with rates r and total rate Lambda, independent Poisson counts over a time dt
give "exactly one jump, to y" with probability dt r_y exp(-dt Lambda), so one
categorical draw replaces N Poisson draws. ``multi_jump`` chooses what a position
with two or more jumps does: ``"reject"`` (stay; Campbell et al.) or ``"first"``
(keep the first jump; then the move to y has probability
(r_y / Lambda)(1 - exp(-dt Lambda)), the exact law of one step of the frozen-rate
chain at a position whose rates vanish after one jump, e.g. a masked token).

The step that lands on t = 0 denoises: it draws from ``process.posterior_probs`` at
s = 0 (or takes its argmax with ``final_step="argmax"``), so no mask is left.

The ``_*_probs`` functions give each step's per-position law; the samplers draw
from them, and :mod:`ddjax.samplers.exact_law` uses them for a sampler's exact output law.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from ddjax._struct import check
from ddjax.processes import Interpolating, Process
from ddjax.samplers import _common, masked

__all__ = [
    "euler",
    "tau_leaping",
    "predictor_corrector",
    "tweedie",
    "theta_trapezoidal",
    "theta_rk2",
]

MULTI_JUMP = ("reject", "first")

# (denoise, fixed) -> step: builds a sampler's step once its denoiser is wrapped.
MakeStep = Callable[[_common.Denoiser, Array | None], _common.StepFn]


# --------------------------------------------------------------------------
# Checks and the shared loop
# --------------------------------------------------------------------------


def check_interpolating(process: Process, name: str) -> Interpolating:
    """Raises TypeError unless ``process`` is a continuous-time interpolating process."""
    check(
        isinstance(process, Interpolating) and not process.is_discrete_time,
        f"{name} needs a continuous-time interpolating process (Masking, Uniform, "
        f"MarginalPrior), got {type(process).__name__}; for D3PM use ancestral",
        TypeError,
    )
    return process


def _check_multi_jump(multi_jump: str) -> None:
    check(
        multi_jump in MULTI_JUMP,
        f"multi_jump must be one of {MULTI_JUMP}, got {multi_jump!r}",
    )


def draw(key: Array, probs: Array, argmax: bool = False, bits: int | str = 32) -> Array:
    """A draw (or the argmax) from per-position probabilities [..., N]: int32[...].

    Large vocabularies go through the exact two-stage draw of
    :func:`ddjax.samplers.masked.draw_tokens` (about 2 sqrt(N) random words per row
    instead of N), the hot spot of every step at N ~ 50k.
    """
    return masked.draw_tokens(key, jnp.log(jnp.maximum(probs, 0.0)), argmax, bits=bits)


def final_probs(
    process: Interpolating, denoise: _common.Denoiser, x: Array, t: Array, s: Array
) -> Array:
    """The denoising step that lands on s (= 0): the posterior mixture [B, L, N]."""
    return process.posterior_probs(x, jnp.exp(denoise(x, t)), s, t)


def run(
    key: Array,
    denoiser: _common.Denoiser,
    process: Process,
    shape: tuple[int, int],
    name: str,
    make_step: MakeStep,
    *,
    steps: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    fixed: Any,
    final_step: str,
    return_trajectory: bool,
    t_max: float,
) -> Array | tuple[Array, Array]:
    """The loop every sampler here shares: checks, prior draw, ``steps - 1`` steps of
    ``make_step(denoise, fixed)`` down the grid, then the denoising step onto t = 0."""
    process = check_interpolating(process, name)
    fixed = _common.check_common(process, shape, steps, fixed, final_step, temperature)
    check(0.0 < t_max <= 1.0, f"t_max must lie in (0, 1], got {t_max}")
    denoise = _common.wrap_denoiser(denoiser, temperature, top_k, top_p)
    k_init, k_loop = jax.random.split(key)
    x_init = _common.initial_state(k_init, process, shape, fixed)
    grid = _common.time_grid(process, steps, t_max=t_max)
    argmax = final_step == "argmax"

    def last_step(k: Array, x: Array, t: Array, s: Array) -> Array:
        return draw(k, final_probs(process, denoise, x, t, s), argmax)

    return _common.run_loop(
        k_loop, x_init, grid, make_step(denoise, fixed), last_step, fixed, return_trajectory
    )


# --------------------------------------------------------------------------
# Per-position laws of one step
# --------------------------------------------------------------------------


def _onehot(x: Array, n: int) -> Array:
    return jax.nn.one_hot(x, n, dtype=jnp.float32)


def _col(v: Array) -> Array:
    """float[B] -> float[B, 1, 1]."""
    return v[:, None, None]


def _off_diagonal(x: Array, rates: Array) -> Array:
    """Rates [B, L, N] clipped at 0 and zeroed at y = x."""
    return jnp.where(_onehot(x, rates.shape[-1]) > 0, 0.0, jnp.maximum(rates, 0.0))


def euler_probs_from_rates(x: Array, rates: Array, dt: Array) -> Array:
    """Cat(onehot(x) + dt R) with the stay probability clipped at 0, renormalised.

    Args:
      x: int32[B, L]; rates: float32[B, L, N] (0 at y = x); dt: float32[B].
    Returns:
      float32[B, L, N].
    """
    move = _off_diagonal(x, rates) * _col(dt)
    total = move.sum(-1, keepdims=True)
    stay = jnp.maximum(1.0 - total, 0.0)
    return (move + _onehot(x, rates.shape[-1]) * stay) / jnp.maximum(total, 1.0)


def leap_probs(x: Array, rates: Array, dt: Array, multi_jump: str = "reject") -> Array:
    """The law of one Poisson tau-leap with frozen rates over ``dt``, per position.

    ``"reject"``: move to y w.p. dt r_y exp(-dt Lambda) (exactly one jump), else stay.
    ``"first"``: move to y w.p. (r_y / Lambda)(1 - exp(-dt Lambda)) (the first of the
    jumps is kept), else stay.

    Args:
      x: int32[B, L]; rates: float32[B, L, N]; dt: float32[B].
    Returns:
      float32[B, L, N].
    """
    rates = _off_diagonal(x, rates)
    dt = _col(dt)
    total = rates.sum(-1, keepdims=True)
    if multi_jump == "reject":
        move = rates * (dt * jnp.exp(-dt * total))
    elif multi_jump == "first":
        positive = total > 0
        factor = -jnp.expm1(-dt * total) / jnp.where(positive, total, 1.0)
        move = rates * jnp.where(positive, factor, dt)
    else:
        raise ValueError(f"multi_jump must be one of {MULTI_JUMP}, got {multi_jump!r}")
    stay = jnp.clip(1.0 - move.sum(-1, keepdims=True), 0.0, 1.0)
    return move + _onehot(x, rates.shape[-1]) * stay


def reverse_rates(process: Interpolating, denoise: _common.Denoiser, x: Array, t: Array) -> Array:
    """R^_t(x -> y) from the denoiser: float32[B, L, N] (0 at y = x)."""
    return process.reverse_rates(x, jnp.exp(denoise(x, t)), t)


def forward_rates(process: Interpolating, x: Array, t: Array) -> Array:
    """The forward rates R_t(x -> y) = sigma_bar'(t) pi_y for y != x: float32[B, L, N]."""
    rates = _col(process.schedule.sigma_bar_prime(t)) * process.prior_probs()
    return jnp.where(_onehot(x, process.num_states) > 0, 0.0, rates)


def _euler_probs(
    process: Interpolating, denoise: _common.Denoiser, x: Array, t: Array, s: Array
) -> Array:
    return euler_probs_from_rates(x, reverse_rates(process, denoise, x, t), t - s)


def _tau_probs(
    process: Interpolating,
    denoise: _common.Denoiser,
    x: Array,
    t: Array,
    s: Array,
    multi_jump: str,
) -> Array:
    return leap_probs(x, reverse_rates(process, denoise, x, t), t - s, multi_jump)


def _corrector_probs(
    process: Interpolating,
    denoise: _common.Denoiser,
    x: Array,
    s: Array,
    dt: Array,
    multi_jump: str,
) -> Array:
    """A leap at time s with rates R_s + R^_s (stationary law q_s)."""
    rates = reverse_rates(process, denoise, x, s) + forward_rates(process, x, s)
    return leap_probs(x, rates, dt, multi_jump)


def _tweedie_probs(
    process: Interpolating, denoise: _common.Denoiser, x: Array, t: Array, s: Array
) -> Array:
    """SEDD's analytic step p(y) ~ [exp(-dsig Q) s]_y exp(dsig Q)(x, y), O(N) per token.

    For the interpolating family exp(sigma Q) = r I + (1 - r) 1 pi^T with
    r = e^{-sigma} = a_t / a_s, and exp(-sigma Q) = e^sigma I + (1 - e^sigma) 1 pi^T, so
    [exp(-dsig Q) s]_y = (a_s s_y - (a_s - a_t) pi_y S) / a_t with S = sum_z s_z; the
    common factor 1 / a_t drops out in the normalisation.
    """
    score = process.score(x, jnp.exp(denoise(x, t)), t)
    pi = process.prior_probs()
    a_t = _col(process.schedule.alpha(t))
    a_s = _col(process.schedule.alpha(s))
    total = score.sum(-1, keepdims=True)
    back = jnp.maximum(a_s * score - (a_s - a_t) * pi * total, 0.0)
    r = a_t / a_s
    forward = r * _onehot(x, process.num_states) + (1.0 - r) * pi[x][..., None]
    w = back * forward
    z = w.sum(-1, keepdims=True)
    # a degenerate step (float32 cancellation where a_t underflows) stays put
    return jnp.where(z > 0, w / jnp.where(z > 0, z, 1.0), _onehot(x, process.num_states))


def _theta_coefficients(theta: float) -> tuple[float, float]:
    """Trapezoidal weights a1 = 1 / (2 th (1 - th)), a2 = ((1 - th)^2 + th^2) / (2 th (1 - th))."""
    denom = 2.0 * theta * (1.0 - theta)
    return 1.0 / denom, ((1.0 - theta) ** 2 + theta**2) / denom


def _theta_stage1(
    process: Interpolating,
    denoise: _common.Denoiser,
    x: Array,
    t: Array,
    s: Array,
    theta: float,
    multi_jump: str,
) -> tuple[Array, Array]:
    """Stage 1: a tau-leap from x over theta h with R^(x, t).

    Returns:
      (the stage's law float32[B, L, N], the rates R^(x, t) float32[B, L, N]).
    """
    rates = reverse_rates(process, denoise, x, t)
    return leap_probs(x, rates, theta * (t - s), multi_jump), rates


def _theta_stage2(
    process: Interpolating,
    denoise: _common.Denoiser,
    x: Array,
    x_star: Array,
    rates1: Array,
    t: Array,
    s: Array,
    theta: float,
    multi_jump: str,
    method: str,
) -> Array:
    """Stage 2 of theta_trapezoidal / theta_rk2, given the stage-1 state ``x_star``.

    Both stages' intensities are per target token y: the rate to y combines
    R^(x*, rho)[y] and R^(x, t)[y] for the same y, rho = t - theta h.
    trapezoidal: leap from x* over (1 - theta) h with (a1 R^(x*, rho) - a2 R^(x, t))_+.
    rk2: leap from x over h with ((1 - 1/(2 theta)) R^(x, t) + 1/(2 theta) R^(x*, rho))_+.
    """
    h = t - s
    rho = t - theta * h
    rates2 = reverse_rates(process, denoise, x_star, rho)
    if method == "trapezoidal":
        a1, a2 = _theta_coefficients(theta)
        return leap_probs(x_star, a1 * rates2 - a2 * rates1, (1.0 - theta) * h, multi_jump)
    w = 1.0 / (2.0 * theta)
    return leap_probs(x, (1.0 - w) * rates1 + w * rates2, h, multi_jump)


# --------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------


def euler(
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
    t_max: float = 1.0,
) -> Array | tuple[Array, Array]:
    """Euler steps of the reverse CTMC: x_s ~ Cat(onehot(x) + h R^(x, t)).

    The stay probability is clipped at 0 and the row renormalised. One network call
    per step; first order. (For masking with the log-linear schedule it is exactly
    the ancestral step.)

    Args:
      key: PRNG key.
      denoiser: ``(x_t int32[B, L], t float32[B]) -> log p(x0 | x_t)`` float32[B, L, K].
      process: Masking, Uniform or MarginalPrior (continuous time; D3PM: TypeError).
      shape: (B, L).
      steps: grid intervals from t_max to 0; the last is the denoising step onto t = 0.
      temperature, top_k, top_p: applied to the x0 distribution.
      fixed: int32[B, L], -1 where free: tokens to hold (prompts, infilling).
      final_step: "sample" or "argmax" for the step that lands on t = 0.
      return_trajectory: also return the state after every step, int32[steps, B, L].
      t_max: start time (the state starts from the prior).
    Returns:
      int32[B, L] samples (and the trajectory with ``return_trajectory``).
    """

    def make_step(denoise: _common.Denoiser, fixed: Array | None) -> _common.StepFn:
        def step(k: Array, x: Array, t: Array, s: Array) -> Array:
            return draw(k, _euler_probs(process, denoise, x, t, s))

        return step

    return run(
        key, denoiser, process, shape, "euler", make_step, steps=steps,
        temperature=temperature, top_k=top_k, top_p=top_p, fixed=fixed,
        final_step=final_step, return_trajectory=return_trajectory, t_max=t_max,
    )  # fmt: skip


def tau_leaping(
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
    t_max: float = 1.0,
    multi_jump: str = "reject",
) -> Array | tuple[Array, Array]:
    """Tau-leaping (Campbell et al. 2022): Poisson jumps with the rates frozen at t.

    Per position, independent Poisson counts with means h R^(x -> y) for every target y;
    no jump: stay; one jump: move there; more than one: stay (``multi_jump="reject"``,
    the paper's rule for categorical data) or keep the first (``"first"``). Drawn
    through the exact law of these counts (module docstring). One network call per
    step; first order.

    Args:
      key: PRNG key.
      denoiser: ``(x_t int32[B, L], t float32[B]) -> log p(x0 | x_t)`` float32[B, L, K].
      process: Masking, Uniform or MarginalPrior (continuous time; D3PM: TypeError).
      shape: (B, L).
      steps: grid intervals from t_max to 0; the last is the denoising step onto t = 0.
      temperature, top_k, top_p: applied to the x0 distribution.
      fixed: int32[B, L], -1 where free: tokens to hold (prompts, infilling).
      final_step: "sample" or "argmax" for the step that lands on t = 0.
      return_trajectory: also return the state after every step, int32[steps, B, L].
      t_max: start time (the state starts from the prior).
      multi_jump: "reject" (default) or "first".
    Returns:
      int32[B, L] samples (and the trajectory with ``return_trajectory``).
    """
    _check_multi_jump(multi_jump)

    def make_step(denoise: _common.Denoiser, fixed: Array | None) -> _common.StepFn:
        def step(k: Array, x: Array, t: Array, s: Array) -> Array:
            return draw(k, _tau_probs(process, denoise, x, t, s, multi_jump))

        return step

    return run(
        key, denoiser, process, shape, "tau_leaping", make_step, steps=steps,
        temperature=temperature, top_k=top_k, top_p=top_p, fixed=fixed,
        final_step=final_step, return_trajectory=return_trajectory, t_max=t_max,
    )  # fmt: skip


def tweedie(
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
    t_max: float = 1.0,
) -> Array | tuple[Array, Array]:
    """SEDD's analytic ("Tweedie tau-leaping") sampler.

    Per position, p(y) proportional to [exp(-dsig Q) s]_y exp(dsig Q)(x, y) with
    dsig = sigma_bar(t) - sigma_bar(s) and s = ``process.score`` the concrete score
    implied by the denoiser; closed form, O(N) per token, no N x N matrix. With the
    mixture-form score it is the same law as the ancestral posterior step for every
    interpolating process (for masking this is SEDD's observation). Its float32
    evaluation subtracts two nearly equal terms where alpha(t) is tiny, so keep
    alpha(t_max) >~ 1e-5 (LogLinear's default eps = 1e-3 is fine); ancestral is the
    stable form of the same step. One network call per step.

    Args:
      key: PRNG key.
      denoiser: ``(x_t int32[B, L], t float32[B]) -> log p(x0 | x_t)`` float32[B, L, K].
      process: Masking, Uniform or MarginalPrior (continuous time; D3PM: TypeError).
      shape: (B, L).
      steps: grid intervals from t_max to 0; the last is the denoising step onto t = 0.
      temperature, top_k, top_p: applied to the x0 distribution.
      fixed: int32[B, L], -1 where free: tokens to hold (prompts, infilling).
      final_step: "sample" or "argmax" for the step that lands on t = 0.
      return_trajectory: also return the state after every step, int32[steps, B, L].
      t_max: start time (the state starts from the prior).
    Returns:
      int32[B, L] samples (and the trajectory with ``return_trajectory``).
    """

    def make_step(denoise: _common.Denoiser, fixed: Array | None) -> _common.StepFn:
        def step(k: Array, x: Array, t: Array, s: Array) -> Array:
            return draw(k, _tweedie_probs(process, denoise, x, t, s))

        return step

    return run(
        key, denoiser, process, shape, "tweedie", make_step, steps=steps,
        temperature=temperature, top_k=top_k, top_p=top_p, fixed=fixed,
        final_step=final_step, return_trajectory=return_trajectory, t_max=t_max,
    )  # fmt: skip


def predictor_corrector(
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
    t_max: float = 1.0,
    n_corrector: int = 1,
    corrector_step_size: float | None = None,
    multi_jump: str = "reject",
) -> Array | tuple[Array, Array]:
    """Tau-leaping predictor plus corrector leaps (Campbell et al. 2022).

    After the predictor leap t -> s, ``n_corrector`` tau-leaps at the fixed time s with
    rates R_s + R^_s: forward rates R_s(x -> y) = sigma_bar'(s) pi_y plus the reverse
    rates. Their generator leaves q_s invariant, so the correctors pull the state
    towards the right marginal. 1 + n_corrector network calls per step (the final
    denoising step makes one and has no corrector).
    Args:
      key: PRNG key.
      denoiser: ``(x_t int32[B, L], t float32[B]) -> log p(x0 | x_t)`` float32[B, L, K].
      process: Masking, Uniform or MarginalPrior (continuous time; D3PM: TypeError).
      shape: (B, L).
      steps: grid intervals from t_max to 0; the last is the denoising step onto t = 0.
      temperature, top_k, top_p: applied to the x0 distribution.
      fixed: int32[B, L], -1 where free: tokens to hold (prompts, infilling).
      final_step: "sample" or "argmax" for the step that lands on t = 0.
      return_trajectory: also return the state after every step, int32[steps, B, L].
      t_max: start time (the state starts from the prior).
      n_corrector: corrector leaps per step (default 1; 0 is tau-leaping).
      corrector_step_size: the corrector leap's length in time units (default: h).
      multi_jump: "reject" (default) or "first", for predictor and correctors.
    Returns:
      int32[B, L] samples (and the trajectory with ``return_trajectory``).
    """
    _check_multi_jump(multi_jump)
    check(
        isinstance(n_corrector, int) and n_corrector >= 0,
        f"n_corrector must be an int >= 0, got {n_corrector!r}",
    )
    check(
        corrector_step_size is None or corrector_step_size > 0,
        f"corrector_step_size must be positive, got {corrector_step_size}",
    )

    def make_step(denoise: _common.Denoiser, fixed: Array | None) -> _common.StepFn:
        def step(k: Array, x: Array, t: Array, s: Array) -> Array:
            k_pred, k_corr = jax.random.split(k)
            probs = _tau_probs(process, denoise, x, t, s, multi_jump)
            x = _common.clamp(draw(k_pred, probs), fixed)
            if n_corrector == 0:
                return x
            if corrector_step_size is None:
                dt = t - s
            else:
                dt = jnp.full_like(t, corrector_step_size)

            def corrector(x: Array, kc: Array) -> tuple[Array, None]:
                probs = _corrector_probs(process, denoise, x, s, dt, multi_jump)
                return _common.clamp(draw(kc, probs), fixed), None

            x, _ = jax.lax.scan(corrector, x, jax.random.split(k_corr, n_corrector))
            return x

        return step

    return run(
        key, denoiser, process, shape, "predictor_corrector", make_step, steps=steps,
        temperature=temperature, top_k=top_k, top_p=top_p, fixed=fixed,
        final_step=final_step, return_trajectory=return_trajectory, t_max=t_max,
    )  # fmt: skip


def _theta_sampler(
    method: str,
    key: Array,
    denoiser: _common.Denoiser,
    process: Process,
    shape: tuple[int, int],
    theta: float,
    multi_jump: str,
    **common: Any,
) -> Array | tuple[Array, Array]:
    _check_multi_jump(multi_jump)

    def make_step(denoise: _common.Denoiser, fixed: Array | None) -> _common.StepFn:
        def step(k: Array, x: Array, t: Array, s: Array) -> Array:
            k1, k2 = jax.random.split(k)
            probs1, rates1 = _theta_stage1(process, denoise, x, t, s, theta, multi_jump)
            x_star = _common.clamp(draw(k1, probs1), fixed)
            probs2 = _theta_stage2(
                process, denoise, x, x_star, rates1, t, s, theta, multi_jump, method
            )
            return draw(k2, probs2)

        return step

    return run(key, denoiser, process, shape, f"theta_{method}", make_step, **common)


def theta_trapezoidal(
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
    t_max: float = 1.0,
    theta: float = 0.5,
    multi_jump: str = "first",
) -> Array | tuple[Array, Array]:
    """The theta-trapezoidal method (Ren et al. 2025), second order.

    With rho = t - theta h: stage 1 tau-leaps from x over theta h with R^(x, t), giving
    x*; stage 2 tau-leaps from x* over (1 - theta) h with
    (a1 R^(x*, rho) - a2 R^(x, t))_+ per target token, a1 = 1 / (2 theta (1 - theta)),
    a2 = ((1 - theta)^2 + theta^2) / (2 theta (1 - theta)). Two network calls per step
    (one for the final denoising step).

    Second order needs the positive part to stay inactive: with rates that change a lot
    between x and x* (strongly dependent positions) it clips and the order falls back
    towards 1, with a smaller constant than Euler's. ``multi_jump="first"`` (default)
    keeps the first of several jumps at a position within a stage; Campbell et al.'s
    ``"reject"`` adds an O(h^2) error per step, which makes the method first order for
    uniform noise (masking is unaffected).
    Args:
      key: PRNG key.
      denoiser: ``(x_t int32[B, L], t float32[B]) -> log p(x0 | x_t)`` float32[B, L, K].
      process: Masking, Uniform or MarginalPrior (continuous time; D3PM: TypeError).
      shape: (B, L).
      steps: grid intervals from t_max to 0; the last is the denoising step onto t = 0.
      temperature, top_k, top_p: applied to the x0 distribution.
      fixed: int32[B, L], -1 where free: tokens to hold (prompts, infilling).
      final_step: "sample" or "argmax" for the step that lands on t = 0.
      return_trajectory: also return the state after every step, int32[steps, B, L].
      t_max: start time (the state starts from the prior).
      theta: the intermediate point, in (0, 1) (default 0.5).
      multi_jump: "first" (default) or "reject".
    Returns:
      int32[B, L] samples (and the trajectory with ``return_trajectory``).
    """
    check(0.0 < theta < 1.0, f"theta must lie in (0, 1), got {theta}")
    return _theta_sampler(
        "trapezoidal", key, denoiser, process, shape, theta, multi_jump, steps=steps,
        temperature=temperature, top_k=top_k, top_p=top_p, fixed=fixed,
        final_step=final_step, return_trajectory=return_trajectory, t_max=t_max,
    )  # fmt: skip


def theta_rk2(
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
    t_max: float = 1.0,
    theta: float = 0.5,
    multi_jump: str = "first",
) -> Array | tuple[Array, Array]:
    """The theta-RK-2 method (Ren et al. 2025).

    Stage 1 as in :func:`theta_trapezoidal` gives x* at rho = t - theta h; stage 2
    tau-leaps from x over the whole h with
    ((1 - 1/(2 theta)) R^(x, t) + (1/(2 theta)) R^(x*, rho))_+ per target token. Two
    network calls per step (one for the final denoising step).

    The stage-1 jumps themselves are discarded: a position that jumped in stage 1 is
    rated from where it landed but moved from where it was, which for token-valued
    jumps (an unmasked token has no rates at all) costs O(h^2) per step, so on these
    processes it measures first order; use :func:`theta_trapezoidal` for second order.
    Args:
      key: PRNG key.
      denoiser: ``(x_t int32[B, L], t float32[B]) -> log p(x0 | x_t)`` float32[B, L, K].
      process: Masking, Uniform or MarginalPrior (continuous time; D3PM: TypeError).
      shape: (B, L).
      steps: grid intervals from t_max to 0; the last is the denoising step onto t = 0.
      temperature, top_k, top_p: applied to the x0 distribution.
      fixed: int32[B, L], -1 where free: tokens to hold (prompts, infilling).
      final_step: "sample" or "argmax" for the step that lands on t = 0.
      return_trajectory: also return the state after every step, int32[steps, B, L].
      t_max: start time (the state starts from the prior).
      theta: the intermediate point, in (0, 1] (default 0.5).
      multi_jump: "first" (default) or "reject".
    Returns:
      int32[B, L] samples (and the trajectory with ``return_trajectory``).
    """
    check(0.0 < theta <= 1.0, f"theta must lie in (0, 1], got {theta}")
    return _theta_sampler(
        "rk2", key, denoiser, process, shape, theta, multi_jump, steps=steps,
        temperature=temperature, top_k=top_k, top_p=top_p, fixed=fixed,
        final_step=final_step, return_trajectory=return_trajectory, t_max=t_max,
    )  # fmt: skip
