"""File access for local and remote paths, and atomic writes.

A path with a scheme (`gs://bucket/dir`, `s3://bucket/dir`, `hdfs://...`)
goes through `tf.io.gfile`, so TensorFlow's filesystems serve it: `gs://`
is built in, `s3://` and `hdfs://` come with the optional tensorflow-io
install. Local paths use the standard library and never import TensorFlow
(the CLIs check their flags, and JAX and PyTorch runs work, without it).

Writes are atomic: a killed run never leaves a file that looks complete.
"""

import contextlib
import io
import os
import tempfile
import uuid

from kskel.errors import KskelError

# Schemes that TensorFlow itself does not serve; tensorflow-io registers them.
TFIO_SCHEMES = ("s3", "hdfs", "viewfs")
TFIO_HINT = (
    "needs the optional tensorflow-io install: pip install -r "
    "requirements-io.txt (a separate environment, see README)"
)


def scheme(path):
    """The scheme of `path` (`"gs"` for `gs://b/x`), `""` for a local path."""
    path = os.fspath(path)
    head, sep, _ = path.partition("://")
    return head.lower() if sep and head.isidentifier() else ""


def is_remote(path):
    """Whether `path` has a scheme, so it goes through `tf.io.gfile`."""
    return bool(scheme(path))


def check_scheme(path, flag):
    """Raises `KskelError` when no filesystem serves `path`'s scheme.

    Imports tensorflow-io for `s3://` and `hdfs://` paths, which registers
    their filesystems with TensorFlow in this process.

    Args:
        path: str, a local path or URL; empty and local paths pass.
        flag: str, the flag that holds it, named in the message.

    Raises:
        KskelError: the scheme needs tensorflow-io and it is not installed,
            or TensorFlow has no filesystem for it.
    """
    name = scheme(path or "")
    if not name:
        return
    if name in TFIO_SCHEMES:
        try:
            import tensorflow_io  # noqa: F401  Registers s3:// and hdfs://.
        except ImportError:
            raise KskelError(
                f"--{flag}={path}: {name}:// {TFIO_HINT}."
            ) from None
    import tensorflow as tf

    if name not in tf.io.gfile.get_registered_schemes():
        raise KskelError(
            f"--{flag}={path}: TensorFlow has no filesystem for {name}:// "
            f"(it has {', '.join(s + '://' for s in _known(tf))}; s3:// and "
            f"hdfs:// {TFIO_HINT})."
        )


def _gfile():
    """`tf.io.gfile`, imported on first use of a remote path."""
    import tensorflow as tf

    return tf.io.gfile


def _known(tf):
    return sorted(s for s in tf.io.gfile.get_registered_schemes() if s)


def join(path, *parts):
    """`os.path.join` that keeps a URL's forward slashes."""
    path = os.fspath(path)
    if is_remote(path):
        return "/".join([path.rstrip("/"), *parts])
    return os.path.join(path, *parts)


def parent(path):
    """The directory holding `path` (absolute for a local path)."""
    path = os.fspath(path)
    if is_remote(path):
        return path.rstrip("/").rpartition("/")[0]
    return os.path.dirname(os.path.abspath(path))


def exists(path):
    """Whether `path` exists, locally or remotely."""
    if is_remote(path):
        return _gfile().exists(path)
    return os.path.exists(path)


def isdir(path):
    """Whether `path` is a directory, locally or remotely."""
    if is_remote(path):
        return _gfile().isdir(path)
    return os.path.isdir(path)


def isfile(path):
    """Whether `path` is a file, locally or remotely."""
    if is_remote(path):
        return exists(path) and not isdir(path)
    return os.path.isfile(path)


def listdir(path):
    """The names in directory `path` (without a trailing slash)."""
    if is_remote(path):
        return [name.rstrip("/") for name in _gfile().listdir(path)]
    return os.listdir(path)


def remove(path):
    """Removes the file `path` when it exists."""
    if is_remote(path):
        gfile = _gfile()
        if gfile.exists(path):
            gfile.remove(path)
    elif os.path.exists(path):
        os.remove(path)


