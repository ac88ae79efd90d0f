"""ddjax: discrete diffusion models in JAX."""

from ddjax import processes, samplers, schedules
from ddjax._validation import validate_probs, validate_tokens

__all__ = ["processes", "samplers", "schedules", "validate_probs", "validate_tokens"]
__version__ = "0.1.0"
