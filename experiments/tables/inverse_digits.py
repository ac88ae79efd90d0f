"""Inverse problems on digits: posterior sampling with the digits models.

Three measurements of held-out real digits (the model's own eval split):

* inpainting: the top half (rows 0-3) observed; log-likelihood
  -sum_{observed i} (x_i - y_i)^2 / (2 * 0.5^2), a soft mismatch penalty in levels;
* 2x downsampling: y = the 4x4 means of the 2x2 pixel blocks plus Gaussian noise of
  sigma = 1 level; log-likelihood -||A x - y||^2 / (2 sigma^2);
* noisy observation: each pixel replaced by a uniform level with probability 0.3; exact
  factorised log-likelihood sum_i log(0.7 [y_i = x_i] + 0.3 / 17).

Methods: ``split_gibbs`` on a uniform-noise model (digits_udlm; it refuses masking),
``aps``, ``smc``, ``svdd`` and plain ``fixed=`` inpainting (ancestral) on the masked
digits_mdlm model, both unconditional (their null class). Judge: the scikit-learn
logistic regression of the guidance table (trained on real training digits), its
accuracy on the true class of each reconstruction.

The three measurements are one composite likelihood with traced weights
(:class:`Measurement`), so each method compiles once for all three problems.

Needs runs/digits/digits_mdlm and runs/digits/digits_udlm (trained here when missing,
with ``--train_steps``); ``--quick`` builds tiny untrained ones in-process (a pipeline
check: its numbers mean nothing).

    python -m experiments.tables.inverse_digits
    python -m experiments.tables.inverse_digits --quick
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import ddjax as dd
from ddjax import data as data_lib
from experiments.outputs import save_image_grid
from experiments.tables import _report
from experiments.tables.guidance_digits import sklearn_classifier
from experiments.tables.sampling_quality import restore

LEVELS = 17
SIDE = 8
INPAINT_SIGMA = 0.5  # levels: the soft mismatch penalty of inpainting
DOWN_SIGMA = 1.0  # levels: noise of the 2x2-block means
FLIP = 0.3  # noisy observation: probability that a pixel is resampled uniformly
SMOOTH_TAU = 2.0  # aps on the noisy problem: the indicator [y = v] as a Gaussian bump
PROBLEMS = ("inpainting", "downsampling", "noisy")
METHODS = ("fixed", "aps", "smc", "svdd", "split_gibbs")


class Measurement(NamedTuple):
    """One observation per row, as a composite likelihood (all float32, B rows).

    Attributes:
      pix_y, pix_w: float32[B, L]: the inpainting term -sum_i pix_w_i (x_i - pix_y_i)^2
        (pix_w = 1 / (2 sigma^2) at observed pixels, 0 elsewhere).
      down_y: float32[B, 16], down_w: float32[B]: -down_w ||A x - down_y||^2.
      noisy_y: float32[B, L], noisy_w: float32[B] (0 or 1): the exact noisy-pixel term
        noisy_w * sum_i log(0.7 [x_i = y_i] + 0.3 / 17).
    """

    pix_y: jax.Array
    pix_w: jax.Array
    down_y: jax.Array
    down_w: jax.Array
    noisy_y: jax.Array
    noisy_w: jax.Array


def block_means(v: jax.Array) -> jax.Array:
    """The 2x2-block means of images float32[B, 64] (row-major 8x8): float32[B, 16]."""
    b = v.shape[0]
    return v.reshape(b, SIDE // 2, 2, SIDE // 2, 2).mean(axis=(2, 4)).reshape(b, -1)


def _rows(m: Measurement, n: int) -> Measurement:
    """The measurement for n = B * copies rows (row b * copies + j is a copy of row b)."""
    b = m.pix_y.shape[0]
    return m if n == b else jax.tree.map(lambda a: jnp.repeat(a, n // b, axis=0), m)


def log_likelihood(m: Measurement, v: jax.Array, smooth: bool = False) -> jax.Array:
    """log p(y | x) up to a constant, for values v float32[N, L] (N a multiple of B).

    ``smooth``: the noisy term with the indicator replaced by exp(-(v - y)^2 / (2 tau^2))
    (differentiable in v, for aps); otherwise exact on integer values.
    """
    m = _rows(m, v.shape[0])
    v = v.astype(jnp.float32)
    pix = -(m.pix_w * (v - m.pix_y) ** 2).sum(-1)
    down = -m.down_w * ((block_means(v) - m.down_y) ** 2).sum(-1)
    if smooth:
        match = jnp.exp(-((v - m.noisy_y) ** 2) / (2 * SMOOTH_TAU**2))
    else:
        match = (v == m.noisy_y).astype(jnp.float32)
    noisy = m.noisy_w * jnp.log((1 - FLIP) * match + FLIP / LEVELS).sum(-1)
    return pix + down + noisy


def measure(problem: str, truth: np.ndarray, seed: int) -> tuple[Measurement, np.ndarray]:
    """The measurement of images int32[B, 64] and a picture of it (int32[B, 8, 8])."""
    rng = np.random.default_rng(seed)
    b, length = truth.shape
    zeros, zb = np.zeros((b, length), np.float32), np.zeros((b,), np.float32)
    z16 = np.zeros((b, 16), np.float32)
    x = truth.astype(np.float32)
    if problem == "inpainting":
        observed = np.broadcast_to(np.arange(length) < length // 2, (b, length))
        w = np.where(observed, 1 / (2 * INPAINT_SIGMA**2), 0.0).astype(np.float32)
        m = Measurement(x, w, z16, zb, zeros, zb)
        picture = np.where(observed, truth, 0)
    elif problem == "downsampling":
        y = np.asarray(block_means(jnp.asarray(x))) + DOWN_SIGMA * rng.normal(size=(b, 16))
        m = Measurement(zeros, zeros, y.astype(np.float32), zb + 1 / (2 * DOWN_SIGMA**2),
                        zeros, zb)  # fmt: skip
        up = y.reshape(b, 4, 1, 4, 1).repeat(2, 2).repeat(2, 4).reshape(b, length)
        picture = np.clip(np.rint(up), 0, LEVELS - 1).astype(np.int32)
    elif problem == "noisy":
        flip = rng.random((b, length)) < FLIP
        y = np.where(flip, rng.integers(0, LEVELS, (b, length)), truth).astype(np.int32)
        m = Measurement(zeros, zeros, z16, zb, y.astype(np.float32), zb + 1)
        picture = y
    else:
        raise ValueError(f"unknown problem {problem!r}; expected one of {PROBLEMS}")
    m = Measurement(*(jnp.asarray(a, jnp.float32) for a in m))
    return m, np.asarray(picture, np.int32).reshape(b, SIDE, SIDE)


def null_denoiser(exp, params):
    """The class-conditional model's unconditional denoiser (its null class), any B."""
    null = int(exp.cfg.model.num_classes)

    def den(x, t):
        labels = jnp.full((x.shape[0],), null, jnp.int32)
        return exp.objective.denoiser(params, labels)(x, t)

    return den


