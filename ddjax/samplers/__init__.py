"""Samplers: pure functions ``name(key, denoiser, process, shape, *, steps, **options)``.

Every sampler returns int32[B, L] (plus the trajectory with ``return_trajectory``),
compiles to one ``lax.scan`` over steps, and draws through the tail-exact
:func:`categorical`. ``NETWORK_CALLS`` states the network calls each makes.
"""

from ddjax.samplers.ancestral import ancestral
from ddjax.samplers.categorical import categorical, gumbel
from ddjax.samplers.ctmc import (
    euler,
    predictor_corrector,
    tau_leaping,
    theta_rk2,
    theta_trapezoidal,
    tweedie,
)
from ddjax.samplers.flow import dfm_euler
from ddjax.samplers.masked import confidence, first_hitting, remdm

# Samplers of the masking process only (they raise TypeError for other processes).
MASKING_ONLY: tuple[str, ...] = ("first_hitting", "remdm", "confidence")

# Network calls per step; first_hitting makes one call per unmasked token (L in all,
# or L / k with k tokens per call) whatever ``steps`` is.
NETWORK_CALLS: dict[str, str] = {
    "ancestral": "1 per step (fewer with time_independent=True: none when nothing changed)",
    "euler": "1 per step",
    "tau_leaping": "1 per step",
    "tweedie": "1 per step",
    "predictor_corrector": "1 + n_corrector per step, 1 for the final denoising step",
    "theta_trapezoidal": "2 per step, 1 for the final denoising step",
    "theta_rk2": "2 per step, 1 for the final denoising step",
    "dfm_euler": "1 per step",
    "first_hitting": "L / tokens_per_call in all (steps ignored)",
    "remdm": "1 per step",
    "confidence": "1 per step",
}


def network_calls(name: str, steps: int, seq_len: int, **options: int) -> int:
    """The number of denoiser calls sampler ``name`` makes for ``steps`` and length L.

    The last step of every sampler lands on t = 0 with one denoising call.
    """
    if name == "first_hitting":
        per_call = options.get("tokens_per_call", 1)
        return -(-seq_len // per_call)
    if name == "predictor_corrector":
        return (steps - 1) * (1 + options.get("n_corrector", 1)) + 1
    if name in ("theta_trapezoidal", "theta_rk2"):
        return 2 * (steps - 1) + 1
    if name in NETWORK_CALLS:
        return steps
    raise ValueError(f"unknown sampler {name!r}; known: {sorted(NETWORK_CALLS)}")


SAMPLERS = {
    "ancestral": ancestral,
    "euler": euler,
    "tau_leaping": tau_leaping,
    "tweedie": tweedie,
    "predictor_corrector": predictor_corrector,
    "theta_trapezoidal": theta_trapezoidal,
    "theta_rk2": theta_rk2,
    "dfm_euler": dfm_euler,
    "first_hitting": first_hitting,
    "remdm": remdm,
    "confidence": confidence,
}

__all__ = [
    *SAMPLERS,
    "categorical",
    "gumbel",
    "MASKING_ONLY",
    "NETWORK_CALLS",
    "network_calls",
    "SAMPLERS",
]
