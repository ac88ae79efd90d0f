"""The one sampler registry: every public sampler in it, with a kind and a call shape
that hold, and the package's lists read from it."""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import pytest

import ddjax as dd
from ddjax import testing
from ddjax.samplers import REGISTRY, driver, entries

K, L = 3, 2


def test_every_public_sampler_is_registered_once():
    """Every public function of ddjax.samplers that samples (takes a key and a shape) is
    an entry, under its own name, and __all__ exports each entry and its step class."""
    public = {
        name for name in dd.samplers.__all__
        if inspect.isfunction(getattr(dd.samplers, name))
        and getattr(dd.samplers, name).__module__.startswith("ddjax.samplers")
        and {"key", "shape"} <= set(inspect.signature(getattr(dd.samplers, name)).parameters)
    }  # fmt: skip
    assert public == set(REGISTRY), sorted(public ^ set(REGISTRY))
    for name, entry in REGISTRY.items():
        assert entry.name == name and getattr(dd.samplers, name) is entry.function
        assert entry.kind in dd.samplers.KINDS
        if entry.step_class is not None:
            assert entry.step_class.name == name
            assert getattr(dd.samplers, entry.step_class.__name__) is entry.step_class
    # the five samplers that used to be in no registry
    assert {"aps", "ddpd", "split_gibbs", "block_diffusion", "autoregressive"} <= set(REGISTRY)


def test_the_views_are_read_from_the_registry():
    assert dd.samplers.SAMPLERS == {e.name: e.function for e in entries("common")}
    assert dd.samplers.STEPS == tuple(e.step_class for e in entries("common"))
    assert {c.name for c in dd.samplers.STEERING} == {e.name for e in entries("required")}
    assert set(dd.samplers.STEP_CLASSES) == set(dd.samplers.SAMPLERS)
    with pytest.raises(ValueError, match="unknown sampler kinds"):
        entries("steering")


def test_public_leaves_the_step_class_unchanged():
    before = dict(vars(dd.samplers.Euler))
    fn = driver.public(dd.samplers.Euler)
    assert dict(vars(dd.samplers.Euler)) == before and fn.step_class is dd.samplers.Euler


def _inputs():
    process = dd.processes.Masking(K)
    target = testing.random_target(jax.random.key(0), K, L)
    return process, target.denoiser(process)


@pytest.mark.parametrize("name", [e.name for e in entries("common")])
def test_common_entries_run_with_the_common_options_alone(name):
    process, den = _inputs()
    x = REGISTRY[name].function(jax.random.key(1), den, process, (4, L), steps=L, temperature=0.9)
    assert x.shape == (4, L) and int(x.max()) < K and int(x.min()) >= 0


@pytest.mark.parametrize("name", [e.name for e in entries("required")])
def test_required_entries_name_each_missing_option(name):
    """Leaving out any one required option is an error naming it; with all of them the
    sampler runs."""
    process, den = _inputs()
    entry = REGISTRY[name]
    given = {
        "log_potential": lambda x, t: jnp.zeros(x.shape[:1]),
        "num_particles": 2,
        "value_fn": lambda x, t: jnp.zeros(x.shape[:1]),
        "num_candidates": 2,
        "alpha": 1.0,
        "log_joint": lambda x: jnp.zeros(x.shape[:1]),
        "measurement_loss": lambda v: v.sum(-1),
        "codebook": jnp.arange(K, dtype=jnp.float32),
    }
    options = {k: given[k] for k in entry.required}
    assert entry.required and set(entry.required) <= {
        f.name for f in dataclasses.fields(entry.step_class)
    }
    for left_out in entry.required:
        rest = {k: v for k, v in options.items() if k != left_out}
        with pytest.raises((TypeError, ValueError), match=left_out):
            entry.function(jax.random.key(1), den, process, (4, L), steps=L, **rest)
    x = entry.function(jax.random.key(1), den, process, (4, L), steps=L, **options)
    assert x.shape == (4, L)


@pytest.mark.parametrize("name", [e.name for e in entries("own")])
def test_own_entries_state_their_call_shape(name):
    """The call shape in words names the function, its positional arguments in order and
    only arguments it has."""
    entry = REGISTRY[name]
    assert entry.call.startswith(f"{name}(")
    params = inspect.signature(entry.function).parameters
    inner = entry.call[len(name) + 1 : entry.call.rindex(")")]
    named = [w.split("=")[0].strip() for w in inner.split(",")]
    named = [w for w in named if w.isidentifier()]
    assert named and set(named) <= set(params), sorted(set(named) - set(params))
    positional = [
        p.name for p in params.values()
        if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty
    ]  # fmt: skip
    assert named[: len(positional)] == positional
