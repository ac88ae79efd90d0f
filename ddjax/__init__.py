"""ddjax: discrete diffusion models in JAX."""

from ddjax import (
    guidance,
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
