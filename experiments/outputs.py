"""The files a run leaves in its workdir besides checkpoints: the loss-curve PNG and
the list of what is where."""

from __future__ import annotations

import json
import os

import jax

LOSS_PNG = "loss.png"


def read_metrics(workdir: str) -> list[dict]:
    """The records of ``WORKDIR/metrics.jsonl`` (a torn last line is skipped)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def plot_losses(workdir: str) -> str | None:
    """Writes ``WORKDIR/loss.png`` from metrics.jsonl: training bits per token and the
    validation bound against the step. Returns the path (None on other processes or
    before the first record)."""
    if jax.process_index() != 0:
        return None
    records = read_metrics(workdir)
    train = [(r["step"], r["train/bits_per_token"]) for r in records if "train/bits_per_token" in r]
    evals: dict[str, list] = {}
    for r in records:
        for k, v in r.items():
            if k.startswith("eval/nelbo_bits_per_"):
                evals.setdefault(k, []).append((r["step"], v))
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train (bits per token, loss)")
    for k, pts in evals.items():
        unit = k.rsplit("_", 1)[-1]
        ax.plot(*zip(*pts, strict=True), "o-", label=f"validation (bits per {unit}, bound)")
    ax.set_xlabel("step")
    ax.set_ylabel("bits")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(os.path.basename(os.path.abspath(workdir)))
    path = os.path.join(workdir, LOSS_PNG)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=90, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def describe_files(workdir: str, tensorboard: bool, text: bool = True) -> str:
    """One line saying where the run's files are."""
    w = os.path.abspath(workdir)
    samples = "samples_step*.txt" if text else "samples_step*.png"
    parts = ["metrics.jsonl", LOSS_PNG, samples, "checkpoints/", "config.json"]
    if tensorboard:
        tb = os.path.join(w, "tensorboard")
        parts.insert(1, f"tensorboard/ (tensorboard --logdir {tb})")
    return f"files in {w}: " + ", ".join(parts)
