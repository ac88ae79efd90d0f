"""The one sampling driver, and the step protocol every sampler implements.

A sampler is a :class:`Step`: a frozen dataclass of its own options with

* ``name``, ``needs`` (the process capabilities it uses, :data:`ddjax.processes.CAPABILITIES`
  plus ``"continuous_time"`` / ``"mask"``), ``calls_doc`` (its network calls, in words);
* ``network_calls(steps, length)`` and ``iterations(steps, length)`` (loop length);
* ``init(ctx, x, grid)`` (extra loop state, default None) and
  ``step(key, ctx, x, aux, at) -> (x, aux)``, one draw from ``at.t`` to ``at.s`` < t,
  with ``at`` the driver's :class:`StepInfo` (the step's index, its times, whether it is
  the last, the whole grid): no step keeps its own counter or recomputes the grid;
* ``uses_own_posterior`` (class flag): the step can use a denoiser's own reverse step
  (:class:`ddjax.samplers.transforms.OwnPosterior`, e.g. ``guidance.cfg(mode=
  "posterior")``), found through transforms; any other step refuses such a denoiser;
* optionally ``particles()`` (loop rows per output row, for particle methods: the loop
  runs on B * P rows) and ``finish(ctx, x, aux) -> (x, info)`` after the last step
  (default: the loop state, no info);
* for samplers whose step is one law per position, ``law(ctx, x, t, s)`` (the
  per-position law float32[B, L, N]) and ``transition_matrix``, which the exact-law
  tool (:mod:`ddjax.testing.exact_law`) multiplies over the grid.

:func:`sample` does the rest once for all of them: checks (shape, steps, the options
every sampler shares, the process's capabilities), the denoiser contract and its
transforms, the time grid, the prior draw, ``fixed`` tokens, one ``lax.scan`` whose
body is traced once (so the program does not grow with ``steps``), a separately traced
last step that lands on t = 0, the trajectory, ``shard_map`` varying-axis typing and
the ``checkify`` debug mode. :func:`public` turns a step class into the public
function ``name(key, denoiser, process, shape, *, steps, **options)``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.experimental import checkify

from ddjax._struct import check, concrete
from ddjax._validation import validate_tokens
from ddjax.processes import require
from ddjax.random import draw_from_probs
from ddjax.samplers import transforms

__all__ = [
    "Context",
    "StepInfo",
    "Step",
    "run",
    "check_denoiser",
    "PositionLaw",
    "sample",
    "context",
    "public",
    "time_grid",
    "clamp",
    "product_law",
    "check_number",
    "COMMON_OPTIONS",
    "auto_capacity",
    "max_decoded",
    "count_calls",
    "check_samples",
]

# The options every sampler takes, with their defaults.
COMMON_OPTIONS: dict[str, Any] = {
    "temperature": 1.0,
    "top_k": None,
    "top_p": None,
    "fixed": None,
    "final_step": "sample",
    "return_trajectory": False,
    "t_max": 1.0,
    "debug": False,
}

_COMMON_DOC = """
    Common options (every sampler):
      key: PRNG key. denoiser: ``(x_t int32[B, L], t float32[B]) -> log p(x0 | x_t)``
        float32[B, L, K] over the K data tokens (int32[B] times for D3PM); rows that do
        not normalise are renormalised; any other shape is a ValueError.
      process: the forward process (:class:`ddjax.processes.Process`); a missing
        capability is a TypeError naming it. shape: (B, L).
      steps: grid intervals from t_max to 0; the last is the denoising step onto t = 0.
      temperature, top_k, top_p: x0 transforms (:mod:`ddjax.samplers.transforms`);
        temperature and top_p may be traced.
      fixed: int32[B, L], -1 where free: tokens held in place (prompts, infilling).
      final_step: "sample" or "argmax" for the step that lands on t = 0.
      return_trajectory: also return the state after every step, int32[steps, B, L].
      t_max: start time in (0, 1] (the state starts from the prior); may be traced.
      debug: check the denoiser's output for NaN / +inf inside the loop with checkify
        (outside ``jax.jit``; under jit wrap the call in ``checkify.checkify``).
    Returns:
      int32[B, L] samples (and the trajectory with ``return_trajectory``). A position
      drawn from a row that is not a distribution (the denoiser returned NaN or -inf
      everywhere, or a traced temperature was <= 0) holds -1 (``ddjax.random.INVALID``):
      ``dd.samplers.check_samples`` raises on it, ``debug=True`` names the step.