def network_calls(method: str, s: dict) -> int:
    """Denoiser rows evaluated per output sample (batch rows x calls / B)."""
    return {
        "fixed": s["steps"],
        "aps": s["steps"],
        # the proposal on N particles per step, the twist on N (steps + 1 times)
        "smc": s["particles"] * (2 * s["steps"] + 1),
        # svdd_value of the sampler's own denoiser shares the calls: 1 + M per step
        "svdd": 1 + s["candidates"] * s["steps"],
        "split_gibbs": s["init_steps"] + s["rounds"] * s["prior_steps"],
    }[method]


def samplers(exp_m, exp_u, shape, s: dict) -> dict:
    """method -> jitted (key, Measurement, params_m, params_u) -> int32[B, L].

    exp_m: the masked experiment (fixed, aps, smc, svdd); exp_u: the uniform-noise one
    (split_gibbs). The parameters are arguments, not constants of the compiled program.
    """
    proc_m, proc_u = exp_m.objective.process, exp_u.objective.process
    codebook = jnp.arange(LEVELS, dtype=jnp.float32)
    steps = s["steps"]

    def fixed(key, m, den_m, den_u):
        # the plain row: observed pixels held in place (inpainting only)
        held = jnp.where(m.pix_w > 0, m.pix_y, -1).astype(jnp.int32)
        return dd.samplers.ancestral(key, den_m, proc_m, shape, steps=steps, fixed=held)

    def aps(key, m, den_m, den_u):
        return dd.samplers.aps(
            key, den_m, proc_m, shape, steps=steps, codebook=codebook,
            measurement_loss=lambda v: -log_likelihood(m, v, smooth=True),
        )  # fmt: skip

    def smc(key, m, den_m, den_u):
        def ll(x):
            return log_likelihood(m, x)

        predicted = dd.samplers.svdd_value(den_m, ll)  # the likelihood of argmax x0

        def log_potential(x, t):
            return jnp.where(t == 0, ll(x), predicted(x, t))

        return dd.samplers.smc(
            key, den_m, proc_m, shape, steps=steps, log_potential=log_potential,
            num_particles=s["particles"], ess_threshold=0.5,
        )  # fmt: skip

    def svdd(key, m, den_m, den_u):
        value = dd.samplers.svdd_value(den_m, lambda x: log_likelihood(m, x))
        return dd.samplers.svdd(
            key, den_m, proc_m, shape, steps=steps, value_fn=value,
            num_candidates=s["candidates"], alpha=1.0,
        )  # fmt: skip

    def split_gibbs(key, m, den_m, den_u):
        return dd.samplers.split_gibbs(
            key, den_u, proc_u, shape, log_likelihood=lambda x: log_likelihood(m, x),
            num_rounds=s["rounds"], prior_steps=s["prior_steps"],
            init_steps=s["init_steps"], mh_sweeps=s["mh_sweeps"],
        )  # fmt: skip

    fns = {"fixed": fixed, "aps": aps, "smc": smc, "svdd": svdd, "split_gibbs": split_gibbs}

    def compiled(f):
        def run(key, m, params_m, params_u):
            return f(key, m, null_denoiser(exp_m, params_m), null_denoiser(exp_u, params_u))

        return jax.jit(run)

    return {k: compiled(f) for k, f in fns.items()}


