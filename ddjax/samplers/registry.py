"""The one sampler registry: every public sampler, with its kind and call shape.

Kinds:

* ``"common"``: ``name(key, denoiser, process, shape, *, steps, **options)`` runs with
  the common options alone (:data:`ddjax.samplers.driver.COMMON_OPTIONS`) plus the step
  class's own defaults; the CLI's ``sample.sampler`` and the exact-law tool read these.
* ``"required"``: the same call shape, plus options the sampler cannot run without
  (``Entry.required``: a potential, value function, sequence model or measurement).
* ``"own"``: a call shape of its own (``Entry.call``): a planner argument, a block or
  causal model, a likelihood with rounds of its own.

``ddjax.samplers.__all__``, its views (``STEPS``, ``SAMPLERS``, ``STEP_CLASSES``,
``STEERING``, ``MASKING_ONLY``, ``NETWORK_CALLS``) and the tests' coverage sets are read
from :data:`REGISTRY`, so a new sampler is one file plus one entry here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType

from ddjax.samplers import driver
from ddjax.samplers.ancestral import ancestral
from ddjax.samplers.aps import aps
from ddjax.samplers.autoregressive import autoregressive
from ddjax.samplers.block_diffusion import block_diffusion
from ddjax.samplers.confidence import confidence
from ddjax.samplers.ddpd import DDPD, ddpd
from ddjax.samplers.edlm import edlm
from ddjax.samplers.euler import euler
from ddjax.samplers.first_hitting import first_hitting
from ddjax.samplers.flow import dfm_euler
from ddjax.samplers.pc_sampler import pc_sampler
from ddjax.samplers.remdm import remdm
from ddjax.samplers.smc import smc
from ddjax.samplers.split_gibbs import split_gibbs
from ddjax.samplers.svdd import svdd
from ddjax.samplers.tau_leaping import predictor_corrector, tau_leaping
from ddjax.samplers.theta import theta_rk2, theta_trapezoidal
from ddjax.samplers.tweedie import tweedie

__all__ = ["Entry", "KINDS", "REGISTRY", "entries", "step_classes"]

KINDS = ("common", "required", "own")

_COMMON_CALL = "name(key, denoiser, process, shape, *, steps, **options)"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One public sampler.

    Attributes:
      name: the public name (``ddjax.samplers.<name>``).
      function: the public function.
      kind: one of :data:`KINDS`.
      step_class: its :class:`ddjax.samplers.driver.Step` on the one driver, or None
        (block_diffusion runs a step per block; autoregressive and split_gibbs loop
        themselves).
      required: the options it cannot run without (kind "required").
      call: its call shape, in words.
    """

    name: str
    function: Callable
    kind: str
    step_class: type[driver.Step] | None = None
    required: tuple[str, ...] = ()
    call: str = _COMMON_CALL


def _step(function: Callable, *also_required: str) -> Entry:
    """The entry of a driver sampler (``driver.public(StepClass)``): its required options
    are the step's fields without a default, and ``also_required`` (fields whose default
    None only stands for "not given")."""
    cls = function.step_class
    fields = dataclasses.fields(cls)
    required = (
        *(f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory
          is dataclasses.MISSING),
        *also_required,
    )  # fmt: skip
    return Entry(cls.name, function, "required" if required else "common", cls, required)


_ENTRIES = (
    _step(ancestral),
    _step(euler),
    _step(tau_leaping),
    _step(tweedie),
    _step(predictor_corrector),
    _step(theta_trapezoidal),
    _step(theta_rk2),
    _step(dfm_euler),
    _step(first_hitting),
    _step(remdm),
    _step(confidence),
    _step(pc_sampler),
    _step(smc),
    _step(svdd),
    _step(edlm),
    _step(aps, "measurement_loss", "codebook"),
    Entry(
        "ddpd", ddpd, "own", DDPD,
        call="ddpd(key, denoiser, planner, process, shape, *, steps, **common options)",
    ),
    Entry(
        "split_gibbs", split_gibbs, "own",
        required=("log_likelihood", "num_rounds"),
        call="split_gibbs(key, denoiser, process, shape, *, log_likelihood, num_rounds, ...)",
    ),
    Entry(
        "block_diffusion", block_diffusion, "own",
        call="block_diffusion(key, block_denoiser, process, shape, *, block_size, steps, "
        "inner='ancestral', **inner options)",
    ),
    Entry(
        "autoregressive", autoregressive, "own",
        call="autoregressive(key, model, shape, *, temperature, prompt, cache, eos_id)",
    ),
)  # fmt: skip

REGISTRY: Mapping[str, Entry] = MappingProxyType({e.name: e for e in _ENTRIES})


def entries(*kinds: str) -> tuple[Entry, ...]:
    """The registry's entries of the given kinds (all with none), in registry order."""
    bad = sorted(set(kinds) - set(KINDS))
    if bad:
        raise ValueError(f"unknown sampler kinds {bad}; known: {list(KINDS)}")
    return tuple(e for e in _ENTRIES if not kinds or e.kind in kinds)


def step_classes(*kinds: str) -> tuple[type[driver.Step], ...]:
    """The step classes of the entries of the given kinds (those that have one)."""
    return tuple(e.step_class for e in entries(*kinds) if e.step_class is not None)
