"""One-step laws of every sampler against independent dense float64 computations.

For each step class in ``dd.samplers.STEP_CLASSES`` the law of one step t -> s from every
state of a tiny space (K = 3 data tokens, L = 2 positions: 16 states under masking, 9
under uniform noise) is computed here in NumPy, float64, from the definitions
(design.md 5.1 / 5.3 and the samplers' docstrings), and compared with

* the library's per-position law (``step.law`` / ``stage1`` / ``stage2`` /
  ``transition_matrix``), within float32 round-off, and
* the empirical law of the step as the driver runs it (``step.step``, i.e. the masking
  fast paths where a process has them), within ``Z_MAX`` Monte Carlo standard errors.

Nothing on the expected side calls ddjax: the denoiser is a fixed random table
``log_softmax(A[x] + t B[x])`` (indexed by the whole sequence x, so p(x0_i | x_t)
depends on every position and on t), and the reference reads the same table in float64.
"""

from __future__ import annotations

import itertools
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import ddjax as dd
from ddjax.samplers import driver

K, L = 3, 2
EPS = 1e-3  # LogLinear's default eps
Z_MAX = 5.0  # Monte Carlo tolerance, in standard errors per cell
N_DRAWS = 40_000  # draws per start state in the sampled checks
FAST = {"xla_backend_optimization_level": 0}

# (t, s) pairs: a middle step, a first step from t_max = 1, and a step onto s = 0
TIMES = [(0.6, 0.45), (1.0, 0.8), (0.3, 0.0)]


# --------------------------------------------------------------------------
# The dense float64 reference, written from the definitions
# --------------------------------------------------------------------------


class Dense:
    """A process on one position, dense and float64, plus the fixed denoiser table."""

    def __init__(self, kind: str, schedule: str = "loglinear", seed: int = 0):
        self.kind, self.schedule = kind, schedule
        self.n = K + 1 if kind == "masking" else K
        self.pi = np.eye(self.n)[K] if kind == "masking" else np.full(K, 1.0 / K)
        self.states = np.array(list(itertools.product(range(self.n), repeat=L)), np.int32)
        rng = np.random.default_rng(seed)
        self.A = (1.5 * rng.normal(size=(self.n**L, L, K))).astype(np.float32)
        self.B = (2.0 * rng.normal(size=(self.n**L, L, K))).astype(np.float32)
        sched = dd.schedules.LogLinear() if schedule == "loglinear" else dd.schedules.Cosine()
        cls = dd.processes.Masking if kind == "masking" else dd.processes.Uniform
        self.process = cls(K, sched)

    # schedule -----------------------------------------------------------
    def a(self, t):
        if self.schedule == "loglinear":
            return 1.0 - (1.0 - EPS) * t
        return 1.0 - math.sin(0.5 * math.pi * t)

    def da(self, t):
        if self.schedule == "loglinear":
            return -(1.0 - EPS)
        return -0.5 * math.pi * math.cos(0.5 * math.pi * t)

    def t_of_alpha(self, alpha):
        assert self.schedule == "loglinear"
        return (1.0 - alpha) / (1.0 - EPS)

    # kernels --------------------------------------------------------------
    def q(self, t):
        """q_t(y | k): [K, N]."""
        a = self.a(t)
        return a * np.eye(K, self.n) + (1.0 - a) * self.pi[None, :]

    def kernel(self, s, t):
        """q(x_t = x | x_s = y) as [y, x]: (a_t/a_s) I + (1 - a_t/a_s) 1 pi^T."""
        r = self.a(t) / self.a(s)
        return r * np.eye(self.n) + (1.0 - r) * self.pi[None, :]

    # the denoiser ---------------------------------------------------------
    def index(self, x):
        return int(np.ravel_multi_index(tuple(np.asarray(x)), (self.n,) * L))

    def p(self, x, t):
        """The fixed denoiser's p(x0_i = k | x, t): [L, K], float64."""
        i = self.index(x)
        logits = self.A[i].astype(np.float64) + t * self.B[i].astype(np.float64)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def p_consistent(self, x, t):
        """p restricted to the x0 values that can produce x at time t, renormalised: [L, K]."""
        p = self.p(x, t)
        lik = self.q(t)[:, x].T  # [L, K]: q_t(x_i | k)
        p = np.where(lik > 0, p, 0.0)
        return p / p.sum(-1, keepdims=True)

    def denoiser(self):
        A, B, n = jnp.asarray(self.A), jnp.asarray(self.B), self.n
        weights = jnp.asarray(n ** np.arange(L - 1, -1, -1), jnp.int32)

        def fn(x, t):
            idx = (x * weights).sum(-1)
            return jax.nn.log_softmax(A[idx] + t[:, None, None] * B[idx], axis=-1)

        return fn

    def ctx(self, steps=None, **kw):
        return driver.context(self.process, self.denoiser(), (len(self.states), L), steps, **kw)

    # reverse CTMC -----------------------------------------------------------
    def forward_rate(self, t):
        """Forward rate y -> x for y != x: (-a'_t / a_t) pi_x, as [y, x] (diagonal 0)."""
        r = (-self.da(t) / self.a(t)) * np.broadcast_to(self.pi, (self.n, self.n)).copy()
        np.fill_diagonal(r, 0.0)
        return r

    def reverse_rates(self, x, t):
        """R^_t(x_i -> y) = R_t(y -> x_i) sum_k p(k) q_t(y|k) / q_t(x_i|k): [L, N]."""
        p, q, fwd = self.p_consistent(x, t), self.q(t), self.forward_rate(t)
        out = np.zeros((L, self.n))
        for i in range(L):
            for y in range(self.n):
                if y == x[i]:
                    continue
                ratio = sum(p[i, k] * q[k, y] / q[k, x[i]] for k in range(K) if p[i, k] > 0)
                out[i, y] = fwd[y, x[i]] * ratio
        return out

    def forward_out(self, x, t):
        """Forward rates x_i -> y = (-a'/a) pi_y for y != x_i: [L, N]."""
        return np.stack([self.forward_rate(t)[x[i]] for i in range(L)])

    def posterior(self, x, t, s):
        """sum_k p(k) q(x_s = y | x_t = x_i, x0 = k), by Bayes on the dense kernels: [L, N]."""
        p, qs, qt, ker = self.p_consistent(x, t), self.q(s), self.q(t), self.kernel(s, t)
        out = np.zeros((L, self.n))
        for i in range(L):
            for k in range(K):
                if p[i, k] == 0:
                    continue
                joint = qs[k] * ker[:, x[i]]  # q(x_s = y | k) q(x_t = x_i | x_s = y)
                assert np.isclose(joint.sum(), qt[k, x[i]])  # Chapman-Kolmogorov
                out[i] += p[i, k] * joint / qt[k, x[i]]
        return out

    # sequence-level laws ------------------------------------------------------
    def product(self, probs):
        """T[a, b] = prod_i probs[a][i, states[b, i]] for per-state laws probs [S, L, N]."""
        probs = np.asarray(probs, np.float64)
        cols = [probs[:, i, self.states[:, i]] for i in range(L)]  # [S, S] each
        return np.prod(cols, axis=0)

    def row(self, law):
        """The law over sequences of one per-position law [L, N]: [S]."""
        return np.prod([law[i, self.states[:, i]] for i in range(L)], axis=0)

    def all_laws(self, fn):
        return np.stack([fn(x) for x in self.states])