"""


@dataclasses.dataclass(frozen=True)
class Context:
    """What a step sees besides its own options: the denoiser reaches it as the checked
    denoiser plus its row transform only (and the denoiser's own reverse step, if any).

    Attributes:
      process: the forward process.
      base: the checked denoiser (:func:`ddjax.samplers.transforms.contract`) before
        renormalisation and transforms; ``base.denoiser`` is the user's innermost one.
      rows: the row transform (renormalisation, the user's transforms, then the
        temperature / top-k / top-p options); apply it to gathered rows of ``base``'s
        output to get those rows of :meth:`denoise`'s.
      own_posterior: ``(x_t, s, t) -> q(x_s | x_t)`` float32[B, L, N] when the denoiser
        carries its own reverse step (with ``rows`` applied inside), else None.
      fixed: int32[B, L] with -1 where free, or None.
      final_step: "sample" or "argmax".
      shape: (B, L).
      steps: the step count asked for (None where a sampler ignores it).
      t_max: the start time.
      debug: the ``debug`` option (steps may add their own ``checkify`` checks).
    """

    process: Any
    base: transforms.Checked
    rows: transforms.RowTransform
    own_posterior: Callable[[Array, Array, Array], Array] | None
    fixed: Array | None
    final_step: str
    shape: tuple[int, int]
    steps: int | None
    t_max: Any
    debug: bool = False

    @property
    def argmax(self) -> bool:
        return self.final_step == "argmax"

    def denoise(self, x: Array, t: Array) -> Array:
        """The checked, renormalised, transformed log p(x0 | x_t): float32[B, L, K]."""
        return self.rows(self.base(x, t))

    def x0_probs(self, x: Array, t: Array) -> Array:
        """The (transformed) x0 distribution at every position: float32[B, L, K]."""
        return jnp.exp(self.denoise(x, t))

    def final_probs(self, x: Array, t: Array, s: Array) -> Array:
        """The denoising step onto s (= 0): the posterior mixture, float32[B, L, N]."""
        return self.process.posterior_probs(x, self.x0_probs(x, t), s, t)


@dataclasses.dataclass(frozen=True)
class StepInfo:
    """Where a step is: what the driver passes to :meth:`Step.step` besides the state.

    Attributes:
      index: int32 scalar, the step's number (0 for the first; in an adaptive loop the
        iteration).
      t, s: float32[B] (int32[B] for discrete time) the step's start and end times
        (both 0 in an adaptive loop, whose steps pick their own).
      last: True for the step that lands on t = 0 (static).
      grid: the whole decreasing grid the loop walks, [iterations + 1].
    """

    index: Array
    t: Array
    s: Array
    last: bool
    grid: Array


class Step:
    """Base class of the sampler step objects (subclasses are frozen dataclasses)."""

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ("continuous_time",)
    calls_doc: ClassVar[str] = "1 per step"
    steps_optional: ClassVar[bool] = False
    uses_own_posterior: ClassVar[bool] = False

    def validate(self, process: Any, shape: tuple[int, int], steps: int | None) -> None:
        """Checks of the step's own options (eager; traced values pass)."""

    def network_calls(self, steps: int, length: int) -> int:
        """Denoiser calls for ``steps`` and sequence length ``length``."""
        return steps

    def iterations(self, steps: int | None, length: int) -> int:
        """Loop iterations (grid intervals), the last one included."""
        return steps

    def grid(self, process: Any, steps: int | None, length: int, t_max: Any) -> Array:
        """The ``iterations + 1`` decreasing times the loop walks."""
        return time_grid(process, self.iterations(steps, length), t_max)

    def particles(self) -> int:
        """Loop rows per output row (default 1). With P > 1 the loop runs on B * P rows
        (row b * P + j is copy j of output row b; ``ctx.shape`` and ``ctx.fixed`` are the
        loop's) and :meth:`finish` maps them back to B rows."""
        return 1

    def init(self, ctx: Context, x: Array, grid: Array) -> Any:
        """Extra loop state (any pytree), or None; ``grid`` is the loop's time grid."""
        return None

    def adaptive(self) -> bool:
        """True when ``steps`` is a maximum: the driver then runs a ``lax.while_loop``
        while :meth:`pending` holds, at most ``iterations`` times, calling :meth:`step`
        with ``at.last`` False and t = s = 0 (an adaptive step picks its own times and ends
        the sampling itself, e.g. by decoding every mask on its last allowed call)."""
        return False

    def pending(self, ctx: Context, x: Array, aux: Any) -> Array:
        """bool scalar: an adaptive loop goes on (default: some position is masked)."""
        return jnp.any(x == ctx.process.mask_id)

    def finish(self, ctx: Context, x: Array, aux: Any) -> tuple[Array, Any]:
        """After the last step: (output int32[B, L], extra info or None). The default
        returns the loop state; a step with :meth:`particles` > 1 picks its rows here.
        Info other than None is returned after the samples (and the trajectory)."""
        return x, None

    def step(self, key: Array, ctx: Context, x: Array, aux: Any, at: StepInfo) -> tuple[Array, Any]:
        """One draw from ``at.t`` to ``at.s``: (x int32[B, L], aux)."""
        raise NotImplementedError


