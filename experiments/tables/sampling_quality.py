"""Sampling quality against network calls on the Shakespeare MDLM model.

For every sampler and steps in {8, ..., 256}: generative perplexity of the samples
under the trained AR model (token-weighted over the whole sample set, see
ddjax.metrics) and the mean per-sample unigram entropy in nats. Two extra rows
repeat the ancestral sampler with the reference implementations' draw (one (K + 1)-way
float32 Gumbel-max, tail capped near 16.6 nats) against ddjax's tail-exact draw: the
setting of Zheng et al.'s finding that the truncated draw lowers entropy and, with it,
generative perplexity. At K = 28 the effect is expected to be small; the same
comparison at K = 50257 is experiments/tables/gumbel_precision.py.

Needs the MDLM and AR checkpoints of the likelihood table
(runs/likelihood/shakespeare_{mdlm,ar}); ``--quick`` trains tiny ones itself.

    python -m experiments.tables.sampling_quality
    python -m experiments.tables.sampling_quality --quick
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np

import ddjax as dd
from ddjax.models import ar_log_likelihood
from experiments import model
from experiments.tables import _report, likelihood


def restore(workdir: Path):
    """(experiment, eval params) from a finished run's workdir."""
    with open(workdir / "config.json") as f:
        cfg = ml_collections.ConfigDict(json.load(f))
    exp, state = model.restore_for_inference(cfg, str(workdir))
    return exp, model.eval_params(cfg, state)


def ar_nats(exp_ar, params_ar, x: np.ndarray) -> np.ndarray:
    """Nats per sequence of x [N, L] under the AR model."""
    logits = jax.jit(lambda xb: exp_ar.apply_fn(params_ar, xb, None, None))
    return -np.asarray(ar_log_likelihood(logits, x, batch_size=64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=None, help="sequences per cell")
    parser.add_argument("--runs", type=Path, default=_report.ROOT / "runs" / "likelihood")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.time()
    if args.quick:
        # tiny models of its own, next to (never over) the full runs
        args.runs = args.runs / "quick"
        for name in ("shakespeare_mdlm", "shakespeare_ar"):
            if not (args.runs / name / "config.json").exists():
                _report.train_config(name, args.runs / name, likelihood.quick_overrides(2))
    num = args.samples or (4 if args.quick else 64)
    steps_list = [4] if args.quick else [8, 16, 32, 64, 128, 256]
    names = ["ancestral", "first_hitting"] if args.quick else list(dd.samplers.SAMPLERS)

    exp, params = restore(args.runs / "shakespeare_mdlm")
    exp_ar, params_ar = restore(args.runs / "shakespeare_ar")
    process = exp.objective.process
    shape = (num, exp.data.seq_len)
    denoiser = exp.objective.denoiser(params, None)
    data_nats = ar_nats(exp_ar, params_ar, exp.data.eval_x[:num])
    data_ppl = math.exp(data_nats.sum() / data_nats.size / shape[1])

    def measure(name: str, steps: int, **options) -> tuple[float, float, float]:
        """(generative perplexity, mean per-sample unigram entropy, its standard error)."""
        sampler = dd.samplers.SAMPLERS[name]
        fn = jax.jit(lambda k: sampler(k, denoiser, process, shape, steps=steps, **options))
        x = np.asarray(fn(jax.random.key(0)))
        nats = ar_nats(exp_ar, params_ar, x)
        ppl = float(dd.metrics.perplexity(nats, shape[1]))
        ents = np.asarray(dd.metrics.unigram_entropy(x, process.vocab_size))
        return ppl, float(ents.mean()), float(ents.std(ddof=1) / np.sqrt(ents.size))

    rows, curves = [], {}
    for name in names:
        s_list = [steps_list[0]] if name == "first_hitting" else steps_list
        for steps in s_list:
            ppl, ent, _ = measure(name, steps)
            calls = dd.samplers.network_calls(name, steps, shape[1])
            rows.append([name, "exact", steps, calls, round(ppl, 2), round(ent, 3)])
            curves.setdefault(name, []).append((calls, ppl))
            print(rows[-1], flush=True)
    gumbel = {}
    for bits in ("float32", 32):
        steps = steps_list[-1]
        ppl, ent, se = measure("ancestral", steps, gumbel_bits=bits)
        label = "float32 Gumbel, (K+1)-way" if bits == "float32" else "tail-exact (ddjax)"
        rows.append(["ancestral", label, steps, steps, round(ppl, 2), round(ent, 3)])
        gumbel[label] = (ppl, ent, se)
        print(rows[-1], flush=True)

    header = ["sampler", "categorical draw", "steps", "network calls", "gen. perplexity", "entropy"]
    ent_data = float(dd.metrics.unigram_entropy(exp.data.eval_x[:num], process.vocab_size).mean())
    notes = (
        f"{num} samples of length {shape[1]} per cell from the MDLM model of the likelihood "
        f"table; generative perplexity under its AR model, token-weighted. For reference, "
        f"validation text: perplexity {data_ppl:.2f}, unigram entropy {ent_data:.3f} nats.\n\n"
        + reading(rows, gumbel, data_ppl)
    )
    out = args.out or _report.DOCS / "tables"
    path = _report.write("sampling_quality", header, rows, started, notes, out)
    _plot(curves, data_ppl, out / "sampling_quality.png")
    print(path.read_text())


def reading(rows: list[list], gumbel: dict, data_ppl: float) -> str:
    """Per sampler, perplexity at the fewest and most steps; the two Gumbel rows' entropy
    gap in standard errors. Written from this run's numbers."""
    lines = [f"Reading (validation text: perplexity {data_ppl:.2f}):"]
    by_name: dict[str, list] = {}
    for name, draw, steps, _calls, ppl, ent in rows:
        if draw == "exact":
            by_name.setdefault(name, []).append((steps, ppl, ent))
    for name, cells in by_name.items():
        (s0, p0, e0), (s1, p1, e1) = cells[0], cells[-1]
        if len(cells) == 1:
            lines.append(f"- {name}: perplexity {p0:.2f}, entropy {e0:.3f} nats ({s0} steps).")
            continue
        lines.append(
            f"- {name}: perplexity {p0:.2f} at {s0} steps, {p1:.2f} at {s1}; "
            f"entropy {e0:.3f} -> {e1:.3f} nats."
        )
    (l32, (p32, e32, se32)), (lex, (pex, eex, seex)) = gumbel.items()
    z = (e32 - eex) / max(float(np.hypot(se32, seex)), 1e-12)
    lines.append(
        f"- {l32} vs {lex}: entropy {e32:.3f} vs {eex:.3f} nats ({z:+.1f} s.e.), "
        f"perplexity {p32:.2f} vs {pex:.2f}."
    )
    return "\n".join(lines)


def _plot(curves: dict, data_ppl: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, pts in curves.items():
        calls, ppl = zip(*pts)
        ax.plot(calls, ppl, marker="o", label=name)
    ax.axhline(data_ppl, color="gray", ls="--", label="validation text")
    ax.set_xscale("log")
    ax.set_xlabel("network calls")
    ax.set_ylabel("generative perplexity (AR)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
