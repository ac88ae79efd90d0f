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

Every sequence is drawn on its own (batch 1; ``lax.map`` over keys split from one key,
the same for every row), so the calls are per sequence; threshold rows are also run on
all rows at once, where each block runs until its slowest row is done. Columns: network
calls per generated token, measured (``dd.samplers.count_calls``; the KV-cache write
after each block is not counted), mean over sequences and all rows at once; the judge's
bits per character of the samples under the AR row of the same table (an exact causal
NLL; per-character perplexity = 2 ** bits/char), with its standard error over samples;
the mean unigram entropy of each sample (nats); the fraction of the samples' words that
are words of the training text (``dd.metrics.word_rate``); the sampler's wall seconds
(compiled, compile time apart). Reference rows: the validation text and the AR model's
own samples (which the judge scores as itself). Rows are cached under
``runs/block_sizes/<row>/decoding/``; ``--reuse`` reads them back.

    python -m experiments.tables.block_decoding --reuse     # docs/tables/block_decoding.*
    python -m experiments.tables.block_decoding --quick     # tiny runs of its own (CI)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import ddjax as dd
from experiments.generation import sample_ar
from experiments.tables import _report
from experiments.tables.likelihood import quick_overrides
from experiments.tables.sampling_quality import ar_nats, restore