class PositionLaw(Step):
    """A step whose update is one categorical law per position, ``law(ctx, x, t, s)``.

    The last step draws from the posterior mixture at s = 0 (``ctx.final_probs``), so no
    mask is left.
    """

    def law(self, ctx: Context, x: Array, t: Array, s: Array) -> Array:
        """The per-position law of one step, float32[B, L, N]."""
        raise NotImplementedError

    def step(self, key: Array, ctx: Context, x: Array, aux: Any, at: StepInfo) -> tuple[Array, Any]:
        if at.last:
            return draw_from_probs(key, ctx.final_probs(x, at.t, at.s), ctx.argmax), aux
        return self.draw(key, ctx, x, at.t, at.s), aux

    def draw(self, key: Array, ctx: Context, x: Array, t: Array, s: Array) -> Array:
        """A draw from :meth:`law` (steps may override it with a cheaper exact draw)."""
        return draw_from_probs(key, self.law(ctx, x, t, s))

    def transition_matrix(
        self, ctx: Context, states: Array, t: Array, s: Array, last: bool = False
    ) -> Array:
        """T[a, b] = P(states[b] after one step | states[a]): float32[S, S]."""
        probs = ctx.final_probs(states, t, s) if last else self.law(ctx, states, t, s)
        return product_law(probs, states)


def product_law(probs: Array, states: Array) -> Array:
    """T[a, b] = prod_i probs[a, i, states[b, i]] for per-position laws probs [A, L, N]."""
    idx = jnp.broadcast_to(states[None, :, :, None], (probs.shape[0], *states.shape, 1))
    return jnp.take_along_axis(probs[:, None], idx, axis=-1)[..., 0].prod(-1)


def check_number(name: str, value: Any, lo: float, hi: float = math.inf, *, open_lo=False) -> None:
    """Checks a number option in [lo, hi] (or (lo, hi]); traced values pass unchecked."""
    if isinstance(value, jax.core.Tracer):
        return
    arr = concrete(value)
    ok = arr is not None and arr.size == 1 and not isinstance(value, bool)
    if ok:
        v = float(arr)
        ok = math.isfinite(v) and (v > lo if open_lo else v >= lo) and v <= hi
    side = "(" if open_lo else "["
    check(ok, f"{name} must be a number in {side}{lo}, {hi}], got {value!r}")