def onehot_row(x, n):
    return np.eye(n)[np.asarray(x)]


def euler_law(rates, x, h):
    """Cat(onehot(x) + h R), the stay probability clipped at 0 and the row renormalised."""
    n = rates.shape[-1]
    move = h * np.where(onehot_row(x, n) > 0, 0.0, np.maximum(rates, 0.0))
    stay = np.maximum(1.0 - move.sum(-1, keepdims=True), 0.0)
    law = move + stay * onehot_row(x, n)
    return law / law.sum(-1, keepdims=True)


def leap_law(rates, x, dt, multi_jump):
    """One tau-leap with frozen rates: independent Poisson(dt r_y) counts per target y.

    "reject": move to y iff N_y = 1 and every other count is 0; "first": keep the first
    jump of the superposed process (to y w.p. r_y / Lambda, at least one jump w.p.
    1 - exp(-dt Lambda)). Everything else stays.
    """
    n = rates.shape[-1]
    r = np.where(onehot_row(x, n) > 0, 0.0, np.maximum(rates, 0.0))
    law = np.zeros_like(r)
    for i in range(r.shape[0]):
        lam = dt * r[i]
        pmf0 = np.exp(-lam)  # P(N_y = 0)
        pmf1 = lam * np.exp(-lam)  # P(N_y = 1)
        for y in range(n):
            if y == x[i] or r[i, y] == 0:
                continue
            if multi_jump == "reject":
                law[i, y] = pmf1[y] * np.prod(np.delete(pmf0, y))
            else:
                total = r[i].sum()
                law[i, y] = r[i, y] / total * (1.0 - math.exp(-dt * total))
        law[i, x[i]] = 1.0 - law[i].sum()
    return law


def trapezoidal_weights(theta):
    d = 2.0 * theta * (1.0 - theta)
    return 1.0 / d, ((1.0 - theta) ** 2 + theta**2) / d


def theta_matrix(ref, kind, theta, t, s, multi_jump="first"):
    """The two stages enumerated over the intermediate state x*: T[x, new], [S, S]."""
    h = t - s
    rho = t - theta * h
    a1, a2 = trapezoidal_weights(theta)
    w = 1.0 / (2.0 * theta)
    S = len(ref.states)
    out = np.zeros((S, S))
    for ia, x in enumerate(ref.states):
        r1 = ref.reverse_rates(x, t)
        stage1 = ref.row(leap_law(r1, x, theta * h, multi_jump))
        for ic, xs in enumerate(ref.states):
            if stage1[ic] == 0:
                continue
            r2 = ref.reverse_rates(xs, rho)
            if kind == "trapezoidal":
                stayed = (xs == x)[:, None]
                rates = np.maximum(a1 * r2 - a2 * r1 * stayed, 0.0)
                law2 = leap_law(rates, xs, (1.0 - theta) * h, multi_jump)
            else:
                rates = np.maximum((1.0 - w) * r1 + w * r2, 0.0)
                law2 = leap_law(rates, x, h, multi_jump)
            out[ia] += stage1[ic] * ref.row(law2)
    return out


def tweedie_law(ref, x, t, s):
    """p(y) propto [exp(-dsig Q) s]_y exp(dsig Q)(x, y), with scipy's matrix exponential.

    Q is the generator with exp(sigma Q) = the interpolating kernel (rows: from, cols: to),
    Q = 1 pi^T - I; dsig = sigma_bar(t) - sigma_bar(s); s the concrete score
    s_z = sum_k p(k) q_t(z|k) / q_t(x|k). Row convention: p_s = p_t exp(-dsig Q), so the
    score is carried back with the transpose.
    """
    n = ref.n
    gen = np.ones((n, 1)) @ ref.pi[None, :] - np.eye(n)
    dsig = -math.log(ref.a(t)) + math.log(ref.a(s))
    fwd, back = scipy.linalg.expm(dsig * gen), scipy.linalg.expm(-dsig * gen)
    assert np.allclose(fwd, ref.kernel(s, t), atol=1e-10)
    p, q = ref.p_consistent(x, t), ref.q(t)
    out = np.zeros((L, n))
    for i in range(L):
        score = sum(p[i, k] * q[k] / q[k, x[i]] for k in range(K) if p[i, k] > 0)
        w = np.maximum(back.T @ score, 0.0) * fwd[:, x[i]]
        out[i] = w / w.sum()
    return out


# --------------------------------------------------------------------------
# Comparing the library with the reference
# --------------------------------------------------------------------------


def times(ref, t, s, n=None):
    n = len(ref.states) if n is None else n
    return jnp.full((n,), t, jnp.float32), jnp.full((n,), s, jnp.float32)


def sampled_matrix(ref, draw, n_draws=N_DRAWS, seed=0, states=None):
    """Empirical T[a, b] of x_new = draw(key, x [B, L], t_vec [B], s_vec [B]) from each state.

    ``draw`` is jitted over a batch holding every start state ``n_draws`` times.
    """
    states = ref.states if states is None else states
    S = len(states)
    xb = jnp.asarray(np.tile(states, (n_draws, 1)))
    out = np.asarray(jax.jit(draw, compiler_options=FAST)(jax.random.PRNGKey(seed), xb))
    idx = np.ravel_multi_index(tuple(out.T), (ref.n,) * L)
    counts = np.zeros((S, ref.n**L))
    np.add.at(counts, (np.arange(len(out)) % S, idx), 1.0)
    return counts / n_draws


def assert_mc_close(emp, exact, n, what=""):
    """|empirical - exact| <= Z_MAX standard errors per cell (a floor of 1/n for p ~ 0)."""
    exact = np.asarray(exact, np.float64)
    se = np.sqrt(np.maximum(exact * (1.0 - exact), 1.0 / n) / n)
    z = np.abs(emp - exact) / se
    worst = np.unravel_index(np.argmax(z), z.shape)
    assert z.max() <= Z_MAX, (
        f"{what}: {z.max():.1f} standard errors at cell {worst}: "
        f"sampled {emp[worst]:.5f}, exact {exact[worst]:.5f}"
    )


