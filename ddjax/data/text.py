"""Text corpora and tokenizers: text8, tiny Shakespeare, any local file, GPT-2 BPE.

Every loader returns a :class:`TextData` with contiguous train / valid / test
token arrays and the tokenizer that made them. Nothing here touches the network
except the text8 download (urllib, checksummed, cached) and tiktoken's own BPE
file download the first time :func:`gpt2_tokenizer` runs.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import pathlib
import re
import string
import urllib.error
import zipfile
from typing import Any

import numpy as np

from ddjax.data.download import cache_dir, download

__all__ = [
    "CharTokenizer",
    "BPETokenizer",
    "gpt2_tokenizer",
    "TextData",
    "load_text",
    "split_tokens",
    "TEXT8_URL",
    "TEXT8_ZIP_SHA256",
    "TEXT8_SHA256",
    "TEXT_NAMES",
]

TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
# mattmahoney.net publishes no checksum. These digests are the ones that independent
# projects pin for the archive (31,344,016 bytes) and for its single member ``text8``
# (100,000,000 bytes); they agree across sources.
TEXT8_ZIP_SHA256 = "a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232"
TEXT8_SHA256 = "6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7"
SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TEXT_NAMES = ("shakespeare", "text8", "file", "tokens")
MODES = ("text8", "raw", "gpt2")

_NON_TEXT8 = re.compile(r"[^a-z]+")


class CharTokenizer:
    """Character-level tokenizer.

    Two modes:
      - ``CharTokenizer.text8()``: text8's 27 symbols, 'a'..'z' -> 0..25 and ' ' -> 26.
        :meth:`normalize` lower-cases text, maps every other character to a space and
        collapses runs of spaces.
      - ``CharTokenizer.from_text(text)``: the sorted unique characters of ``text``.

    ``encode`` is strict: a character outside the alphabet raises ``ValueError``.
    """

    def __init__(self, chars: str, *, mode: str = "raw") -> None:
        if mode not in ("text8", "raw"):
            raise ValueError(f"mode must be 'text8' or 'raw', got {mode!r}")
        if len(set(chars)) != len(chars) or not chars:
            raise ValueError("chars must be a non-empty string of distinct characters")
        self.mode = mode
        self.chars = chars
        self._chars = np.array(list(chars))
        codes = np.array([ord(c) for c in chars], np.int64)
        order = np.argsort(codes)
        self._sorted_codes, self._sorted_ids = codes[order], order.astype(np.int32)
        self._ascii = np.full(128, -1, np.int32)
        for i, c in enumerate(chars):
            if ord(c) < 128:
                self._ascii[ord(c)] = i

    @classmethod
    def text8(cls) -> CharTokenizer:
        """The text8 alphabet: 'a'..'z' -> 0..25, ' ' -> 26."""
        return cls(string.ascii_lowercase + " ", mode="text8")

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """Raw-character mode over the sorted unique characters of ``text``."""
        return cls("".join(sorted(set(text))), mode="raw")

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def normalize(self, text: str) -> str:
        """text8 mode: lower case, every non a-z character -> ' ', runs of spaces collapsed.

        Raw mode returns ``text`` unchanged.
        """
        if self.mode != "text8":
            return text
        return _NON_TEXT8.sub(" ", text.lower())

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text``: int32[len(text)].

        Raises:
          ValueError: a character is not in the alphabet (text8 mode: call
            :meth:`normalize` first).
        """
        if text.isascii():
            ids = self._ascii[np.frombuffer(text.encode("ascii"), np.uint8)]
        else:
            codes = np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.int64)
            pos = np.clip(np.searchsorted(self._sorted_codes, codes), 0, len(self.chars) - 1)
            ids = np.where(self._sorted_codes[pos] == codes, self._sorted_ids[pos], -1)
        bad = np.flatnonzero(ids < 0)
        if bad.size:
            i = int(bad[0])
            hint = " (call tokenizer.normalize(text) first)" if self.mode == "text8" else ""
            raise ValueError(
                f"character {text[i]!r} at index {i} is not in the {self.mode} vocabulary "
                f"of {self.vocab_size} characters{hint}"
            )
        return ids.astype(np.int32, copy=False)

    def decode(self, ids: Any, *, mask_char: str | None = None) -> str | list[str]:
        """Text of token ids.

        Args:
          ids: int[n] (returns a str) or int[B, n] (returns a list of B strings).
          mask_char: if given, id ``vocab_size`` (the masking process's mask id) decodes to
            this character; otherwise it is an error like any out-of-range id.
        """
        ids = np.asarray(ids)
        if ids.ndim == 2:
            return [self.decode(row, mask_char=mask_char) for row in ids]
        if ids.ndim != 1:
            raise ValueError(f"ids must be 1-D or 2-D, got shape {ids.shape}")
        table = self._chars
        if mask_char is not None:
            table = np.append(table, mask_char)
        if ids.size and (ids.min() < 0 or ids.max() >= len(table)):
            raise ValueError(
                f"token ids must be in [0, {len(table)}), got range [{ids.min()}, {ids.max()}]"
            )
        return "".join(table[ids].tolist())

    def to_config(self) -> dict[str, str]:
        """JSON-serialisable description; :meth:`from_config` rebuilds the tokenizer."""
        return {"mode": self.mode, "chars": self.chars}

    @classmethod
    def from_config(cls, config: dict[str, str]) -> CharTokenizer:
        return cls(config["chars"], mode=config["mode"])

    def __repr__(self) -> str:
        return f"CharTokenizer(mode={self.mode!r}, vocab_size={self.vocab_size})"