def clamp(x: Array, fixed: Array | None) -> Array:
    """Puts the fixed tokens back (``fixed`` is -1 where free)."""
    if fixed is None:
        return x
    return jnp.where(fixed >= 0, fixed, x)


def time_grid(process: Any, steps: int, t_max: Any = 1.0) -> Array:
    """``steps + 1`` decreasing times from ``t_max`` to 0.

    For discrete-time processes the grid is int32 step indices from T to 0 (rounded,
    strictly decreasing; ``steps`` must not exceed T).
    """
    if process.is_discrete_time:
        num = process.num_steps
        check(steps <= num, f"steps={steps} exceeds the process's T={num}")
        return jnp.round(jnp.linspace(num, 0, steps + 1)).astype(jnp.int32)
    return jnp.linspace(t_max, 0.0, steps + 1, dtype=jnp.float32)


def _check_common(
    step: Step, process: Any, shape: Any, steps: Any, fixed: Any, final_step: Any, t_max: Any
) -> Array | None:
    check(
        isinstance(shape, tuple) and len(shape) == 2 and all(isinstance(d, int) for d in shape),
        f"shape must be a (batch, length) tuple of ints, got {shape!r}",
    )
    if not (step.steps_optional and steps is None):
        check(
            isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1,
            f"steps must be a positive int, got {steps!r}",
        )
    check(
        final_step in ("sample", "argmax"),
        f"final_step must be 'sample' or 'argmax', got {final_step!r}",
    )
    check_number("t_max", t_max, 0.0, 1.0, open_lo=True)
    if fixed is None:
        return None
    fixed = jnp.asarray(fixed)
    check(
        fixed.shape == shape,
        f"fixed must have the sample shape {shape} (-1 where free), got {fixed.shape}",
    )
    validate_tokens(jnp.where(fixed < 0, 0, fixed), process.vocab_size, "fixed")
    return fixed.astype(jnp.int32)


def _varying(tree: Any, axes: frozenset[str]) -> Any:
    """Under ``shard_map``, marks every array of ``tree`` varying over the mesh ``axes``.

    The scan carry must keep one type, and the body's output varies wherever the keys,
    the denoiser's parameters or the data vary: starting the carry varying over every
    manual axis makes it a fixed point of the body (and of the branches of its conds).
    """

    def one(x: Any) -> Any:
        if x is None:
            return x
        want = axes - jax.typeof(x).manual_axis_type.varying
        return jax.lax.pcast(x, tuple(sorted(want)), to="varying") if want else x

    return jax.tree.map(one, tree)


def _run_adaptive(step: Step, key: Array, ctx: Context, x: Array, grid: Array) -> tuple:
    """The while loop of an adaptive step: (x, the number of iterations run)."""
    aux = step.init(ctx, x, grid)
    zero = jnp.zeros((x.shape[0],), jnp.float32)
    max_iter = grid.shape[0] - 1

    def cond(carry: tuple[Array, Array, Any]) -> Array:
        n, x, a = carry
        return (n < max_iter) & step.pending(ctx, x, a)

    def body(carry: tuple[Array, Array, Any]) -> tuple[Array, Array, Any]:
        n, x, a = carry
        at = StepInfo(n, zero, zero, False, grid)
        x, a = step.step(jax.random.fold_in(key, n), ctx, x, a, at)
        return n + 1, clamp(x, ctx.fixed), a

    carry = (jnp.int32(0), x, aux)
    manual = frozenset(jax.sharding.get_abstract_mesh().manual_axes)
    if manual:
        carry = _varying(carry, manual)
    n, x, _ = jax.lax.while_loop(cond, body, carry)
    return x, n


