"""The process protocol and the sampler driver, from a user's side.

* A process written here with public names only (masking with a different schedule per
  position, not an Interpolating subclass) runs with ancestral, euler, tau_leaping and
  theta_trapezoidal, checked against its exact law and the oracle target.
* The denoiser contract at the boundary (class counts, renormalisation, debug mode),
  traced options, real network-call counts, and jax.shard_map.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import ddjax as dd
from ddjax import testing
from ddjax.arrays import onehot, sequence_times
from ddjax.testing import steering
from ddjax.testing.exact_law import NAMES, ExactLaw, tabulated

K, L = 3, 2
N_SAMPLES = 40_000
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dd.pytree_dataclass
class PositionMasking:
    """Masking where position i keeps its token with alpha_i(t) = 1 - (1 - eps) t**p_i.

    Written as a user would: the protocol's members and a few capabilities, public names
    only, no ddjax base class and no keyword beyond the protocol's.
    """

    powers: jax.Array
    vocab_size: int = dd.static_field()
    eps: float = dd.static_field(default=1e-3)

    @property
    def num_states(self) -> int:
        return self.vocab_size + 1

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    @property
    def is_discrete_time(self) -> bool:
        return False

    def alpha(self, t: jax.Array) -> jax.Array:  # t [...] -> [..., L]
        return 1.0 - (1.0 - self.eps) * jnp.asarray(t, jnp.float32)[..., None] ** self.powers

    def masking_rate(self, t: jax.Array) -> jax.Array:  # -alpha_i'(t) / (1 - alpha_i(t))
        t = jnp.asarray(t, jnp.float32)[..., None]
        return self.powers / jnp.maximum(t, 1e-30)

    def prior_probs(self) -> jax.Array:
        return onehot(jnp.int32(self.vocab_size), self.num_states)

    def prior_sample(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return jnp.full(shape, self.vocab_size, jnp.int32)

    def sample(self, key: jax.Array, x0: jax.Array, t: Any) -> jax.Array:
        t = sequence_times(t, x0)
        keep = jax.random.uniform(key, x0.shape) < self.alpha(t)
        return jnp.where(keep, x0, self.vocab_size)

    def marginal_probs(self, x0_probs: jax.Array, t: Any) -> jax.Array:
        t = sequence_times(t, x0_probs[..., 0])
        a = self.alpha(t)[..., None]
        data = jnp.pad(x0_probs, [(0, 0)] * (x0_probs.ndim - 1) + [(0, 1)])
        return a * data + (1.0 - a) * self.prior_probs()

    def unmask_probability(self, s: jax.Array, t: jax.Array) -> jax.Array:  # [B, L]
        a_s, a_t = self.alpha(s), self.alpha(t)
        return (a_s - a_t) / (1.0 - a_t)

    def unmask_rate(self, t: jax.Array) -> jax.Array:  # [B, L]
        return self.masking_rate(t)

    def posterior_probs(self, x_t, x0_probs, s, t) -> jax.Array:
        s, t = sequence_times(s, x_t), sequence_times(t, x_t)
        unmask = self.unmask_probability(s, t)[..., None]
        masked = (x_t == self.mask_id)[..., None]
        data = jnp.where(masked, unmask * x0_probs, onehot(x_t, self.vocab_size))
        stay = jnp.where(masked, 1.0 - unmask, 0.0)
        return jnp.concatenate([data, stay], axis=-1)

    def reverse_rates(self, x_t, x0_probs, t) -> jax.Array:
        rate = self.masking_rate(sequence_times(t, x_t))[..., None]
        data = jnp.where((x_t == self.mask_id)[..., None], rate * x0_probs, 0.0)
        return jnp.pad(data, [(0, 0)] * (data.ndim - 1) + [(0, 1)])

    def forward_rates(self, x_t, t) -> jax.Array:  # data -> mask at rate -alpha'/alpha
        t = sequence_times(t, x_t)
        a = self.alpha(t)
        rate = (1.0 - a) * self.masking_rate(t) / a
        into_mask = jnp.where(x_t == self.mask_id, 0.0, rate)[..., None]
        return into_mask * self.prior_probs()


@dd.pytree_dataclass
class ScheduledMasking(PositionMasking):
    """The same with one schedule for every position (powers all 1): the log-linear
    masking process, so it also declares ``schedule`` and its samplers run."""

    @property
    def schedule(self) -> dd.schedules.Schedule:
        return dd.schedules.LogLinear(eps=self.eps)


CUSTOM = PositionMasking(powers=jnp.array([1.0, 2.0]), vocab_size=K)
SCHEDULED = ScheduledMasking(powers=jnp.ones(L), vocab_size=K)
BUILTIN = dd.processes.Masking(K, dd.schedules.LogLinear(eps=1e-3))  # SCHEDULED's twin
ALL_STEPS = dd.samplers.step_classes("common", "required")  # every driver step the
# registry runs through the common call shape


def meets(process: Any, cls: type) -> bool:
    """Whether ``process`` declares everything step class ``cls`` needs."""
    try:
        dd.processes.require(process, ("posterior_probs", "prior_sample", *cls.needs), cls.name)
    except TypeError:
        return False
    return True


@functools.cache
def target() -> testing.ExactTarget:
    return testing.random_target(jax.random.PRNGKey(0), K, L, temperature=0.5)


def _draw(name: str, process: Any, den: Any, n: int, steps: int, **options: Any) -> np.ndarray:
    fn = dd.samplers.REGISTRY[name].function
    draw = fast_jit(jax.vmap(lambda k: fn(k, den, process, (1000, L), steps=steps, **options)))
    x = np.asarray(draw(jax.random.split(jax.random.key(1), n // 1000))).reshape(-1, L)
    assert x.min() >= 0 and x.max() < K, name
    return x


def test_builtin_processes_satisfy_the_protocol() -> None:
    for process in (dd.processes.Masking(K), dd.processes.Uniform(K), CUSTOM, SCHEDULED):
        assert isinstance(process, dd.processes.Process)
    assert isinstance(dd.processes.D3PM.uniform(K, 4), dd.processes.Process)


def test_the_protocol_only_processes_meet_some_of_every_kind() -> None:
    """The coverage below is not empty by accident: which samplers each process runs."""
    per_position = {c.name for c in ALL_STEPS if meets(CUSTOM, c)}
    assert {"ancestral", "euler", "tau_leaping", "predictor_corrector", "theta_rk2"} <= (
        per_position
    )
    assert {"smc", "svdd", "edlm"} <= per_position
    assert "first_hitting" not in per_position  # no schedule: alpha differs per position
    scheduled = {c.name for c in ALL_STEPS if meets(SCHEDULED, c)}
    assert scheduled >= per_position | {"first_hitting", "remdm", "confidence", "pc_sampler", "aps"}
    assert {c.name for c in ALL_STEPS} - scheduled == {"tweedie"}  # score, undo_transition


def test_oracle_marginal_of_the_custom_process_is_its_forward_law() -> None:
    """The oracle reads per-position marginals: check one against a direct count."""
    x0 = jnp.zeros((20_000, L), jnp.int32)
    t = jnp.full((20_000,), 0.5)
    x_t = np.asarray(CUSTOM.sample(jax.random.key(0), x0, t))
    masked = (x_t == K).mean(0)
    np.testing.assert_allclose(masked, 1 - np.asarray(CUSTOM.alpha(jnp.float32(0.5))), atol=0.01)


POSITION_LAWS = [c.name for c in dd.samplers.STEPS if c.name in NAMES and meets(CUSTOM, c)]


@pytest.mark.parametrize("name", POSITION_LAWS)
def test_protocol_only_process_samples_its_exact_law(name: str) -> None:
    """Per-position schedules: sampled at 4 steps = the exact law of 4 steps, and that
    law reaches the target as steps grow."""
    tgt = target()
    law = ExactLaw(name, CUSTOM, tgt)
    exact4 = law(4)
    x = _draw(name, CUSTOM, tabulated(tgt, CUSTOM), N_SAMPLES, 4)
    assert testing.total_variation(x, exact4, K) < testing.tv_floor(exact4, N_SAMPLES) + 0.005
    assert law.tv(128) < 0.01
    assert law.tv(2) > 3 * law.tv(128)


SCHEDULED_LAWS = [c.name for c in dd.samplers.STEPS if c.name in NAMES and meets(SCHEDULED, c)]


@pytest.mark.parametrize("name", SCHEDULED_LAWS)
def test_scheduled_protocol_process_has_its_builtin_twins_law(name: str) -> None:
    """With one schedule the protocol-only process is Masking(LogLinear): the exact
    3-step laws agree to float precision."""
    tgt = target()
    ours, builtin = ExactLaw(name, SCHEDULED, tgt)(3), ExactLaw(name, BUILTIN, tgt)(3)
    np.testing.assert_allclose(ours, builtin, atol=2e-5)


def test_scheduled_protocol_process_runs_the_schedule_samplers() -> None:
    """first_hitting at L steps is exact; remdm, confidence, pc_sampler and aps draw the
    law they draw on the built-in twin (two-sample TV within the Monte Carlo floor)."""
    tgt = target()
    n = 20_000
    x = _draw("first_hitting", SCHEDULED, tabulated(tgt, SCHEDULED), n, L)
    assert testing.total_variation(x, tgt) < 1.6 * testing.tv_floor(tgt, n) + 0.003
    codebook = jnp.arange(K, dtype=jnp.float32)
    aps = {"measurement_loss": lambda v: 0.5 * v.sum(-1), "codebook": codebook, "anchor": "random"}
    schedule_samplers = {"remdm": {"eta": 0.05}, "confidence": {}, "pc_sampler": {}, "aps": aps}
    for name, options in schedule_samplers.items():
        ours = _draw(name, SCHEDULED, tabulated(tgt, SCHEDULED), n, 2, **options)
        twin = testing.empirical_probs(
            _draw(name, BUILTIN, tabulated(tgt, BUILTIN), n, 2, **options), K
        )
        floor = testing.tv_floor(twin, n)
        assert testing.total_variation(ours, twin, K) < 2.5 * floor + 0.003, name


def test_protocol_only_process_runs_the_steering_samplers() -> None:
    """smc, svdd and edlm on per-position schedules, against their exact targets."""
    tgt = target()
    den = tabulated(tgt, CUSTOM)
    rewards = 1.5 * np.random.default_rng(0).normal(size=tgt.num_sequences)
    n, steps = 4000, 8
    q = ExactLaw("ancestral", CUSTOM, tgt)(steps)
    tilted_q = steering.tilted_law(q, rewards)
    value = steering.soft_value(tgt, CUSTOM, rewards)
    x = _draw("smc", CUSTOM, den, n, steps, log_potential=value, num_particles=16)
    assert testing.total_variation(x, tilted_q, K) < 1.6 * testing.tv_floor(tilted_q, n) + 0.005
    # svdd with the exact soft value and many candidates: the tilted law, up to the
    # proposal's own 8-step bias (exact)
    want = tgt.tilted(rewards)
    bias = testing.tv(tilted_q, want.probs)
    x = _draw("svdd", CUSTOM, den, n, steps, value_fn=value, num_candidates=32, alpha=1.0)
    assert testing.total_variation(x, want) < 2 * testing.tv_floor(want, n) + bias + 0.01
    assert testing.total_variation(x, q, K) > 0.1  # and not the untilted law
    # edlm with the exact log p: two steps reach a dependent target that ancestral misses
    tgt = testing.random_target(jax.random.key(3), K, L, temperature=0.35)
    assert ExactLaw("ancestral", CUSTOM, tgt).tv(2) > 0.1
    den = tabulated(tgt, CUSTOM)
    x = _draw("edlm", CUSTOM, den, n, 2, log_joint=steering.log_joint(tgt), num_candidates=64)
    assert testing.total_variation(x, tgt) < 1.6 * testing.tv_floor(tgt, n) + 0.01


MISSING = {
    "tweedie": ({}, "score"),
    "first_hitting": ({}, "schedule"),
    "remdm": ({}, "schedule"),
    "ancestral": ({"plugin": True}, "plugin_posterior_probs"),
}


@pytest.mark.parametrize("name", sorted(MISSING))
def test_missing_capability_is_a_type_error_naming_it(name: str) -> None:
    den = tabulated(target(), CUSTOM)
    options, missing = MISSING[name]
    with pytest.raises(TypeError, match=missing):
        dd.samplers.SAMPLERS[name](jax.random.key(0), den, CUSTOM, (2, L), steps=4, **options)


# --------------------------------------------------------------------------
# The denoiser contract at the boundary
# --------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [K - 1, K + 1, K + 5])
@pytest.mark.parametrize("name", sorted(dd.samplers.SAMPLERS))
def test_wrong_class_count_is_an_error(name: str, classes: int) -> None:
    den = lambda x, t: jnp.zeros((*x.shape, classes))
    with pytest.raises(ValueError, match=f"{classes} classes"):
        dd.samplers.SAMPLERS[name](jax.random.key(0), den, dd.processes.Masking(K), (2, L), steps=2)


@pytest.mark.parametrize("classes", [26, 28, 40])
def test_losses_reject_a_wrong_class_count(classes: int) -> None:
    process = dd.processes.Masking(27)
    x0 = jnp.zeros((2, 4), jnp.int32)
    x_t = jnp.full((2, 4), 27)
    lp = jnp.zeros((2, 4, classes))
    with pytest.raises(ValueError, match=f"{classes} classes"):
        dd.losses.masked_elbo(lp, x0, x_t, jnp.full((2,), 0.5), process)
    with pytest.raises(ValueError, match=f"{classes} classes"):
        dd.losses.uniform_elbo(lp, x0, x0, jnp.full((2,), 0.5), dd.processes.Uniform(27))


@pytest.mark.parametrize("process_name", ["masking", "uniform"])
def test_unnormalised_log_probs_are_renormalised(process_name: str) -> None:
    """Raw logits (log-probs plus an offset per row) sample exactly as the log-probs do."""
    process = {"masking": dd.processes.Masking(K), "uniform": dd.processes.Uniform(K)}[process_name]
    den = tabulated(target(), process)
    offset = lambda x, t: den(x, t) + 3.0 + jnp.arange(L, dtype=jnp.float32)[:, None]
    run = lambda d: np.asarray(dd.samplers.euler(jax.random.key(2), d, process, (4000, L), steps=4))
    assert (run(den) == run(offset)).mean() > 0.999


def test_debug_mode_reports_nan_inside_the_loop() -> None:
    process = dd.processes.Masking(K)
    den = tabulated(target(), process)
    bad = lambda x, t: jnp.where(t[:, None, None] < 0.5, jnp.nan, den(x, t))
    with pytest.raises(checkify.JaxRuntimeError, match="NaN"):
        dd.samplers.euler(jax.random.key(0), bad, process, (4, L), steps=4, debug=True)
    # under the user's jit: checkify outside, as the docstring says
    fn = checkify.checkify(
        jax.jit(lambda k: dd.samplers.euler(k, bad, process, (4, L), steps=4, debug=True))
    )
    err, _ = fn(jax.random.key(0))
    assert "NaN" in str(err.get())
    good = dd.samplers.euler(jax.random.key(0), den, process, (4, L), steps=4, debug=True)
    assert good.shape == (4, L)


BAD_OUTPUTS = {
    "nan": lambda x, t: jnp.full((*x.shape, K), jnp.nan),
    "-inf": lambda x, t: jnp.full((*x.shape, K), -jnp.inf),
}
# all -inf rows become NaN in the renormalisation, the same path after it: two samplers
BAD_SAMPLERS = {"nan": tuple(dd.samplers.SAMPLERS), "-inf": ("ancestral", "confidence")}


@pytest.mark.parametrize("process_name", ["masking", "uniform"])
def test_non_finite_output_is_visible_without_debug(process_name: str) -> None:
    """NaN / all -inf rows give the invalid id -1 (not a silent token 0) in every sampler
    the process runs, without debug mode; check_samples turns that into an error."""
    process = {"masking": dd.processes.Masking(K), "uniform": dd.processes.Uniform(K)}[process_name]
    for kind, bad in BAD_OUTPUTS.items():
        for name in BAD_SAMPLERS[kind]:
            if process_name == "uniform" and name in dd.samplers.MASKING_ONLY:
                continue
            fn = dd.samplers.SAMPLERS[name]
            run = fast_jit(lambda k, fn=fn, bad=bad: fn(k, bad, process, (4, L), steps=3))
            x = np.asarray(run(jax.random.key(0)))
            assert (x == -1).all(), (kind, name, x)
            with pytest.raises(ValueError, match="invalid id -1"):
                dd.samplers.check_samples(x)
    good = np.asarray(dd.samplers.ancestral(jax.random.key(0), tabulated(target(), process),
                                            process, (4, L), steps=3))  # fmt: skip
    np.testing.assert_array_equal(dd.samplers.check_samples(good, K), good)


def test_traced_non_positive_temperature_gives_invalid_ids() -> None:
    process = dd.processes.Masking(K)
    den = tabulated(target(), process)
    run = fast_jit(
        lambda temp: dd.samplers.ancestral(
            jax.random.key(0), den, process, (64, L), steps=4, temperature=temp
        )
    )
    assert (np.asarray(run(jnp.float32(-0.5))) == -1).all()
    assert (np.asarray(run(jnp.float32(0.0))) == -1).all()
    ok = np.asarray(run(jnp.float32(0.5)))
    assert ok.min() >= 0 and ok.max() < K


def test_categorical_marks_rows_that_are_not_distributions() -> None:
    logits = jnp.array([[0.0, -jnp.inf, 1.0], [jnp.nan, 0.0, 0.0], [-jnp.inf] * 3])
    x = np.asarray(dd.samplers.categorical(jax.random.key(0), logits))
    assert x[0] in (0, 2) and x[1] == -1 and x[2] == -1
    wide = jnp.zeros((3, 4096)).at[1, 7].set(jnp.nan).at[2].set(-jnp.inf)
    two = np.asarray(dd.random.draw_two_stage(jax.random.key(0), wide))
    assert 0 <= two[0] < 4096 and two[1] == -1 and two[2] == -1
    mode = np.asarray(dd.random.draw_tokens(jax.random.key(0), logits, argmax=True))
    np.testing.assert_array_equal(mode, [2, -1, -1])


# --------------------------------------------------------------------------
# Traced options, transforms, network calls
# --------------------------------------------------------------------------


def _entropy(x: np.ndarray) -> float:
    p = testing.empirical_probs(x, K)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_vmap_over_temperatures() -> None:
    process = dd.processes.Masking(K)
    den = tabulated(target(), process)
    temps = jnp.array([0.3, 1.0, 3.0])
    run = jax.jit(
        jax.vmap(
            lambda temp: dd.samplers.euler(
                jax.random.key(3), den, process, (8000, L), steps=8, temperature=temp
            )
        )
    )
    out = np.asarray(run(temps))
    entropies = [_entropy(x) for x in out]
    assert entropies[0] < entropies[1] < entropies[2]
    plain = np.asarray(dd.samplers.euler(jax.random.key(3), den, process, (8000, L), steps=8))
    # temperature 1 under vmap: the plain law (TV within the Monte Carlo floor)
    floor = testing.tv_floor(testing.empirical_probs(plain, K), 8000)
    assert testing.total_variation(out[1], testing.empirical_probs(plain, K), K) < 3 * floor


def test_transforms_compose_like_the_options() -> None:
    """dd.samplers.temperature / top_k as denoiser transforms = the sampler options."""
    process = dd.processes.Uniform(K)
    den = tabulated(target(), process)
    composed = dd.samplers.top_k(dd.samplers.temperature(den, 0.5), 2)
    a = dd.samplers.tau_leaping(jax.random.key(4), composed, process, (2000, L), steps=4)
    b = dd.samplers.tau_leaping(
        jax.random.key(4), den, process, (2000, L), steps=4, temperature=0.5, top_k=2
    )
    assert (np.asarray(a) == np.asarray(b)).mean() > 0.999


def test_traced_eta_and_t_max() -> None:
    process = dd.processes.Masking(K)
    den = tabulated(target(), process)
    remdm = jax.jit(
        lambda eta, t_max: dd.samplers.remdm(
            jax.random.key(5), den, process, (2000, L), steps=8, eta=eta, t_max=t_max
        )
    )
    x = np.asarray(remdm(jnp.float32(0.05), jnp.float32(0.9)))
    assert x.shape == (2000, L) and x.max() < K
    fixed = np.asarray(
        dd.samplers.remdm(jax.random.key(5), den, process, (2000, L), steps=8, eta=0.05, t_max=0.9)
    )
    floor = testing.tv_floor(testing.empirical_probs(fixed, K), 2000)
    assert testing.total_variation(x, testing.empirical_probs(fixed, K), K) < 3 * floor


CALL_OPTIONS = {"predictor_corrector": {"n_corrector": 2}, "first_hitting": {"tokens_per_call": 1}}


@pytest.mark.parametrize("name", sorted(dd.samplers.SAMPLERS))
def test_network_calls_are_counted(name: str) -> None:
    """A denoiser that counts its executions makes exactly network_calls(...) calls."""
    process = dd.processes.Masking(K)
    den = tabulated(target(), process)
    calls = []

    def counting(x: jax.Array, t: jax.Array) -> jax.Array:
        jax.debug.callback(lambda: calls.append(1))
        return den(x, t)

    steps, length = 5, 4
    options = CALL_OPTIONS.get(name, {})
    shape = (3, length)
    if name == "first_hitting":
        tgt4 = testing.random_target(jax.random.PRNGKey(1), K, length)
        den = tabulated(tgt4, process)
    else:
        tgt4 = testing.random_target(jax.random.PRNGKey(1), K, length)
        den = tgt4.denoiser(process)
    out = dd.samplers.SAMPLERS[name](
        jax.random.key(6), counting, process, shape, steps=steps, **options
    )
    jax.block_until_ready(out)
    jax.effects_barrier()
    assert len(calls) == dd.samplers.network_calls(name, steps, length, **options)


SHARD_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    import ddjax as dd
    from ddjax import testing

    assert jax.device_count() == 4
    K, L = 3, 2
    mesh = jax.make_mesh((4,), ("d",))
    target = testing.random_target(jax.random.PRNGKey(0), K, L, temperature=0.5)
    processes = [("masking", dd.processes.Masking(K)), ("uniform", dd.processes.Uniform(K))]
    for pname, process in processes:
        den = target.denoiser(process)
        for name, fn in dd.samplers.SAMPLERS.items():
            if pname == "uniform" and name in dd.samplers.MASKING_ONLY:
                continue

            def per_device(keys):
                x = fn(keys[0], den, process, (500, L), steps=8)
                return x[None]

            keys = jax.device_put(
                jax.random.split(jax.random.key(1), 4), NamedSharding(mesh, P("d"))
            )
            run = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=P("d"), out_specs=P("d")))
            x = np.asarray(run(keys)).reshape(-1, L)
            assert x.max() < K and x.min() >= 0, (name, pname)
            tv = testing.total_variation(x, target)
            assert tv < 0.1, (name, pname, tv)
            print(pname, name, "ok", round(tv, 3))
    """
)


def test_samplers_run_under_shard_map() -> None:
    """Every sampler under jax.shard_map with its default checks, 4 CPU devices."""
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env = {**os.environ, "XLA_FLAGS": flags}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", SHARD_SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = dd.samplers.SAMPLERS
    expected = len(names) + sum(n not in dd.samplers.MASKING_ONLY for n in names)
    assert proc.stdout.count(" ok ") == expected, proc.stdout