class BPETokenizer:
    """A tiktoken encoding with the :class:`CharTokenizer` interface.

    Args:
      encoding: a ``tiktoken.Encoding``; None loads ``name`` lazily on first use.
      name: tiktoken encoding name.
      vocab_size, eot_id: used until the encoding is loaded (GPT-2's values).
    """

    def __init__(
        self,
        encoding: Any = None,
        *,
        name: str = "gpt2",
        vocab_size: int = 50257,
        eot_id: int = 50256,
    ) -> None:
        self.mode = name
        self._encoding = encoding
        self.vocab_size = int(encoding.n_vocab) if encoding is not None else vocab_size
        self.eot_id = int(encoding.eot_token) if encoding is not None else eot_id

    @property
    def encoding(self) -> Any:
        if self._encoding is None:
            self._encoding = import_tiktoken().get_encoding(self.mode)
        return self._encoding

    def encode(self, text: str) -> np.ndarray:
        """int32[n] ids (special tokens are treated as ordinary text)."""
        return np.asarray(self.encoding.encode_ordinary(text), np.int32)

    def decode(self, ids: Any) -> str | list[str]:
        """str for int[n], list of str for int[B, n]."""
        ids = np.asarray(ids)
        if ids.ndim == 2:
            return [self.decode(row) for row in ids]
        return self.encoding.decode(ids.astype(np.int64).tolist())

    def __repr__(self) -> str:
        return f"BPETokenizer({self.mode!r}, vocab_size={self.vocab_size})"


def import_tiktoken() -> Any:
    try:
        import tiktoken
    except ImportError as err:
        raise ImportError(
            "the GPT-2 tokenizer needs tiktoken: pip install 'ddjax[data]' (or pip install "
            "tiktoken)"
        ) from err
    return tiktoken


def gpt2_tokenizer() -> BPETokenizer:
    """GPT-2's BPE (50257 ids, end-of-text 50256) via tiktoken.

    tiktoken downloads its vocabulary files on first use (cached; set
    ``TIKTOKEN_CACHE_DIR`` to pre-populate a cache for offline machines).

    Raises:
      ImportError: tiktoken is not installed.
    """
    return BPETokenizer(import_tiktoken().get_encoding("gpt2"))


@dataclasses.dataclass(frozen=True)
class TextData:
    """A tokenized corpus split into contiguous parts.

    Attributes:
      train, valid, test: 1-D integer token arrays (int32; uint16 memory maps for the
        'tokens' loader).
      tokenizer: turns text into these ids and back.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    tokenizer: Any

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.vocab_size)


def split_tokens(
    tokens: np.ndarray, fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contiguous train / valid / test split of a 1-D array by fractions of its length.

    For text8's 100,000,000 characters the default gives 90M / 5M / 5M.
    """
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")
    n = len(tokens)
    a = round(n * fractions[0])
    b = round(n * (fractions[0] + fractions[1]))
    return tokens[:a], tokens[a:b], tokens[b:]


def _tokenizer_and_ids(text: str, mode: str, normalize: bool = True) -> tuple[Any, np.ndarray]:
    if mode == "text8":
        tok = CharTokenizer.text8()
        return tok, tok.encode(tok.normalize(text) if normalize else text)
    if mode == "raw":
        tok = CharTokenizer.from_text(text)
        return tok, tok.encode(text)
    if mode == "gpt2":
        tok = gpt2_tokenizer()
        return tok, tok.encode(text)
    raise ValueError(f"unknown text mode {mode!r}; valid modes: {', '.join(MODES)}")


