"""Reads PyTorch zip checkpoints without torch and without running pickles.

`torch.save` writes a zip archive holding `<root>/data.pkl` (the pickled
object) and one raw file per storage, `<root>/data/<key>`. The pickle
references tensors through a persistent id `("storage", StorageType, key,
location, numel)` and rebuilds them with `torch._utils._rebuild_tensor_v2`.

This reader unpickles with an `Unpickler` whose `find_class` admits only the
globals needed for tensors and ordered dicts, and maps each of them to a
harmless local function. Any other global (for example `os.system`) is
refused with a `KskelError`, so loading never executes code from the file.
"""

import collections
import pickle
import zipfile

import numpy as np

from kskel.errors import KskelError

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, offset, size, stride, *unused):
    del unused  # requires_grad, backward hooks, metadata.
    if not size:
        return np.array(storage[offset], dtype=storage.dtype)
    itemsize = storage.dtype.itemsize
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if size and min(size) > 0 and last >= storage.size:
        raise ValueError("tensor view exceeds its storage")
    view = np.lib.stride_tricks.as_strided(
        storage[offset:],
        shape=tuple(size),
        strides=tuple(s * itemsize for s in stride),
        writeable=False,
    )
    return np.array(view)


def _rebuild_parameter(data, *unused):
    del unused
    return data


def _ordered_dict(*args):
    return collections.OrderedDict(*args)


_ALLOWED = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
_ALLOWED.update(
    {("torch", name): _StorageType(name) for name in _STORAGE_DTYPES}
)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, archive, root, path):
        super().__init__(file)
        self._archive = archive
        self._root = root
        self._path = path
        self._storages = {}

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise KskelError(
                f"{self._path}: refusing to load global {module}.{name}: "
                "a checkpoint may only hold tensors and ordered dicts."
            ) from None

    def persistent_load(self, pid):
        if (
            not isinstance(pid, tuple)
            or len(pid) != 5
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
        ):
            raise KskelError(
                f"{self._path}: unsupported persistent id {pid!r} in the "
                "pickle; expected a tensor storage."
            )
        _, storage_type, key, _, numel = pid
        if key not in self._storages:
            member = f"{self._root}/data/{key}"
            try:
                raw = self._archive.read(member)
            except KeyError:
                raise KskelError(
                    f"{self._path}: storage {member} is missing from the "
                    "archive."
                ) from None
            dtype = storage_type.dtype.newbyteorder("<")
            array = np.frombuffer(raw, dtype=dtype)
            if array.size < numel:
                raise KskelError(
                    f"{self._path}: storage {member} holds {array.size} "
                    f"values, the pickle expects {numel}."
                )
            self._storages[key] = array
        return self._storages[key]


def load_state_dict(path):
    """Loads a zip-format PyTorch checkpoint as `{name: np.ndarray}`.

    Accepts a plain state dict or one nested under `"state_dict"` or
    `"model"`; strips a DataParallel `module.` prefix.

    Raises:
        KskelError: the file is missing, not a zip checkpoint, references a
            global other than tensors and ordered dicts, or holds no state
            dict.
    """
    path = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise KskelError(f"{path}: checkpoint file not found.") from None
    except (zipfile.BadZipFile, IsADirectoryError, OSError) as err:
        raise KskelError(
            f"{path}: not a zip-format PyTorch checkpoint ({err}). Legacy "
            "checkpoints must be re-saved with torch>=1.6 first."
        ) from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise KskelError(
                f"{path}: expected one '<root>/data.pkl' in the archive, "
                f"found {len(pickles)}; not a PyTorch checkpoint."
            )
        root = pickles[0][: -len("/data.pkl")]
        with archive.open(pickles[0]) as file:
            unpickler = _RestrictedUnpickler(file, archive, root, path)
            try:
                obj = unpickler.load()
            except KskelError:
                raise
            except Exception as err:  # Corrupt pickle streams raise anything.
                raise KskelError(
                    f"{path}: corrupt checkpoint pickle ({err})."
                ) from None
    return _as_state_dict(obj, path)


def _as_state_dict(obj, path):
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise KskelError(f"{path}: the checkpoint holds no state dict.")
    state = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, np.ndarray):
            raise KskelError(
                f"{path}: entry {name!r} is not a tensor; expected a state "
                "dict of tensors."
            )
        state[name.removeprefix("module.")] = value
    return state
