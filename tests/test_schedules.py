"""Noise schedules against their closed forms and jax.grad."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddjax import schedules

ALL = [
    schedules.LogLinear(eps=1e-3),
    schedules.Linear(),
    schedules.Cosine(),
    schedules.Polynomial(power=3.0),
    schedules.Geometric(sigma_min=1e-4, sigma_max=20.0),
]
IDS = [type(s).__name__ for s in ALL]
INTERIOR = np.linspace(0.02, 0.98, 25)


def closed_form(schedule, t: float) -> float:
    """alpha(t) from the definitions in the docstrings / design.md, in float64."""
    if isinstance(schedule, schedules.LogLinear):
        return 1 - (1 - schedule.eps) * t
    if isinstance(schedule, schedules.Linear):
        return 1 - t
    if isinstance(schedule, schedules.Cosine):
        return 1 - math.sin(math.pi * t / 2)
    if isinstance(schedule, schedules.Polynomial):
        return 1 - t**schedule.power
    return math.exp(-(schedule.sigma_min ** (1 - t)) * schedule.sigma_max**t)


@pytest.mark.parametrize("schedule", ALL, ids=IDS)
def test_alpha_closed_form_and_endpoints(schedule):
    got = np.asarray(schedule.alpha(jnp.asarray(INTERIOR, jnp.float32)), np.float64)
    want = np.array([closed_form(schedule, t) for t in INTERIOR])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    a0, a1 = float(schedule.alpha(0.0)), float(schedule.alpha(1.0))
    if isinstance(schedule, schedules.Geometric):
        assert a0 == pytest.approx(math.exp(-1e-4), rel=1e-6)
        assert a1 == pytest.approx(math.exp(-20.0), rel=1e-4)
    else:
        assert a0 == 1.0
    if isinstance(schedule, schedules.LogLinear):
        assert a1 == pytest.approx(1e-3, rel=1e-3)
    elif not isinstance(schedule, schedules.Geometric):
        assert abs(a1) < 1e-6


@pytest.mark.parametrize("schedule", ALL, ids=IDS)
def test_monotone_decreasing(schedule):
    a = np.asarray(schedule.alpha(jnp.linspace(0.0, 1.0, 201)), np.float64)
    assert np.all(np.diff(a) < 0)
    assert np.all(a >= 0) and np.all(a <= 1)


@pytest.mark.parametrize("schedule", ALL, ids=IDS)
def test_derivatives_against_grad(schedule):
    t = jnp.asarray(INTERIOR, jnp.float32)
    grad = jax.vmap(jax.grad(lambda x: schedule.alpha(x)))(t)
    np.testing.assert_allclose(schedule.alpha_prime(t), grad, rtol=1e-4, atol=1e-6)
    assert np.all(np.asarray(schedule.alpha_prime(t)) < 0)
    sigma_grad = jax.vmap(jax.grad(lambda x: -jnp.log(schedule.alpha(x))))(t)
    np.testing.assert_allclose(schedule.sigma_bar_prime(t), sigma_grad, rtol=1e-4)
    a = np.array([closed_form(schedule, float(x)) for x in INTERIOR])
    np.testing.assert_allclose(schedule.sigma_bar(t), -np.log(a), rtol=1e-5)
    np.testing.assert_allclose(
        schedule.masking_rate(t), -np.asarray(grad, np.float64) / (1 - a), rtol=1e-4
    )
    np.testing.assert_allclose(schedule.one_minus_alpha(t), 1 - a, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("schedule", ALL, ids=IDS)
def test_t_of_alpha_inverts_alpha(schedule):
    t = jnp.asarray(np.linspace(0.05, 0.95, 19), jnp.float32)
    back = schedule.t_of_alpha(schedule.alpha(t))
    tol = 2e-3 if isinstance(schedule, schedules.Geometric) else 1e-4
    np.testing.assert_allclose(back, t, atol=tol)


def test_loglinear_hand_values():
    s = schedules.LogLinear(eps=0.1)
    assert float(s.alpha(0.5)) == pytest.approx(0.55)
    assert float(s.alpha_prime(0.5)) == pytest.approx(-0.9)
    # masking rate of the log-linear schedule is 1 / t
    assert float(s.masking_rate(0.25)) == pytest.approx(4.0, rel=1e-6)
    assert float(s.sigma_bar_prime(0.5)) == pytest.approx(0.9 / 0.55, rel=1e-6)
    # sigma_bar keeps its precision near t = 0 (no 1 - alpha cancellation)
    small = schedules.LogLinear(eps=1e-3).sigma_bar(1e-6)
    assert float(small) == pytest.approx(-math.log1p(-0.999e-6), rel=1e-5)
    assert float(schedules.Polynomial(power=3.0).sigma_bar(1e-3)) == pytest.approx(1e-9, rel=1e-5)


def test_schedule_is_a_static_jit_argument():
    fn = jax.jit(lambda s, t: s.alpha(t))
    assert float(fn(schedules.LogLinear(eps=0.5), 1.0)) == pytest.approx(0.5)
    assert float(fn(schedules.LogLinear(eps=0.25), 1.0)) == pytest.approx(0.25)
    assert jax.tree_util.tree_leaves(schedules.Polynomial(power=2.0)) == []


def test_d3pm_betas():
    np.testing.assert_allclose(
        schedules.d3pm_betas(4, "mutual_information"), [1 / 4, 1 / 3, 1 / 2, 1.0]
    )
    np.testing.assert_allclose(schedules.d3pm_betas(5, "linear"), [0.02, 0.265, 0.51, 0.755, 1.0])
    np.testing.assert_allclose(
        schedules.d3pm_betas(3, "linear", start=0.1, end=0.3), [0.1, 0.2, 0.3]
    )
    cos = schedules.d3pm_betas(4, "cosine")
    abar = [math.cos((t / 4 + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(5)]
    np.testing.assert_allclose(cos, [1 - abar[t] / abar[t - 1] for t in range(1, 5)], rtol=1e-9)
    # alpha_bar of the mutual-information grid is linear in t: prod (1 - b) = 1 - t / T
    mi = schedules.d3pm_betas(8)
    np.testing.assert_allclose(np.cumprod(1 - mi), 1 - np.arange(1, 9) / 8, atol=1e-12)
    with pytest.raises(ValueError, match="num_steps"):
        schedules.d3pm_betas(0)
    with pytest.raises(ValueError, match="kind"):
        schedules.d3pm_betas(4, "quadratic")


@pytest.mark.parametrize("eps", [0.0, 1.0, -0.1, 1.5])
def test_bad_eps(eps):
    with pytest.raises(ValueError, match="eps"):
        schedules.LogLinear(eps=eps)


def test_bad_schedule_parameters():
    with pytest.raises(ValueError, match="power"):
        schedules.Polynomial(power=0.0)
    with pytest.raises(ValueError, match="sigma_min"):
        schedules.Geometric(sigma_min=2.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="sigma_min"):
        schedules.Geometric(sigma_min=0.0, sigma_max=1.0)
