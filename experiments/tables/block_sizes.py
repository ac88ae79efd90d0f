"""Block-size table on tiny Shakespeare (text8 alphabet): BD3-LM at block sizes 1, 4, 16
and L (= 128, one block: masked diffusion) next to the AR and MDLM rows, all at the same
model size and training budget; validation bits per character.

Block diffusion interpolates between AR (block 1) and masked diffusion (block L): its
bound should fall towards the AR NLL as the block shrinks. Each row trains in its own
process with the experiment CLI (``experiments/configs/shakespeare_bd3lm_4.py`` with
``--config.loss.block_size=N``, ``shakespeare_ar``, ``shakespeare_mdlm``).

Training recipe (``--mask_rate``, ``--lr``, ``--warmup``): by default every row trains
with lr 2e-3 and 50 warmup steps, and the BD3-LM rows with BD3-LM's clipped mask-rate
schedule (mask rates U[0.45, 0.95], the recipe of ``experiments/configs/default.py``);
``--mask_rate 0,1`` is the full schedule. Validation always uses the full-schedule bound.

    python -m experiments.tables.block_sizes           # 400 steps, batch 16, 3 eval batches
    python -m experiments.tables.block_sizes --reuse   # read finished runs of the same flags
    python -m experiments.tables.block_sizes --quick          # a few steps per row (CI)

The trained runs (``runs/block_sizes/<row>``, checkpoints and config.json) are what
``experiments/tables/block_decoding.py`` samples for the second block-diffusion table:
generative perplexity, entropy and real words against network calls per token, with and
without threshold decoding.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from experiments.tables import _report
from experiments.tables.likelihood import quick_overrides

# Row names: 'ar', 'mdlm' and BD3-LM block sizes ('L' = the whole sequence).
ROWS = ["ar", "1", "4", "16", "L", "mdlm"]
ROOT = _report.ROOT


def _row(name: str, seq_len: int) -> tuple[str, str, list[str], int | None]:
    """(label, config, extra overrides, block size) of a row."""
    if name == "ar":
        return "AR (shakespeare_ar)", "shakespeare_ar", [], None
    if name == "mdlm":
        return "MDLM (shakespeare_mdlm)", "shakespeare_mdlm", [], None
    block = seq_len if name == "L" else int(name)
    if seq_len % block:
        raise SystemExit(f"block size {block} does not divide the sequence length {seq_len}")
    label = f"BD3-LM block {block}" + (" (= L)" if block == seq_len else "")
    return label, "shakespeare_bd3lm_4", [f"--config.loss.block_size={block}"], block


def _finished(workdir: Path, overrides: list[str]) -> bool:
    """Whether ``workdir`` holds a finished table run of exactly these overrides."""
    done = workdir / "table_run.json"
    return done.exists() and json.loads(done.read_text())["overrides"] == overrides


def _row_load(workdir: Path) -> str:
    """'before -> after' machine load of the row's training (recorded when it ran)."""
    path = workdir / "row_load.json"
    if not path.exists():
        return "unknown"
    record = json.loads(path.read_text())
    strip = len("load average ")
    return f"{record['before'][strip:]} -> {record['after'][strip:]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few steps per row (CI)")
    parser.add_argument("--steps", type=int, default=None, help="train steps per row (400)")
    parser.add_argument("--layers", type=int, default=None, help="model.num_layers (4)")
    parser.add_argument("--width", type=int, default=None, help="model.width (128)")
    parser.add_argument("--batch", type=int, default=None, help="train.batch_size (16)")
    parser.add_argument(
        "--eval_batches", type=int, default=3, help="eval.max_batches of 128 sequences (0: all)"
    )
    parser.add_argument("--lr", type=float, default=2e-3, help="optim.lr, every row")
    parser.add_argument("--warmup", type=int, default=50, help="optim.warmup_steps, every row")
    parser.add_argument(
        "--mask_rate",
        default="0.45,0.95",
        help="BD3-LM rows' training mask rates 'min,max' ('0,1': the full schedule)",
    )
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "block_sizes")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="read finished runs, don't retrain")
    args = parser.parse_args()
    started = time.time()
    steps = args.steps or (3 if args.quick else 400)
    if args.batch is None and not args.quick:
        args.batch = 16
    if args.quick:
        overrides = quick_overrides(steps)
        args.runs = args.runs / "quick"  # never over the full runs
        seq_len = 32
    else:
        overrides = [
            f"--config.train.num_steps={steps}",
            "--config.train.eval_every=0",  # one validation, at the end
            f"--config.train.log_every={max(steps // 10, 1)}",
            "--config.sample.num_samples=0",
            "--config.train.tensorboard=False",
            f"--config.eval.max_batches={args.eval_batches}",
        ]
        seq_len = 128
    size = {"num_layers": args.layers, "width": args.width}
    overrides += [f"--config.model.{k}={v}" for k, v in size.items() if v is not None]
    if args.batch is not None:
        overrides.append(f"--config.train.batch_size={args.batch}")
    overrides += [f"--config.optim.lr={args.lr}", f"--config.optim.warmup_steps={args.warmup}"]
    lo, hi = (float(v) for v in args.mask_rate.split(","))
    bd3 = [f"--config.loss.mask_rate_min={lo}", f"--config.loss.mask_rate_max={hi}"]
    rows, walls, bpc, se, loads = [], [], {}, {}, {}
    for name in args.rows.split(","):
        label, config, extra, block = _row(name, seq_len)
        if block is not None:
            extra = extra + bd3
        workdir = args.runs / name
        fresh = not (args.reuse and _finished(workdir, overrides + extra))
        row_load = _report.load_average()
        records, wall = _report.train_config(config, workdir, overrides + extra, reuse=args.reuse)
        if fresh:  # the load while this row trained, for the table's notes
            (workdir / "row_load.json").write_text(
                json.dumps({"before": row_load, "after": _report.load_average()})
            )
        loads[name] = _row_load(workdir)
        evals = [r for r in records if "eval/nelbo_bits_per_char" in r]
        final = evals[-1]["eval/nelbo_bits_per_char"]
        stderr = evals[-1].get("eval/stderr_bits", float("nan"))
        bpc[name], se[name] = final, stderr
        walls.append(wall)
        kind = "exact NLL" if name == "ar" else "NELBO (upper bound)"
        rows.append([label, round(final, 4), round(stderr, 4), kind, steps, round(wall, 1)])
        print(rows[-1], flush=True)
    header = ["model", "valid bits/char", "s.e.", "kind", "train steps", "wall s"]
    layers = args.layers or (1 if args.quick else 4)
    width = args.width or (32 if args.quick else 128)
    batch = args.batch or 4  # quick: quick_overrides' batch
    if (lo, hi) == (0.0, 1.0):
        schedule = "the full schedule (mask rates U[0, 1])"
    else:
        schedule = f"BD3-LM's clipped schedule, mask rates U[{lo:g}, {hi:g}]"
    if args.quick:
        eval_size = "one batch of 8 validation sequences (quick)"
    elif args.eval_batches:
        eval_size = f"the first {args.eval_batches} validation batches of 128 sequences"
    else:
        eval_size = "the whole validation split"
    row_loads = "; ".join(f"{n}: {v}" for n, v in loads.items())
    notes = (
        f"Validation split of tiny Shakespeare in the text8 alphabet (27 symbols), "
        f"{layers} layers x width {width}, L = {seq_len}, batch {batch}, {steps} steps for "
        f"every row (equal budget in steps and sequences, not in compute: a BD3-LM step "
        f"attends over [x_t ; x0], 2L positions), lr {args.lr:g} with {args.warmup} warmup "
        f"steps and cosine decay for every row; EMA parameters. BD3-LM rows: a time-free "
        f"block-causal DiT trained with the block masked ELBO under {schedule}, validated "
        f"with the bound of the full schedule; the MDLM row is time-conditioned with full "
        f"attention and trains on the full schedule. Validation: {eval_size} (4 noise "
        f"levels per sequence for the bounds; the AR NLL is exact per sequence); s.e.: the "
        f"standard error of the validation estimate. Machine load (1 / 5 / 15-minute "
        f"averages) before and after each row's training: {row_loads} (other jobs shared "
        f"the 2 cores, so wall times are only indicative). The BD3-LM runs are sampled in "
        f"the next table (`experiments/tables/block_decoding.py`).\n\n" + reading(bpc, se)
    )
    out = args.out or _report.DOCS / "tables"
    path = _report.write("block_sizes", header, rows, started, notes, out, compute_s=sum(walls))
    print(path.read_text())


