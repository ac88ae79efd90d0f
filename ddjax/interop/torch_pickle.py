"""PyTorch checkpoints read without PyTorch and without running any pickled code.

``torch.save`` writes a zip archive: ``<name>/data.pkl``, a pickle whose tensors are
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` calls on
persistent storage ids, and the raw storages ``<name>/data/<key>``. Lightning ``.ckpt``
files add ``hyper_parameters`` with pickled OmegaConf configs and tokenizer objects,
which ``torch.load(weights_only=True)`` refuses and ``weights_only=False`` would run.

:func:`read_torch_zip` unpickles ``data.pkl`` with a restricted unpickler: tensors become
NumPy arrays read from the raw storages, plain containers stay themselves, and every
other global (``omegaconf.dictconfig.DictConfig``, a tokenizer class, ``os.system``) is
never imported: it becomes an :class:`Opaque` placeholder that records its name and
swallows the arguments and state the pickle gives it, as data.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Opaque", "TorchPickleError", "is_torch_zip", "opaque_type", "read_torch_zip"]


class TorchPickleError(ValueError):
    """A torch pickle the restricted reader cannot read as data (the message says what)."""


class Opaque:
    """A pickled object of a class the restricted reader does not import (one subclass per name).

    Attributes:
      global_name: the pickle's ``module.qualname`` (``omegaconf.dictconfig.DictConfig``).
      args, kwargs: what the pickle passed to the constructor (or called it with).
      state: what the pickle passed to ``__setstate__`` (None if nothing).
      items, entries: what it appended / set as items (list and dict subclasses).
    """

    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        self = object.__new__(cls)
        self.args, self.kwargs = args, kwargs
        self.state: Any = None
        self.items: list[Any] = []
        self.entries: dict[Any, Any] = {}
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # __new__ kept the arguments; nothing runs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> Opaque:
        # a pickle that calls a reconstructed object gets another placeholder
        return opaque_type(f"{self.global_name}()")(*args, **kwargs)

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.entries[key] = value

    def __repr__(self) -> str:
        return f"<Opaque {self.global_name}>"


def opaque_type(global_name: str) -> type[Opaque]:
    """A new placeholder class for ``global_name`` (NEWOBJ needs a type, not an instance).

    New for every load, so that a pickle that BUILDs on one cannot touch another load's.
    """
    return type(global_name.rsplit(".", 1)[-1], (Opaque,), {"global_name": global_name})


class _Frozen:
    """Base of what the reader hands the pickle: no __dict__, no setattr, so no BUILD on it."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise TorchPickleError(f"the pickle sets {name!r} on {self!r}")


class _StorageType(_Frozen):
    """Stands for ``torch.FloatStorage`` & co.: the element type of a raw storage."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)

    def __repr__(self) -> str:
        return f"<storage type torch.{self.name}>"


class _Safe(_Frozen):
    """One of the reader's own reconstruction functions, immutable to the pickle."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        object.__setattr__(self, "fn", fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<restricted {self.fn.__name__}>"


# torch storage classes -> NumPy element type ('bfloat16': uint16 bits, widened below)
_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "UntypedStorage": "uint8",
}
_STORAGE_TYPES = {name: _StorageType(name, dt) for name, dt in _STORAGE_DTYPES.items()}


def _rebuild_tensor_v2(
    storage: np.ndarray,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> np.ndarray:
    """The tensor ``storage[offset + sum(i_d stride_d)]`` as a NumPy array of ``size``."""
    del requires_grad, backward_hooks, metadata
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise TorchPickleError(f"a tensor over {type(storage).__name__}, not a storage")
    size = tuple(int(n) for n in size)
    stride = tuple(int(s) for s in stride)
    offset = int(storage_offset)
    if len(size) != len(stride) or min((*size, *stride, offset, 0)) < 0:
        raise TorchPickleError(f"bad tensor layout: size {size}, stride {stride}")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.size:  # as_strided would read past the buffer
        raise TorchPickleError(
            f"tensor of size {size}, stride {stride}, offset {offset} overruns its storage "
            f"of {storage.size} elements"
        )
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=[s * storage.itemsize for s in stride]
    )
    return np.array(view)


