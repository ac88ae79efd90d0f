"""Cached, checksummed downloads (urllib only; no hub libraries)."""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import tempfile
import urllib.error
import urllib.request

__all__ = ["cache_dir", "sha256_file", "download", "ChecksumError"]


class ChecksumError(ValueError):
    """A downloaded or cached file does not have the expected SHA-256."""


def cache_dir() -> pathlib.Path:
    """Where downloads go: ``$DDJAX_DATA`` if set, else ``~/.cache/ddjax``."""
    return pathlib.Path(os.environ.get("DDJAX_DATA") or pathlib.Path.home() / ".cache" / "ddjax")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> pathlib.Path:
    """Downloads ``url`` to ``dest`` atomically, unless ``dest`` already exists and matches.

    The file is streamed to a temporary file beside ``dest``, hashed on the way, and
    renamed into place only when the hash matches, so an interrupted or corrupt
    download never leaves a file at ``dest``.

    Args:
      url: http(s):// or file:// URL.
      dest: target path (parent directories are created).
      sha256: expected hex digest (None: no check).
      timeout: socket timeout in seconds.
      progress: print a line when starting and finishing.

    Returns:
      ``dest`` as a Path.

    Raises:
      ChecksumError: the downloaded bytes (or an existing ``dest``) have another digest.
      OSError (``urllib.error.URLError``): the URL could not be read.
    """
    dest = pathlib.Path(dest)
    if dest.exists():
        if sha256 is None:
            return dest
        got = sha256_file(dest)
        if got == sha256:
            return dest
        raise ChecksumError(
            f"{dest} exists but its SHA-256 is {got}, expected {sha256}; "
            "delete it to download again"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"ddjax: downloading {url} -> {dest}", flush=True)
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while block := resp.read(1 << 20):
                h.update(block)
                out.write(block)
        got = h.hexdigest()
        if sha256 is not None and got != sha256:
            raise ChecksumError(
                f"checksum mismatch for {url}: SHA-256 {got}, expected {sha256} "
                "(corrupt or changed download; nothing was saved)"
            )
        shutil.move(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if progress:
        print(f"ddjax: saved {dest} ({dest.stat().st_size} bytes)", flush=True)
    return dest
