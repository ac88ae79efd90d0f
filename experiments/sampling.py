"""Sampling a trained experiment: sampler and option checks, prompts, the samples'
files, and the ``--mode=sample`` job."""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ddjax import samplers, training
from experiments.common import ConfigError, make_workdir, say
from experiments.model import Experiment, eval_params, restore_for_inference

# What the job passes to every sampler itself, and the config key that sets it.
JOB_ARGUMENTS = {
    "key": "sample.seed",
    "denoiser": "the model",
    "process": "process.*",
    "shape": "sample.num_samples and data.seq_len",
    "steps": "sample.steps",
    "temperature": "sample.temperature",
    "fixed": "sample.prompt / sample.template",
    "return_trajectory": "the job writes final samples only",
}


def get_sampler(name: str) -> Callable:
    """``ddjax.samplers.SAMPLERS[name]``, or a ConfigError that lists the known names."""
    from ddjax import samplers

    if name not in samplers.SAMPLERS:
        raise ConfigError(f"unknown sample.sampler {name!r}; known: {sorted(samplers.SAMPLERS)}")
    return samplers.SAMPLERS[name]


def _job_arguments(cfg: Any) -> dict[str, str]:
    """Arguments the job sets itself for ``cfg`` (name -> what sets it)."""
    job = dict(JOB_ARGUMENTS)
    if cfg.loss.name == "any_order_nll" and cfg.sample.sampler == "ancestral":
        job["time_independent"] = "set for any_order_nll models"
    if cfg.sample.sampler == "confidence":
        job["threshold"] = "sample.threshold"
    return job


def sample_block_size(cfg: Any) -> int:
    """The block size of block diffusion for ``cfg`` (0: the whole sequence at once):
    ``sample.block_size``, else the model's (``loss.block_size`` of a BD3-LM), else the
    sequence length when ``sample.eos_id`` asks for EOS stopping (one block)."""
    bs = int(cfg.sample.get("block_size", 0))
    if not bs and cfg.loss.name == "block_masked_elbo":
        bs = int(cfg.loss.block_size)
    if not bs and int(cfg.sample.get("eos_id", -1)) >= 0:
        bs = int(cfg.data.seq_len)
    return bs


def user_options(cfg: Any) -> dict[str, Any]:
    """``cfg.sample.options`` as a plain dict (empty when the config has none)."""
    options = cfg.sample.get("options", None)
    if options is None:
        return {}
    return options.to_dict() if hasattr(options, "to_dict") else dict(options)


def valid_options(cfg: Any) -> list[str]:
    """The keyword options of ``cfg.sample.sampler`` that ``sample.options`` may set."""
    params = inspect.signature(get_sampler(str(cfg.sample.sampler))).parameters.values()
    job = _job_arguments(cfg)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds and p.name not in job]


def sampler_options(cfg: Any) -> dict[str, Any]:
    """Checks ``sample.sampler`` and ``sample.options`` against the sampler's signature.

    Returns the options to pass through. Raises ConfigError for an unknown sampler (with
    the known names), or an option the sampler lacks or the job sets itself (with the
    valid options). Run it before training so a typo fails at step 0, not at the end.
    """
    options = user_options(cfg)
    if cfg.loss.name == "ar":
        if options:
            raise ConfigError(
                f"sample.options {sorted(options)}: the AR model samples left to right "
                "and takes no sampler options"
            )
        return {}
    name = str(cfg.sample.sampler)
    valid = valid_options(cfg)
    job = _job_arguments(cfg)
    for key in options:
        if key in valid:
            continue
        why = f" is set by the job ({job[key]})" if key in job else " is unknown"
        raise ConfigError(
            f"sample.options.{key}{why} for sampler {name!r}; valid options: {', '.join(valid)}"
        )
    return options


def sample_ar(
    key: Array,
    graphdef: Any,
    params: Any,
    shape: tuple[int, int],
    temperature: float,
    *,
    prompt: Array | None = None,
    cache: bool = True,
    eos_id: int | None = None,
) -> Array:
    """Left-to-right sampling from the causal model: int32[B, L], with the exact KV cache
    (``dd.samplers.autoregressive``: L one-token passes; ``cache=False``: L full passes);
    with ``eos_id`` each row stops at its first drawn EOS, the positions after it EOS too."""
    from ddjax.samplers import autoregressive

    out = autoregressive(
        key, (graphdef, params), shape, temperature=temperature, prompt=prompt, cache=cache,
        eos_id=eos_id,
    )  # fmt: skip
    return out if eos_id is None else out[0]


def _prefix(fixed: np.ndarray | None) -> np.ndarray | None:
    """The prefix prompt of ``fixed`` (its leading columns without -1), or None."""
    if fixed is None:
        return None
    free = np.flatnonzero((fixed < 0).any(0))
    n = int(free[0]) if len(free) else fixed.shape[1]
    if (fixed[:, n:] >= 0).any():
        raise ConfigError("the autoregressive model takes a prefix prompt (sample.prompt) only")
    return fixed[:, :n] if n else None


