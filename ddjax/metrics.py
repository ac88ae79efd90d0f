"""Metric definitions, written down once.

* bits per token = nats per sequence / (tokens per sequence * ln 2).
* perplexity = exp(nats per sequence / tokens per sequence), token-weighted: the
  mean is taken over all tokens of the set, not over per-sequence perplexities.
* generative perplexity: the perplexity of generated samples under a judge language
  model, with the rules of :func:`generative_perplexity` (written there once).
* MAUVE: :func:`mauve` on the judge's last-token features (the ``mauve-text`` package).
* word rate: :func:`word_rate`, the fraction of generated words that are words of the
  training text (letters and apostrophes, case-folded; see :func:`words`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

__all__ = [
    "bits_per_token",
    "perplexity",
    "nats_per_token",
    "unigram_entropy",
    "GenerativePerplexity",
    "generative_perplexity",
    "judge_features",
    "mauve",
    "words",
    "word_rate",
]


def nats_per_token(nats: ArrayLike, num_tokens: ArrayLike) -> Array:
    """Total nats over total tokens (token-weighted mean): a scalar."""
    return jnp.sum(jnp.asarray(nats, jnp.float32)) / jnp.sum(jnp.asarray(num_tokens, jnp.float32))


def bits_per_token(nats: ArrayLike, num_tokens: ArrayLike) -> Array:
    """Nats per sequence [B] and tokens per sequence (scalar or [B]) to bits per token."""
    nats = jnp.asarray(nats, jnp.float32)
    return nats_per_token(
        nats, jnp.broadcast_to(jnp.asarray(num_tokens, jnp.float32), nats.shape)
    ) / math.log(2.0)


def perplexity(nats: ArrayLike, num_tokens: ArrayLike) -> Array:
    """exp of the token-weighted mean nats per token."""
    nats = jnp.asarray(nats, jnp.float32)
    return jnp.exp(
        nats_per_token(nats, jnp.broadcast_to(jnp.asarray(num_tokens, jnp.float32), nats.shape))
    )


def unigram_entropy(tokens: ArrayLike, vocab_size: int) -> Array:
    """Entropy in nats of each sequence's token histogram: float32[B] for tokens [B, L]."""
    tokens = jnp.asarray(tokens, jnp.int32)
    counts = (tokens[..., None] == jnp.arange(vocab_size)).sum(-2).astype(jnp.float32)
    p = counts / counts.sum(-1, keepdims=True)
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), -1)


@dataclasses.dataclass(frozen=True)
class GenerativePerplexity:
    """The result of :func:`generative_perplexity`.

    Attributes:
      perplexity: exp(total nats / total scored tokens) over the whole set.
      nats: float64[B], the judge's NLL of each sample (sum over its scored tokens).
      num_tokens: int64[B], scored tokens per sample.
      entropy: mean over samples of the unigram entropy (nats) of each judge-token
        sequence, as truncated at its first EOS (the diversity check reported with
        generative perplexity).
    """

    perplexity: float
    nats: np.ndarray
    num_tokens: np.ndarray
    entropy: float


def _judge_logits(judge: Any) -> Callable[[Array], Array]:
    apply = getattr(judge, "apply", None)
    if apply is not None and getattr(judge, "kind", None) is not None:
        return lambda x: apply(x, None)
    return judge


def _judge_context(judge: Any, context_length: int | None) -> int:
    if context_length is not None:
        return int(context_length)
    model = getattr(judge, "model", None)
    if model is not None and hasattr(model, "max_len"):
        return int(model.max_len)
    raise ValueError("pass context_length: the judge does not say how long its context is")


def _as_judge_ids(
    tokens: ArrayLike | Sequence[str] | Sequence[Sequence[int]],
    decode: Callable[[Sequence[int]], str] | None,
    encode: Callable[[str], Sequence[int]] | None,
) -> list[np.ndarray]:
    if isinstance(tokens, (list, tuple)) and tokens and isinstance(tokens[0], str):
        if encode is None:
            raise ValueError("text samples need encode (the judge tokenizer's text -> ids)")
        return [np.asarray(encode(text), np.int64) for text in tokens]
    rows = [np.asarray(row, np.int64) for row in tokens]
    if decode is not None or encode is not None:
        if decode is None or encode is None:
            raise ValueError("retokenisation needs both decode (sample ids -> text) and encode")
        return [np.asarray(encode(decode(row.tolist())), np.int64) for row in rows]
    return rows