def run(
    step: Step, key: Array, ctx: Context, x: Array, grid: Array, return_trajectory: bool = False
) -> Array | tuple[Array, ...]:
    """The loop of :func:`sample` from the state ``x`` int32[B, L] (no checks): one scan
    over the consecutive grid pairs (t, s), then the last step onto ``grid[-1]``, then
    :meth:`Step.finish`. ``grid`` (decreasing, [n + 1]) may be traced (e.g. a reverse
    run started at a traced time); its length fixes the number of steps."""
    batch = x.shape[0]
    n = grid.shape[0] - 1
    keys = jax.random.split(key, n)
    times = jnp.broadcast_to(grid[:, None], (grid.shape[0], batch))
    aux = step.init(ctx, x, grid)

    def body(carry: tuple[Array, Any], inputs: tuple[Array, Array, Array, Array]):
        i, k, t, s = inputs
        x, a = step.step(k, ctx, carry[0], carry[1], StepInfo(i, t, s, False, grid))
        x = clamp(x, ctx.fixed)
        return (x, a), (x if return_trajectory else None)

    carry = (x, aux)
    manual = frozenset(jax.sharding.get_abstract_mesh().manual_axes)
    if manual:
        carry = _varying(carry, manual)
    index = jnp.arange(n, dtype=jnp.int32)
    (x, aux), traj = jax.lax.scan(body, carry, (index[:-1], keys[:-1], times[:-2], times[1:-1]))
    last = StepInfo(jnp.int32(n - 1), times[-2], times[-1], True, grid)
    x, aux = step.step(keys[-1], ctx, x, aux, last)
    x = clamp(x, ctx.fixed)
    if return_trajectory:
        traj = jnp.concatenate([traj, x[None]], axis=0)
    x, info = step.finish(ctx, x, aux)
    out = (x, traj) if return_trajectory else (x,)
    if info is not None:
        out = (*out, info)
    return out[0] if len(out) == 1 else out


def context(
    process: Any,
    denoiser: transforms.Denoiser,
    shape: tuple[int, int],
    steps: int | None,
    *,
    fixed: Array | None = None,
    final_step: str = "sample",
    t_max: Any = 1.0,
    temperature: Any = 1.0,
    top_k: int | None = None,
    top_p: Any = None,
    debug: bool = False,
) -> Context:
    """The :class:`Context` of a run: the checked denoiser, its row transforms, options."""
    inner, user_rows = transforms.split_rows(denoiser)
    rows = transforms.compose_rows(
        transforms.normalise_rows, user_rows, transforms.option_rows(temperature, top_k, top_p)
    )
    own = transforms.own_posterior(inner)
    return Context(
        process=process,
        base=transforms.contract(inner, process.vocab_size, debug=debug),
        rows=rows,
        own_posterior=None if own is None else _bind_posterior(own, process, rows),
        fixed=fixed,
        final_step=final_step,
        shape=shape,
        steps=steps,
        t_max=t_max,
        debug=debug,
    )


def _bind_posterior(
    own: transforms.OwnPosterior, process: Any, rows: transforms.RowTransform
) -> Callable[[Array, Array, Array], Array]:
    return lambda x, s, t: own.posterior_probs(process, x, s, t, rows)


def check_denoiser(step: Step, ctx: Context) -> None:
    """A denoiser's own reverse step (a declared capability) reaches only a step that uses
    it: any other step raises TypeError instead of dropping it silently."""
    if ctx.own_posterior is None or step.uses_own_posterior:
        return
    inner = ctx.base.denoiser
    raise TypeError(
        f"{step.name} cannot use the denoiser's own reverse step ({type(inner).__name__}, "
        "e.g. guidance.cfg(mode='posterior')), also inside temperature / top_k / top_p: "
        "sample it with ancestral, or guide the x0 distribution (mode='x0')"
    )