def _out_sharding(exp: Experiment, num: int) -> Any:
    """Rows split over the mesh's devices (so over processes) when ``num`` divides by
    the device count, else None (every device draws every row)."""
    from ddjax import training

    n = exp.mesh.devices.size
    return training.batch_sharding(exp.mesh) if n > 1 and num % n == 0 else None


def generate(exp: Experiment, params: Any, num: int, seed: int) -> np.ndarray:
    """``num`` samples from the model, int32[num, seq_len], with ``cfg.sample``, on every
    process (see :func:`generate_global` for how the rows are split)."""
    from experiments.evaluation import gather

    x = gather(generate_global(exp, params, num, seed))
    try:  # the samplers mark rows that were not distributions with -1, without a sync
        return samplers.check_samples(x)
    except ValueError as e:
        raise training.NonFiniteError(f"sampling failed: {e}") from None


def generate_global(exp: Experiment, params: Any, num: int, seed: int) -> jax.Array:
    """:func:`generate` as one global array: when ``num`` divides by the device count
    its rows are split over the devices of every process (each process computes its
    share; the draws are those of one device), else every device draws every row."""
    cfg = exp.cfg
    key = jax.random.PRNGKey(seed)
    shape = (num, exp.data.seq_len)
    temperature = float(cfg.sample.temperature)
    if exp.objective.name == "ar":
        sampler_options(cfg)
        prompt = _prefix(prompt_tokens(exp, num))
        eos = eos_token(exp)
        fn = jax.jit(
            lambda p, k: sample_ar(
                k, exp.graphdef, p, shape, temperature, prompt=prompt, eos_id=eos
            ),
            out_shardings=_out_sharding(exp, num),
        )
        return fn(params, key)
    if sample_block_size(cfg):
        return _generate_blocks(exp, params, num, key)
    name = cfg.sample.sampler
    sampler = get_sampler(name)
    labels = None
    num_classes = int(cfg.model.num_classes)
    if num_classes > 0:
        label = int(cfg.sample.class_label)
        if not -1 <= label < num_classes:
            raise ConfigError(
                f"sample.class_label={label} must be -1 (every class) or 0..{num_classes - 1}"
            )
        labels = jnp.arange(num, dtype=jnp.int32) % num_classes
        if label >= 0:
            labels = jnp.full((num,), label, jnp.int32)
    process = exp.objective.process
    steps = int(cfg.sample.steps)
    if process.is_discrete_time:
        steps = min(steps, process.num_steps)
    options: dict[str, Any] = {"steps": steps, **sampler_options(cfg)}
    if temperature != 1.0:
        options["temperature"] = temperature
    if exp.objective.name == "any_order_nll" and name == "ancestral":
        options["time_independent"] = True
    if float(cfg.sample.get("threshold", 0.0)) > 0:
        options["threshold"] = float(cfg.sample.threshold)
    fixed = prompt_tokens(exp, num)
    if fixed is not None:
        options["fixed"] = fixed
    guidance = str(cfg.sample.guidance)
    if guidance not in ("none", "cfg"):
        raise ConfigError(f"sample.guidance must be 'none' or 'cfg', got {guidance!r}")
    if guidance == "cfg" and num_classes == 0:
        raise ConfigError(
            "sample.guidance='cfg' needs a class-conditional model (model.num_classes > 0)"
        )

    def run(p: Any, k: Array) -> Array:
        denoiser = exp.objective.denoiser(p, labels)
        if guidance == "cfg":
            from ddjax import guidance as guidance_lib

            null = jnp.full((num,), num_classes, jnp.int32)
            denoiser = guidance_lib.cfg(
                denoiser, exp.objective.denoiser(p, null), float(cfg.sample.gamma)
            )
        return sampler(k, denoiser, process, shape, **options)

    return jax.jit(run, out_shardings=_out_sharding(exp, num))(params, key)


