"""The exact output law of a CTMC sampler (or ancestral) with an oracle denoiser.

Each step's per-position law (the same ``_*_probs`` functions the samplers draw from),
applied to every state, gives the step's transition matrix over all N**L states;
multiplying them gives the sampler's output law with no Monte Carlo noise. Used to
measure convergence orders exactly (tests, experiments/tables/exact_toy.py) and to check
that a sampler's draws follow its law. Small targets only: the matrices are
[N**L, N**L], and the two-stage (theta) methods enumerate pairs of states.

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

from ddjax import testing
from ddjax.processes import Process
from ddjax.samplers import ctmc, flow

# XLA's CPU optimisations cost seconds per law and buy nothing at these sizes.
_fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

NAMES = (
    "ancestral",
    "euler",
    "tau_leaping",
    "tweedie",
    "predictor_corrector",
    "theta_trapezoidal",
    "theta_rk2",
    "dfm_euler",
)


def all_states(num_states: int, length: int) -> jax.Array:
    """Every sequence of states, row-major: int32[num_states**length, length]."""
    seqs = itertools.product(range(num_states), repeat=length)
    return jnp.asarray(np.array(list(seqs)), jnp.int32)


def tabulated(target: Any, process: Process) -> Callable:
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


def _product_law(probs: jax.Array, states: jax.Array) -> jax.Array:
    """T[a, b] = prod_i probs[a, i, states[b, i]] for per-position laws probs [A, L, N]."""
    idx = jnp.broadcast_to(states[None, :, :, None], (probs.shape[0], *states.shape, 1))
    return jnp.take_along_axis(probs[:, None], idx, axis=-1)[..., 0].prod(-1)


def step_matrix(name: str, process: Process, denoise: Callable, length: int, **options) -> Callable:
    """(t, s) -> the exact transition matrix [S, S] of one step of sampler ``name``."""
    if name not in (*NAMES, "final"):
        raise ValueError(f"no exact law for sampler {name!r}; known: {NAMES}")
    states = all_states(process.num_states, length)
    num = states.shape[0]
    theta = options.get("theta", 0.5)

    def matrix(t: jax.Array, s: jax.Array) -> jax.Array:
        tv, sv = jnp.full((num,), t), jnp.full((num,), s)
        if name in ("final", "ancestral"):
            return _product_law(ctmc.final_probs(process, denoise, states, tv, sv), states)
        if name == "euler":
            return _product_law(ctmc._euler_probs(process, denoise, states, tv, sv), states)
        if name == "tweedie":
            return _product_law(ctmc._tweedie_probs(process, denoise, states, tv, sv), states)
        if name == "dfm_euler":
            probs = flow._dfm_probs(
                process, denoise, states, tv, sv,
                options.get("jump", "exact"), options.get("corrector", 0.0),
            )  # fmt: skip
            return _product_law(probs, states)
        if name in ("tau_leaping", "predictor_corrector"):
            jumps = options.get("multi_jump", "reject")
            out = _product_law(ctmc._tau_probs(process, denoise, states, tv, sv, jumps), states)
            if name == "predictor_corrector":
                size = options.get("corrector_step_size")
                dt = tv - sv if size is None else jnp.full_like(tv, size)
                probs = ctmc._corrector_probs(process, denoise, states, sv, dt, jumps)
                corr = _product_law(probs, states)
                for _ in range(options.get("n_corrector", 1)):
                    out = out @ corr
            return out
        # two-stage methods: sum over the intermediate state x*
        jumps = options.get("multi_jump", "first")
        probs1, rates1 = ctmc._theta_stage1(process, denoise, states, tv, sv, theta, jumps)
        first = _product_law(probs1, states)  # [x, x*]
        x = jnp.repeat(states, num, axis=0)
        x_star = jnp.tile(states, (num, 1))
        pair_t, pair_s = jnp.full((num * num,), t), jnp.full((num * num,), s)
        probs2 = ctmc._theta_stage2(
            process, denoise, x, x_star, jnp.repeat(rates1, num, axis=0), pair_t, pair_s,
            theta, jumps, name.removeprefix("theta_"),
        )  # fmt: skip
        second = _product_law(probs2, states).reshape(num, num, num)  # [x, x*, new]
        return jnp.einsum("ac,acb->ab", first, second)

    return matrix


class ExactLaw:
    """The exact output law of sampler ``name`` with ``target``'s exact denoiser.

    The grid loop runs in one compiled ``fori_loop`` with the step count traced, so a
    law costs one compilation whatever the step counts asked for. ``options`` are the
    sampler's own (multi_jump, theta, n_corrector, corrector_step_size, jump, corrector).
    """

    def __init__(self, name: str, process: Process, target: Any, **options) -> None:
        denoise = tabulated(target, process)
        length = target.length
        step = step_matrix(name, process, denoise, length, **options)
        final = step_matrix("final", process, denoise, length)
        states = all_states(process.num_states, length)
        prior = jnp.prod(process.prior_probs()[states], axis=-1)

        @_fast_jit
        def law(steps: jax.Array) -> jax.Array:
            h = 1.0 / steps

            def body(i: jax.Array, law: jax.Array) -> jax.Array:
                return law @ step(1.0 - i * h, 1.0 - (i + 1) * h)

            return jax.lax.fori_loop(0, steps - 1, body, prior) @ final(h, jnp.float32(0.0))

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
        return testing.tv(self(steps), self.target.probs)