def generative_perplexity(
    tokens: ArrayLike | Sequence[str],
    judge: Any,
    *,
    eos_id: int | None = None,
    bos_id: int | None = None,
    context_length: int | None = None,
    batch_size: int = 8,
    decode: Callable[[Sequence[int]], str] | None = None,
    encode: Callable[[str], Sequence[int]] | None = None,
    vocab_size: int | None = None,
) -> GenerativePerplexity:
    """Generative perplexity of samples under a judge language model.

    The rules, once:

    1. Vocabulary. ``tokens`` are the samples' ids, int[B, L] (or a list of rows, or a
       list of strings). When the sampler's vocabulary differs from the judge's, pass
       ``decode`` (sample ids -> text) and ``encode`` (text -> judge ids): every sample
       is decoded and re-encoded with the judge's tokenizer, and everything below counts
       judge tokens. Without them the ids must already be judge ids (strings need
       ``encode``); an id outside the judge's vocabulary (``vocab_size``, default the
       judge's) is an error.
    2. First EOS. With ``eos_id``, each sample ends at its first ``eos_id``, which is
       itself scored; the tokens after it are dropped (MDLM's rule). Without it, every
       token counts.
    3. Context. Each sample is cut into consecutive chunks of at most ``context_length``
       judge tokens (default: the judge's ``max_len``, 1024 for GPT-2), scored
       independently. With ``bos_id`` (GPT-2: 50256) each chunk is scored after a
       prepended ``bos_id`` (which takes one place of the context), so every token is
       scored; without it the first token of each chunk is only context (MDLM's and
       SEDD's evaluation), so a chunk of n tokens scores n - 1.
    4. Batching. Chunks are right-padded to one length and scored ``batch_size`` at a
       time; padding is never scored and, the judge being causal, never seen, so the
       result does not depend on ``batch_size``.
    5. Aggregation. perplexity = exp(sum of NLL / number of scored tokens) over the whole
       set (token-weighted, as :func:`perplexity`), in nats; entropy is the mean unigram
       entropy of the (truncated, judge-token) samples.

    Args:
      tokens: the samples (see rule 1).
      judge: a causal model: a :class:`ddjax.interop.Pretrained` from ``load_gpt2`` (GPT-2
        large in the papers), or any callable ``x int32[B, n] -> logits float[B, n, V]``
        whose logits at position i predict token i + 1 (GPT-2's convention).
      eos_id, bos_id, context_length, batch_size, decode, encode: see the rules.
      vocab_size: the judge's vocabulary size for the check of rule 1 (default: from the
        judge model when it has one).

    Returns:
      :class:`GenerativePerplexity`.
    """
    rows = _as_judge_ids(tokens, decode, encode)
    n_ctx = _judge_context(judge, context_length)
    if n_ctx < 2:
        raise ValueError(f"context_length must be >= 2, got {n_ctx}")
    model = getattr(judge, "model", None)
    if vocab_size is None and model is not None:
        vocab_size = getattr(model, "vocab_size", None)
    logits_fn = _judge_logits(judge)
    truncated = []
    for i, row in enumerate(rows):
        if vocab_size is not None and row.size and (row.min() < 0 or row.max() >= vocab_size):
            raise ValueError(
                f"sample {i} has ids outside the judge's vocabulary 0..{vocab_size - 1}; "
                "pass decode and encode to retokenise"
            )
        if eos_id is not None:
            hits = np.flatnonzero(row == eos_id)
            if hits.size:
                row = row[: hits[0] + 1]
        truncated.append(row)
    step = n_ctx - 1 if bos_id is not None else n_ctx
    chunks, owner = [], []
    for i, row in enumerate(truncated):
        for start in range(0, len(row), step):
            piece = row[start : start + step]
            if bos_id is not None:
                piece = np.concatenate([[bos_id], piece])
            if len(piece) >= 2:
                chunks.append(piece)
                owner.append(i)
    width = max((len(c) for c in chunks), default=2)
    nats = np.zeros(len(rows))
    counts = np.zeros(len(rows), np.int64)
    for b in range(0, len(chunks), batch_size):
        part = chunks[b : b + batch_size]
        x = np.zeros((batch_size, width), np.int32)
        valid = np.zeros((batch_size, width), bool)
        for j, piece in enumerate(part):
            x[j, : len(piece)] = piece
            valid[j, : len(piece)] = True
        logp = jax.nn.log_softmax(jnp.asarray(logits_fn(jnp.asarray(x)), jnp.float32), -1)
        target = jnp.take_along_axis(logp[:, :-1], jnp.asarray(x[:, 1:, None]), -1)[..., 0]
        scored = valid[:, 1:]
        nll = -np.where(scored, np.asarray(target, np.float64), 0.0).sum(-1)
        for j in range(len(part)):
            nats[owner[b + j]] += nll[j]
            counts[owner[b + j]] += scored[j].sum()
    total = counts.sum()
    ppl = float(np.exp(nats.sum() / total)) if total else float("nan")
    ent = [_entropy(row) for row in truncated if row.size]
    return GenerativePerplexity(ppl, nats, counts, float(np.mean(ent)) if ent else float("nan"))


