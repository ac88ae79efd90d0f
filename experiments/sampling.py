"""The ``--mode=sample`` job: samples of the latest checkpoint in a new file each run
(a fresh seed and tag), and the draw-write-print step that training runs too."""

from __future__ import annotations

import json
import os
from typing import Any

import jax

from ddjax import metrics
from experiments.checks import check_config
from experiments.common import ConfigError, say
from experiments.generation import generate
from experiments.model import Experiment, eval_params, restore_for_inference
from experiments.outputs import sample_texts, write_samples


def sample_and_write(
    exp: Experiment,
    params: Any,
    workdir: str,
    step: int,
    *,
    tag: str | None = None,
    seed: int | None = None,
) -> list[str] | str:
    """Samples with ``cfg.sample``, writes them to the workdir and prints text ones.

    The file is ``samples_<tag>`` (``tag`` defaults to ``step<step>``) with ``.txt`` for
    text and ``.png`` for images. Returns the texts (text data), the PNG path (images),
    or [] when sampling is not possible for this model (the reason is printed) or on
    processes other than 0. A config value that cannot work raises ConfigError.
    ``seed`` defaults to ``sample.seed``.
    """
    cfg = exp.cfg
    seed = int(cfg.sample.seed) if seed is None else int(seed)
    try:
        samples = generate(exp, params, int(cfg.sample.num_samples), seed)
    except ConfigError:
        raise
    except (AttributeError, NotImplementedError, ValueError) as e:
        say(f"note: no samples ({type(e).__name__}: {e})")
        return []
    if jax.process_index() != 0:
        return []
    path = write_samples(exp, samples, workdir, tag or f"step{step}")
    if exp.data.decode is not None:
        texts = sample_texts(exp, samples)
        how = "ar" if exp.objective.name == "ar" else cfg.sample.sampler
        say(f"samples ({how}, written to {path}):")
        for t in texts:
            say("  > " + t.replace("\n", "\\n"))
        rates = word_rates(exp, texts)
        if rates:
            say(
                f"real words: {rates['word_rate']:.0%} of the samples' {rates['num_words']} "
                f"words are words of the training text (validation text: "
                f"{rates['valid_word_rate']:.0%})"
            )
        return texts
    say(f"samples written to {path}")
    return path


def word_rates(exp: Experiment, texts: list[str]) -> dict[str, float]:
    """``ddjax.metrics.word_rate`` of ``texts`` and of as many validation sequences (at
    least 16) against the training text's words; {} without a vocabulary."""
    vocab = exp.data.vocabulary()
    if not vocab or not texts:
        return {}
    n = max(len(texts), 16)
    valid = exp.data.decode(exp.data.eval_x[:n])
    return {
        "word_rate": metrics.word_rate(texts, vocab),
        "num_words": sum(len(metrics.words(t)) for t in texts),
        "valid_word_rate": metrics.word_rate(valid, vocab),
    }


def new_sample_tag(cfg: Any, workdir: str, step: int, seed: int | None = None) -> str:
    """A file tag for ``--mode=sample`` that no file in ``workdir`` has yet:
    ``step<N>_<sampler>_seed<S>`` (then ``-2``, ``-3``, ...), so the samples written at
    the end of training (``samples_step<N>``) and earlier ``--mode=sample`` runs stay.
    ``seed`` defaults to ``sample.seed``."""
    how = "ar" if cfg.loss.name == "ar" else str(cfg.sample.sampler)
    seed = int(cfg.sample.seed) if seed is None else int(seed)
    base = f"step{step}_{how}_seed{seed}"
    taken = set(os.listdir(workdir)) if os.path.isdir(workdir) else set()
    tag, n = base, 1
    while any(f"samples_{tag}{ext}" in taken for ext in (".txt", ".png")):
        n += 1
        tag = f"{base}-{n}"
    return tag


def training_sample_seed(workdir: str) -> int | None:
    """The ``sample.seed`` the training run drew its samples with (``WORKDIR/config.json``),
    or None when the workdir has no readable config."""
    try:
        with open(os.path.join(workdir, "config.json")) as f:
            return int(json.load(f)["sample"]["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fresh_sample_seed(cfg: Any, workdir: str, step: int) -> int:
    """The seed ``--mode=sample`` draws with: ``sample.seed``, moved up past the training
    run's sample seed and past seeds whose ``--mode=sample`` file for this step and
    sampler exists, so a run never writes a copy of samples it already has (with the
    training seed the draw repeated ``samples_step<N>`` byte for byte). Prints a note
    when it moves."""
    how = "ar" if cfg.loss.name == "ar" else str(cfg.sample.sampler)
    taken = set(os.listdir(workdir)) if os.path.isdir(workdir) else set()
    trained = training_sample_seed(workdir)
    asked = seed = int(cfg.sample.seed)
    while seed == trained or any(
        f"samples_step{step}_{how}_seed{seed}{ext}" in taken for ext in (".txt", ".png")
    ):
        seed += 1
    if seed != asked:
        why = (
            f"the training run drew samples_step{step} with it"
            if asked == trained
            else "an earlier --mode=sample run drew with it"
        )
        say(f"note: sampling with seed {seed}, not sample.seed={asked} ({why}); "
            "pass another --config.sample.seed for other draws")  # fmt: skip
    return seed


def sample(cfg: Any, workdir: str) -> dict[str, Any]:
    """Writes ``cfg.sample.num_samples`` samples of the latest checkpoint to the workdir
    (a new file each run, see :func:`new_sample_tag`); a ConfigError when none can be."""
    check_config(cfg)
    if int(cfg.sample.num_samples) < 1:
        raise ConfigError("--mode=sample needs sample.num_samples >= 1")
    exp, state = restore_for_inference(cfg, workdir)
    step = int(state.step)
    seed = fresh_sample_seed(cfg, workdir, step)
    out = sample_and_write(
        exp, eval_params(cfg, state), workdir, step, tag=new_sample_tag(cfg, workdir, step, seed),
        seed=seed,
    )  # fmt: skip
    if jax.process_index() == 0 and not out:
        raise ConfigError("no samples were written (see the note above)")
    return {"samples": out}
