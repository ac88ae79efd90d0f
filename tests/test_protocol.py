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
from ddjax.testing.exact_law import ExactLaw, tabulated

K, L = 3, 2
N_SAMPLES = 40_000
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dd.pytree_dataclass
class PositionMasking:
    """Masking where position i keeps its token with alpha_i(t) = 1 - (1 - eps) t**p_i."""

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
        return 1.0 - (1.0 - self.eps) * t[..., None] ** self.powers

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

    def posterior_probs(self, x_t, x0_probs, s, t, *, plugin: bool = False) -> jax.Array:
        s, t = sequence_times(s, x_t), sequence_times(t, x_t)
        a_s, a_t = self.alpha(s)[..., None], self.alpha(t)[..., None]
        masked = (x_t == self.mask_id)[..., None]
        data = jnp.where(masked, (a_s - a_t) / (1.0 - a_t) * x0_probs, onehot(x_t, self.vocab_size))
        stay = jnp.where(masked, (1.0 - a_s) / (1.0 - a_t), 0.0)
        return jnp.concatenate([data, stay], axis=-1)

    def reverse_rates(self, x_t, x0_probs, t) -> jax.Array:
        t = sequence_times(t, x_t)
        a = self.alpha(t)
        neg_da = (1.0 - self.eps) * self.powers * t[..., None] ** (self.powers - 1.0)
        rate = (neg_da / (1.0 - a))[..., None]
        data = jnp.where((x_t == self.mask_id)[..., None], rate * x0_probs, 0.0)
        return jnp.pad(data, [(0, 0)] * (data.ndim - 1) + [(0, 1)])


CUSTOM = PositionMasking(powers=jnp.array([1.0, 2.0]), vocab_size=K)
CUSTOM_SAMPLERS = ("ancestral", "euler", "tau_leaping", "theta_trapezoidal")


@functools.cache
def target() -> testing.ExactTarget:
    return testing.random_target(jax.random.PRNGKey(0), K, L, temperature=0.5)


def test_builtin_processes_satisfy_the_protocol() -> None:
    for process in (dd.processes.Masking(K), dd.processes.Uniform(K), CUSTOM):
        assert isinstance(process, dd.processes.Process)
    assert isinstance(dd.processes.D3PM.uniform(K, 4), dd.processes.Process)


def test_oracle_marginal_of_the_custom_process_is_its_forward_law() -> None:
    """The oracle reads per-position marginals: check one against a direct count."""
    x0 = jnp.zeros((20_000, L), jnp.int32)
    t = jnp.full((20_000,), 0.5)
    x_t = np.asarray(CUSTOM.sample(jax.random.key(0), x0, t))
    masked = (x_t == K).mean(0)
    np.testing.assert_allclose(masked, 1 - np.asarray(CUSTOM.alpha(jnp.float32(0.5))), atol=0.01)


@pytest.mark.parametrize("name", CUSTOM_SAMPLERS)
def test_custom_process_samples_its_exact_law(name: str) -> None:
    """Sampled at 4 steps = the exact law of 4 steps; that law reaches the target."""
    tgt = target()
    law = ExactLaw(name, CUSTOM, tgt)
    exact4 = law(4)
    den = tabulated(tgt, CUSTOM)
    fn = dd.samplers.SAMPLERS[name]
    draw = fast_jit(jax.vmap(lambda k: fn(k, den, CUSTOM, (1000, L), steps=4)))
    x = np.asarray(draw(jax.random.split(jax.random.key(1), N_SAMPLES // 1000))).reshape(-1, L)
    assert x.max() < K
    assert testing.total_variation(x, exact4, K) < testing.tv_floor(exact4, N_SAMPLES) + 0.005
    assert law.tv(128) < 0.01
    assert law.tv(2) > 3 * law.tv(128)


@pytest.mark.parametrize("name", ["tweedie", "first_hitting", "predictor_corrector"])
def test_missing_capability_is_a_type_error_naming_it(name: str) -> None:
    den = tabulated(target(), CUSTOM)
    missing = {
        "tweedie": "score",
        "first_hitting": "schedule",
        "predictor_corrector": "forward_rates",
    }
    with pytest.raises(TypeError, match=missing[name]):
        dd.samplers.SAMPLERS[name](jax.random.key(0), den, CUSTOM, (2, L), steps=4)


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
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", SHARD_SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = dd.samplers.SAMPLERS
    expected = len(names) + sum(n not in dd.samplers.MASKING_ONLY for n in names)
    assert proc.stdout.count(" ok ") == expected, proc.stdout
