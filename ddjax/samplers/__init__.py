"""Samplers: pure functions ``name(key, denoiser, process, shape, *, steps, **options)``.

Every sampler is a step object (:class:`ddjax.samplers.driver.Step`: its per-step law,
network calls and the process capabilities it needs) run by the one driver
(:func:`ddjax.samplers.driver.sample`), which compiles to one ``lax.scan`` over steps and
draws through the tail-exact :func:`categorical`. A new sampler is one file with its
step class and ``driver.public(...)``, plus its entry in the one registry,
:data:`REGISTRY` (:mod:`ddjax.samplers.registry`: a kind per entry); every list below
and ``__all__`` are read from it.
"""

# ruff: noqa: F401  (re-exports: __all__ is read from the registry, not listed by hand)

from ddjax.random import categorical, gumbel
from ddjax.samplers import driver, registry, transforms, weights
from ddjax.samplers.ancestral import Ancestral, ancestral
from ddjax.samplers.aps import APS, aps
from ddjax.samplers.autoregressive import autoregressive  # not a step class: causal models
from ddjax.samplers.block_diffusion import BlockDenoiser, block_diffusion  # runs a step per block
from ddjax.samplers.confidence import Confidence, confidence
from ddjax.samplers.ddpd import DDPD, ddpd
from ddjax.samplers.driver import check_samples, count_calls
from ddjax.samplers.edlm import Edlm, edlm
from ddjax.samplers.euler import Euler, euler
from ddjax.samplers.first_hitting import FirstHitting, first_hitting
from ddjax.samplers.flow import DfmEuler, dfm_euler
from ddjax.samplers.pc_sampler import PCSampler, pc_sampler
from ddjax.samplers.registry import KINDS, REGISTRY, Entry, entries, step_classes
from ddjax.samplers.remdm import Remdm, remdm
from ddjax.samplers.smc import Smc, SmcInfo, smc
from ddjax.samplers.split_gibbs import split_gibbs
from ddjax.samplers.svdd import Svdd, SvddValue, svdd, svdd_value
from ddjax.samplers.tau_leaping import (
    PredictorCorrector,
    TauLeaping,
    predictor_corrector,
    tau_leaping,
)
from ddjax.samplers.theta import ThetaRK2, ThetaTrapezoidal, theta_rk2, theta_trapezoidal
from ddjax.samplers.transforms import temperature, top_k, top_p
from ddjax.samplers.tweedie import Tweedie, tweedie

# Views of the one registry (:mod:`ddjax.samplers.registry`).
# The driver samplers that run with the common options alone.
STEPS: tuple[type[driver.Step], ...] = step_classes("common")
# The driver samplers with required options (a potential, value, sequence model or
# measurement: steering and guided posterior sampling).
STEERING: tuple[type[driver.Step], ...] = step_classes("required")
STEERING_SAMPLERS = {e.name: e.function for e in entries("required")}

STEP_CLASSES: dict[str, type[driver.Step]] = {cls.name: cls for cls in STEPS}
# name -> the public function, for the samplers that run with the common options alone
SAMPLERS = {e.name: e.function for e in entries("common")}

# Samplers of masking processes only (they raise TypeError for other processes).
MASKING_ONLY: tuple[str, ...] = tuple(c.name for c in STEPS if "mask" in c.needs)

# Network calls per step, in words (network_calls gives the numbers).
NETWORK_CALLS: dict[str, str] = {c.name: c.calls_doc for c in STEPS}


def network_calls(name: str, steps: int, seq_len: int, **options: object) -> int:
    """The number of denoiser calls sampler ``name`` makes for ``steps`` and length L.

    ``options`` are the sampler's own (e.g. n_corrector, tokens_per_call). The last step
    of every sampler lands on t = 0 with one denoising call.
    """
    if name not in STEP_CLASSES:
        raise ValueError(f"unknown sampler {name!r}; known: {sorted(STEP_CLASSES)}")
    return STEP_CLASSES[name](**options).network_calls(steps, seq_len)


__all__ = [
    *REGISTRY,  # every public sampler function
    *(c.__name__ for c in step_classes()),  # and its step class
    "BlockDenoiser",
    "SmcInfo",
    "SvddValue",
    "svdd_value",
    "count_calls",
    "check_samples",
    "categorical",
    "gumbel",
    "temperature",
    "top_k",
    "top_p",
    "driver",
    "transforms",
    "weights",
    "registry",
    "Entry",
    "KINDS",
    "REGISTRY",
    "entries",
    "step_classes",
    "STEPS",
    "STEERING",
    "STEERING_SAMPLERS",
    "STEP_CLASSES",
    "SAMPLERS",
    "MASKING_ONLY",
    "NETWORK_CALLS",
    "network_calls",
]
