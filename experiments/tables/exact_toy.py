"""Exact toy table: every sampler against an enumerated target, with the oracle's
exact denoiser, so the only error is the sampler's own discretisation.

For each sampler and step count we draw n samples and report TV and
KL(target || samples); the fitted slope of log error against log steps is the
sampler's empirical convergence order (Ren et al.: about 1 in TV for euler /
tau-leaping / tweedie, about 2 for theta-trapezoidal; KL, being quadratic in
small errors, shows twice those). first_hitting is exact whatever ``steps``.

    python -m experiments.tables.exact_toy            # full (docs/tables/exact_toy.*)
    python -m experiments.tables.exact_toy --quick    # seconds, for CI
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import jax
import numpy as np

import ddjax as dd
from ddjax import testing
from experiments.tables import _report

MASKED_ONLY = ("first_hitting", "remdm", "confidence")


def error_vs_steps(
    name: str,
    process: dd.processes.Process,
    target: testing.ExactTarget,
    steps_list,
    n: int,
    seed: int,
) -> list[tuple[int, float, float]]:
    """[(steps, TV, KL)] for sampler ``name`` with the exact denoiser."""
    sampler = dd.samplers.SAMPLERS[name]
    denoiser = target.denoiser(process)
    out = []
    for steps in steps_list:
        fn = jax.jit(lambda k, s=steps: sampler(k, denoiser, process, (n, target.length), steps=s))
        x = np.asarray(fn(jax.random.key(seed)))
        q = testing.empirical_probs(x, target.vocab_size)
        out.append(
            (steps, 0.5 * float(np.abs(q - target.probs).sum()), testing.kl(target.probs, q))
        )
    return out


def fit_slope(steps: list[int], errors: list[float], floor: float) -> float:
    """Least-squares slope of -log(error) against log(steps), over errors above 3x the floor."""
    pts = [
        (math.log(s), math.log(e)) for s, e in zip(steps, errors) if e > 3 * floor and e < math.inf
    ]
    if len(pts) < 2:
        return float("nan")
    xs, ys = np.array(pts).T
    return float(-np.polyfit(xs, ys, 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny budget (CI)")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default docs/tables)"
    )
    args = parser.parse_args()
    started = time.time()
    n = args.samples or (20_000 if args.quick else 1_000_000)
    steps_list = [2, 8] if args.quick else [2, 4, 8, 16, 32, 64]
    names = ["ancestral", "euler", "first_hitting"] if args.quick else list(dd.samplers.SAMPLERS)
    target = testing.random_target(jax.random.key(0), 3, 3, temperature=0.7)
    floor = testing.tv_floor(target, n)
    kl_floor = (target.num_sequences - 1) / (2 * n)
    schedule = dd.schedules.LogLinear(eps=1e-3)
    processes = {
        "masking": dd.processes.Masking(3, schedule),
        "uniform": dd.processes.Uniform(3, schedule),
    }

    rows = []
    curves = {}
    for name in names:
        for pname, process in processes.items():
            if pname == "uniform" and name in MASKED_ONLY:
                continue
            s_list = [steps_list[0]] if name == "first_hitting" else steps_list
            res = error_vs_steps(name, process, target, s_list, n, seed=1)
            steps, tvs, kls = zip(*res)
            curves[f"{name} ({pname})"] = (steps, tvs)
            tv_slope = fit_slope(list(steps), list(tvs), floor)
            kl_slope = fit_slope(list(steps), list(kls), kl_floor)
            calls = [dd.samplers.network_calls(name, s, target.length) for s in steps]
            rows.append(
                [
                    name,
                    pname,
                    ", ".join(f"{c}:{tv:.4f}" for c, tv in zip(calls, tvs)),
                    ", ".join(f"{k:.2e}" for k in kls),
                    round(tv_slope, 2),
                    round(kl_slope, 2),
                ]
            )
            print(rows[-1], flush=True)

    header = [
        "sampler",
        "process",
        "network calls: TV",
        "KL(target||samples)",
        "TV order",
        "KL order",
    ]
    notes = (
        f"Target: K = 3, L = 3 random (temperature 0.7), {n} samples per cell, exact denoiser. "
        f"Monte Carlo floor: TV {floor:.4f}, KL {kl_floor:.1e}; orders are fitted on errors above "
        f"3x the floor (nan: too few such points). Steps {list(steps_list)}."
    )
    out_dir = args.out
    path = _report.write("exact_toy", header, rows, started, notes, out_dir)
    _plot(curves, floor, (out_dir or _report.DOCS / "tables") / "exact_toy.png")
    print(path.read_text())


def _plot(curves, floor: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for label, (steps, tvs) in curves.items():
        if len(steps) > 1:
            ax.loglog(steps, tvs, marker="o", label=label)
    ax.axhline(floor, color="gray", ls="--", label="Monte Carlo floor")
    ax.set_xlabel("steps")
    ax.set_ylabel("total variation to target")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
