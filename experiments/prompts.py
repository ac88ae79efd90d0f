"""Prompts and infilling templates (``sample.prompt``, ``sample.template``) as the
tokens the samplers hold fixed."""

from __future__ import annotations

import numpy as np

from experiments.common import ConfigError, say
from experiments.model import Experiment


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


def prefix_prompt(fixed: np.ndarray | None) -> np.ndarray | None:
    """The prefix prompt of ``fixed`` int32[B, L] (its leading columns without -1),
    int32[B, P], or None; a ConfigError when a free position precedes a fixed one."""
    if fixed is None:
        return None
    free = np.flatnonzero((fixed < 0).any(0))
    n = int(free[0]) if len(free) else fixed.shape[1]
    if (fixed[:, n:] >= 0).any():
        raise ConfigError("the autoregressive model takes a prefix prompt (sample.prompt) only")
    return fixed[:, :n] if n else None


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