def step_at(t, s, rows, index=0, last=False):
    """The driver's StepInfo of step ``index`` from t to s on ``rows`` rows, in the grid
    [t, s, 0] (a first step that is not the last) or [t, s] (the last step)."""
    tv = jnp.full((rows,), t, jnp.float32)
    sv = jnp.full((rows,), s, jnp.float32)
    grid = jnp.asarray([t, s] if last else [t, s, 0.0], jnp.float32)
    return driver.StepInfo(jnp.int32(index), tv, sv, last, grid)


def step_draw(step, ctx, t, s, aux=None):
    """x -> the state after one (non-final) ``step.step`` from t to s."""

    def draw(key, x):
        at = step_at(t, s, x.shape[0])
        a = step.init(ctx, x, at.grid) if aux is None else aux(x)
        return step.step(key, ctx, x, a, at)[0]

    return draw


PROCESSES = ["masking", "uniform"]
SCHEDULES = ["loglinear", "cosine"]


def law_times(schedule):
    # the cosine schedule has alpha(1) = 0 (infinite uniform rates): start it below 1
    return TIMES if schedule == "loglinear" else [(0.6, 0.45), (0.95, 0.7)]


def check_law(step, ref, expected_fn, t, s, atol=1e-5, method="law"):
    ctx = ref.ctx()
    tv, sv = times(ref, t, s)
    got = np.asarray(getattr(step, method)(ctx, jnp.asarray(ref.states), tv, sv))
    want = ref.all_laws(expected_fn)
    np.testing.assert_allclose(want.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(got, want, atol=atol, rtol=0)


# --------------------------------------------------------------------------
# The coverage guard
# --------------------------------------------------------------------------

# Where each registry entry's law test lives (this file unless named): a new entry in
# dd.samplers.REGISTRY without one fails the guard.
LAW_TESTS = {
    **{name: "one-step law, below" for name in (
        "ancestral", "euler", "tau_leaping", "tweedie", "predictor_corrector",
        "theta_trapezoidal", "theta_rk2", "dfm_euler", "first_hitting", "remdm",
        "confidence", "pc_sampler", "smc", "svdd", "edlm",
    )},
    "aps": "test_posterior_sampling.py::test_aps_is_exact_for_a_product_prior_and_a_linear_loss",
    "ddpd": "test_posterior_sampling.py::test_ddpd_one_step_law",
    "split_gibbs": "test_posterior_sampling.py::test_split_gibbs_at_a_fixed_level_samples_the_"
    "exact_split_marginal",
    "block_diffusion": "test_block_sampling.py::test_block_size_one_is_exact_at_one_step_per_block",
    # no law test yet: its tokens equal those of L full causal passes, draw for draw
    "autoregressive": "test_block_sampling.py::test_cached_ar_gives_the_same_tokens_as_uncached_ar",
}  # fmt: skip


def test_every_registry_entry_has_a_law_test():
    missing = sorted(set(dd.samplers.REGISTRY) - set(LAW_TESTS))
    assert not missing, f"samplers without an exact-law test: {missing}"
    assert set(LAW_TESTS) <= set(dd.samplers.REGISTRY), "a law test of no registered sampler"


# --------------------------------------------------------------------------
# ancestral
# --------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("kind", PROCESSES)
def test_ancestral_law_is_the_bayes_posterior(kind, schedule):
    ref = Dense(kind, schedule)
    step = dd.samplers.Ancestral()
    for t, s in law_times(schedule):
        check_law(step, ref, lambda x, t=t, s=s: ref.posterior(x, t, s), t, s)


def test_ancestral_masking_closed_form():
    """The posterior above is design.md's masking form: unmask w.p. (a_s - a_t)/(1 - a_t)."""
    ref = Dense("masking")
    t, s = 0.6, 0.45
    a_t, a_s = ref.a(t), ref.a(s)
    x = np.array([K, 1])
    law = ref.posterior(x, t, s)
    p = ref.p(x, t)
    np.testing.assert_allclose(law[0, :K], (a_s - a_t) / (1 - a_t) * p[0], atol=1e-12)
    np.testing.assert_allclose(law[0, K], (1 - a_s) / (1 - a_t), atol=1e-12)
    np.testing.assert_allclose(law[1], np.eye(K + 1)[1], atol=1e-12)


@pytest.mark.parametrize("t,s", [(0.6, 0.45), (1.0, 0.8)])
@pytest.mark.parametrize("kind", PROCESSES)
def test_ancestral_sampled_step(kind, t, s):
    """The step as the driver runs it (masking: the factorised fast path)."""
    ref = Dense(kind)
    step = dd.samplers.Ancestral()
    if kind == "masking":
        assert dd.samplers.masking.has_fast_path(ref.process)  # the factorised path
    exact = ref.product(ref.all_laws(lambda x: ref.posterior(x, t, s)))
    emp = sampled_matrix(ref, step_draw(step, ref.ctx(), t, s))
    assert_mc_close(emp, exact, N_DRAWS, f"ancestral {kind} {t}->{s}")


# --------------------------------------------------------------------------
# euler, tau_leaping, predictor_corrector
# --------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("kind", PROCESSES)
def test_euler_law(kind, schedule):
    ref = Dense(kind, schedule)
    for t, s in law_times(schedule):
        check_law(
            dd.samplers.Euler(),
            ref,
            lambda x, t=t, s=s: euler_law(ref.reverse_rates(x, t), x, t - s),
            t,
            s,
        )


def test_masking_reverse_rates_closed_form():
    """The reference rates under masking are design.md's: m -> v at (-a'/(1 - a)) p(v)."""
    ref = Dense("masking")
    t = 0.6
    x = np.array([K, 2])
    rates = ref.reverse_rates(x, t)
    np.testing.assert_allclose(rates[0, :K], -ref.da(t) / (1 - ref.a(t)) * ref.p(x, t)[0])
    np.testing.assert_allclose(rates[1], 0.0)


@pytest.mark.parametrize("multi_jump", ["reject", "first"])
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("kind", PROCESSES)
def test_tau_leaping_law(kind, schedule, multi_jump):
    ref = Dense(kind, schedule)
    step = dd.samplers.TauLeaping(multi_jump=multi_jump)
    for t, s in law_times(schedule):
        check_law(
            step,
            ref,
            lambda x, t=t, s=s: leap_law(ref.reverse_rates(x, t), x, t - s, multi_jump),
            t,
            s,
        )


@pytest.mark.parametrize("n_corrector", [1, 2])
@pytest.mark.parametrize("kind", PROCESSES)
def test_predictor_corrector_transition_matrix(kind, n_corrector):
    """Predictor leap (R^ at t over h), then n corrector leaps at s with R_s + R^_s over h."""
    ref = Dense(kind)
    step = dd.samplers.PredictorCorrector(n_corrector=n_corrector)
    for t, s in TIMES[:2]:
        pred = ref.product(
            ref.all_laws(lambda x, t=t, s=s: leap_law(ref.reverse_rates(x, t), x, t - s, "reject"))
        )
        corr = ref.product(
            ref.all_laws(
                lambda x, t=t, s=s: leap_law(
                    ref.reverse_rates(x, s) + ref.forward_out(x, s), x, t - s, "reject"
                )
            )
        )
        want = pred @ np.linalg.matrix_power(corr, n_corrector)
        tv, sv = times(ref, t, s)
        got = np.asarray(step.transition_matrix(ref.ctx(), jnp.asarray(ref.states), tv, sv))
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)