def _model(name: str, workdir: Path, overrides: list[str], quick: bool):
    """(experiment, params, training wall s): a finished run, trained here when missing.

    ``quick``: a tiny untrained model built in-process (a pipeline check; no training).
    """
    if quick:
        import importlib

        from experiments import model

        cfg = importlib.import_module(f"experiments.configs.{name}").get_config()
        cfg.model.base_channels = 8
        exp = model.build(cfg)
        return exp, exp.params, 0.0
    wall = 0.0
    if not (workdir / "config.json").exists():
        wall = _report.train_config(name, workdir, overrides)[1]
    exp, params = restore(workdir)
    return exp, params, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--num", type=int, default=None, help="held-out digits per problem")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps")
    parser.add_argument("--train_steps", type=int, default=1000, help="when training here")
    parser.add_argument("--runs", type=Path, default=_report.ROOT / "runs" / "digits")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--note", default="", help="appended to the table notes (budget)")
    args = parser.parse_args()
    started = time.time()
    load_start = os.getloadavg()[0]
    train = [
        f"--config.train.num_steps={args.train_steps}",
        "--config.train.tensorboard=False",
        "--config.sample.num_samples=0",
    ]
    q = args.quick
    exp_m, params_m, wall_m = _model("digits_mdlm", args.runs / "digits_mdlm", train, q)
    exp_u, params_u, wall_u = _model("digits_udlm", args.runs / "digits_udlm", train, q)
    steps = args.steps or (4 if args.quick else 64)
    s = {
        "steps": steps,
        "particles": 2 if args.quick else 8,
        "candidates": 2 if args.quick else 8,
        "rounds": 2 if args.quick else 8,
        "prior_steps": 2 if args.quick else 8,
        "init_steps": 2 if args.quick else 8,
        "mh_sweeps": 1,
    }
    num = args.num or (4 if args.quick else 40)
    (_, _), (x_te, y_te) = data_lib.train_test_split(
        *data_lib.digits(), test_fraction=float(exp_m.cfg.data.eval_fraction), seed=0
    )
    truth, labels = x_te[:num].reshape(num, -1), y_te[:num]
    clf, clf_acc = sklearn_classifier()  # its training digits exclude this eval split
    shape = (num, truth.shape[1])
    fns = samplers(exp_m, exp_u, shape, s)
    out = args.out or _report.DOCS / "tables"
    out.mkdir(parents=True, exist_ok=True)
    measurements = {p: measure(p, truth, seed=i) for i, p in enumerate(PROBLEMS)}

    def score(x: np.ndarray) -> tuple[float, float]:
        acc = float((clf.predict(x.reshape(num, -1)) == labels).mean())
        return acc, float(np.abs(x.reshape(num, -1) - truth).mean())

    rows, compile_s = [], {}
    for problem in PROBLEMS:
        m, picture = measurements[problem]
        acc, mae = score(picture)
        rows.append(["none (the observation)", problem, round(acc, 3), round(mae, 3), 0, 0.0, ""])
    for method in METHODS:
        fn = None
        for i, problem in enumerate(PROBLEMS):
            if method == "fixed" and problem != "inpainting":
                continue
            m, picture = measurements[problem]
            key = jax.random.key(100 + i)
            if fn is None:  # one compile per method, shared by the problems
                t0 = time.time()
                fn = fns[method].lower(key, m, params_m, params_u).compile()
                compile_s[method] = round(time.time() - t0, 1)
            t0 = time.time()
            x = np.asarray(jax.block_until_ready(fn(key, m, params_m, params_u)))
            wall = time.time() - t0
            acc, mae = score(x)
            png = f"inverse_digits_{problem}_{method}.png"
            k = min(num, 4)  # truth, observation, reconstruction: one row each
            grid = np.concatenate([truth[:k].reshape(k, SIDE, SIDE), picture[:k],
                                   x[:k].reshape(k, SIDE, SIDE)])  # fmt: skip
            save_image_grid(grid, LEVELS, str(out / png))
            calls = network_calls(method, s)
            rows.append([method, problem, round(acc, 3), round(mae, 3), calls, round(wall, 2),
                         f"![{png}]({png})"])  # fmt: skip
            print(rows[-1][:6], flush=True)
    header = [
        "method",
        "problem",
        "judge accuracy (true class)",
        "mean abs pixel error (levels)",
        "network calls per sample",
        "wall s",
        "truth / observation / reconstruction",
    ]
    if args.quick:
        trained = "untrained tiny U-Nets (--quick: a pipeline check, the numbers mean nothing)"
    else:
        trained = (
            f"{exp_m.cfg.train.num_steps} (digits_mdlm) and {exp_u.cfg.train.num_steps} "
            f"(digits_udlm) train steps"
        )
        if wall_m + wall_u:
            trained += f", trained by this run in {wall_m + wall_u:.0f} s"
    notes = notes_text(num, s, clf_acc, compile_s, trained)
    notes += f" Load average at the start: {load_start:.1f}." + (
        f" {args.note}" if args.note else ""
    )
    path = _report.write("inverse_digits", header, rows, started, notes, out)
    print(path.read_text())