def sample(
    step: Step,
    key: Array,
    denoiser: transforms.Denoiser,
    process: Any,
    shape: tuple[int, int],
    *,
    steps: int | None,
    temperature: Any = 1.0,
    top_k: int | None = None,
    top_p: Any = None,
    fixed: Any = None,
    final_step: str = "sample",
    return_trajectory: bool = False,
    t_max: Any = 1.0,
    debug: bool = False,
    return_calls: bool = False,
) -> Array | tuple[Array, ...]:
    """Runs sampler ``step`` from the prior to t = 0 (the common options: module docstring).

    ``return_calls=True`` also returns the number of denoiser calls, an int32 scalar
    (last in the returned tuple): for an adaptive step (:meth:`Step.adaptive`) the
    while loop's iterations as run (one call each), else ``step.network_calls(steps,
    L)``, the planned number (an upper bound for samplers that skip calls, such as
    first_hitting under ``fixed``). It counts batched calls: one call serves every row.
    """
    require(process, ("posterior_probs", "prior_sample", *step.needs), step.name)
    fixed = _check_common(step, process, shape, steps, fixed, final_step, t_max)
    step.validate(process, shape, steps)
    adaptive = step.adaptive()
    check(
        not (adaptive and return_trajectory),
        f"return_trajectory is not available for {step.name} in its adaptive mode "
        "(the number of calls varies)",
    )
    copies = step.particles()
    loop_shape = (shape[0] * copies, shape[1])
    if copies != 1 and fixed is not None:
        fixed = jnp.repeat(fixed, copies, axis=0)
    ctx = context(
        process, denoiser, loop_shape, steps, fixed=fixed, final_step=final_step, t_max=t_max,
        temperature=temperature, top_k=top_k, top_p=top_p, debug=debug,
    )  # fmt: skip
    check_denoiser(step, ctx)
    k_init, k_loop = jax.random.split(key)
    x = clamp(process.prior_sample(k_init, loop_shape), fixed)
    grid = step.grid(process, steps, shape[1], t_max)

    def go() -> Array | tuple[Array, ...]:
        if adaptive:
            out, calls = _run_adaptive(step, k_loop, ctx, x, grid)
            return (out, calls) if return_calls else out
        out = run(step, k_loop, ctx, x, grid, return_trajectory)
        if not return_calls:
            return out
        calls = jnp.int32(step.network_calls(steps, shape[1]))
        return (*out, calls) if isinstance(out, tuple) else (out, calls)

    if not debug:
        return go()
    err, out = checkify.checkify(go)()
    if isinstance(key, jax.core.Tracer):  # inside jit: the caller's checkify reports it
        checkify.check_error(err)
    else:
        err.throw()
    return out


def public(cls: type[Step]) -> Callable[..., Array | tuple[Array, Array]]:
    """The public sampler ``name(key, denoiser, process, shape, *, steps, **options)``.

    ``options`` are the common ones (:data:`COMMON_OPTIONS`) and the step class's own
    dataclass fields; anything else is a TypeError listing the valid options.
    """
    own = [f for f in dataclasses.fields(cls)]
    own_names = {f.name for f in own}
    valid = sorted({*COMMON_OPTIONS, *own_names})

    def sampler(
        key: Array,
        denoiser: transforms.Denoiser,
        process: Any,
        shape: tuple[int, int],
        *,
        steps: int | None = None,
        **options: Any,
    ) -> Array | tuple[Array, Array]:
        return _call(cls, valid, key, denoiser, process, shape, steps, options, False)

    kw = inspect.Parameter.KEYWORD_ONLY
    pos = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter(n, pos) for n in ("key", "denoiser", "process", "shape")]
    params.append(
        inspect.Parameter("steps", kw, default=None)
        if cls.steps_optional
        else inspect.Parameter("steps", kw)
    )
    params += [inspect.Parameter(n, kw, default=v) for n, v in COMMON_OPTIONS.items()]
    for f in own:
        default = f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty
        params.append(inspect.Parameter(f.name, kw, default=default))
    sampler.__signature__ = inspect.Signature(params)
    sampler.__name__ = sampler.__qualname__ = cls.name
    sampler.__doc__ = (cls.__doc__ or "") + _COMMON_DOC
    sampler.step_class = cls
    return sampler