def test_corrector_leaves_q_s_invariant():
    """Sanity of the reference: R_s + R^_s with the exact posterior as p keeps p_s."""
    ref = Dense("uniform")
    s = 0.5
    # a single-position check with an independent target: p(x0) fixed, exact p(x0 | x_s)
    prior = np.array([0.6, 0.3, 0.1])
    p_s = prior @ ref.q(s)
    gen = ref.forward_rate(s).copy()
    for x in range(K):
        post = prior * ref.q(s)[:, x] / p_s[x]
        for y in range(K):
            if y != x:
                gen[x, y] += ref.forward_rate(s)[y, x] * sum(
                    post[k] * ref.q(s)[k, y] / ref.q(s)[k, x] for k in range(K)
                )
    np.fill_diagonal(gen, 0.0)
    np.fill_diagonal(gen, -gen.sum(1))
    np.testing.assert_allclose(p_s @ gen, 0.0, atol=1e-12)


# --------------------------------------------------------------------------
# tweedie
# --------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("kind", PROCESSES)
def test_tweedie_law_is_the_matrix_exponential_formula(kind, schedule):
    ref = Dense(kind, schedule)
    for t, s in law_times(schedule):
        # sanity of the reference: with the mixture-form score it is the posterior
        for x in ref.states:
            np.testing.assert_allclose(tweedie_law(ref, x, t, s), ref.posterior(x, t, s), atol=1e-9)
        # float32 cancellation where a_t is small (the docstring's caveat): 1e-4 there
        atol = 1e-4 if ref.a(t) < 0.05 else 1e-5
        check_law(
            dd.samplers.Tweedie(), ref, lambda x, t=t, s=s: tweedie_law(ref, x, t, s), t, s, atol
        )


# --------------------------------------------------------------------------
# theta_trapezoidal / theta_rk2
# --------------------------------------------------------------------------

THETA_CASES = [
    ("theta_trapezoidal", 0.5, "first"),
    ("theta_trapezoidal", 0.3, "first"),
    ("theta_trapezoidal", 0.3, "reject"),
    ("theta_rk2", 0.35, "first"),
    ("theta_rk2", 0.8, "first"),
    ("theta_rk2", 0.35, "reject"),
]


@pytest.mark.parametrize("name,theta,multi_jump", THETA_CASES)
@pytest.mark.parametrize("kind", PROCESSES)
def test_theta_two_stage_law(kind, name, theta, multi_jump):
    ref = Dense(kind)
    step = dd.samplers.STEP_CLASSES[name](theta=theta, multi_jump=multi_jump)
    form = "trapezoidal" if name == "theta_trapezoidal" else "rk2"
    states = jnp.asarray(ref.states)
    for t, s in TIMES[:2]:
        tv, sv = times(ref, t, s)
        # stage 1 alone: a leap from x over theta h with R^(x, t)
        probs1, _ = step.stage1(ref.ctx(), states, tv, sv)
        want1 = ref.all_laws(
            lambda x, t=t, s=s: leap_law(ref.reverse_rates(x, t), x, theta * (t - s), multi_jump)
        )
        np.testing.assert_allclose(np.asarray(probs1), want1, atol=1e-5, rtol=0)
        # both stages, summed over x*
        got = np.asarray(step.transition_matrix(ref.ctx(), states, tv, sv))
        want = theta_matrix(ref, form, theta, t, s, multi_jump)
        np.testing.assert_allclose(want.sum(-1), 1.0, atol=1e-12)
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)


def test_theta_stage2_rates_directly():
    """stage2 for one (x, x*) pair with x* != x at a position (trapezoidal drops -a2 R there)."""
    ref = Dense("uniform")
    t, s, theta = 0.6, 0.45, 0.3
    h, rho = t - s, t - theta * (t - s)
    a1, a2 = trapezoidal_weights(theta)
    x, xs = np.array([[0, 1]]), np.array([[2, 1]])
    r1 = ref.reverse_rates(x[0], t)
    r2 = ref.reverse_rates(xs[0], rho)
    tv, sv = times(ref, t, s, 1)
    rates1 = jnp.asarray(r1[None], jnp.float32)
    trap = dd.samplers.ThetaTrapezoidal(theta=theta)
    got = np.asarray(trap.stage2(ref.ctx(), jnp.asarray(x), jnp.asarray(xs), rates1, tv, sv))[0]
    rates = np.maximum(a1 * r2 - a2 * r1 * np.array([[0.0], [1.0]]), 0.0)
    np.testing.assert_allclose(got, leap_law(rates, xs[0], (1 - theta) * h, "first"), atol=1e-5)
    rk2 = dd.samplers.ThetaRK2(theta=theta)
    got = np.asarray(rk2.stage2(ref.ctx(), jnp.asarray(x), jnp.asarray(xs), rates1, tv, sv))[0]
    w = 1.0 / (2.0 * theta)
    rates = np.maximum((1 - w) * r1 + w * r2, 0.0)
    np.testing.assert_allclose(got, leap_law(rates, x[0], h, "first"), atol=1e-5)


# --------------------------------------------------------------------------
# Sampled one-step laws of the PositionLaw steps (the masking fast paths included)
# --------------------------------------------------------------------------