def _rebuild_tensor(storage: np.ndarray, offset: int, size: Any, stride: Any) -> np.ndarray:
    return _rebuild_tensor_v2(storage, offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, *rest: Any) -> Any:
    return data  # nn.Parameter(data): the array itself


def _codecs_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # protocol 2 writes bytes as _codecs.encode(str, 'latin1')
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise TorchPickleError(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1", errors)


# (module, name) -> what the pickle gets instead; builtin types are immutable already
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _Safe(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor"): _Safe(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Safe(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Safe(_rebuild_parameter),
    ("torch", "Size"): tuple,
    ("_codecs", "encode"): _Safe(_codecs_encode),
    **{("torch", name): st for name, st in _STORAGE_TYPES.items()},
}
# protocol 2 spells builtins '__builtin__' (Python 2's name)
for _module in ("builtins", "__builtin__"):
    _ALLOWED.update({(_module, t.__name__): t for t in (set, frozenset, complex, slice)})


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only :data:`_ALLOWED` globals; every other global is an :class:`Opaque`."""

    def __init__(self, file: Any, load_storage: Callable[[_StorageType, str, int], np.ndarray]):
        super().__init__(file, encoding="utf-8")
        self._load_storage = load_storage
        self._opaque: dict[str, type[Opaque]] = {}

    def find_class(self, module: str, name: str) -> Any:
        # never pickle.Unpickler.find_class: that imports the module
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        key = f"{module}.{name}"
        if key not in self._opaque:
            self._opaque[key] = opaque_type(key)
        return self._opaque[key]

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchPickleError(f"unknown persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise TorchPickleError(f"unsupported storage type {storage_type!r}")
        return self._load_storage(storage_type, str(key), int(numel))


def is_torch_zip(path: Any) -> bool:
    """Whether ``path`` is a ``torch.save`` zip archive (torch >= 1.6's default format)."""
    return zipfile.is_zipfile(path)


def read_torch_zip(path: Any) -> Any:
    """The object ``torch.save`` wrote to ``path``, read without torch or pickled code.

    Tensors come back as NumPy arrays (float16 / bfloat16 widened to float32, bool and
    integers as they are) with the saved ``size``; dicts, lists, tuples, OrderedDicts,
    strings and numbers as themselves; every other pickled object as an :class:`Opaque`
    (its class is never imported or called). Tensors sharing a storage are read once.

    Raises:
      TorchPickleError: not a torch zip archive, or storages / tensor layouts the
        pickle describes inconsistently.
    """
    with zipfile.ZipFile(path) as archive:
        pkls = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise TorchPickleError(f"{path} is a zip archive without one <name>/data.pkl")
        prefix = pkls[0][: -len("data.pkl")]
        names = set(archive.namelist())
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode().strip()
        order = "<" if byteorder == "little" else ">"
        storages: dict[str, np.ndarray] = {}

        def load_storage(storage_type: _StorageType, key: str, numel: int) -> np.ndarray:
            if key in storages:
                return storages[key]
            name = f"{prefix}data/{key}"
            if name not in names:
                raise TorchPickleError(f"{path} has no storage {name!r}")
            raw = archive.read(name)
            bf16 = storage_type.dtype == "bfloat16"
            dtype = np.dtype("uint16" if bf16 else storage_type.dtype).newbyteorder(order)
            if len(raw) != numel * dtype.itemsize:
                raise TorchPickleError(
                    f"storage {name!r} has {len(raw)} bytes, the pickle says {numel} "
                    f"elements of {storage_type.name}"
                )
            values = np.frombuffer(raw, dtype)
            if bf16:  # bfloat16 is the top half of a float32
                values = (values.astype(np.uint32) << 16).view(np.float32)
            elif values.dtype.kind == "f":
                values = values.astype(np.float32)
            else:
                values = values.astype(values.dtype.newbyteorder("="))
            storages[key] = values
            return values

        with archive.open(pkls[0]) as f:
            try:
                return _RestrictedUnpickler(f, load_storage).load()
            except TorchPickleError:
                raise
            except Exception as err:  # a malformed pickle: say so, whatever it tripped on
                raise TorchPickleError(f"{path} cannot be read as data: {err!r}") from err
