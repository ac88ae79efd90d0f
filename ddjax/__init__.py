"""ddjax: discrete diffusion models in JAX."""

from ddjax import (
    arrays,
    guidance,
    interop,
    losses,
    metrics,
    parameterizations,
    processes,
    random,
    samplers,
    schedules,
    testing,
)
from ddjax._struct import pytree_dataclass, static_field
from ddjax._validation import validate_probs, validate_tokens

__all__ = [
    "arrays",
    "guidance",
    "interop",
    "losses",
    "metrics",
    "parameterizations",
    "processes",
    "pytree_dataclass",
    "random",
    "samplers",
    "schedules",
    "static_field",
    "testing",
    "validate_probs",
    "validate_tokens",
]
__version__ = "0.1.0"