def dense_matrix(ref, name, t, s, options):
    h = t - s
    if name == "ancestral":
        return ref.product(ref.all_laws(lambda x: ref.posterior(x, t, s)))
    if name == "euler":
        return ref.product(ref.all_laws(lambda x: euler_law(ref.reverse_rates(x, t), x, h)))
    if name == "tau_leaping":
        mj = options.get("multi_jump", "reject")
        return ref.product(ref.all_laws(lambda x: leap_law(ref.reverse_rates(x, t), x, h, mj)))
    if name == "tweedie":
        return ref.product(ref.all_laws(lambda x: tweedie_law(ref, x, t, s)))
    if name == "predictor_corrector":
        pred = ref.product(
            ref.all_laws(lambda x: leap_law(ref.reverse_rates(x, t), x, h, "reject"))
        )
        corr = ref.product(
            ref.all_laws(
                lambda x: leap_law(ref.reverse_rates(x, s) + ref.forward_out(x, s), x, h, "reject")
            )
        )
        return pred @ corr
    if name in ("theta_trapezoidal", "theta_rk2"):
        form = "trapezoidal" if name == "theta_trapezoidal" else "rk2"
        return theta_matrix(ref, form, options["theta"], t, s, options.get("multi_jump", "first"))
    if name == "dfm_euler":
        return ref.product(ref.all_laws(lambda x: dfm_law(ref, x, t, s, "exact", 0.0)))
    raise AssertionError(name)


SAMPLED = [
    ("euler", {}),
    ("tau_leaping", {"multi_jump": "reject"}),
    ("tau_leaping", {"multi_jump": "first"}),
    ("tweedie", {}),
    ("predictor_corrector", {}),
    ("theta_trapezoidal", {"theta": 0.3}),
    ("theta_rk2", {"theta": 0.35}),
    ("dfm_euler", {}),
]


@pytest.mark.parametrize("name,options", SAMPLED, ids=[f"{n}-{o}" for n, o in SAMPLED])
@pytest.mark.parametrize("kind", PROCESSES)
def test_sampled_step_matches_dense_law(kind, name, options):
    """``step.step`` (masking: ``draw``'s fast path where the process has unmask_rate)."""
    ref = Dense(kind)
    step = dd.samplers.STEP_CLASSES[name](**options)
    t, s = 0.6, 0.45
    emp = sampled_matrix(ref, step_draw(step, ref.ctx(), t, s), seed=1)
    assert_mc_close(emp, dense_matrix(ref, name, t, s, options), N_DRAWS, f"{name} {kind}")


def test_masked_fast_paths_are_the_ones_sampled():
    """Masking has the fast-path capabilities (unmask_probability, unmask_rate); uniform not."""
    from ddjax.samplers import ctmc, masking

    assert masking.has_fast_path(Dense("masking").process)
    assert ctmc.has_masked_rates(Dense("masking").process)
    assert not masking.has_fast_path(Dense("uniform").process)


# --------------------------------------------------------------------------
# dfm_euler
# --------------------------------------------------------------------------


def dfm_law(ref, x, t, s, jump, beta):
    """Gat et al.'s step in our time: jump to a fresh x0 ~ p~ (the data velocity, hazard
    (1 + beta) kappa'/(1 - kappa), kappa = a) or, with the corrector beta, to a source draw
    ~ pi (hazard beta (-a'/a) P(x is the clean token | x)); stay otherwise.
    Integrated hazards for jump="exact"; frozen at t otherwise."""
    n, h = ref.n, t - s
    a_t, a_s, neg_da = ref.a(t), ref.a(s), -ref.da(t)
    p = np.zeros((L, n))
    p[:, :K] = ref.p_consistent(x, t)
    if jump == "exact":
        # int_s^t (-a'(u)) / (1 - a(u)) du = log((1 - a_s)^-1 (1 - a_t))
        h_data = (1 + beta) * math.log((1 - a_t) / (1 - a_s)) if a_s < 1 else math.inf
        h_src_unit = math.log(a_s / a_t)  # int_s^t (-a'/a)
    else:
        h_data = (1 + beta) * h * neg_da / (1 - a_t)
        h_src_unit = h * neg_da / a_t
    law = np.zeros((L, n))
    for i in range(L):
        # P(x_i is still its clean token | x): a_t p~(x_i) / q_t(x_i | x0 = x_i)
        clean = 0.0
        if x[i] < K:
            clean = a_t * p[i, x[i]] / (a_t + (1 - a_t) * ref.pi[x[i]])
        h_src = beta * h_src_unit * clean
        total = h_data + h_src
        p_event = min(total, 1.0) if jump == "euler" else 1.0 - math.exp(-total)
        if math.isinf(total):  # onto s = 0 with the exact hazard: always a data jump
            law[i] = p[i]
            continue
        law[i] = p_event * (h_data * p[i] + h_src * ref.pi) / total
        law[i, x[i]] += 1.0 - p_event
    return law


@pytest.mark.parametrize(
    "jump,beta", [("exact", 0.0), ("exponential", 0.0), ("euler", 0.0), ("exact", 0.4)]
)
@pytest.mark.parametrize("kind", PROCESSES)
def test_dfm_euler_law(kind, jump, beta):
    ref = Dense(kind)
    step = dd.samplers.DfmEuler(jump=jump, corrector=beta)
    # (with the corrector the law onto s = 0 depends on the library's 1e-30 clamp of the
    # infinite data hazard; the sampler's last step uses the posterior there anyway)
    for t, s in TIMES if beta == 0.0 else TIMES[:2]:
        check_law(step, ref, lambda x, t=t, s=s: dfm_law(ref, x, t, s, jump, beta), t, s)


def test_dfm_exact_jump_is_the_ancestral_step_for_masking():
    """Sanity of the reference: the exact hazard gives (a_s - a_t) / (1 - a_t)."""
    ref = Dense("masking")
    for t, s in TIMES:
        for x in ref.states:
            np.testing.assert_allclose(
                dfm_law(ref, x, t, s, "exact", 0.0), ref.posterior(x, t, s), atol=1e-12
            )


# --------------------------------------------------------------------------
# remdm
# --------------------------------------------------------------------------


def remdm_law(ref, x, t, s, sigma):
    """Per position: a decoded token re-masks w.p. sigma; a masked one decodes to v w.p.
    (a_s - (1 - sigma) a_t) / (1 - a_t) p(v) and stays masked w.p.
    (1 - a_s - sigma a_t) / (1 - a_t)."""
    a_t, a_s = ref.a(t), ref.a(s)
    p = ref.p(x, t)
    law = np.zeros((L, ref.n))
    for i in range(L):
        if x[i] == K:
            law[i, :K] = (a_s - (1 - sigma) * a_t) / (1 - a_t) * p[i]
            law[i, K] = (1 - a_s - sigma * a_t) / (1 - a_t)
        else:
            law[i, K] = sigma
            law[i, x[i]] = 1 - sigma
    return law


