"""Samplers: pure functions ``name(key, denoiser, process, shape, *, steps, ...) -> int32[shape]``."""

from ddjax.samplers.categorical import categorical, gumbel

__all__ = ["categorical", "gumbel"]
