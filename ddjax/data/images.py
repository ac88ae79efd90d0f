"""Image data as grids of discrete levels: scikit-learn digits, CIFAR-10."""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import re
import tarfile
from collections.abc import Iterable

import numpy as np

__all__ = ["digits", "DIGITS_LEVELS", "train_test_split", "cifar10", "CIFAR10_URL"]

DIGITS_LEVELS = 17
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits (read from the installed package, no network).

    Returns:
      images: int32[1797, 8, 8], values in 0..16 (17 levels).
      labels: int32[1797], digit classes 0..9.

    Raises:
      ImportError: scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "digits needs scikit-learn: pip install 'ddjax[data]' (or pip install scikit-learn)"
        ) from err
    bunch = load_digits()
    images = np.rint(bunch.images).astype(np.int32)
    return images, np.asarray(bunch.target, np.int32)


def train_test_split(
    *arrays: np.ndarray, test_fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Deterministic shuffled split of arrays that share their first dimension.

    Example: ``(x_train, y_train), (x_test, y_test) = train_test_split(*digits())``.

    Args:
      arrays: arrays with the same leading size N.
      test_fraction: share of the N items in the test part (rounded, at least 1 if > 0).
      seed: permutation seed; the same seed always gives the same split.

    Returns:
      (train arrays, test arrays), each a tuple in the order given.
    """
    if not arrays:
        raise ValueError("train_test_split needs at least one array")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"arrays must share their first dimension, got {[len(a) for a in arrays]}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    perm = np.random.default_rng(seed).permutation(n)
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return tuple(a[train_idx] for a in arrays), tuple(a[test_idx] for a in arrays)


def _batch_from_dict(d: dict) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(d[b"data"], np.uint8)
    labels = np.asarray(d.get(b"labels", d.get(b"fine_labels")), np.int32)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _load_batches(blobs: Iterable[bytes]) -> tuple[np.ndarray, np.ndarray]:
    parts = [_batch_from_dict(pickle.load(io.BytesIO(b), encoding="bytes")) for b in blobs]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _batch_number(name: str) -> int:
    m = re.search(r"data_batch_(\d+)$", name)
    return int(m.group(1)) if m else -1


def cifar10(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CIFAR-10 from the standard python-pickle batches.

    Args:
      path: the ``cifar-10-batches-py`` directory, a directory containing it, or the
        ``cifar-10-python.tar.gz`` archive. Every ``data_batch_N`` present is read (in
        order of N) plus ``test_batch``.

    Returns:
      train_images uint8[N, 32, 32, 3], train_labels int32[N],
      test_images uint8[M, 32, 32, 3], test_labels int32[M].

    Raises:
      FileNotFoundError: no batches at ``path`` (the message gives the download URL).
    """
    p = pathlib.Path(path)
    how = f"download and unpack {CIFAR10_URL} and pass the cifar-10-batches-py directory"
    if p.is_file() and tarfile.is_tarfile(p):
        with tarfile.open(p) as tar:
            members = {pathlib.PurePosixPath(m.name).name: m for m in tar.getmembers()}
            train_names = sorted((n for n in members if _batch_number(n) >= 0), key=_batch_number)
            if not train_names or "test_batch" not in members:
                raise FileNotFoundError(f"no CIFAR-10 batches inside {p}; {how}")
            train = _load_batches(tar.extractfile(members[n]).read() for n in train_names)
            test = _load_batches([tar.extractfile(members["test_batch"]).read()])
        return (*train, *test)
    if p.is_dir() and (p / "cifar-10-batches-py").is_dir():
        p = p / "cifar-10-batches-py"
    train_files = sorted(
        (f for f in p.glob("data_batch_*") if _batch_number(f.name) >= 0),
        key=lambda f: _batch_number(f.name),
    )
    if not p.is_dir() or not train_files or not (p / "test_batch").is_file():
        raise FileNotFoundError(
            f"CIFAR-10 batches (data_batch_N, test_batch) not found at {p}; {how}"
        )
    train = _load_batches(f.read_bytes() for f in train_files)
    test = _load_batches([(p / "test_batch").read_bytes()])
    return (*train, *test)
