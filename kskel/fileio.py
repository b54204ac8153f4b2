"""Atomic file writes: a killed run never leaves a file that looks complete."""

import contextlib
import os
import tempfile

from kskel.errors import KskelError


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path beside `path`; renames it there on success.

    On an exception the temporary file is removed and `path` is untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=directory, prefix=".tmp-")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_keras_atomic(model, path):
    """Saves a Keras model to a `.keras` file atomically."""
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise KskelError(f"{path}: a Keras model file must end in '.keras'.")
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def save_array_atomic(path, array):
    """Saves a NumPy array to an `.npy` file atomically."""
    import numpy as np

    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as file:
            np.save(file, array)
