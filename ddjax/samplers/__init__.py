"""Samplers: pure functions ``name(key, denoiser, process, shape, *, steps, **options)``.

Every sampler is a step object (:class:`ddjax.samplers.driver.Step`: its per-step law,
network calls and the process capabilities it needs) run by the one driver
(:func:`ddjax.samplers.driver.sample`), which compiles to one ``lax.scan`` over steps and
draws through the tail-exact :func:`categorical`. A new sampler is one file with its
step class and ``driver.public(...)``, registered in :data:`STEPS` below.
"""

from ddjax.random import categorical, gumbel
from ddjax.samplers import driver, transforms, weights
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

# The one registry: every sampler's step class.
STEPS: tuple[type[driver.Step], ...] = (
    Ancestral,
    Euler,
    TauLeaping,
    Tweedie,
    PredictorCorrector,
    ThetaTrapezoidal,
    ThetaRK2,
    DfmEuler,
    FirstHitting,
    Remdm,
    Confidence,
    PCSampler,
)

# Steering samplers (issue 11): step classes on the driver too, with required options
# (a potential, value or sequence model), so they are kept out of STEPS / SAMPLERS, whose
# entries run with only the common options. Each has a one-step law test
# (tests/test_step_laws.py, STEERING_COVERED).
STEERING: tuple[type[driver.Step], ...] = (Smc, Svdd, Edlm)
STEERING_SAMPLERS = {cls.name: cls.function for cls in STEERING}

STEP_CLASSES: dict[str, type[driver.Step]] = {cls.name: cls for cls in STEPS}
# name -> the public function (driver.public(cls) of each step class)
SAMPLERS = {cls.name: cls.function for cls in STEPS}

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
    "ancestral",
    "euler",
    "tau_leaping",
    "tweedie",
    "predictor_corrector",
    "theta_trapezoidal",
    "theta_rk2",
    "dfm_euler",
    "first_hitting",
    "remdm",
    "confidence",
    "block_diffusion",
    "BlockDenoiser",
    "autoregressive",
    "count_calls",
    "check_samples",
    "pc_sampler",
    *(c.__name__ for c in STEPS),
    # posterior / planned samplers with their own call shapes (not in STEPS)
    "split_gibbs",
    "aps",
    "APS",
    "ddpd",
    "DDPD",
    # steering (issue 11)
    "smc",
    "svdd",
    "svdd_value",
    "edlm",
    *(c.__name__ for c in STEERING),
    "SmcInfo",
    "SvddValue",
    "STEERING",
    "STEERING_SAMPLERS",
    "weights",
    "categorical",
    "gumbel",
    "temperature",
    "top_k",
    "top_p",
    "driver",
    "transforms",
    "MASKING_ONLY",
    "NETWORK_CALLS",
    "network_calls",
    "SAMPLERS",
    "STEPS",
    "STEP_CLASSES",
]