def _generate_blocks(exp: Experiment, params: Any, num: int, key: Array) -> jax.Array:
    """Block diffusion with ``cfg.sample`` (see :func:`sample_block_size`): the exact KV
    cache when the block size is the model's (a time-free block-causal DiT), else the
    uncached block denoiser; ``sample.sampler`` inside each block."""
    from flax import nnx

    from ddjax import models, samplers

    cfg = exp.cfg
    name = str(cfg.sample.sampler)
    get_sampler(name)
    bs = sample_block_size(cfg)
    module = nnx.merge(exp.graphdef, exp.params)
    if getattr(module, "causal", False) or not hasattr(module, "init_cache"):
        raise ConfigError("sample.block_size needs a DiT model (model.name='dit')")
    time_cond = bool(cfg.model.time_conditioning)
    cache = module.block_size == bs and not time_cond
    if not cache:
        say(
            f"note: block diffusion without the KV cache (the model's block size is "
            f"{module.block_size}, sampling with {bs}; time conditioning {time_cond})"
        )
    process = exp.objective.process
    shape = (num, exp.data.seq_len)
    options: dict[str, Any] = {"steps": int(cfg.sample.steps), **sampler_options(cfg)}
    temperature = float(cfg.sample.temperature)
    if temperature != 1.0:
        options["temperature"] = temperature
    if float(cfg.sample.threshold) > 0:
        options["threshold"] = float(cfg.sample.threshold)
    eos = eos_token(exp)
    if eos is not None:
        options["eos_id"] = eos
    fixed = prompt_tokens(exp, num)
    if fixed is not None:
        options["fixed"] = fixed
    labels = None
    if int(cfg.model.num_classes) > 0:
        labels = jnp.arange(num, dtype=jnp.int32) % int(cfg.model.num_classes)
        if int(cfg.sample.class_label) >= 0:
            labels = jnp.full((num,), int(cfg.sample.class_label), jnp.int32)

    def run(p: Any, k: Array) -> Array:
        bd = models.block_denoiser(
            (exp.graphdef, p), process, block_size=bs, cache=cache,
            time_conditioning=time_cond, labels=labels,
        )  # fmt: skip
        out = samplers.block_diffusion(k, bd, process, shape, block_size=bs, inner=name, **options)
        return out if eos is None else out[0]  # the pads after EOS are eos_id

    return jax.jit(run, out_shardings=_out_sharding(exp, num))(params, key)


def eos_token(exp: Experiment) -> int | None:
    """``sample.eos_id`` as a token id of the data, or None (-1: off)."""
    eos = int(exp.cfg.sample.eos_id)
    if eos < 0:
        return None
    vocab = int(exp.data.vocab_size)
    if eos >= vocab:
        raise ConfigError(f"sample.eos_id={eos} is not a token id of the data (0..{vocab - 1})")
    return eos


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


def prompt_tokens(exp: Experiment, num: int) -> np.ndarray | None:
    """``fixed`` for the samplers from ``sample.prompt`` (a prefix) or ``sample.template``.

    In a template every underscore is a free position; positions past the end of the
    prompt or template are free too. Both read their characters by one rule,
    :func:`text_tokens`. Returns int32[num, seq_len] with -1 where free.
    """
    cfg = exp.cfg
    prompt, template = str(cfg.sample.prompt), str(cfg.sample.template)
    if not prompt and not template:
        return None
    if prompt and template:
        raise ConfigError("give sample.prompt or sample.template, not both")
    if exp.data.encode is None:
        raise ConfigError("sample.prompt / sample.template need a text data set")
    seq_len = exp.data.seq_len
    row = np.full(seq_len, -1, np.int32)
    if prompt:
        ids = text_tokens(exp, prompt, "sample.prompt")
    else:
        ids = text_tokens(exp, template, "sample.template", free="_")
    if len(ids) > seq_len:
        what = "tokens" if prompt else "characters"
        key = "sample.prompt" if prompt else "sample.template"
        raise ConfigError(f"{key} has {len(ids)} {what}, more than seq_len={seq_len}")
    row[: len(ids)] = ids
    return np.broadcast_to(row, (num, seq_len)).copy()


def text_tokens(exp: Experiment, text: str, key: str, *, free: str = "") -> np.ndarray:
    """The token ids of a prompt or template ``text`` (config key ``key``), -1 at the
    characters in ``free``: the one rule for both.

    Character data reads ``text`` one token per character: text8 mode maps each
    character as the training text was mapped (capitals lowered, any other character
    outside a-z to a space) and prints a note saying what changed; a character the
    alphabet cannot hold (raw mode: one the corpus lacks) is a ConfigError naming it and
    its position. Token data (GPT-2 BPE) encodes a prompt as a whole.
    """
    encode, decode = exp.data.encode, exp.data.decode
    if exp.data.unit != "char" and not free:
        try:
            return np.asarray(encode(text), np.int32)
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None
    text8 = exp.cfg.data.mode == "text8"
    alphabet = "lower-case a-z and space" if text8 else "the corpus's characters"
    ids = np.full(len(text), -1, np.int32)
    for i, ch in enumerate(text):
        if ch in free:
            continue
        try:
            one = encode(ch)
        except ValueError:
            one = []
        if len(one) != 1:
            raise ConfigError(
                f"{key} character {ch!r} (position {i}) is not in the alphabet ({alphabet})"
                + ("; use '_' for a free position" if free else "")
            )
        ids[i] = int(one[0])
    # what the model sees, with the free positions kept as written
    read = "".join(
        ch if ch in free else decode(np.asarray([[t]], np.int32))[0] for ch, t in zip(text, ids)
    )
    if read != text:
        _note_once(f"note: {key} {text!r} is read as {read!r} (the text8 alphabet: {alphabet})")
    return ids


_NOTES: set[str] = set()


def _note_once(msg: str) -> None:
    """Prints ``msg`` the first time only (prompts are re-read at every evaluation)."""
    if msg not in _NOTES:
        _NOTES.add(msg)
        say(msg)


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
    from ddjax import metrics

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
    from experiments.checks import check_config

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
