"""The files a run leaves in its workdir besides checkpoints: the loss-curve PNG, the
samples (text, or a PNG grid of images) and the list of what is where."""

from __future__ import annotations

import json
import math
import os

import jax
import numpy as np

from experiments.common import make_workdir
from experiments.model import Experiment
from experiments.sample_config import eos_token

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


def write_samples(exp: Experiment, samples: np.ndarray, workdir: str, tag: str) -> str:
    """Writes samples as text (one per paragraph) or a PNG grid; returns the path."""
    make_workdir(workdir)
    if exp.data.decode is not None:
        path = os.path.join(workdir, f"samples_{tag}.txt")
        texts = sample_texts(exp, samples)
        with open(path, "w", encoding="utf-8") as f:
            for i, s in enumerate(texts):
                f.write(f"--- sample {i} ---\n{s}\n")
        return path
    path = os.path.join(workdir, f"samples_{tag}.png")
    save_image_grid(samples.reshape(len(samples), *exp.data.image_shape), exp.data.vocab_size, path)
    return path


def save_image_grid(images: np.ndarray, levels: int, path: str) -> None:
    """Saves int images [N, H, W] or [N, H, W, 3] (values 0..levels-1) as one PNG grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols, rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = np.clip(images[i], 0, levels - 1) / (levels - 1)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def trim_after_eos(samples: np.ndarray, eos_id: int | None) -> list[np.ndarray]:
    """Each row cut after the first EOS of the run of EOS pads that ends it.

    The EOS samplers set every position after a row's first generated EOS to ``eos_id``,
    so the row's text ends at the last non-EOS token plus one EOS (rows without that
    trailing run are whole). ``eos_id`` None: the rows unchanged.
    """
    rows = list(np.asarray(samples))
    if eos_id is None:
        return rows
    out = []
    for row in rows:
        real = np.flatnonzero(row != eos_id)
        out.append(row[: min(int(real[-1]) + 2, len(row))] if len(real) else row[:1])
    return out


def sample_texts(exp: Experiment, samples: np.ndarray) -> list[str]:
    """The decoded samples, each cut after its EOS when ``sample.eos_id`` is set."""
    eos = eos_token(exp)
    if eos is None:
        return list(exp.data.decode(samples))
    return [exp.data.decode(row[None, :])[0] for row in trim_after_eos(samples, eos)]