def _read_text(path: pathlib.Path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _shakespeare_path(path: str | os.PathLike | None) -> pathlib.Path:
    if path is None:
        ref = importlib.resources.files("ddjax.data") / "assets" / "tinyshakespeare.txt"
        return pathlib.Path(str(ref))
    return pathlib.Path(path)


def _read_text8(path: pathlib.Path) -> str:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            member = "text8" if "text8" in names else names[0]
            return zf.read(member).decode("ascii")
    with open(path, encoding="ascii") as f:
        return f.read()


def _text8_path(
    path: str | os.PathLike | None,
    *,
    url: str,
    sha256: str | None,
    allow_download: bool,
    cache: str | os.PathLike | None,
) -> pathlib.Path:
    how = (
        f"Download {TEXT8_URL} (the zip or its unzipped 'text8' file both work) and pass its "
        "path, or omit the path to download it automatically"
    )
    if path is not None:
        p = pathlib.Path(path)
        if not p.exists():
            raise FileNotFoundError(f"text8 not found at {p}. {how}.")
        return p
    dest = pathlib.Path(cache) if cache is not None else cache_dir()
    dest = dest / "text8.zip"
    if dest.exists() and not allow_download:
        return dest
    if not allow_download:
        raise FileNotFoundError(
            f"text8 not found at {dest} and downloading is disabled. {how}, or put the zip at "
            f"{dest} ($DDJAX_DATA sets the cache directory)."
        )
    try:
        return download(url, dest, sha256=sha256)
    except urllib.error.URLError as err:
        raise FileNotFoundError(
            f"text8 not found at {dest} and the download from {url} failed ({err.reason}). "
            f"{how}, or put the zip at {dest} ($DDJAX_DATA sets the cache directory)."
        ) from err


def load_text(
    name: str,
    path: str | os.PathLike | None = None,
    mode: str = "text8",
    *,
    url: str = TEXT8_URL,
    sha256: str | None = TEXT8_ZIP_SHA256,
    download: bool = True,
    cache: str | os.PathLike | None = None,
    fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
) -> TextData:
    """Loads and tokenizes a text corpus.

    Args:
      name: 'shakespeare' (the copy bundled in ``ddjax/data/assets`` or ``path``),
        'text8' (``path`` to the text8 file or zip; else downloaded from ``url`` into
        ``cache`` / ``$DDJAX_DATA`` / ``~/.cache/ddjax`` and checked against ``sha256``),
        'file' (any UTF-8 text file at ``path``), or 'tokens' (a directory of
        pre-tokenized ``train.bin`` / ``val.bin`` / optional ``test.bin`` uint16 files,
        nanoGPT's format; GPT-2 tokenizer; ``mode`` and ``fractions`` are ignored).
      path: local file (see above).
      mode: 'text8' (27 symbols; text is normalized first, except the text8 corpus itself,
        which is encoded as is), 'raw' (sorted unique characters) or 'gpt2' (tiktoken BPE).
      url, sha256, download, cache: text8 download options (``download=False`` never
        touches the network).
      fractions: contiguous train / valid / test fractions (text8: 90M / 5M / 5M).

    Returns:
      :class:`TextData`.

    Raises:
      FileNotFoundError: the file is missing (the message says how to get it).
      ddjax.data.download.ChecksumError: the text8 download has the wrong digest.
      ValueError: unknown name or mode.
    """
    if name not in TEXT_NAMES:
        raise ValueError(f"unknown text corpus {name!r}; valid names: {', '.join(TEXT_NAMES)}")
    if name == "tokens":
        return _load_tokens(path)
    if mode not in MODES:
        raise ValueError(f"unknown text mode {mode!r}; valid modes: {', '.join(MODES)}")
    if name == "shakespeare":
        p = _shakespeare_path(path)
        if not p.is_file():
            raise FileNotFoundError(
                f"tiny Shakespeare not found at {p}. Omit the path to use the copy bundled "
                f"with ddjax, or download {SHAKESPEARE_URL}."
            )
        text = _read_text(p)
    elif name == "text8":
        p = _text8_path(path, url=url, sha256=sha256, allow_download=download, cache=cache)
        text = _read_text8(p)
    else:
        if path is None:
            raise FileNotFoundError("name='file' needs a path to a UTF-8 text file (--data)")
        p = pathlib.Path(path)
        if not p.is_file():
            raise FileNotFoundError(
                f"text file not found at {p}; pass the path of an existing UTF-8 text file"
            )
        text = _read_text(p)
    # text8 is already in its own alphabet: encoded as is, so the split is exactly 90M/5M/5M
    tokenizer, ids = _tokenizer_and_ids(text, mode, normalize=name != "text8")
    train, valid, test = split_tokens(ids, fractions)
    return TextData(train=train, valid=valid, test=test, tokenizer=tokenizer)


def _load_tokens(path: str | os.PathLike | None) -> TextData:
    if path is None:
        raise FileNotFoundError("name='tokens' needs a directory holding train.bin and val.bin")
    d = pathlib.Path(path)
    arrays = {}
    for split in ("train", "val", "test"):
        f = d / f"{split}.bin"
        if f.is_file():
            arrays[split] = np.memmap(f, dtype=np.uint16, mode="r")
        elif split != "test":
            raise FileNotFoundError(
                f"{f} not found: 'tokens' reads nanoGPT-style uint16 files train.bin and "
                "val.bin (GPT-2 ids), e.g. from nanoGPT's data/openwebtext/prepare.py"
            )
    test = arrays.get("test", arrays["val"])
    return TextData(train=arrays["train"], valid=arrays["val"], test=test, tokenizer=BPETokenizer())