def _entropy(row: np.ndarray) -> float:
    _, counts = np.unique(row, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def judge_features(
    tokens: ArrayLike | Sequence[Sequence[int]],
    judge: Any,
    *,
    context_length: int | None = None,
    batch_size: int = 8,
) -> np.ndarray:
    """The judge's final hidden state at each sample's last token: float32[B, width].

    MAUVE's featurisation (GPT-2 large in the papers): each sample (judge ids, truncated
    to its last ``context_length`` tokens) goes through the judge, and the hidden state
    after the final layer norm at its last token is its feature vector.

    Args:
      tokens: judge ids, int[B, L] or a list of rows (retokenise first, as in
        :func:`generative_perplexity`).
      judge: a :class:`ddjax.interop.Pretrained` whose model accepts
        ``return_features=True`` (any ddjax DiT / CausalTransformer).
    """
    model = getattr(judge, "model", judge)
    n_ctx = _judge_context(judge, context_length)
    rows = [np.asarray(r, np.int64)[-n_ctx:] for r in tokens]
    from flax import nnx

    graphdef, params = nnx.split(model, nnx.Param)

    @jax.jit
    def feats(params: Any, x: Array) -> Array:
        return nnx.merge(graphdef, params)(x, return_features=True)

    width = max(len(r) for r in rows)
    out = []
    for b in range(0, len(rows), batch_size):
        part = rows[b : b + batch_size]
        x = np.zeros((batch_size, width), np.int32)
        for j, r in enumerate(part):
            x[j, : len(r)] = r
        h = np.asarray(feats(params, jnp.asarray(x)))
        out += [h[j, len(r) - 1] for j, r in enumerate(part)]
    return np.stack(out).astype(np.float32)


def mauve(p_features: ArrayLike, q_features: ArrayLike, **kwargs: Any) -> float:
    """MAUVE between two feature sets, float32[N, D] each, via the ``mauve-text`` package.

    ``kwargs`` go to ``mauve.compute_mauve`` (e.g. ``num_buckets``, ``seed``,
    ``mauve_scaling_factor``); features come from :func:`judge_features`.

    Raises:
      ImportError: mauve-text is not installed (pip install 'ddjax[eval]').
    """
    try:
        import mauve as mauve_text
    except ImportError as err:
        raise ImportError(
            "MAUVE needs the mauve-text package: pip install 'ddjax[eval]' (or pip install "
            "mauve-text)"
        ) from err
    result = mauve_text.compute_mauve(
        p_features=np.asarray(p_features), q_features=np.asarray(q_features), **kwargs
    )
    return float(result.mauve)


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_ONE_LETTER_WORDS = frozenset("aio")


def words(text: str) -> list[str]:
    """The words of ``text``: maximal runs of letters (with inner apostrophes, "o'er"),
    lower-cased; punctuation, digits and spacing separate them."""
    return _WORD.findall(text.lower())


def word_rate(texts: str | Sequence[str], vocabulary: str | set[str]) -> float:
    """The fraction of the words of ``texts`` (see :func:`words`) that occur in
    ``vocabulary`` (a set of words, or a text whose words are taken): every occurrence
    counts, so 'the the the' is three real words. NaN when ``texts`` has no word.
    A one-letter word counts only if it is 'a', 'i' or 'o': the others in a corpus are
    fragments of elisions ("'t", "'d", "'s") and initials, and would make random
    letters score as words.

    The main job reports it for its samples next to the same measure on validation
    sequences of the same length (words cut by a sequence's ends count as misses on
    both sides, so that reference sits a little under 100%).
    """
    vocab = set(words(vocabulary)) if isinstance(vocabulary, str) else set(vocabulary)
    texts = [texts] if isinstance(texts, str) else list(texts)
    found = [w for t in texts for w in words(t)]
    if not found:
        return float("nan")
    real = [w in vocab and (len(w) > 1 or w in _ONE_LETTER_WORDS) for w in found]
    return sum(real) / len(found)