def _call(
    cls: type[Step],
    valid: list[str],
    key: Array,
    denoiser: Any,
    process: Any,
    shape: tuple[int, int],
    steps: int | None,
    options: dict[str, Any],
    return_calls: bool,
) -> Any:
    """The public sampler's body: option checks, then :func:`sample`."""
    options = dict(options)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"{cls.name}() got unknown options {unknown}; valid options: {valid}")
    common = {k: options.pop(k) for k in COMMON_OPTIONS if k in options}
    if steps is None and not cls.steps_optional:
        raise TypeError(f"{cls.name}() needs steps=")
    return sample(
        cls(**options), key, denoiser, process, shape, steps=steps, return_calls=return_calls,
        **common,
    )  # fmt: skip


def count_calls(sampler: Callable, key: Array, *args: Any, **options: Any) -> tuple[Any, Array]:
    """Runs a public sampler and also returns its number of denoiser calls.

    ``count_calls(dd.samplers.confidence, key, denoiser, process, shape, steps=64,
    threshold=0.9)`` returns ``(samples, calls)`` with ``calls`` an int32 scalar (see
    :func:`sample`'s ``return_calls``: exact for adaptive modes such as confidence's
    threshold, the planned count otherwise). Samplers with their own ``return_calls``
    option (:func:`ddjax.samplers.block_diffusion`) are called with it set. Jit-able.
    """
    cls = getattr(sampler, "step_class", None)
    if cls is None:
        check(
            "return_calls" in inspect.signature(sampler).parameters,
            f"count_calls needs a public sampler, got {sampler!r}",
            TypeError,
        )
        return sampler(key, *args, return_calls=True, **options)
    usage = "count_calls(sampler, key, denoiser, process, shape, **options)"
    check(len(args) == 3, usage, TypeError)
    steps = options.pop("steps", None)
    valid = sorted({*COMMON_OPTIONS, *(f.name for f in dataclasses.fields(cls))})
    return _call(cls, valid, key, *args, steps, options, True)


def auto_capacity(expected: float, length: int, vocab_size: int, min_vocab: int) -> int | None:
    """Rows to gather per step for ``expected`` decoded tokens per sequence (None: all).

    Only vocabularies of at least ``min_vocab`` gather (a full draw is cheap otherwise);
    the margin of six standard deviations makes the full-draw fallback rare.
    """
    if vocab_size < min_vocab:
        return None
    cap = int(math.ceil(expected + 6.0 * math.sqrt(max(expected, 0.0)) + 8.0))
    return cap if 2 * cap <= length else None


def max_decoded(process: Any, steps: int, t_max: Any, length: int, per_step: Callable) -> float:
    """The largest expected number of decoded tokens in one step, over the grid.

    ``per_step(grid_t, grid_s)`` gives the per-token probability on numpy grids;
    returns inf when ``t_max`` is traced (no static capacity then).
    """
    if concrete(t_max) is None:
        return math.inf
    with jax.ensure_compile_time_eval():
        grid = np.linspace(float(concrete(t_max)), 0.0, steps + 1).astype(np.float32)
        probs = np.asarray(per_step(jnp.asarray(grid[:-1]), jnp.asarray(grid[1:])))
    return float(np.max(probs)) * length


def check_samples(x: Any, vocab_size: int | None = None) -> np.ndarray:
    """Host-side check of sampler output: raises ValueError on invalid ids.

    Samplers never sync inside their loop; a row that was not a distribution shows as
    -1 (:data:`ddjax.random.INVALID`) in the output instead. Call this on the result
    (it reads it on the host) to turn that into an error. ``vocab_size`` also rejects
    ids >= K (e.g. a mask left in place). Returns ``x`` as an int32 NumPy array.
    """
    arr = np.asarray(x)
    bad = arr < 0
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of {arr.size} sampled positions hold the invalid id -1: the "
            "denoiser returned NaN or -inf for every token there (or a traced temperature "
            "was <= 0); rerun the sampler with debug=True to find the step"
        )
    if vocab_size is not None and arr.size and int(arr.max()) >= vocab_size:
        raise ValueError(
            f"sampled ids reach {int(arr.max())}, outside the data tokens 0..{vocab_size - 1}"
        )
    return arr.astype(np.int32)