@pytest.mark.parametrize(
    "schedule,eta,t,s",
    [
        ("cap", 0.3, 0.6, 0.45),  # sigma = eta (sigma_max = 1)
        ("cap", 0.3, 0.1, 0.05),  # the cap binds: sigma = (1 - a_s) / a_t
        ("rescale", 0.5, 0.1, 0.05),  # sigma = eta * sigma_max
    ],
)
def test_remdm_sampled_step(schedule, eta, t, s):
    ref = Dense("masking")
    a_t, a_s = ref.a(t), ref.a(s)
    sigma_max = min(1.0, (1 - a_s) / a_t)
    sigma = min(eta, sigma_max) if schedule == "cap" else eta * sigma_max
    if (schedule, t) == ("cap", 0.1):
        assert sigma < eta  # the cap is active in this case
    law = ref.all_laws(lambda x: remdm_law(ref, x, t, s, sigma))
    assert np.all(law >= -1e-12)
    np.testing.assert_allclose(law.sum(-1), 1.0, atol=1e-12)
    # sanity of the reference: with p = onehot(k) one position maps q_t(.|k) to q_s(.|k)
    for k in range(K):
        move = np.zeros((ref.n, ref.n))
        move[K, k] = (a_s - (1 - sigma) * a_t) / (1 - a_t)
        move[K, K] = (1 - a_s - sigma * a_t) / (1 - a_t)
        move[:K, K] = sigma
        move[:K, :K] = (1 - sigma) * np.eye(K)
        np.testing.assert_allclose(ref.q(t)[k] @ move, ref.q(s)[k], atol=1e-12)
    step = dd.samplers.Remdm(schedule=schedule, eta=eta)
    emp = sampled_matrix(ref, step_draw(step, ref.ctx(steps=8), t, s), seed=2)
    assert_mc_close(emp, ref.product(law), N_DRAWS, f"remdm {schedule}")


# --------------------------------------------------------------------------
# first_hitting
# --------------------------------------------------------------------------


def test_first_hitting_one_call_law():
    """One call from x with n masked positions and 1 - alpha(tau) = oma: the new oma' is
    oma U^(1/n) (P(oma'/oma <= z) = z^n); one uniformly chosen masked position is decoded
    to v ~ p(. | x, t(oma')), t(oma') = alpha^-1(1 - oma'). Checked jointly: the law of
    (bin of oma'/oma, position, token) for 4 equal-probability bins of the hitting time."""
    ref = Dense("masking")
    step = dd.samplers.FirstHitting()
    starts = np.array([x for x in ref.states if (x == K).any()])
    # (t_max, 1 - alpha(tau)): the first call (step.init) from t_max = 1 and 0.6, and mid-way
    cases = [(1.0, 1.0 - ref.a(1.0)), (0.6, 1.0 - ref.a(0.6)), (1.0, 0.5)]
    nodes, wts = np.polynomial.legendre.leggauss(64)
    n_bins = 4
    for case, (t_max, oma) in enumerate(cases):
        ctx = ref.ctx(t_max=t_max)
        xb = jnp.asarray(np.tile(starts, (N_DRAWS, 1)))
        aux = jnp.full((xb.shape[0],), oma, jnp.float32)
        if case < 2:
            grid = step.grid(ctx.process, None, L, t_max)
            np.testing.assert_allclose(np.asarray(step.init(ctx, xb, grid)), aux, rtol=1e-6)

        def one(key, x, aux=aux, ctx=ctx):
            return step.step(key, ctx, x, aux, step_at(0.0, 0.0, x.shape[0]))

        x_new, oma_new = jax.jit(one, compiler_options=FAST)(jax.random.PRNGKey(3 + case), xb)
        x_new, ratio = np.asarray(x_new), np.asarray(oma_new, np.float64) / oma
        start_idx = np.arange(len(xb)) % len(starts)
        for a, x in enumerate(starts):
            rows = start_idx == a
            n = int((x == K).sum())
            changed = x_new[rows] != x
            assert np.all(changed.sum(-1) == 1)  # exactly one token per call
            assert np.all(x[np.argmax(changed, -1)] == K)  # ... at a masked position
            pos = np.argmax(changed, -1)
            tok = x_new[rows][np.arange(rows.sum()), pos]
            assert np.all(tok < K)
            u = ratio[rows] ** n  # should be U(0, 1)
            edges = np.linspace(0.0, 1.0, n_bins + 1)
            b = np.clip(np.searchsorted(edges, u, side="right") - 1, 0, n_bins - 1)
            emp = np.zeros((n_bins, L, K))
            np.add.at(emp, (b, pos, tok), 1.0)
            emp /= N_DRAWS
            want = np.zeros((n_bins, L, K))
            for j in range(n_bins):
                # u in [e_j, e_j+1): z = u^(1/n), t = alpha^-1(1 - oma z); Gauss-Legendre in u
                uu = edges[j] + (edges[j + 1] - edges[j]) * (nodes + 1) / 2
                ww = wts * (edges[j + 1] - edges[j]) / 2
                for u_q, w_q in zip(uu, ww):
                    t_call = min(ref.t_of_alpha(1 - oma * u_q ** (1.0 / n)), t_max)
                    p = ref.p(x, t_call)
                    for i in range(L):
                        if x[i] == K:
                            want[j, i] += w_q * p[i] / n
            np.testing.assert_allclose(want.sum(), 1.0, atol=1e-12)
            assert_mc_close(emp, want, N_DRAWS, f"first_hitting from {x}, oma {oma}")


# --------------------------------------------------------------------------
# confidence
# --------------------------------------------------------------------------


def check_counter_step(step, ctx, ref, starts, want_law, seed: int, name: str) -> None:
    """One step of a count-schedule sampler (the driver's step index 0) from each start,
    sampled N_DRAWS times, against want_law(x, last) over all sequences, for last False
    and True."""
    for last in (False, True):

        def one(key, x, last=last):
            return step.step(key, ctx, x, None, step_at(0.0, 0.0, x.shape[0], last=last))[0]

        xb = jnp.asarray(np.tile(starts, (N_DRAWS, 1)))
        x_new = jax.jit(one, compiler_options=FAST)(jax.random.PRNGKey(seed + last), xb)
        out = np.asarray(x_new)
        idx = np.ravel_multi_index(tuple(out.T), (ref.n,) * L)
        emp = np.zeros((len(starts), ref.n**L))
        np.add.at(emp, (np.arange(len(out)) % len(starts), idx), 1.0)
        emp /= N_DRAWS
        want = np.stack([want_law(x, last) for x in starts])
        np.testing.assert_allclose(want.sum(-1), 1.0, atol=1e-12)
        assert_mc_close(emp, want, N_DRAWS, f"{name} last={last}")