HEADER = [
    "model",
    "inner sampler",
    "steps / block",
    "threshold",
    "calls / token",
    "calls / token, all rows at once",
    "judge bits/char",
    "s.e.",
    "entropy (nats)",
    "real words",
    "wall s",
]
# calls / token: mean over sequences drawn one at a time; "all rows at once": one run on
# every row together (threshold decoding: each block takes the calls of its slowest row)


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
    one_at_a_time: bool = True,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Block diffusion from a trained BD3-LM run with the exact KV cache: (samples
    int32[B, L], block-denoiser calls as counted by the sampler, run wall seconds).

    ``one_at_a_time``: each sequence is its own sampler run (``lax.map`` over the B
    keys of ``split(key, B)``, batch 1), so the calls int32[B] are per sequence; else
    one run on all B rows with ``key``, whose call int32[1] serves every row (with
    threshold decoding it is the most any row needs)."""
    process = exp.objective.process
    options = {} if threshold is None else {"threshold": threshold}

    def draw(p: Any, k: Any, rows: tuple[int, int]) -> Any:
        bd = dd.models.block_denoiser(
            (exp.graphdef, p), process, block_size=block, cache=True, time_conditioning=False
        )
        return dd.samplers.count_calls(
            dd.samplers.block_diffusion, k, bd, process, rows,
            block_size=block, steps=steps, inner=inner, **options,
        )  # fmt: skip

    def run(p: Any, k: Any) -> Any:
        if not one_at_a_time:
            x, calls = draw(p, k, shape)
            return x, calls[None]
        x, calls = jax.lax.map(lambda kk: draw(p, kk, (1, shape[1])), jax.random.split(k, shape[0]))
        return x[:, 0], calls

    (x, calls), wall = _report.timed(run, params, key)
    return x, np.asarray(calls), wall


def cached(path: Path, reuse: bool, measure: Any) -> dict[str, Any]:
    """``measure()``'s record (json-able dict), written to ``path`` with the machine load
    around it; with ``reuse``, the record already at ``path`` instead (a row measured by
    an earlier invocation on the same runs)."""
    if reuse and path.exists():
        return json.loads(path.read_text())
    before, start = _report.load_average(), time.time()
    record = {**measure(), "load": f"{before} -> {_report.load_average()}"}
    record["elapsed"] = time.time() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny runs of its own (CI)")
    parser.add_argument("--runs", type=Path, default=_report.ROOT / "runs" / "block_sizes")
    parser.add_argument("--blocks", default=None, help="block-size rows to sample (16,4)")
    parser.add_argument("--steps", default=None, help="confidence steps per block (16,8,4,2,1)")
    parser.add_argument(
        "--thresholds", default=None, help="threshold decoding (0.9,0.7,0.5,0.3,0.1)"
    )
    parser.add_argument("--samples", type=int, default=None, help="samples per row (64)")
    parser.add_argument("--seed", type=int, default=0, help="the one key of every row")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--reuse", action="store_true", help="read rows measured earlier on the same runs"
    )
    args = parser.parse_args()
    started = time.time()
    if args.quick:
        args.runs = args.runs / "quick"  # never over the full runs
        _train_quick(args.runs)
    blocks = [int(b) for b in (args.blocks or ("4" if args.quick else "16,4")).split(",")]
    steps = [int(s) for s in (args.steps or ("4,2" if args.quick else "16,8,4,2,1")).split(",")]
    thresholds = [float(c) for c in (args.thresholds or "0.9,0.7,0.5,0.3,0.1").split(",")]
    if args.quick:
        thresholds = thresholds[-1:]
    num = args.samples or (4 if args.quick else 64)

    exp_ar, params_ar = restore(args.runs / "ar")
    key = jax.random.key(args.seed)
    rows: list[list[Any]] = []
    loads: list[float] = []
    elapsed: list[float] = []
    measured: list[dict[str, Any]] = []
    length = exp_ar.data.seq_len
    shape = (num, length)

    def add(label: str, inner: str, s: Any, c: Any, calls: Any, q: dict, wall: Any) -> None:
        per_token = calls if isinstance(calls, str) else round(calls, 3)
        batched = q.get("calls_batched", "-")
        batched = batched if isinstance(batched, str) else round(batched / length, 3)
        rows.append(
            [label, inner, s, c, per_token, batched, round(q["bits"], 4), round(q["se"], 4),
             round(q["entropy"], 3), round(q["words"], 3), wall]
        )  # fmt: skip
        measured.append({**q, "length": length, "model": label, "inner": inner, "steps": s,
                         "threshold": None if c == "-" else c, "calls": calls})  # fmt: skip
        if "wall" in q:  # the row's own time (records before "elapsed": its sampler runs)
            elapsed.append(q.get("elapsed", q["wall"] + q.get("wall_batched", 0.0)))
        if "load" in q:  # 'load average a / b / c -> load average d / e / f'
            loads.extend(float(part.split()[2]) for part in q["load"].split("->"))
        print(rows[-1], flush=True)

    valid = np.asarray(exp_ar.data.eval_x[:num])
    add("validation text", "-", "-", "-", "-", quality(exp_ar, params_ar, exp_ar, valid), "-")

    def measure_ar() -> dict[str, Any]:
        ar_x, wall = _report.timed(
            lambda p, k: sample_ar(k, exp_ar.graphdef, p, shape, 1.0), params_ar, key
        )
        q = quality(exp_ar, params_ar, exp_ar, ar_x)
        return {"calls": length, "calls_batched": length, "wall": wall, **q}

    tag = f"n{num}_seed{args.seed}"
    m = cached(args.runs / "ar" / "decoding" / f"autoregressive_{tag}.json", args.reuse, measure_ar)
    add("AR (judge itself)", "autoregressive", "-", "-", m["calls"] / length, m,
        round(m["wall"], 2))  # fmt: skip

    for block in blocks:
        loaded: list[Any] = []

        def model(block: int = block, loaded: list = loaded) -> tuple[Any, Any]:
            if not loaded:  # restored only when a row is not read from its cache
                exp, params = restore(args.runs / str(block))
                if exp.data.seq_len != length:
                    raise SystemExit(
                        f"block {block}'s run has L = {exp.data.seq_len}, the AR's {length}"
                    )
                loaded.extend([exp, params])
            return loaded[0], loaded[1]

        label = f"BD3-LM block {block}"
        for d in decoders(block, steps, thresholds):

            def measure(d: dict = d, block: int = block, model: Any = model) -> dict[str, Any]:
                exp, params = model()
                x, calls, wall = sample_blocks(exp, params, key, shape, block, **d)
                record = {"calls": float(calls.mean()), "calls_max": int(calls.max()),
                          "wall": wall, **quality(exp_ar, params_ar, exp, x)}  # fmt: skip
                if d["threshold"] is None:  # a planned count: the same for every row
                    if calls.min() != calls.max():
                        raise RuntimeError(f"{d}: calls differ between sequences: {calls}")
                    record["calls_batched"] = int(calls[0])
                else:  # all rows in one run: the calls of the slowest row, per block
                    _, batched, wall_b = sample_blocks(
                        exp, params, key, shape, block, **d, one_at_a_time=False
                    )
                    record.update(calls_batched=int(batched[0]), wall_batched=wall_b)
                return record

            name = f"{d['inner']}_steps{d['steps']}_threshold{d['threshold']}_{tag}.json"
            m = cached(args.runs / str(block) / "decoding" / name, args.reuse, measure)
            s = "-" if d["steps"] is None else d["steps"]
            c = "-" if d["threshold"] is None else d["threshold"]
            add(label, d["inner"], s, c, m["calls"] / length, m, round(m["wall"], 2))

    notes = (
        f"{num} samples of {length} characters per row, every row with the same key; "
        f"BD3-LM models of the block-size table (runs in `{_rel(args.runs)}`, their "
        f"training settings in that table), sampled block by block with the exact KV "
        f"cache. calls / token: block-denoiser calls counted by the sampler "
        f"(`dd.samplers.count_calls`; the cache write after each block is not counted) "
        f"divided by {length}, with every sequence drawn on its own (batch 1, `lax.map` "
        f"over {num} keys split from one), the mean over sequences; 'all rows at once': "
        f"the same settings in one run on all {num} rows (one batched call serves every "
        f"row, and with threshold decoding each block runs until its slowest row is done, "
        f"so that count is the most calls any row needs, not their mean). The samples, "
        f"quality columns and wall s are those of the one-at-a-time runs. judge bits/char: exact "
        f"NLL of the samples under the AR row of the block-size table (same size and "
        f"budget; per-character perplexity = 2 ** bits/char), mean over samples with its "
        f"standard error; the AR row's own samples are scored by the model that drew "
        f"them, so their bits/char is that model's entropy rate, a floor only for it. "
        f"entropy: mean unigram entropy of each sample's characters (nats; validation "
        f"text's in its row). real words: the fraction of the samples' words that are "
        f"words of the training text (words cut by a sample's ends count as misses, so "
        f"the validation text sits under 100%). wall s: the compiled sampler's run alone, "
        f"all {num} samples one after another (CPU, shared by other jobs: indicative). "
        f"Machine load (1-minute average) around the sampled rows: {min(loads):.1f} to "
        f"{max(loads):.1f} "
        f"(each row's is in its record under `runs/<row>/decoding/`; rows of earlier "
        f"invocations are read back with --reuse).\n\n" + reading(measured)
    )
    out = args.out or _report.DOCS / "tables"
    path = _report.write(
        "block_decoding", HEADER, rows, started, notes, out, compute_s=sum(elapsed)
    )
    print(path.read_text())


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(_report.ROOT))
    except ValueError:
        return str(path)


def _at_once(m: dict[str, Any]) -> str:
    """', X all rows at once' when a threshold row's batched count differs."""
    batched = m.get("calls_batched")
    if m.get("threshold") is None or batched is None or not m.get("length"):
        return ""
    return f" ({batched / m['length']:.3f} with all rows at once)"


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
            if abs(gap) < max(noise, 5e-4):  # 5e-4: under the printed precision
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
                f"  - confidence, {how}: {m['calls']:.3f} calls/token{_at_once(m)}, "
                f"{m['bits']:.3f} bits/char ({gap:+.3f}, {verdict}), entropy {m['entropy']:.3f}, "
                f"{m['words']:.0%} real words."
            )
    if not lines:
        return ""
    return "Measured (judge bits/char against first_hitting's, per model):\n" + "\n".join(lines)


if __name__ == "__main__":
    main()
