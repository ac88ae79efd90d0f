"""ddjax: discrete diffusion models in JAX."""

from ddjax import (
    guidance,
    interop,
    losses,
    metrics,
    parameterizations,
    processes,
    samplers,
    schedules,
    testing,
)
from ddjax._validation import validate_probs, validate_tokens

__all__ = [
    "guidance",
    "interop",
    "losses",
    "metrics",
    "parameterizations",
    "processes",
    "samplers",
    "schedules",
    "testing",
    "validate_probs",
    "validate_tokens",
]
__version__ = "0.1.0"
