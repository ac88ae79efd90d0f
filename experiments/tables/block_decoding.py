"""Block diffusion decoding on tiny Shakespeare: sample quality against network calls per
token, with and without Fast-dLLM threshold decoding.

Samples the BD3-LM models that ``experiments/tables/block_sizes.py`` trained (block 16
and block 4 by default, read from ``runs/block_sizes/<block>``) with
``dd.samplers.block_diffusion`` and the exact KV cache
(``dd.models.block_denoiser``), block by block, with each inner sampler:

- ``first_hitting``: one position per call, the model's own law inside each block;
- ``confidence`` with ``steps`` per block (MaskGIT's cosine schedule, pure confidence
  order): fewer calls, several positions per call;
- ``confidence`` with ``threshold=c`` (Fast-dLLM): every position whose top probability
  exceeds c, at least one per call; the number of calls adapts.

Columns: network calls per generated token, measured (``return_calls`` of the sampler,
one batched block-denoiser call counted once; the KV-cache writes after each block are
not counted); the judge's bits per character of the samples under the AR row of the
same table (an exact causal NLL; per-character perplexity = 2 ** bits/char), with the
standard error over samples; the mean unigram entropy of each sample (nats); the
fraction of the samples' words that are words of the training text
(``dd.metrics.word_rate``); the sampler's wall seconds (compiled, compile time apart).
Every row draws the same number of samples with the same key. Reference rows: the
validation text and the AR model's own samples (which the judge scores as itself).

    python -m experiments.tables.block_decoding             # docs/tables/block_decoding.*
    python -m experiments.tables.block_decoding --quick     # tiny runs of its own (CI)
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import ddjax as dd
from experiments import sampling
from experiments.tables import _report
from experiments.tables.likelihood import quick_overrides
from experiments.tables.sampling_quality import ar_nats, restore

HEADER = [
    "model",
    "inner sampler",
    "steps / block",
    "threshold",
    "calls / token",
    "judge bits/char",
    "s.e.",
    "entropy (nats)",
    "real words",
    "wall s",
]


def decoders(block: int, steps: list[int], thresholds: list[float]) -> list[dict[str, Any]]:
    """The inner-sampler settings of one block model: first_hitting, confidence at each
    of ``steps`` per block that is at most ``block``, confidence with each threshold
    (``steps = block``: the cap never binds)."""
    rows: list[dict[str, Any]] = [{"inner": "first_hitting", "steps": None, "threshold": None}]
    rows += [
        {"inner": "confidence", "steps": s, "threshold": None} for s in steps if 1 <= s <= block
    ]
    rows += [{"inner": "confidence", "steps": block, "threshold": c} for c in thresholds]
    return rows


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` compiled ahead of time; (output as numpy, run wall seconds)."""
    compiled = jax.jit(fn).lower(*args).compile()
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return jax.tree.map(np.asarray, out), time.perf_counter() - start


def sample_blocks(
    exp: Any,
    params: Any,
    key: Any,
    shape: tuple[int, int],
    block: int,
    *,
    inner: str,
    steps: int | None,
    threshold: float | None,
) -> tuple[np.ndarray, int, float]:
    """Block diffusion from a trained BD3-LM run with the exact KV cache: (samples
    int32[B, L], block-denoiser calls as counted by the sampler, run wall seconds)."""
    process = exp.objective.process
    options = {} if threshold is None else {"threshold": threshold}

    def run(p: Any, k: Any) -> Any:
        bd = dd.models.block_denoiser(
            (exp.graphdef, p), process, block_size=block, cache=True, time_conditioning=False
        )
        return dd.samplers.count_calls(
            dd.samplers.block_diffusion, k, bd, process, shape,
            block_size=block, steps=steps, inner=inner, **options,
        )  # fmt: skip

    (x, calls), wall = timed(run, params, key)
    return x, int(calls), wall


def quality(exp_ar: Any, params_ar: Any, exp: Any, x: np.ndarray) -> dict[str, float]:
    """Judge bits/char (and its s.e. over samples), mean unigram entropy and word rate of
    samples x int32[N, L]."""
    length = x.shape[1]
    bits = ar_nats(exp_ar, params_ar, x) / (length * math.log(2))
    ents = np.asarray(dd.metrics.unigram_entropy(x, exp.data.vocab_size))
    texts = exp.data.decode(x)
    return {
        "bits": float(bits.mean()),
        "se": float(bits.std(ddof=1) / math.sqrt(len(bits))) if len(bits) > 1 else float("nan"),
        "entropy": float(ents.mean()),
        "words": dd.metrics.word_rate(texts, exp.data.vocabulary()),
    }


