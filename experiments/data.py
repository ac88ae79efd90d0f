"""Data sets for the experiments: what a run needs from one, and how to load it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from experiments.common import ConfigError

TEXT_DATASETS = ("shakespeare", "text8", "file", "tokens", "owt", "lm1b")
IMAGE_DATASETS = ("digits", "cifar10")


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
      encode: a string -> int32 token ids (text), None for images.
      train_tokens: the training split's tokens (text), for :meth:`vocabulary`.
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
    train_tokens: np.ndarray | None = None
    _vocabulary: set[str] | None = dataclasses.field(default=None, repr=False)

    def vocabulary(self) -> set[str] | None:
        """The words of the training split (``ddjax.metrics.words``), computed once;
        None for images or token data."""
        if self._vocabulary is None and self.train_tokens is not None and self.decode:
            from ddjax.metrics import words

            text = self.decode(np.asarray(self.train_tokens)[None, :])[0]
            self._vocabulary = set(words(text))
        return self._vocabulary


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
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); data.name={name!r} "
                "reads UTF-8 text: convert it first (e.g. iconv -f latin1 -t utf-8)"
            ) from None
        seq_len = int(cfg.data.seq_len)
        split = text.valid if cfg.eval.split == "valid" else text.test
        if len(text.train) <= seq_len or len(split) < seq_len:
            most = min(len(text.train) - 1, len(split))
            hint = f" or a data.seq_len of at most {most}" if most >= 1 else ""
            raise ConfigError(
                f"the corpus {path or name!r} is too short for data.seq_len={seq_len}: its "
                f"train split has {len(text.train)} tokens and its {cfg.eval.split} split "
                f"{len(split)} (train gets 90%, valid and test 5% each); use a longer "
                f"corpus{hint}"
            )
        eval_x = ddata.chunk(split, seq_len)
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
        train = text.train if unit == "char" else None  # word rates for character models
        return Data(k, seq_len, None, make_iter, eval_x, None, decode, unit, encode, train)
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
    raise ConfigError(
        f"unknown data.name {name!r}; known: {', '.join(TEXT_DATASETS + IMAGE_DATASETS)}"
    )
