"""Writes PyTorch zip-format checkpoints without torch, for tests.

The pickle is assembled opcode by opcode exactly as `torch.save` lays it
out (protocol 2, tensors via `torch._utils._rebuild_tensor_v2` and
persistent storage ids), so the reader is tested on the real format.
"""

import struct
import zipfile

import numpy as np

_STORAGE = {
    np.dtype("float32"): "FloatStorage",
    np.dtype("float64"): "DoubleStorage",
    np.dtype("int64"): "LongStorage",
}


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value):
    return b"J" + struct.pack("<i", value)


def _tuple(values):
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def _tensor(key, array):
    storage = _STORAGE[array.dtype]
    strides = [s // array.itemsize for s in array.strides]
    return (
        _global("torch._utils", "_rebuild_tensor_v2")
        + b"(("
        + _str("storage")
        + _global("torch", storage)
        + _str(key)
        + _str("cpu")
        + _int(array.size)
        + b"tQ"
        + _int(0)
        + _tuple(array.shape)
        + _tuple(strides)
        + b"\x89"
        + _global("collections", "OrderedDict")
        + b")Rt"
        + b"R"
    )


def write_checkpoint(path, state, root="archive", raw_pickle=None):
    """Writes `state` ({name: np.ndarray}) as a torch zip checkpoint.

    A Fortran-ordered array is stored in its memory order with its strides,
    as torch stores a transposed view. `raw_pickle` replaces `data.pkl`.
    """
    body = b"\x80\x02" + _global("collections", "OrderedDict") + b")R("
    storages = {}
    for i, (name, array) in enumerate(state.items()):
        array = np.asarray(array)
        if not (array.flags.c_contiguous or array.flags.f_contiguous):
            array = np.ascontiguousarray(array)
        key = str(i)
        # `ravel(order="K")` is the memory order for either layout.
        storages[key] = array.ravel(order="K").tobytes()
        body += _str(name) + _tensor(key, array)
    body += b"u."
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{root}/data.pkl", raw_pickle or body)
        archive.writestr(f"{root}/version", "3\n")
        for key, data in storages.items():
            archive.writestr(f"{root}/data/{key}", data)
