"""Exports a trained network as a TensorFlow SavedModel for serving.

Usage:
    python -m kskel.export --model work_dir/RUN --out saved_models/NAME
    python -m kskel.export --model model.keras --out saved_models/NAME \\
        [--class_names_from DATA_DIR] [--stream joint]
    python -m kskel.export --model official.pt --out saved_models/NAME

`--model` is a pretraining `--model_dir` (its `query_network.keras`,
checked against the run's config.json and dataset), a `.keras` file holding
a `SkeletonClassifier`, or an official SkeletonCLR / AimCLR / ActCLR `.pt`
checkpoint (converted as `python -m kskel.convert` does). The SavedModel
holds the encoder and its head only; its `serving_default` signature maps
`skeleton` float32 `(None, M, T, V, C)` to `features` and `logits` (or
`projection`). `--class_names_from` names a dataset whose manifest gives
the class names and preprocessing stored with it. The directory appears
complete or not at all. Every path may be remote (`gs://`, or `s3://` /
`hdfs://` with requirements-io.txt); a remote `--out` must be a new path
(object stores cannot replace a directory atomically). See
saved_models/README.md for loading and serving.
"""

from absl import flags
from absl import logging

from kskel import cli
from kskel import exporting
from kskel import fileio
from kskel.errors import KskelError

_MODEL = flags.DEFINE_string(
    "model",
    None,
    "A pretraining --model_dir, a .keras file or an official .pt checkpoint.",
)
_OUT = flags.DEFINE_string("out", None, "Output SavedModel directory.")
_CLASS_NAMES_FROM = flags.DEFINE_string(
    "class_names_from",
    None,
    "Dataset directory whose manifest gives the class names and "
    "preprocessing (default: a run's own data_dir).",
)
_STREAM = flags.DEFINE_enum(
    "stream",
    None,
    list(exporting.STREAMS),
    "Input stream the network expects (default: the run's, else joint).",
)


def main(argv):
    del argv
    if not _MODEL.value or not _OUT.value:
        raise KskelError("--model and --out are required.")
    for flag in (_MODEL, _OUT, _CLASS_NAMES_FROM):
        fileio.check_scheme(flag.value, flag.name)
    if not fileio.exists(_MODEL.value):
        raise KskelError(f"--model={_MODEL.value}: not found.")
    if _CLASS_NAMES_FROM.value and not fileio.isdir(_CLASS_NAMES_FROM.value):
        raise KskelError(
            f"--class_names_from={_CLASS_NAMES_FROM.value}: not a directory."
        )
    exporting.check_output(_OUT.value)
    # TensorFlow's saver logs every step (and the temporary path) at INFO.
    logging.set_verbosity(logging.WARNING)
    metadata = exporting.export_saved_model(
        _MODEL.value,
        _OUT.value,
        class_names_from=_CLASS_NAMES_FROM.value,
        stream=_STREAM.value,
    )
    outputs = ", ".join(
        f"{name} {tuple(shape)}" for name, shape in metadata["outputs"].items()
    )
    print(
        f"wrote {_OUT.value}: skeleton {tuple(metadata['input']['shape'])} "
        f"float32 -> {outputs}; {metadata['stream']} stream, "
        f"{len(metadata['class_names'])} class names "
        f"({metadata['class_names_source']})"
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