def reading(bpc: dict[str, float], se: dict[str, float] | None = None) -> str:
    """The measured order of the BD3-LM rows by block size, and where the AR and MDLM rows
    fall, from this run's numbers; a gap under two standard errors is a tie."""
    se = se or {}
    blocks = [n for n in ROWS if n in bpc and n not in ("ar", "mdlm")]
    lines = []
    for small, big in zip(blocks, blocks[1:]):
        gap = bpc[big] - bpc[small]
        noise = 2 * math.hypot(se.get(small, 0.0), se.get(big, 0.0))
        if abs(gap) < noise:
            verdict = "a tie within two standard errors"
        elif gap > 0:
            verdict = "the smaller block is better, as expected"
        else:
            verdict = "the larger block is better here, against the expected order"
        lines.append(
            f"- block {small} ({bpc[small]:.3f}) vs block {big} ({bpc[big]:.3f}): {verdict}."
        )
    for ref in ("ar", "mdlm"):
        if ref in bpc and blocks:
            nearest = min(blocks, key=lambda n: abs(bpc[n] - bpc[ref]))
            gap = bpc[nearest] - bpc[ref]
            noise = 2 * math.hypot(se.get(ref, 0.0), se.get(nearest, 0.0))
            within = "within" if abs(gap) < noise else "beyond"
            lines.append(
                f"- {ref.upper()} {bpc[ref]:.3f}: closest BD3-LM row is block {nearest} "
                f"({bpc[nearest]:.3f}, {gap:+.3f}: {within} two standard errors)."
            )
    if not lines:
        return ""
    return "Measured (expected: bits fall as the block shrinks, block 1 near AR):\n" + "\n".join(
        lines
    )


if __name__ == "__main__":
    main()
