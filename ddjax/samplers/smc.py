"""Sequential Monte Carlo with twisting potentials (twisted SMC / Feynman-Kac correctors).

Target: p(x) exp(r(x)) / Z for a log reward r. Each of the B output rows is its own
system of N = ``num_particles`` particles, run together as B * N rows of the driver's
loop (one denoiser call per step on B * N rows). A step from t to s:

1. propose x_s ~ the ancestral step (:class:`ddjax.samplers.Ancestral`) from x_t;
2. reweight: log w += G_s(x_s) - G_t(x_t), with G = ``log_potential`` (G_0 = r); the
   weights start at G_{t_max}(x_{t_max});
3. when the effective sample size ESS = (sum w)^2 / sum w^2 falls below
   ``ess_threshold * N``, resample the system (systematic resampling, inside the
   compiled loop: a per-system ``where``, no host sync) and reset its weights.

After the last step (onto t = 0) one particle per system is drawn by its final weights.
The final weight of a path telescopes to exp(r(x0) - G_{t_max}(x_{t_max})) times
exp(G_{t_max}), so whatever the twist, as N grows the output law tends to
q(x) exp(r(x)) / Z_q, q the sampler's own (ancestral) output law, which is p when the
denoiser is exact and the steps are many. Good twists (the soft value
log E[exp r(x0) | x_t], :func:`ddjax.testing.steering.soft_value`) keep the weights even;
``log_potential = lambda x, t: jnp.where(t == 0, r(x), 0.0)`` is plain importance
sampling with resampling on the reward only.

The product over resampling epochs of the mean weight is an unbiased estimate of
Z_q = E_q[exp r(x0)]; its log is ``info.log_normalizer``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from ddjax._struct import check, pytree_dataclass
from ddjax.samplers import driver, weights
from ddjax.samplers.ancestral import Ancestral

__all__ = ["Smc", "SmcInfo", "smc"]

_PROPOSAL = Ancestral()


@pytree_dataclass
class SmcInfo:
    """What ``smc(..., return_info=True)`` returns after the samples (and trajectory).

    Attributes:
      log_normalizer: float32[B], log of the unbiased estimate of E_q[exp r(x0)] (NaN
        where a NaN / +inf weight occurred, -inf where every weight vanished).
      ess: float32[steps, B], the effective sample size after each step's reweighting
        (before any resampling), in [1, num_particles].
      resampled: bool[steps, B], whether the system was resampled after that step
        (never after the last step, where one particle is drawn instead).
    """

    log_normalizer: Array
    ess: Array
    resampled: Array


@dataclasses.dataclass(frozen=True)
class Smc(driver.Step):
    """Twisted SMC: ancestral proposals, weights exp(G_s(x_s) - G_t(x_t)), systematic
    resampling when ESS < ess_threshold * num_particles (module docstring).

    Options:
      log_potential: ``(x int32[N, L], t float32[N]) -> float32[N]``, the log twist G_t
        (at t = 0 the log reward r); called on the B * num_particles rows once per step
        and once at the start. Another shape is a ValueError.
      num_particles: particles per output row, >= 1 (1: the ancestral sampler).
      ess_threshold: in [0, 1]; 0 never resamples, 1 resamples whenever the weights
        are uneven.
      return_info: also return an :class:`SmcInfo` (log normaliser estimate, ESS trace).
      particle_batches: run each step's proposal (the denoiser call) on the particles in
        this many sequential batches of B * N / particle_batches rows (``lax.map``), for
        a memory or cache bound; must divide num_particles. Same law.

    With ``return_trajectory`` the trajectory holds every particle, int32[steps, B * N, L]
    (row b * N + j is particle j of system b, after that step's resampling). NaN policy:
    :mod:`ddjax.samplers.weights` (``debug=True`` names a NaN / +inf log_potential).
    """

    log_potential: Callable[[Array, Array], Array]
    num_particles: int
    ess_threshold: float = 0.5
    return_info: bool = False
    particle_batches: int = 1

    name: ClassVar[str] = "smc"
    needs: ClassVar[tuple[str, ...]] = ()
    calls_doc: ClassVar[str] = "1 per step on B * num_particles rows (plus log_potential's)"

    def validate(self, process: Any, shape: tuple[int, int], steps: int | None) -> None:
        check(callable(self.log_potential), "log_potential must be a function (x, t) -> [N]")
        check(
            isinstance(self.num_particles, int)
            and not isinstance(self.num_particles, bool)
            and self.num_particles >= 1,
            f"num_particles must be a positive int, got {self.num_particles!r}",
        )
        driver.check_number("ess_threshold", self.ess_threshold, 0.0, 1.0)
        check(isinstance(self.return_info, bool), "return_info must be True or False")
        parts = self.particle_batches
        check(
            isinstance(parts, int) and not isinstance(parts, bool) and parts >= 1
            and self.num_particles % parts == 0,
            f"particle_batches must be a positive int dividing num_particles="
            f"{self.num_particles}, got {parts!r}",
        )  # fmt: skip
        _PROPOSAL.validate(process, shape, steps)

    def particles(self) -> int:
        return self.num_particles

    def _potential(self, ctx: driver.Context, x: Array, t: Array) -> Array:
        g = self.log_potential(x, t)
        return weights.scores("log_potential", self.log_potential, g, x.shape[0], ctx.debug)

    def init(self, ctx: driver.Context, x: Array, grid: Array) -> Any:
        rows, n = x.shape[0], self.num_particles
        b = rows // n
        steps = grid.shape[0] - 1
        g = self._potential(ctx, x, jnp.broadcast_to(grid[0], (rows,)))
        return {
            "g": g,
            "log_w": g.reshape(b, n),
            "log_z": jnp.zeros((b,), jnp.float32),
            "ess": jnp.zeros((steps, b), jnp.float32),
            "resampled": jnp.zeros((steps, b), bool),
            "choice": jnp.zeros((b,), jnp.int32),
        }

    def step(
        self, key: Array, ctx: driver.Context, x: Array, aux: Any, at: driver.StepInfo
    ) -> tuple[Array, Any]:
        n = self.num_particles
        k_prop, k_res = jax.random.split(key)
        x_s = driver.clamp(self._propose(k_prop, ctx, x, at), ctx.fixed)
        g_s = self._potential(ctx, x_s, at.s)
        log_w = aux["log_w"] + (g_s - aux["g"]).reshape(-1, n)
        ess = weights.ess(log_w)
        epoch = jax.nn.logsumexp(log_w, axis=-1) - math.log(n)  # log mean weight
        i = at.index
        out = dict(aux, ess=aux["ess"].at[i].set(ess))
        if at.last:
            out.update(choice=weights.pick(k_res, log_w), log_z=aux["log_z"] + epoch, log_w=log_w)
            return x_s, out
        do = ess < self.ess_threshold * n
        ancestors = jnp.where(
            do[:, None], weights.systematic(k_res, log_w), jnp.arange(n, dtype=jnp.int32)
        )
        x_s, g_s = weights.select_rows((x_s, g_s), ancestors)
        out.update(
            g=g_s,
            log_w=jnp.where(do[:, None], 0.0, log_w),
            log_z=aux["log_z"] + jnp.where(do, epoch, 0.0),
            resampled=aux["resampled"].at[i].set(do),
        )
        return x_s, out

    def _propose(self, key: Array, ctx: driver.Context, x: Array, at: driver.StepInfo) -> Array:
        """The ancestral step of every particle, in ``particle_batches`` batches."""
        parts = self.particle_batches
        if parts == 1:
            return _PROPOSAL.step(key, ctx, x, None, at)[0]
        rows, length = x.shape
        b, per = rows // self.num_particles, self.num_particles // parts

        def split(a: Array) -> Array:  # [B * N, ...] -> [parts, B * per, ...]
            a = a.reshape(b, parts, per, *a.shape[1:])
            return jnp.moveaxis(a, 1, 0).reshape(parts, b * per, *a.shape[3:])

        fixed = None if ctx.fixed is None else split(ctx.fixed)[0]  # the same in every batch
        sub = dataclasses.replace(ctx, shape=(b * per, length), fixed=fixed)

        def one(args: tuple[Array, Array, Array, Array]) -> Array:
            k, xj, tj, sj = args
            return _PROPOSAL.step(k, sub, xj, None, dataclasses.replace(at, t=tj, s=sj))[0]

        keys = jax.random.split(key, parts)
        out = jax.lax.map(one, (keys, split(x), split(at.t), split(at.s)))  # [parts, B * per, L]
        return jnp.moveaxis(out.reshape(parts, b, per, length), 0, 1).reshape(rows, length)

    def finish(self, ctx: driver.Context, x: Array, aux: Any) -> tuple[Array, Any]:
        out = weights.select_rows(x, aux["choice"])
        if not self.return_info:
            return out, None
        return out, SmcInfo(aux["log_z"], aux["ess"], aux["resampled"])


smc = driver.public(Smc)