def test_confidence_one_step():
    """MaskGIT, noise_scale 0, steps = 2, first step (i = 0): every masked position draws
    v_i ~ p_i (the denoiser at the time with 1 - alpha = masked fraction); floor(2 cos(pi/4))
    = 1 position stays masked, at least one is decoded; the decoded one is the most
    confident (log p_i(v_i) largest; ties to the lower index). The last step fills all."""
    ref = Dense("masking")
    step = dd.samplers.Confidence()
    ctx = ref.ctx(steps=2)
    starts = np.array([[K, K], [0, K], [K, 2]])

    def t_net(x):
        return min(ref.t_of_alpha(1.0 - (x == K).sum() / L), 1.0)

    def want_law(x, last):
        p = ref.p(x, t_net(x))
        out = np.zeros(ref.n**L)
        masked = np.flatnonzero(x == K)
        if last or len(masked) == 1:  # fill every mask independently
            for y in ref.states:
                if np.all(y[x != K] == x[x != K]) and np.all(y[masked] < K):
                    out[ref.index(y)] = np.prod([p[i, y[i]] for i in masked])
            return out
        for v in range(K):  # position 0 wins ties (stable order)
            y = x.copy()
            y[0] = v
            out[ref.index(y)] += p[0, v] * p[1][p[1] <= p[0, v]].sum()
            y = x.copy()
            y[1] = v
            out[ref.index(y)] += p[1, v] * p[0][p[0] < p[1, v]].sum()
        return out

    check_counter_step(step, ctx, ref, starts, want_law, 5, "confidence")


# --------------------------------------------------------------------------
# pc_sampler
# --------------------------------------------------------------------------


@pytest.mark.parametrize("calibrated, clip", [(False, None), (True, None), (True, 1.5)])
def test_pc_sampler_one_step(calibrated, clip):
    """PC-Sampler, steps = 2, first step: every masked position draws v_i ~ p_i (the
    denoiser at the time with 1 - alpha = masked fraction); floor(2 (1 - 1/2)) = 1 stays
    masked; the decoded one has the larger score exp(-decay i) min(p_i(v_i) [-log f(v_i)],
    clip) (ties to the lower index). The last step fills every mask."""
    ref = Dense("masking")
    decay = 0.4
    freqs = np.array([0.98, 0.019, 0.001]) if calibrated else None
    step = dd.samplers.PCSampler(decay=decay, token_frequencies=freqs, clip=clip)
    ctx = ref.ctx(steps=2)
    starts = np.array([[K, K], [0, K], [K, 2]])

    def t_net(x):
        return min(ref.t_of_alpha(1.0 - (x == K).sum() / L), 1.0)

    def score(p, i, v):
        c = p[i, v] * (-math.log(freqs[v]) if calibrated else 1.0)
        if calibrated and clip is not None:
            c = min(c, clip)
        return math.exp(-decay * i) * c

    def want_law(x, last):
        p = ref.p(x, t_net(x))
        out = np.zeros(ref.n**L)
        masked = np.flatnonzero(x == K)
        for vals in itertools.product(range(K), repeat=len(masked)):
            v = x.copy()
            v[masked] = vals
            prob = np.prod([p[i, v[i]] for i in masked])
            y = x.copy()
            if last or len(masked) == 1:
                y[masked] = np.asarray(v)[masked]
            else:
                win = 0 if score(p, 0, v[0]) >= score(p, 1, v[1]) else 1
                y[win] = v[win]
            out[ref.index(y)] += prob
        return out

    check_counter_step(step, ctx, ref, starts, want_law, 7, "pc_sampler")


# steering samplers (smc, svdd, edlm; not in STEPS: they need a potential / value /
# sequence model): one step with two particles / candidates, exact by enumeration
# --------------------------------------------------------------------------


def state_table(ref, values):
    """(x [B, L], t [B]) -> values[0][index(x)] + t * values[1][index(x)], in JAX."""
    v0, v1 = (jnp.asarray(v, jnp.float32) for v in values)
    weights = jnp.asarray(ref.n ** np.arange(L - 1, -1, -1), jnp.int32)

    def fn(x, t):
        idx = (x * weights).sum(-1)
        return v0[idx] + jnp.asarray(t, jnp.float32) * v1[idx]

    return fn


def pair_selection_law(step_matrix, w):
    """Two iid proposals y1, y2 ~ T[a], keep y_j w.p. w(y_j) / (w(y1) + w(y2)):
    P(y | a) = 2 T[a, y] w(y) sum_z T[a, z] / (w(y) + w(z)): [S, S]."""
    pair = w[:, None] / (w[:, None] + w[None, :])  # [y, z]
    return 2.0 * step_matrix * (step_matrix @ pair.T)


@pytest.mark.parametrize(
    "kind,shared",
    [("masking", True), ("masking", False), ("uniform", True),
     pytest.param("uniform", False, marks=pytest.mark.slow)],
)  # fmt: skip
def test_svdd_two_candidate_step(kind, shared, monkeypatch):
    """Candidates drawn vmapped from the shared output (shared) or on B * M copied rows."""
    monkeypatch.setattr(sys.modules["ddjax.samplers.svdd"], "SHARED_DRAWS", shared)
    ref = Dense(kind)
    t, s, alpha = 0.6, 0.45, 0.7
    rng = np.random.default_rng(11)
    values = 1.5 * rng.normal(size=(2, len(ref.states)))
    step = dd.samplers.Svdd(value_fn=state_table(ref, values), num_candidates=2, alpha=alpha)
    anc = ref.product(ref.all_laws(lambda x: ref.posterior(x, t, s)))
    want = pair_selection_law(anc, np.exp((values[0] + s * values[1]) / alpha))
    emp = sampled_matrix(ref, step_draw(step, ref.ctx(), t, s), n_draws=20_000, seed=11)
    assert_mc_close(emp, want, 20_000, f"svdd {kind}")
    # one candidate: the ancestral law
    one = dd.samplers.Svdd(value_fn=state_table(ref, values), num_candidates=1, alpha=alpha)
    emp = sampled_matrix(ref, step_draw(one, ref.ctx(), t, s), n_draws=20_000, seed=12)
    assert_mc_close(emp, anc, 20_000, f"svdd one candidate {kind}")


