"""Digits table: bits per pixel of D3PM (Gaussian, uniform, absorbing) and MDLM on
scikit-learn's 8x8 digits (17 levels), each with a grid of samples.

    python -m experiments.tables.digits            # docs/tables/digits.* and digits_*.png
    python -m experiments.tables.digits --quick    # a few steps per row (CI)
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from experiments.tables import _report

ROWS = ["digits_d3pm_gauss", "digits_d3pm_uniform", "digits_d3pm_absorb", "digits_mdlm"]
# D3PM's CIFAR-10 bits per dim (Austin et al. 2021, Table 2), for the ordering only.
PAPER_CIFAR10 = {
    "digits_d3pm_gauss": 3.435,
    "digits_d3pm_absorb": 4.40,
    "digits_d3pm_uniform": 5.08,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--runs", type=Path, default=_report.ROOT / "runs" / "digits")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="read finished runs, don't retrain")
    args = parser.parse_args()
    started = time.time()
    steps = args.steps or (2 if args.quick else 2000)
    overrides = [
        f"--config.train.num_steps={steps}",
        f"--config.train.eval_every={max(steps // 4, 1)}",
        "--config.train.tensorboard=False",
        "--config.sample.num_samples=20",
    ]
    if args.quick:
        args.runs = args.runs / "quick"  # never over the full runs
        overrides += [
            "--config.train.batch_size=8",
            "--config.train.log_every=1",
            "--config.train.checkpoint_every=0",
            "--config.eval.max_batches=1",
            "--config.eval.during_train_batches=1",
            "--config.model.base_channels=8",
            "--config.process.num_steps=20",
            "--config.sample.steps=4",
            "--config.sample.num_samples=4",
        ]
    out = args.out or _report.DOCS / "tables"
    out.mkdir(parents=True, exist_ok=True)
    rows, walls = [], []
    for name in args.rows.split(","):
        workdir = args.runs / name
        records, wall = _report.train_config(name, workdir, overrides, reuse=args.reuse)
        walls.append(wall)
        evals = [r for r in records if "eval/nelbo_bits_per_dim" in r]
        bpd = evals[-1]["eval/nelbo_bits_per_dim"]
        grids = sorted(workdir.glob("samples_step*.png"))
        grid = ""
        if grids:
            shutil.copy(grids[-1], out / f"{name}.png")
            grid = f"![{name}]({name}.png)"
        rows.append([name, round(bpd, 4), steps, round(wall, 1), grid])
        print(rows[-1][:4], flush=True)
    header = ["config", "bits per pixel (NELBO)", "train steps", "wall s", "samples"]
    notes = (
        "scikit-learn digits, 8x8 pixels with 17 levels (log2 17 = 4.09 bits for a uniform "
        "model), class-conditional U-Net trained with label dropout; held-out split; "
        "D3PM rows use T = 1000 and the hybrid loss; the bound is the full D3PM bound "
        "(prior term included) or the continuous-time NELBO (MDLM). Samples: one per class "
        "label, repeated."
    )
    notes += "\n\n" + reading({r[0]: r[1] for r in rows})
    path = _report.write("digits", header, rows, started, notes, out, compute_s=sum(walls))
    print(path.read_text())


def reading(bpp: dict[str, float]) -> str:
    """Our D3PM ordering against the paper's CIFAR-10 ordering, from this run's numbers."""
    ours = sorted((n for n in PAPER_CIFAR10 if n in bpp), key=bpp.get)
    paper = sorted(ours, key=PAPER_CIFAR10.get)
    short = [n.removeprefix("digits_") for n in ours]
    verdict = "the same as" if ours == paper else "different from"
    return (
        f"D3PM ordering here: {' < '.join(short)}; {verdict} D3PM's CIFAR-10 ordering "
        f"({' < '.join(n.removeprefix('digits_') for n in paper)}: "
        + ", ".join(f"{PAPER_CIFAR10[n]}" for n in paper)
        + " bits per dim)."
    )


if __name__ == "__main__":
    main()
