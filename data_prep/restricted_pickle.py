"""Loads the official label pickles without running code from them.

The official `{part}_label.pkl` is a pickle of a tuple (list of sample
names, list of 0-based int labels). Unpickling an arbitrary file can call
any importable function (`os.system`, `builtins.eval`, ...), so this reader
refuses every global except those that old pickles need to rebuild NumPy
integer labels: `numpy.core.multiarray.scalar` (or its NumPy 2 name
`numpy._core.multiarray.scalar`), `numpy.dtype` and, in protocols 0 to 2,
`_codecs.encode` (which turns the scalar's raw bytes, stored as text, back
into bytes). Each is replaced by a local function that only builds numeric
scalars, numeric dtypes or bytes.
"""

import pickle

import numpy as np

from kskel.errors import KskelError

# Dtype kinds a rebuilt scalar may have: bool, signed, unsigned, float.
_NUMERIC_KINDS = "biuf"


class _Refused(Exception):
    """A pickle asked for something this reader does not build."""


def _dtype(spec, align=False, copy=True):
    """A numeric `np.dtype`; always a fresh copy (pickle then sets state)."""
    del align, copy
    if not isinstance(spec, str):
        raise _Refused(f"numpy.dtype({spec!r})")
    try:
        dtype = np.dtype(spec)
    except TypeError:
        raise _Refused(f"numpy.dtype({spec!r})") from None
    if dtype.kind not in _NUMERIC_KINDS:
        raise _Refused(f"non-numeric numpy.dtype({spec!r})")
    return np.dtype(spec, copy=True)


def _scalar(dtype, data):
    """A numeric NumPy scalar from its raw bytes."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS:
        raise _Refused(f"numpy scalar of dtype {dtype!r}")
    if isinstance(data, str):
        data = data.encode("latin1")  # Python 2 pickles store bytes as str.
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise _Refused(f"numpy scalar of dtype {dtype} from {data!r}")
    return np.frombuffer(data, dtype=dtype)[0]


def _latin1_bytes(text, encoding="utf-8"):
    """`_codecs.encode` as protocols 0-2 use it: latin-1 text to bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode({text!r}, {encoding!r})")
    return text.encode("latin1")


_ALLOWED = {
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy", "dtype"): _dtype,
}


class _LabelUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise KskelError(
                f"{self._path}: refusing to unpickle global {module}.{name}: "
                "a label pickle may only hold lists of names and integer "
                "labels, and loading it could run code. Re-save the labels "
                "as a plain (names, labels) tuple of lists."
            ) from None


def load_label_pickle(path):
    """Reads an official label pickle safely.

    Args:
        path: str, a pickle of `(names, labels)`: a tuple (or list) of two
            equally long lists, sample names (str or bytes) and 0-based
            integer labels (int or NumPy integer).

    Returns:
        tuple `(names, labels)`: list of str, list of int.

    Raises:
        KskelError: naming the file when it is missing, is not a pickle,
            asks for any other global (nothing is executed), or does not
            hold two equally long lists of names and integer labels.
    """
    try:
        with open(path, "rb") as f:
            content = _LabelUnpickler(f, path).load()
    except OSError as err:
        raise KskelError(f"{path}: cannot read ({err.strerror}).") from None
    except _Refused as refused:
        raise KskelError(
            f"{path}: refusing to build {refused}; a label pickle may only "
            "hold names and integer labels."
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise KskelError(f"{path}: not a valid label pickle ({err}).") from None
    return _names_and_labels(content, path)


def _names_and_labels(content, path):
    if not isinstance(content, (tuple, list)) or len(content) != 2:
        raise KskelError(
            f"{path}: expected a (names, labels) pair, got "
            f"{type(content).__name__}."
        )
    names, labels = content
    if not isinstance(names, (list, tuple)) or not isinstance(
        labels, (list, tuple)
    ):
        raise KskelError(f"{path}: names and labels must both be lists.")
    if len(names) != len(labels):
        raise KskelError(
            f"{path}: {len(names)} names but {len(labels)} labels."
        )
    return [_name(n, i, path) for i, n in enumerate(names)], [
        _label(v, i, path) for i, v in enumerate(labels)
    ]


def _name(value, index, path):
    if isinstance(value, bytes) and value.isascii():
        value = value.decode("ascii")
    if not isinstance(value, str) or not value:
        raise KskelError(f"{path}: name {index} is {value!r}, not a string.")
    return value


def _label(value, index, path):
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, np.integer)
    ):
        raise KskelError(f"{path}: label {index} is {value!r}, not an integer.")
    return int(value)
