"""The exact output law of a sampler with an oracle's exact denoiser.

For samplers whose step is one law per position (every CTMC sampler, dfm_euler,
ancestral), the step object's ``transition_matrix`` applied to every state gives the
step's transition matrix over all N**L states; multiplying them over the grid gives the
sampler's output law with no Monte Carlo noise. Used to measure convergence orders
exactly (tests, experiments/tables/exact_toy.py) and to check that a sampler's draws
follow its law. The step laws themselves are pinned by the one-step tests, each
against a dense float64 computation written from the definition. Small targets only:
the matrices are [N**L, N**L], and the two-stage (theta) methods enumerate pairs.

    law = ExactLaw("theta_trapezoidal", process, target)
    law.tv(16)   # total variation to the target after 16 steps
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ddjax.samplers import STEP_CLASSES, driver
from ddjax.testing import tv

__all__ = ["ExactLaw", "NAMES", "all_states", "tabulated", "step_matrix"]

# XLA's CPU optimisations cost seconds per law and buy nothing at these sizes.
_fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

# Samplers with an exact law here (those whose step is one law per position).
NAMES: tuple[str, ...] = tuple(
    n for n, c in STEP_CLASSES.items() if issubclass(c, driver.PositionLaw)
)


def all_states(num_states: int, length: int) -> jax.Array:
    """Every sequence of states, row-major: int32[num_states**length, length]."""
    seqs = itertools.product(range(num_states), repeat=length)
    return jnp.asarray(np.array(list(seqs)), jnp.int32)


def tabulated(target: Any, process: Any) -> Callable:
    """The target's exact denoiser, evaluated once per call on every state, then gathered.

    Exact whenever the batch shares one time, as on every sampler's grid.
    """
    exact = target.denoiser(process)
    n = process.num_states
    states = all_states(n, target.length)
    place = n ** jnp.arange(target.length - 1, -1, -1)

    def denoiser(x: jax.Array, t: jax.Array) -> jax.Array:
        table = exact(states, jnp.broadcast_to(t[0], (states.shape[0],)))
        return table[(x * place).sum(-1)]

    return denoiser


def step_matrix(
    name: str, process: Any, denoise: Callable, length: int, **options: Any
) -> Callable:
    """(t, s, last) -> the exact transition matrix [S, S] of one step of sampler ``name``.

    ``options`` are the sampler's own and the common x0 transforms (temperature, top_k,
    top_p).
    """
    if name not in NAMES:
        raise ValueError(f"no exact law for sampler {name!r}; known: {NAMES}")
    common = {k: options.pop(k) for k in ("temperature", "top_k", "top_p") if k in options}
    step = STEP_CLASSES[name](**options)
    states = all_states(process.num_states, length)
    ctx = driver.context(process, denoise, (states.shape[0], length), None, **common)
    driver.check_denoiser(step, ctx)

    def matrix(t: jax.Array, s: jax.Array, last: bool = False) -> jax.Array:
        num = states.shape[0]
        tv, sv = jnp.full((num,), t, jnp.float32), jnp.full((num,), s, jnp.float32)
        return step.transition_matrix(ctx, states, tv, sv, last)

    return matrix


class ExactLaw:
    """The exact output law of sampler ``name`` with ``target``'s exact denoiser.

    The grid loop runs in one compiled ``fori_loop`` with the step count traced, so a
    law costs one compilation whatever the step counts asked for. ``options`` are the
    sampler's own (multi_jump, theta, n_corrector, corrector_step_size, jump, corrector,
    plugin) and the x0 transforms; ``t_max`` is the start time of the grid.
    """

    def __init__(
        self, name: str, process: Any, target: Any, *, t_max: float = 1.0, **options: Any
    ) -> None:
        denoise = tabulated(target, process)
        length = target.length
        step = step_matrix(name, process, denoise, length, **options)
        states = all_states(process.num_states, length)
        prior = jnp.prod(process.prior_probs()[states], axis=-1)

        @_fast_jit
        def law(steps: jax.Array) -> jax.Array:
            h = t_max / steps

            def body(i: jax.Array, law: jax.Array) -> jax.Array:
                return law @ step(t_max - i * h, t_max - (i + 1) * h)

            out = jax.lax.fori_loop(0, steps - 1, body, prior)
            return out @ step(h, jnp.float32(0.0), True)

        self._law = law
        self.data_index = np.ravel_multi_index(
            tuple(np.asarray(target.sequences).T), (process.num_states,) * length
        )
        self.target = target

    def __call__(self, steps: int) -> np.ndarray:
        """The law over the K**L data sequences (the target's order), float64."""
        law = np.asarray(self._law(jnp.int32(steps)), np.float64)
        data = law[self.data_index]
        if abs(data.sum() - 1.0) > 1e-4:
            raise AssertionError(f"the law left mass {1 - data.sum():.2e} on non-data states")
        return data / data.sum()

    def tv(self, steps: int) -> float:
        """Total variation between the law after ``steps`` steps and the target."""
        return tv(self(steps), self.target.probs)