def makedirs(path):
    """Creates directory `path` and its parents (no error if present)."""
    if is_remote(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def open_file(path, mode="r"):
    """`open(path, mode)` for local paths, `tf.io.gfile.GFile` for URLs."""
    if is_remote(path):
        return _gfile().GFile(path, mode)
    return open(path, mode)


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary local path; moves it to `path` on success.

    A local `path` gets a temporary file beside it, renamed into place. A
    remote `path` gets a local temporary file that is copied beside the
    target under a temporary name and then renamed over it. On an
    exception the temporary files are removed and `path` is untouched.
    """
    path = os.fspath(path)
    if is_remote(path):
        with _remote_atomic_path(path, suffix) as tmp:
            yield tmp
        return
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


@contextlib.contextmanager
def _remote_atomic_path(path, suffix):
    import tensorflow as tf

    parent, _, name = path.rpartition("/")
    with tempfile.TemporaryDirectory(prefix="kskel-") as local_dir:
        local = os.path.join(local_dir, name)
        yield local
        tf.io.gfile.makedirs(parent)
        remote_tmp = f"{parent}/.tmp-{uuid.uuid4().hex}{suffix}"
        try:
            tf.io.gfile.copy(local, remote_tmp, overwrite=True)
            tf.io.gfile.rename(remote_tmp, path, overwrite=True)
        finally:
            if tf.io.gfile.exists(remote_tmp):
                tf.io.gfile.remove(remote_tmp)


def save_keras_atomic(model, path):
    """Saves a Keras model to a `.keras` file atomically (local or remote)."""
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise KskelError(f"{path}: a Keras model file must end in '.keras'.")
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def save_array_atomic(path, array):
    """Saves a NumPy array to an `.npy` file atomically (local or remote)."""
    import numpy as np

    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as file:
            np.save(file, array)


def load_array(path):
    """`np.load(path, allow_pickle=False)` of an `.npy` file, local or remote.

    Raises:
        FileNotFoundError: `path` does not exist.
        OSError: a remote read failed.
        ValueError: the file is not an `.npy` array.
    """
    import numpy as np

    path = os.fspath(path)
    if not is_remote(path):
        return np.load(path, allow_pickle=False)
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as file:
            data = file.read()
    except tf.errors.NotFoundError:
        raise FileNotFoundError(path) from None
    except tf.errors.OpError as err:
        raise OSError(f"{path}: {err.message}") from None
    return np.load(io.BytesIO(data), allow_pickle=False)


@contextlib.contextmanager
def local_copy(path):
    """Yields a local path with the file `path`'s contents.

    A local `path` is yielded as it is; a remote one is copied into a
    temporary directory that is removed afterwards, for readers that take
    local files only.

    Raises:
        KskelError: the remote `path` does not exist.
    """
    path = os.fspath(path)
    if not is_remote(path):
        yield path
        return
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="kskel-") as local_dir:
        local = os.path.join(local_dir, path.rstrip("/").rpartition("/")[2])
        try:
            tf.io.gfile.copy(path, local)
        except tf.errors.NotFoundError:
            raise KskelError(f"{path}: not found.") from None
        yield local


def _tree(gfile, directory, prefix=""):
    """`(directories, files)` under `directory`, as relative "a/b" paths."""
    directories, files = [], []
    for name in sorted(gfile.listdir(directory)):
        name = name.rstrip("/")
        relative = prefix + name
        if gfile.isdir(join(directory, name)):
            directories.append(relative)
            inner = _tree(gfile, join(directory, name), relative + "/")
            directories += inner[0]
            files += inner[1]
        else:
            files.append(relative)
    return directories, files


def copy_tree(source, target, *, ignore=(), last=()):
    """Copies the directory `source` to `target`, file by file.

    Either side may be local or remote (through `tf.io.gfile`). This is no
    atomic rename, which object stores do not have; instead the files
    named in `last` (relative paths such as "saved_model.pb") are copied
    after all others, in that order, so a reader that looks for them never
    finds a half-copied tree (a single file appears whole on an object
    store). On an error, what was copied is removed again.

    Args:
        source: str, the directory to copy.
        target: str, the directory to create (files already there are
            overwritten).
        ignore: top-level names under `source` that are not copied.
        last: relative paths copied last.
    """
    import tensorflow as tf

    gfile = tf.io.gfile
    directories, files = _tree(gfile, os.fspath(source))

    def keep(relative):
        return relative.split("/")[0] not in ignore

    def path(root, relative):
        return join(root, *relative.split("/"))

    files = sorted(
        filter(keep, files),
        key=lambda f: last.index(f) if f in last else -1,
    )
    made = [] if gfile.exists(target) else [target]
    copied = []
    try:
        gfile.makedirs(target)
        for relative in filter(keep, directories):
            made.append(path(target, relative))
            gfile.makedirs(made[-1])
        for relative in files:
            copied.append(path(target, relative))
            gfile.copy(path(source, relative), copied[-1], overwrite=True)
    except BaseException:
        _remove_quietly(gfile, copied, made)
        raise


def _remove_quietly(gfile, files, directories):
    """Removes what a failed copy wrote: files, then directories inside out.

    Only these paths: a recursive delete of a remote prefix could reach
    objects that merely share it.
    """
    import tensorflow as tf

    for path in files:
        with contextlib.suppress(tf.errors.OpError):
            gfile.remove(path)
    for path in sorted(directories, reverse=True):
        with contextlib.suppress(tf.errors.OpError):
            if gfile.exists(path) and not gfile.listdir(path):
                gfile.rmtree(path)