def notes_text(num: int, s: dict, clf_acc: float, compile_s: dict, trained: str) -> str:
    return (
        f"{num} held-out digits (the models' eval split), one reconstruction each per "
        f"problem and method. Models: digits_mdlm (masking) for fixed / aps / smc / svdd "
        f"and digits_udlm (uniform noise) for split_gibbs, both class-conditional U-Nets "
        f"used through their null class (unconditional); {trained}. Likelihoods: "
        f"inpainting -sum_obs (x - y)^2 / (2 * "
        f"{INPAINT_SIGMA}^2) on the top half; downsampling -||A x - y||^2 / (2 * "
        f"{DOWN_SIGMA}^2), A the 2x2-block means, y with N(0, {DOWN_SIGMA}^2) noise; noisy "
        f"sum_i log(0.7 [y_i = x_i] + 0.3 / 17), exact. Settings: fixed (ancestral with "
        f"the observed pixels held, inpainting only) and aps: {s['steps']} steps; aps "
        f"takes measurement_loss = -log-likelihood of the pixel values (codebook 0..16), "
        f"on the noisy problem with [y = v] smoothed to exp(-(v - y)^2 / (2 * "
        f"{SMOOTH_TAU}^2)) so that its gradient reaches levels far from y (a narrow bump "
        f"gives aps no signal at the rounded expectation); guidance_scale 1, 1 gradient "
        f"step; smc: {s['particles']} particles, "
        f"{s['steps']} steps, ESS threshold 0.5, twist at t > 0 the log-likelihood of the "
        f"denoiser's argmax x0 (svdd_value-like, one extra call per step) and the exact "
        f"log-likelihood at t = 0; svdd: {s['candidates']} candidates, {s['steps']} steps, "
        f"alpha = 1, value svdd_value (the likelihood of the argmax x0); split_gibbs: "
        f"{s['rounds']} rounds, {s['prior_steps']} prior steps per round, "
        f"{s['init_steps']} initial steps, {s['mh_sweeps']} Metropolis sweep per round, "
        f"coupling level annealed 0.5 -> 0.02. Network calls: denoiser rows per output "
        f"sample. Wall s: the compiled sampler on all {num} digits (compile excluded: "
        + ", ".join(f"{k} {v} s" for k, v in compile_s.items())
        + f"), load average {os.getloadavg()[0]:.1f} on this machine at the end. The "
        f"judge is the logistic regression of the guidance table (held-out accuracy on "
        f"real digits {clf_acc:.3f}); 'none' rows score the observation itself (inpainting: "
        f"bottom half black; downsampling: the block means upsampled and rounded)."
    )


if __name__ == "__main__":
    main()