@pytest.mark.parametrize("kind,batches", [("masking", 1), ("uniform", 1), ("masking", 2)])
def test_smc_two_particle_step_resamples_by_the_weights(kind, batches):
    """From x at t, two particles propose y1, y2 ~ ancestral and weigh exp(G_s(y) - G_t(x));
    systematic resampling keeps the expected copies 2 w_j / (w1 + w2), so the pooled law of
    the resampled particles is the pair-selection law; the weights restart at 0, and the
    normaliser estimate (the weights start at G_t(x)) has mean sum_y T[x, y] exp(G_s(y)).
    batches = 2: the two proposals made in two sequential batches (particle_batches)."""
    ref = Dense(kind)
    t, s, draws = 0.6, 0.45, 20_000
    rng = np.random.default_rng(13)
    values = 1.5 * rng.normal(size=(2, len(ref.states)))
    g = state_table(ref, values)
    step = dd.samplers.Smc(
        log_potential=g, num_particles=2, ess_threshold=1.0, particle_batches=batches
    )
    anc = ref.product(ref.all_laws(lambda x: ref.posterior(x, t, s)))
    w = np.exp(values[0] + s * values[1])
    want = pair_selection_law(anc, w)
    S = len(ref.states)
    xb = jnp.asarray(np.repeat(np.tile(ref.states, (draws, 1)), 2, axis=0))  # 2 per system
    ctx = driver.context(ref.process, ref.denoiser(), xb.shape, 2)

    def one(key, x):
        at = step_at(t, s, x.shape[0])
        aux = step.init(ctx, x, at.grid)
        aux = dict(aux, g=g(x, at.t), log_w=g(x, at.t).reshape(-1, 2))
        return step.step(key, ctx, x, aux, at)

    x_new, aux = jax.jit(one, compiler_options=FAST)(jax.random.PRNGKey(13), xb)
    out = np.asarray(x_new)
    idx = np.ravel_multi_index(tuple(out.T), (ref.n,) * L)
    counts = np.zeros((S, ref.n**L))
    np.add.at(counts, ((np.arange(len(out)) // 2) % S, idx), 0.5)
    assert_mc_close(counts / draws, want, draws, f"smc {kind}")
    resampled = np.asarray(aux["resampled"][0])
    log_w = np.asarray(aux["log_w"])
    assert resampled.mean() > 0.1
    np.testing.assert_array_equal(log_w[resampled], 0.0)
    # not resampled only when the two weights were equal (ESS = 2)
    np.testing.assert_allclose(log_w[~resampled, 0], log_w[~resampled, 1], atol=1e-5)
    # the estimate so far: the resampled epochs' mean weights times the open epoch's
    mean_w = np.exp(log_w.astype(np.float64)).mean(-1)
    z = (np.exp(np.asarray(aux["log_z"], np.float64)) * mean_w).reshape(draws, S)
    z_want = anc @ w  # E[(w1 + w2) / 2] times exp(G_t(x)), the weights' start
    se = z.std(0) / np.sqrt(draws)
    assert np.all(np.abs(z.mean(0) - z_want) <= Z_MAX * se + 1e-5 * z_want), (z.mean(0), z_want)


def edlm_law(ref, x, t, s, joint):
    """Two x0 ~ prod_i p(x0_i | x) (9 sequences), weights exp(J(x0)) q_t(x | x0) /
    prod_i p(x0_i | x) (0 where x0 cannot produce x), keep one (uniformly if both are 0),
    then x_s ~ q(x_s | x_t = x, x0) per position: [S]."""
    seqs = np.array(list(itertools.product(range(K), repeat=L)))
    p, qt, qs, ker = ref.p(x, t), ref.q(t), ref.q(s), ref.kernel(s, t)
    prop = np.array([np.prod([p[i, z[i]] for i in range(L)]) for z in seqs])
    lik = np.array([np.prod([qt[z[i], x[i]] for i in range(L)]) for z in seqs])
    w = np.exp(joint) * lik / prop
    tot = w[:, None] + w[None, :]
    keep = np.where(tot > 0, w[:, None] / np.where(tot > 0, tot, 1.0), 0.5)  # [z, z2]
    chosen = 2.0 * prop * (keep @ prop)
    assert np.isclose(chosen.sum(), 1.0)
    out = np.zeros(len(ref.states))
    for c, z in zip(chosen, seqs):
        law = np.zeros((L, ref.n))
        for i in range(L):
            if qt[z[i], x[i]] == 0:  # an impossible x0 (both weights 0): x_i stays
                law[i, x[i]] = 1.0
            else:
                law[i] = qs[z[i]] * ker[:, x[i]] / qt[z[i], x[i]]
        out += c * ref.row(law)
    return out


@pytest.mark.parametrize("kind", PROCESSES)
def test_edlm_two_candidate_step(kind):
    ref = Dense(kind)
    t, s = 0.6, 0.45
    joint = 1.5 * np.random.default_rng(17).normal(size=K**L)
    table = jnp.asarray(joint, jnp.float32)
    log_joint = lambda x0: table[(x0 * jnp.asarray([K, 1])).sum(-1)]
    step = dd.samplers.Edlm(log_joint=log_joint, num_candidates=2)
    want = np.stack([edlm_law(ref, x, t, s, joint) for x in ref.states])
    emp = sampled_matrix(ref, step_draw(step, ref.ctx(), t, s), n_draws=20_000, seed=17)
    assert_mc_close(emp, want, 20_000, f"edlm {kind}")


# --------------------------------------------------------------------------
# The time grid: t_max is where the denoiser is first called
# --------------------------------------------------------------------------

GRID_CASES = ["ancestral", "euler", "tau_leaping", "tweedie", "dfm_euler", "remdm",
              "theta_trapezoidal", "predictor_corrector"]  # fmt: skip


@pytest.mark.parametrize(
    "name,kind",
    [(n, "masking") for n in GRID_CASES]
    + [(n, "uniform") for n in ("ancestral", "euler", "theta_trapezoidal")],
)
def test_denoiser_times_follow_the_t_max_grid(name, kind):
    ref = Dense(kind)
    steps, t_max = 4, 0.6
    seen = []
    base = ref.denoiser()

    def record(t):
        seen.append(np.asarray(t).copy())

    def den(x, t):
        jax.debug.callback(record, t, ordered=True)
        return base(x, t)

    sampler = dd.samplers.SAMPLERS[name]
    out = sampler(jax.random.PRNGKey(0), den, ref.process, (2, L), steps=steps, t_max=t_max)
    jax.block_until_ready(out)
    jax.effects_barrier()
    calls = np.array([c[0] for c in seen])
    for c in seen:
        np.testing.assert_allclose(c, c[0])  # one time per call, the same for the batch
    grid = np.linspace(t_max, 0.0, steps + 1)
    h = grid[0] - grid[1]
    if name == "theta_trapezoidal":  # t and rho = t - h/2 per step, then the last step at t
        want = np.concatenate([[g, g - 0.5 * h] for g in grid[:-2]] + [grid[-2:-1]])
    elif name == "predictor_corrector":  # predictor at t, corrector at s
        want = np.concatenate([[g, g - h] for g in grid[:-2]] + [grid[-2:-1]])
    else:
        want = grid[:-1]
    np.testing.assert_allclose(calls, want, atol=1e-6)
