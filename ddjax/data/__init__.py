"""Data: tokenizers and text corpora, image grids, the oracle targets, batch pipelines.

- Text: :class:`CharTokenizer` (text8's 27 symbols or raw characters),
  :func:`gpt2_tokenizer` (tiktoken), :func:`load_text` ('shakespeare', 'text8', 'file',
  'tokens') returning :class:`TextData`.
- Images: :func:`digits` (scikit-learn, 8x8, 17 levels), :func:`cifar10` (python-pickle
  batches), :func:`train_test_split`.
- :func:`synthetic`: exact samples of a :class:`ddjax.testing.ExactTarget`.
- Pipelines: :func:`sequence_batches` and :func:`array_batches`, infinite, deterministic
  given a seed, sharded by process, resumable through ``get_state`` / ``set_state``;
  :func:`chunk` for in-order evaluation windows.
"""

from ddjax.data.download import ChecksumError, cache_dir, download, sha256_file
from ddjax.data.images import CIFAR10_URL, DIGITS_LEVELS, cifar10, digits, train_test_split
from ddjax.data.pipeline import (
    ArrayBatches,
    SequenceBatches,
    array_batches,
    chunk,
    sequence_batches,
)
from ddjax.data.synthetic import synthetic
from ddjax.data.text import (
    TEXT8_SHA256,
    TEXT8_URL,
    TEXT8_ZIP_SHA256,
    TEXT_NAMES,
    BPETokenizer,
    CharTokenizer,
    TextData,
    gpt2_tokenizer,
    load_text,
    split_tokens,
)

__all__ = [
    "ArrayBatches",
    "BPETokenizer",
    "CIFAR10_URL",
    "ChecksumError",
    "CharTokenizer",
    "DIGITS_LEVELS",
    "SequenceBatches",
    "TEXT8_SHA256",
    "TEXT8_URL",
    "TEXT8_ZIP_SHA256",
    "TEXT_NAMES",
    "TextData",
    "array_batches",
    "cache_dir",
    "chunk",
    "cifar10",
    "digits",
    "download",
    "gpt2_tokenizer",
    "load_text",
    "sequence_batches",
    "sha256_file",
    "split_tokens",
    "synthetic",
    "train_test_split",
]
