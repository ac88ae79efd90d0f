"""Config-driven training, evaluation and sampling (the body of ``experiments.main``).

``train(cfg, workdir)`` resumes from ``WORKDIR/checkpoints`` when there is one,
trains to ``cfg.train.num_steps``, evaluates the validation NELBO and writes a few
samples; ``evaluate`` and ``sample`` restore the latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ddjax import training
from ddjax.training import Objective

log = logging.getLogger(__name__)

TEXT_DATASETS = ("shakespeare", "text8", "file", "tokens", "owt", "lm1b")
IMAGE_DATASETS = ("digits", "cifar10")


def say(msg: str) -> None:
    """Prints a progress or result line (process 0 only)."""
    if jax.process_index() == 0:
        print(msg, flush=True)


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Data:
    """What the experiment needs from a data set.

    Attributes:
      vocab_size: K data tokens.
      seq_len: tokens per example (pixels for images).
      image_shape: (H, W[, C]) for images, None for text.
      make_train_iter: ``fn(batch_size_per_process, seed) -> iterator of batch dicts``
        with get_state / set_state.
      eval_x: int32[N, seq_len] evaluation examples; eval_labels int32[N] or None.
      decode: token rows -> strings (text) or None (images).
      unit: 'char', 'token' or 'dim' (what one position is, for reporting).
    """

    vocab_size: int
    seq_len: int
    image_shape: tuple[int, ...] | None
    make_train_iter: Callable[[int, int], Any]
    eval_x: np.ndarray
    eval_labels: np.ndarray | None
    decode: Callable[[np.ndarray], list[str]] | None
    unit: str
    encode: Callable[[str], np.ndarray] | None = None


def data_help(cfg: Any) -> str:
    """How to obtain the data set ``cfg.data.name``."""
    name = cfg.data.name
    if name == "text8":
        return (
            "download http://mattmahoney.net/dc/text8.zip and pass "
            "--config.data.path=/path/to/text8.zip (or leave the path empty to download it)"
        )
    if name in ("owt", "lm1b", "tokens"):
        return (
            "prepare nanoGPT-style GPT-2 token files train.bin and val.bin (uint16), e.g. "
            "with nanoGPT's data/openwebtext/prepare.py, and pass their folder as "
            "--config.data.path=DIR"
        )
    if name == "cifar10":
        return (
            "download and unpack https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz "
            "and pass --config.data.path=/path/to/cifar-10-batches-py"
        )
    return "pass an existing file with --config.data.path=PATH"


def load_data(cfg: Any) -> Data:
    """Loads ``cfg.data`` (text corpora or images) for this process."""
    import ddjax.data as ddata

    name = cfg.data.name
    path = cfg.data.path or None
    if path is not None and not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}. To get it: {data_help(cfg)}")
    if name in TEXT_DATASETS:
        loader = {"owt": "tokens", "lm1b": "tokens"}.get(name, name)
        kwargs: dict[str, Any] = {}
        if loader == "text8":
            kwargs["download"] = bool(cfg.data.download)
        try:
            text = ddata.load_text(loader, path, mode=cfg.data.mode, **kwargs)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e} To get it: {data_help(cfg)}") from e
        seq_len = int(cfg.data.seq_len)
        eval_x = ddata.chunk(text.valid if cfg.eval.split == "valid" else text.test, seq_len)
        tok = text.tokenizer
        k = int(text.vocab_size)

        def decode(rows: np.ndarray) -> list[str]:
            rows = np.asarray(rows)
            try:
                return list(tok.decode(rows, mask_char="_"))
            except TypeError:
                return [tok.decode(np.minimum(r, k - 1)) for r in rows]

        def make_iter(batch_size: int, seed: int) -> Any:
            return ddata.sequence_batches(
                text.train,
                seq_len,
                batch_size,
                seed=seed,
                process_index=jax.process_index(),
                process_count=jax.process_count(),
            )

        def encode(s: str) -> np.ndarray:
            normalize = getattr(tok, "normalize", None)
            if normalize is not None and cfg.data.mode == "text8":
                s = normalize(s)
            return np.asarray(tok.encode(s), np.int32)

        unit = "char" if cfg.data.mode in ("text8", "raw") else "token"
        return Data(k, seq_len, None, make_iter, eval_x, None, decode, unit, encode)
    if name in IMAGE_DATASETS:
        if name == "digits":
            (tr_x, tr_y), (ev_x, ev_y) = ddata.train_test_split(
                *ddata.digits(), test_fraction=float(cfg.data.eval_fraction), seed=0
            )
        else:
            if path is None:
                raise FileNotFoundError(
                    f"cifar10 needs --config.data.path. To get it: {data_help(cfg)}"
                )
            tr_x, tr_y, ev_x, ev_y = ddata.cifar10(path)
        k = int(cfg.data.vocab_size)
        shape = tuple(tr_x.shape[1:])
        tr_flat = np.asarray(tr_x, np.int32).reshape(len(tr_x), -1)
        ev_flat = np.asarray(ev_x, np.int32).reshape(len(ev_x), -1)
        tr_y, ev_y = np.asarray(tr_y, np.int32), np.asarray(ev_y, np.int32)

        def make_iter(batch_size: int, seed: int) -> Any:
            return ddata.array_batches(
                tr_flat,
                batch_size,
                seed=seed,
                labels=tr_y,
                process_index=jax.process_index(),
                process_count=jax.process_count(),
            )

        return Data(k, tr_flat.shape[1], shape, make_iter, ev_flat, ev_y, None, "dim")
    raise ValueError(
        f"unknown data.name {name!r}; known: {', '.join(TEXT_DATASETS + IMAGE_DATASETS)}"
    )


# ----------------------------------------------------------------------------
# model + objective
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Experiment:
    """Everything built from a config."""

    cfg: Any
    data: Data
    objective: Objective
    graphdef: Any
    params: Any
    apply_fn: Callable[..., Array]
    mesh: Any


def make_apply_fn(graphdef: Any, cfg: Any, image_shape: tuple[int, ...] | None) -> Callable:
    """``apply_fn(params, x int32[B, L], t, labels, dropout_key=None) -> float32[B, L, out]``.

    Image models get ``x`` reshaped to ``[B, *image_shape]``; the causal model ignores t.
    """
    from ddjax import models

    name = cfg.model.name

    def apply_fn(
        params: Any, x: Array, t: Array | None, labels: Array | None, dropout_key: Any = None
    ) -> Array:
        b = x.shape[0]
        if image_shape is not None and name == "unet":
            x = x.reshape(b, *image_shape)
        if name == "ar":
            out = models.apply(graphdef, params, x, None, labels, dropout_key=dropout_key)
        else:
            out = models.apply(graphdef, params, x, t, labels, dropout_key=dropout_key)
        return out.reshape(b, -1, out.shape[-1])

    return apply_fn


def build(cfg: Any, *, mesh: Any = None) -> Experiment:
    """Data, process, model, objective and mesh from ``cfg``."""
    from ddjax import models

    data = load_data(cfg)
    process = training.make_process(cfg.process, data.vocab_size)
    if (cfg.loss.name == "ar") != (process is None):
        raise ValueError("loss.name='ar' goes with process.name='none' and only with it")
    if (cfg.loss.name == "ar") != (cfg.model.name == "ar"):
        raise ValueError("loss.name='ar' needs model.name='ar' (and the 'ar' model needs it)")
    in_vocab = data.vocab_size if process is None else process.num_states
    out = training.output_size(cfg.loss.name, process, data.vocab_size)
    model = models.build(cfg.model, in_vocab, out, seed=int(cfg.seed))
    graphdef, params = models.split(model)
    apply_fn = make_apply_fn(graphdef, cfg, data.image_shape)
    objective = Objective(
        name=cfg.loss.name,
        process=process,
        apply_fn=apply_fn,
        time_conditioning=bool(cfg.model.time_conditioning),
        plugin=bool(cfg.loss.plugin),
        aux_weight=float(cfg.loss.aux_weight),
        scale_by_sigma=bool(cfg.loss.scale_by_sigma),
        t_min=float(cfg.loss.t_min),
        dropout=float(cfg.model.dropout) > 0,
    )
    mesh = mesh if mesh is not None else training.make_mesh()
    return Experiment(cfg, data, objective, graphdef, params, apply_fn, mesh)


def make_state(exp: Experiment) -> tuple[training.TrainState, Any]:
    """A fresh placed TrainState and the optimiser."""
    cfg = exp.cfg
    tx = training.make_optimizer(cfg.optim, int(cfg.train.num_steps))
    state = training.init_train_state(exp.params, tx, int(cfg.seed))
    state = training.put_replicated(state, exp.mesh, bool(cfg.train.fsdp))
    return state, tx


# ----------------------------------------------------------------------------
# evaluation and samples
# ----------------------------------------------------------------------------


def evaluate_nelbo(exp: Experiment, params: Any, *, max_batches: int | None = None) -> dict:
    """Validation negative ELBO (exact NLL for AR) in bits and perplexity per position."""
    cfg = exp.cfg
    n_dev = exp.mesh.devices.size
    bs = int(cfg.eval.batch_size)
    bs = max(n_dev, (bs // n_dev) * n_dev)
    x = exp.data.eval_x
    labels = exp.data.eval_labels
    max_batches = int(cfg.eval.max_batches) if max_batches is None else max_batches
    if max_batches > 0:
        x = x[: max_batches * bs]
        labels = None if labels is None else labels[: max_batches * bs]
    n = len(x)
    if n == 0:
        raise ValueError("the evaluation split is shorter than one sequence")
    pad = (-n) % bs
    xp = np.concatenate([x, np.repeat(x[-1:], pad, 0)], 0)
    lp = None if labels is None else np.concatenate([labels, np.repeat(labels[-1:], pad, 0)])
    step = make_eval_fn(exp)
    key = jax.random.PRNGKey(int(cfg.eval.seed))
    pc, pi = jax.process_count(), jax.process_index()
    per = bs // pc
    total = []
    for i in range(len(xp) // bs):
        rows = slice(i * bs + pi * per, i * bs + (pi + 1) * per)
        batch = {"x": xp[rows]}
        if lp is not None:
            batch["label"] = lp[rows]
        nats = step(params, training.put_batch(batch, exp.mesh), jax.random.fold_in(key, i))
        total.append(_gather(nats))
    nats = np.concatenate(total)[:n]
    per_pos = float(nats.sum() / (n * exp.data.seq_len))
    bits = nats / (exp.data.seq_len * math.log(2.0))
    return {
        "nelbo_bits_per_" + exp.data.unit: per_pos / math.log(2.0),
        # standard error of the mean over sequences (noise levels and data together)
        "stderr_bits": float(bits.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
        "perplexity": math.exp(per_pos),
        "num_sequences": n,
    }


def _gather(x: jax.Array) -> np.ndarray:
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


_EVAL_CACHE: dict[int, Callable] = {}


def make_eval_fn(exp: Experiment) -> Callable:
    """The jitted eval step for ``exp`` (built once)."""
    if id(exp) not in _EVAL_CACHE:
        fn = training.make_eval_step(
            exp.objective,
            int(exp.cfg.eval.num_time_samples),
            num_classes=int(exp.cfg.model.num_classes),
        )
        _EVAL_CACHE[id(exp)] = training.jit_eval_step(
            fn, exp.mesh, exp.params, fsdp=bool(exp.cfg.train.fsdp)
        )
    return _EVAL_CACHE[id(exp)]


def sample_ar(
    key: Array, apply_fn: Callable, params: Any, shape: tuple[int, int], temperature: float
) -> Array:
    """Left-to-right sampling from the causal model: int32[B, L] (L full forward passes)."""
    from ddjax.samplers import categorical

    b, length = shape

    def body(i: Array, x: Array) -> Array:
        logits = apply_fn(params, x, None, None)[:, i] / temperature
        tok = categorical(jax.random.fold_in(key, i), logits)
        return x.at[:, i].set(tok)

    return jax.lax.fori_loop(0, length, body, jnp.zeros(shape, jnp.int32))


def generate(exp: Experiment, params: Any, num: int, seed: int) -> np.ndarray:
    """``num`` samples from the model, int32[num, seq_len], with ``cfg.sample``."""
    cfg = exp.cfg
    key = jax.random.PRNGKey(seed)
    shape = (num, exp.data.seq_len)
    temperature = float(cfg.sample.temperature)
    if exp.objective.name == "ar":
        fn = jax.jit(lambda p, k: sample_ar(k, exp.apply_fn, p, shape, temperature))
        return np.asarray(fn(params, key))
    from ddjax import samplers

    name = cfg.sample.sampler
    sampler = getattr(samplers, name, None)
    if sampler is None:
        raise ValueError(f"unknown sample.sampler {name!r}; known: {sorted(samplers.SAMPLERS)}")
    labels = None
    num_classes = int(cfg.model.num_classes)
    if num_classes > 0:
        label = int(cfg.sample.class_label)
        if not -1 <= label < num_classes:
            raise ValueError(
                f"sample.class_label={label} must be -1 (every class) or 0..{num_classes - 1}"
            )
        labels = jnp.arange(num, dtype=jnp.int32) % num_classes
        if label >= 0:
            labels = jnp.full((num,), label, jnp.int32)
    process = exp.objective.process
    steps = int(cfg.sample.steps)
    if process.is_discrete_time:
        steps = min(steps, process.num_steps)
    options: dict[str, Any] = {"steps": steps}
    if temperature != 1.0:
        options["temperature"] = temperature
    if exp.objective.name == "any_order_nll" and name == "ancestral":
        options["time_independent"] = True
    fixed = prompt_tokens(exp, num)
    if fixed is not None:
        options["fixed"] = fixed
    guidance = str(cfg.sample.guidance)
    if guidance not in ("none", "cfg"):
        raise ValueError(f"sample.guidance must be 'none' or 'cfg', got {guidance!r}")
    if guidance == "cfg" and num_classes == 0:
        raise ValueError(
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

    return np.asarray(jax.jit(run)(params, key))


def prompt_tokens(exp: Experiment, num: int) -> np.ndarray | None:
    """``fixed`` for the samplers from ``sample.prompt`` (a prefix) or ``sample.template``.

    In a template every underscore is a free position; positions past the end of the
    prompt or template are free too. Returns int32[num, seq_len] with -1 where free.
    """
    cfg = exp.cfg
    prompt, template = str(cfg.sample.prompt), str(cfg.sample.template)
    if not prompt and not template:
        return None
    if prompt and template:
        raise ValueError("give sample.prompt or sample.template, not both")
    if exp.data.encode is None:
        raise ValueError("sample.prompt / sample.template need a text data set")
    seq_len = exp.data.seq_len
    row = np.full(seq_len, -1, np.int32)
    if prompt:
        ids = exp.data.encode(prompt)
        if len(ids) > seq_len:
            raise ValueError(f"sample.prompt has {len(ids)} tokens, more than seq_len={seq_len}")
        row[: len(ids)] = ids
    else:
        if len(template) > seq_len:
            raise ValueError(
                f"sample.template has {len(template)} characters, more than seq_len={seq_len}"
            )
        for i, ch in enumerate(template):
            if ch != "_":
                ids = exp.data.encode(ch)
                if len(ids) != 1:
                    raise ValueError(f"sample.template character {ch!r} is not one token")
                row[i] = ids[0]
    return np.broadcast_to(row, (num, seq_len)).copy()


def write_samples(exp: Experiment, samples: np.ndarray, workdir: str, tag: str) -> str:
    """Writes samples as text (one per paragraph) or a PNG grid; returns the path."""
    os.makedirs(workdir, exist_ok=True)
    if exp.data.decode is not None:
        path = os.path.join(workdir, f"samples_{tag}.txt")
        texts = exp.data.decode(samples)
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


# ----------------------------------------------------------------------------
# modes
# ----------------------------------------------------------------------------


def _checkpointer(cfg: Any, workdir: str) -> training.Checkpointer:
    return training.Checkpointer(
        os.path.join(workdir, "checkpoints"),
        max_to_keep=int(cfg.train.max_to_keep),
        async_save=bool(cfg.train.async_checkpoint),
    )


def _write_config(cfg: Any, workdir: str) -> None:
    if jax.process_index() != 0:
        return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    new = json.loads(cfg.to_json())
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old != new:
            changed = sorted(
                k
                for k in set(_flat(old)) | set(_flat(new))
                if _flat(old).get(k) != _flat(new).get(k)
            )
            log.warning("config differs from the one in %s: %s", path, ", ".join(changed))
            say(f"note: the config differs from {path} in: {', '.join(changed)}")
    with open(path, "w") as f:
        json.dump(new, f, indent=2)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _eval_params(cfg: Any, state: training.TrainState) -> Any:
    return state.ema_params if bool(cfg.eval.use_ema) else state.params


def train(cfg: Any, workdir: str) -> dict[str, Any]:
    """Trains (resuming from the latest checkpoint), then evaluates and samples."""
    t_start = time.time()
    _write_config(cfg, workdir)
    exp = build(cfg)
    state, tx = make_state(exp)
    num_steps = int(cfg.train.num_steps)
    n_dev = exp.mesh.devices.size
    bs = int(cfg.train.batch_size)
    if bs % n_dev or bs % jax.process_count():
        raise ValueError(f"train.batch_size={bs} must be divisible by the {n_dev} devices")
    batches = exp.data.make_train_iter(bs // jax.process_count(), int(cfg.seed))
    ckpt = _checkpointer(cfg, workdir)
    restored = ckpt.restore_latest(state)
    if restored is not None:
        state, data_state, step = restored
        batches.set_state(data_state)
        say(f"resumed from {ckpt.directory} at step {step}")
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    say(
        f"{cfg.loss.name} on {cfg.data.name}: {n_params / 1e6:.2f}M params, "
        f"{n_dev} device(s) ({jax.devices()[0].platform}), batch {bs} x {exp.data.seq_len}, "
        f"{num_steps} steps"
    )
    writer = training.MetricWriter(workdir, tensorboard=bool(cfg.train.tensorboard))
    if writer.note:
        say(f"note: {writer.note}")
    lr = training.make_lr_schedule(cfg.optim, num_steps)
    step_fn = training.make_train_step(
        exp.objective,
        tx,
        ema_decay=float(cfg.optim.ema_decay),
        antithetic=bool(cfg.loss.antithetic),
        grad_accum=int(cfg.train.grad_accum),
        num_classes=int(cfg.model.num_classes),
        label_dropout=float(cfg.train.label_dropout),
        lr_schedule=lr,
    )
    jitted = training.jit_train_step(step_fn, exp.mesh, state, fsdp=bool(cfg.train.fsdp))

    def eval_fn(s: training.TrainState) -> dict[str, float]:
        r = evaluate_nelbo(
            exp, _eval_params(cfg, s), max_batches=int(cfg.eval.during_train_batches)
        )
        r.pop("num_sequences")
        return r

    try:
        state = training.train_loop(
            state,
            jitted,
            batches,
            num_steps=num_steps,
            mesh=exp.mesh,
            checkpointer=ckpt,
            checkpoint_every=int(cfg.train.checkpoint_every),
            log_every=int(cfg.train.log_every),
            eval_fn=eval_fn,
            eval_every=int(cfg.train.eval_every),
            writer=writer,
            tokens_per_step=bs * exp.data.seq_len,
        )
    finally:
        ckpt.close()
    results: dict[str, Any] = {"step": int(state.step), "train_seconds": time.time() - t_start}
    if bool(cfg.train.final_eval):
        ev = evaluate_nelbo(exp, _eval_params(cfg, state))
        writer.write(
            int(state.step), {k: v for k, v in ev.items() if k != "num_sequences"}, "eval/"
        )
        results.update(ev)
        _report_eval(exp, ev)
    if int(cfg.sample.num_samples) > 0:
        results["samples"] = _sample_and_write(exp, _eval_params(cfg, state), workdir, state)
    writer.close()
    results["seconds"] = time.time() - t_start
    say(f"done in {training.format_duration(results['seconds'])}")
    return results


def _report_eval(exp: Experiment, ev: dict[str, Any]) -> None:
    unit = exp.data.unit
    bits = ev["nelbo_bits_per_" + unit]
    bound = "" if exp.objective.is_exact else " (upper bound: negative ELBO)"
    say(
        f"validation bits per {unit}: {bits:.4f} +- {ev['stderr_bits']:.4f}{bound}; "
        f"perplexity {ev['perplexity']:.3f} over {ev['num_sequences']} sequences"
    )


def _sample_and_write(
    exp: Experiment, params: Any, workdir: str, state: training.TrainState
) -> list[str] | str:
    cfg = exp.cfg
    try:
        samples = generate(exp, params, int(cfg.sample.num_samples), int(cfg.sample.seed))
    except (AttributeError, NotImplementedError, ValueError) as e:
        say(f"note: no samples ({type(e).__name__}: {e})")
        return []
    if jax.process_index() != 0:
        return []
    path = write_samples(exp, samples, workdir, f"step{int(state.step)}")
    if exp.data.decode is not None:
        texts = exp.data.decode(samples)
        how = "ar" if exp.objective.name == "ar" else cfg.sample.sampler
        say(f"samples ({how}, written to {path}):")
        for t in texts:
            say("  > " + t.replace("\n", "\\n"))
        return texts
    say(f"samples written to {path}")
    return path


def _restore_for_inference(cfg: Any, workdir: str) -> tuple[Experiment, training.TrainState]:
    exp = build(cfg)
    state, _ = make_state(exp)
    ckpt = _checkpointer(cfg, workdir)
    try:
        restored = ckpt.restore_latest(state)
    finally:
        ckpt.close()
    if restored is None:
        raise FileNotFoundError(
            f"no checkpoint in {os.path.join(workdir, 'checkpoints')}; train first with "
            "--mode=train and the same --workdir"
        )
    state, _, step = restored
    say(f"restored step {step} from {workdir}")
    return exp, state


def evaluate(cfg: Any, workdir: str) -> dict[str, Any]:
    """Validation (``cfg.eval.split``) NELBO of the latest checkpoint."""
    exp, state = _restore_for_inference(cfg, workdir)
    ev = evaluate_nelbo(exp, _eval_params(cfg, state))
    _report_eval(exp, ev)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, f"eval_step{int(state.step)}.json"), "w") as f:
            json.dump(ev, f, indent=2)
    return ev


def sample(cfg: Any, workdir: str) -> dict[str, Any]:
    """Writes ``cfg.sample.num_samples`` samples of the latest checkpoint to the workdir."""
    exp, state = _restore_for_inference(cfg, workdir)
    out = _sample_and_write(exp, _eval_params(cfg, state), workdir, state)
    return {"samples": out}


def run(cfg: Any, workdir: str, mode: str) -> dict[str, Any]:
    """Dispatches to :func:`train`, :func:`evaluate` or :func:`sample`."""
    if mode == "train":
        return train(cfg, workdir)
    if mode == "eval":
        return evaluate(cfg, workdir)
    if mode == "sample":
        return sample(cfg, workdir)
    raise ValueError(f"unknown mode {mode!r}; use train, eval or sample")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run this through: python -m experiments.main --config=... --workdir=...")
