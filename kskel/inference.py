"""Inference with a trained skeleton model: load, check inputs, predict.

The model is a `.keras` file or a SavedModel directory written by
`python -m kskel.export` (loaded as an `exporting.ExportedNetwork`, which
offers the same calls). Input arrays come in the official `NCTVM`
(N, C, T, V, M) layout or the project's own `NMTVC`; they are converted
once, here, at the edge. Paths may be remote (`gs://`, `s3://`, ...): they
go through `kskel.fileio`.
"""

import numpy as np

from kskel import exporting
from kskel import fileio
from kskel.errors import KskelError

LAYOUTS = {"NCTVM": (0, 4, 2, 3, 1), "NMTVC": (0, 1, 2, 3, 4)}


def load_model(path, flag="--model"):
    """Loads a `.keras` model or kskel SavedModel; errors name `flag`."""
    path = str(path)
    if not fileio.exists(path):
        raise KskelError(f"{flag}={path}: file not found.")
    if fileio.isdir(path):
        return exporting.ExportedNetwork(path, flag)
    if not path.endswith(".keras"):
        raise KskelError(
            f"{flag}={path}: expected a '.keras' model file or a SavedModel "
            "directory."
        )
    import keras

    import kskel.encoders  # noqa: F401  (registers the custom classes)

    try:
        # Staged locally: not every Keras version reads a remote archive.
        with fileio.local_copy(path) as local:
            return keras.models.load_model(local)
    except Exception as err:  # Keras raises many types for a bad archive.
        raise KskelError(f"{flag}={path}: cannot load it ({err}).") from None


def load_input(path, layout):
    """Reads an `.npy` array and returns it as float32 `(N, M, T, V, C)`."""
    if layout not in LAYOUTS:
        raise KskelError(
            f"--layout={layout}: expected one of {', '.join(LAYOUTS)}."
        )
    try:
        array = fileio.load_array(path)
    except FileNotFoundError:
        raise KskelError(f"--input={path}: file not found.") from None
    except (ValueError, OSError, EOFError) as err:
        raise KskelError(
            f"--input={path}: not a numeric .npy array ({err})."
        ) from None
    if array.ndim != 5:
        raise KskelError(
            f"--input={path}: expected a rank-5 {layout} array, got shape "
            f"{array.shape}."
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise KskelError(
            f"--input={path}: expected floating-point values, got "
            f"{array.dtype}."
        )
    return np.ascontiguousarray(
        np.transpose(array, LAYOUTS[layout]), dtype=np.float32
    )


def check_input(x, model, source):
    """Checks `(N, M, T, V, C)` against the model; raises `KskelError`."""
    encoder = model.encoder
    joints, channels = x.shape[3], x.shape[4]
    if joints != encoder.num_joints or channels != encoder.in_channels:
        raise KskelError(
            f"{source}: the model expects V={encoder.num_joints} joints and "
            f"C={encoder.in_channels} channels, the input (N, M, T, V, C) "
            f"has shape {x.shape}; check --layout."
        )
    _check_sample_shape(model, tuple(x.shape[1:]), source)
    bad = ~np.isfinite(x)
    if bad.any():
        sample = int(np.argwhere(bad)[0][0])
        raise KskelError(
            f"{source}: sample {sample} holds NaN or infinite values."
        )


def _check_sample_shape(model, shape, source):
    """A SavedModel reads one `(M, T, V, C)`; a Keras model any M and T."""
    if not isinstance(model, exporting.ExportedNetwork):
        return
    if shape != model.sample_shape:
        bodies, frames = model.sample_shape[:2]
        raise KskelError(
            f"{source}: the SavedModel {model.path} expects samples "
            f"(M, T, V, C) = {model.sample_shape}, got {shape}; give "
            f"{bodies} bodies of {frames} frames (preprocessing: "
            f"{model.metadata['preprocessing']})."
        )


def predict(model, x, batch_size=64, features=False):
    """Logits (or pooled features) of `x`, `(N, M, T, V, C)`, in eval mode."""
    from keras import ops

    fn = model.features if features else model
    outputs = [
        ops.convert_to_numpy(fn(x[i : i + batch_size], training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outputs, axis=0)


def run_prediction(
    model_path,
    input_path,
    layout="NMTVC",
    output=None,
    features=False,
    batch_size=64,
):
    """Predicts on an `.npy` file; writes `output` atomically if given.

    Returns:
        The logits (or features) array.
    """
    x = load_input(input_path, layout)
    model = load_model(model_path)
    check_input(x, model, f"--input={input_path}")
    out = predict(model, x, batch_size, features)
    if output:
        fileio.save_array_atomic(output, out)
    return out


def evaluate_split(model_path, data_dir, split, stream="joint", batch_size=64):
    """Top-1 accuracy of a classifier on a TFRecord split.

    Returns:
        `(accuracy, num_samples)`.

    Raises:
        KskelError: the model is not a classifier, or its joint layout,
            channels or class count do not match the dataset; unknown or
            empty split.
    """
    from kskel.data import schema
    from kskel.evaluation import features

    model = load_model(model_path)
    manifest = schema.load_manifest(data_dir)
    features.check_compatible(model, manifest, f"--data={data_dir}")
    _check_sample_shape(
        model, schema.sample_shape(manifest), f"--data={data_dir}"
    )
    if isinstance(model, exporting.ExportedNetwork) and model.stream != stream:
        raise KskelError(
            f"--stream={stream}: the SavedModel {model_path} expects the "
            f"{model.stream!r} stream; pass --stream={model.stream}."
        )
    if not model.is_classifier or model.num_outputs != manifest["num_classes"]:
        raise KskelError(
            f"--model={model_path}: {model.num_outputs} outputs, the dataset "
            f"--data={data_dir} has {manifest['num_classes']} classes; use "
            "a classifier trained for this dataset."
        )
    logits, labels = features.extract(
        model,
        data_dir,
        split,
        stream=stream,
        batch_size=batch_size,
        projection=True,  # The head's output: the logits.
    )
    return float(np.mean(np.argmax(logits, axis=1) == labels)), len(labels)