def _train_quick(runs: Path) -> None:
    """Tiny AR and block-4 runs of the block-size table's configs (CI)."""
    for name, config, extra in (
        ("ar", "shakespeare_ar", []),
        ("4", "shakespeare_bd3lm_4", ["--config.loss.block_size=4"]),
    ):
        if not (runs / name / "config.json").exists():
            _report.train_config(config, runs / name, quick_overrides(3) + extra)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny runs of its own (CI)")
    parser.add_argument("--runs", type=Path, default=_report.ROOT / "runs" / "block_sizes")
    parser.add_argument("--blocks", default=None, help="block-size rows to sample (16,4)")
    parser.add_argument("--steps", default=None, help="confidence steps per block (16,8,4,2)")
    parser.add_argument("--thresholds", default=None, help="threshold decoding (0.9,0.7,0.5)")
    parser.add_argument("--samples", type=int, default=None, help="samples per row (64)")
    parser.add_argument("--seed", type=int, default=0, help="the one key of every row")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.time()
    load_before = _load()
    if args.quick:
        args.runs = args.runs / "quick"  # never over the full runs
        _train_quick(args.runs)
    blocks = [int(b) for b in (args.blocks or ("4" if args.quick else "16,4")).split(",")]
    steps = [int(s) for s in (args.steps or ("4,2" if args.quick else "16,8,4,2,1")).split(",")]
    thresholds = [float(c) for c in (args.thresholds or "0.9,0.7,0.5").split(",")]
    if args.quick:
        thresholds = thresholds[-1:]
    num = args.samples or (4 if args.quick else 64)

    exp_ar, params_ar = restore(args.runs / "ar")
    key = jax.random.key(args.seed)
    rows: list[list[Any]] = []
    measured: list[dict[str, Any]] = []
    length = exp_ar.data.seq_len
    shape = (num, length)

    def add(label: str, inner: str, s: Any, c: Any, calls: Any, q: dict, wall: Any) -> None:
        per_token = calls if isinstance(calls, str) else round(calls, 3)
        rows.append(
            [label, inner, s, c, per_token, round(q["bits"], 4), round(q["se"], 4),
             round(q["entropy"], 3), round(q["words"], 3), wall]
        )  # fmt: skip
        measured.append({"model": label, "inner": inner, "steps": s,
                         "threshold": None if c == "-" else c, "calls": calls, **q})  # fmt: skip
        print(rows[-1], flush=True)

    valid = np.asarray(exp_ar.data.eval_x[:num])
    add("validation text", "-", "-", "-", "-", quality(exp_ar, params_ar, exp_ar, valid), "-")
    ar_x, ar_wall = timed(
        lambda p, k: sampling.sample_ar(k, exp_ar.graphdef, p, shape, 1.0), params_ar, key
    )
    add("AR (judge itself)", "autoregressive", "-", "-", 1.0,
        quality(exp_ar, params_ar, exp_ar, ar_x), round(ar_wall, 2))  # fmt: skip

    for block in blocks:
        exp, params = restore(args.runs / str(block))
        if exp.data.seq_len != length:
            raise SystemExit(f"block {block}'s run has L = {exp.data.seq_len}, the AR's {length}")
        label = f"BD3-LM block {block}"
        for d in decoders(block, steps, thresholds):
            x, calls, wall = sample_blocks(exp, params, key, shape, block, **d)
            q = quality(exp_ar, params_ar, exp, x)
            s = "-" if d["steps"] is None else d["steps"]
            c = "-" if d["threshold"] is None else d["threshold"]
            add(label, d["inner"], s, c, float(calls) / length, q, round(wall, 2))

    notes = (
        f"{num} samples of {length} characters per row, every row with the same key; "
        f"BD3-LM models of the block-size table (runs in `{_rel(args.runs)}`, their "
        f"training settings in that table), sampled block by block with the exact KV "
        f"cache. calls / token: block-denoiser calls counted by the sampler "
        f"(`dd.samplers.count_calls`), divided by {length}; one batched call serves all "
        f"rows; the cache write after each block is not counted. judge bits/char: exact "
        f"NLL of the samples under the AR row of the block-size table (same size and "
        f"budget; per-character perplexity = 2 ** bits/char), mean over samples with its "
        f"standard error; the AR row's own samples are scored by the model that drew "
        f"them, so their bits/char is that model's entropy rate, a floor only for it. "
        f"entropy: mean unigram entropy of each sample's characters (nats; validation "
        f"text's in its row). real words: the fraction of the samples' words that are "
        f"words of the training text (words cut by a sample's ends count as misses, so "
        f"the validation text sits under 100%). wall s: the compiled sampler's run alone, "
        f"all {num} samples (CPU, shared: indicative). Machine load at the start: "
        f"{load_before}; at the end: {_load()}.\n\n" + reading(measured)
    )
    out = args.out or _report.DOCS / "tables"
    path = _report.write("block_decoding", HEADER, rows, started, notes, out)
    print(path.read_text())


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(_report.ROOT))
    except ValueError:
        return str(path)


def reading(measured: list[dict[str, Any]]) -> str:
    """Per block model: each confidence and threshold row against first_hitting (the
    model's law) in judge bits/char, a gap under two standard errors called a tie; and
    the calls per token the thresholds used. Written from this run's numbers."""
    lines = []
    for model in dict.fromkeys(m["model"] for m in measured if m["model"].startswith("BD3")):
        cells = [m for m in measured if m["model"] == model]
        ref = next((m for m in cells if m["inner"] == "first_hitting"), None)
        if ref is None:
            continue
        lines.append(
            f"- {model}, first_hitting (the model's law, {ref['calls']:.2f} calls/token): "
            f"{ref['bits']:.3f} bits/char, entropy {ref['entropy']:.3f}, "
            f"{ref['words']:.0%} real words."
        )
        for m in cells:
            if m is ref:
                continue
            gap = m["bits"] - ref["bits"]
            noise = 2 * math.hypot(m["se"], ref["se"])
            if abs(gap) < noise:
                verdict = "a tie with first_hitting within two s.e."
            elif gap < 0:
                verdict = "lower than first_hitting (the judge prefers it)"
            else:
                verdict = "higher than first_hitting"
            how = (
                f"{m['steps']} steps/block"
                if m["threshold"] is None
                else f"threshold {m['threshold']}"
            )
            lines.append(
                f"  - confidence, {how}: {m['calls']:.3f} calls/token, {m['bits']:.3f} "
                f"bits/char ({gap:+.3f}, {verdict}), entropy {m['entropy']:.3f}, "
                f"{m['words']:.0%} real words."
            )
    if not lines:
        return ""
    return "Measured (judge bits/char against first_hitting's, per model):\n" + "\n".join(lines)


if __name__ == "__main__":
    main()
