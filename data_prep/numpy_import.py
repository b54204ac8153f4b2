"""Imports official `(N, C, T, V, M)` .npy arrays and label pickles.

Usage:

    python -m data_prep.numpy_import \\
        --data train_position.npy --labels train_label.pkl --split train \\
        --data val_position.npy --labels val_label.pkl --split val \\
        --out DIR --layout ntu25 --num_classes 60

`--data`, `--labels` and `--split` are repeated once per split, in the same
order. Each array is memory-mapped (`allow_pickle=False`), each sample is
transposed to the project layout `(M, T, V, C)` and written with
`kskel.data.schema.write_dataset`. Label pickles are read with a restricted
unpickler that runs no code. `num_frames` is one past the last frame in
which any joint of any body is non-zero (later frames are padding), and
subject, camera, setup and replication come from NTU names
`SsssCcccPpppRrrrAaaa` (-1 for other names).
"""

import json
import pathlib
import re

import numpy as np
from absl import flags

from data_prep import restricted_pickle
from kskel import cli
from kskel import fileio
from kskel import graph
from kskel.data import schema
from kskel.errors import KskelError

_NTU_NAME = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")
_RESOURCES = pathlib.Path(__file__).resolve().parent / "resources"
# NTU class-name lists, used when the class count matches.
_NTU_CLASS_FILES = {60: "ntu60_classes.txt", 120: "ntu120_classes.txt"}


def ntu_ids(name):
    """Subject, camera, setup and replication of an NTU sample name.

    Args:
        name: str, e.g. "S001C002P003R002A013".

    Returns:
        dict with int `subject`, `camera`, `setup`, `replication`; all -1
        when `name` is not an NTU name.
    """
    match = _NTU_NAME.match(name)
    if not match:
        return {"subject": -1, "camera": -1, "setup": -1, "replication": -1}
    setup, camera, subject, replication, _ = (int(g) for g in match.groups())
    return {
        "subject": subject,
        "camera": camera,
        "setup": setup,
        "replication": replication,
    }


def num_valid_frames(skeleton):
    """One past the last frame in which any joint of any body is non-zero.

    Args:
        skeleton: array `(M, T, V, C)`.

    Returns:
        int in [0, T]; 0 for an all-zero sample.
    """
    present = np.flatnonzero(np.any(skeleton != 0, axis=(0, 2, 3)))
    return int(present[-1]) + 1 if present.size else 0


def default_class_names(num_classes, layout):
    """NTU-60/120 action names for those counts on NTU-25, else `class_i`."""
    file_name = _NTU_CLASS_FILES.get(num_classes)
    if layout.name == "ntu25" and file_name:
        return (_RESOURCES / file_name).read_text().splitlines()
    return [f"class_{i:03d}" for i in range(num_classes)]


def import_numpy(
    out_dir,
    parts,
    *,
    num_classes,
    layout="ntu25",
    class_names=None,
    preprocessing=None,
    samples_per_shard=1024,
    compression="GZIP",
    skip_bad=False,
):
    """Converts official arrays and label pickles into a kskel dataset.

    Every label pickle and array header is checked before anything is
    written.

    Args:
        out_dir: str, output dataset directory.
        parts: sequence of `(split, data_path, label_path)`; `data_path` is
            a float `(N, C=3, T, V, M)` .npy file and `label_path` a pickle
            of `(names, labels)` with N entries.
        num_classes: int, number of classes; labels must be below it.
        layout: str, joint layout; V must match it. Defaults to "ntu25".
        class_names: list of `num_classes` str, or None for
            `default_class_names`.
        preprocessing: dict, JSON-able description of what the arrays
            already had applied; None records `{}`.
        samples_per_shard: int. Defaults to 1024.
        compression: str, "GZIP" or "ZLIB". Defaults to "GZIP".
        skip_bad: bool, skip samples with non-finite values instead of
            failing. Defaults to False.

    Returns:
        dict, the written manifest.

    Raises:
        KskelError: unreadable or malicious pickle, wrong array rank or
            shape, data/label count mismatch, label out of range, NaN (naming
            the file and sample index), or a bad argument.
    """
    layout = graph.get_layout(layout)
    if class_names is None:
        class_names = default_class_names(num_classes, layout)
    if len(class_names) != num_classes:
        raise KskelError(
            f"{len(class_names)} class names for num_classes={num_classes}."
        )
    splits = {}
    for split, data_path, label_path in parts:
        if split in splits:
            raise KskelError(f"Split {split!r} is given more than once.")
        names, labels = restricted_pickle.load_label_pickle(label_path)
        data = _open_array(data_path, layout, len(names), label_path)
        _check_labels(labels, num_classes, label_path)
        splits[split] = _samples(data, names, labels, data_path, skip_bad)
    source = "; ".join(f"{s}: {d} + {lab}" for s, d, lab in parts)
    return schema.write_dataset(
        out_dir,
        splits,
        layout=layout,
        class_names=class_names,
        preprocessing={} if preprocessing is None else preprocessing,
        source=f"numpy_import ({source})",
        samples_per_shard=samples_per_shard,
        compression=compression,
        skip_bad=skip_bad,
    )


def _open_array(path, layout, num_labels, label_path):
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise KskelError(
            f"{path}: cannot read as a .npy array ({err})."
        ) from None
    if not isinstance(data, np.ndarray):
        raise KskelError(f"{path}: expected one .npy array, not an archive.")
    if not np.issubdtype(data.dtype, np.floating):
        raise KskelError(f"{path}: dtype {data.dtype} is not a float type.")
    if data.ndim != 5:
        raise KskelError(
            f"{path}: shape {data.shape} has rank {data.ndim}; expected "
            "(N, C, T, V, M)."
        )
    count, channels, _, joints, _ = data.shape
    if channels != schema.CHANNELS:
        raise KskelError(
            f"{path}: C = {channels} (axis 1 of {data.shape}); expected "
            f"{schema.CHANNELS} coordinates in (N, C, T, V, M) order."
        )
    if joints != layout.num_joints:
        raise KskelError(
            f"{path}: V = {joints} (axis 3 of {data.shape}), but layout "
            f"{layout.name!r} has {layout.num_joints} joints."
        )
    if count != num_labels:
        raise KskelError(
            f"{path}: {count} samples, but {label_path} has {num_labels} "
            "labels."
        )
    return data


def _check_labels(labels, num_classes, label_path):
    for index, label in enumerate(labels):
        if not 0 <= label < num_classes:
            raise KskelError(
                f"{label_path}: label {label} of sample {index} is outside "
                f"[0, {num_classes}); check --num_classes."
            )


def _samples(data, names, labels, path, skip_bad):
    """Yields one `Sample` per row of the memory-mapped array."""
    for index, (name, label) in enumerate(zip(names, labels)):
        skeleton = np.ascontiguousarray(
            np.asarray(data[index], dtype=np.float32).transpose(3, 1, 2, 0)
        )
        if not skip_bad and not np.isfinite(skeleton).all():
            raise KskelError(
                f"{path}: sample {index} ({name}) has non-finite values "
                "(NaN/Inf); fix the array or pass --skip_bad."
            )
        name = name.removesuffix(".skeleton")
        yield schema.Sample(
            skeleton=skeleton,
            label=label,
            name=name,
            num_frames=num_valid_frames(skeleton),
            **ntu_ids(name),
        )


def _define_flags():
    # Defined only when run as a program, so that importing this module
    # beside other command-line modules cannot clash on flag names.
    flags.DEFINE_multi_string(
        "data", None, "(N, C, T, V, M) .npy file; one per split."
    )
    flags.DEFINE_multi_string(
        "labels", None, "Label pickle (names, labels); one per --data."
    )
    flags.DEFINE_multi_string("split", None, "Split name; one per --data.")
    flags.DEFINE_string("out", None, "Output dataset directory.")
    flags.DEFINE_string("layout", "ntu25", "Joint layout of the arrays.")
    flags.DEFINE_integer("num_classes", None, "Number of classes.")
    flags.DEFINE_string(
        "class_names_file",
        None,
        "Text file with one class name per line (default: NTU-60/120 "
        "names for 60/120 classes on ntu25, else class_000, ...).",
    )
    flags.DEFINE_string(
        "preprocessing",
        "{}",
        "JSON object recorded in the manifest: what the arrays already had "
        'applied, e.g. \'{"frames": 50, "center_joint": 20}\'.',
    )
    flags.DEFINE_integer("samples_per_shard", 1024, "Records per shard.")
    flags.DEFINE_enum(
        "compression", "GZIP", sorted(schema.COMPRESSIONS), "Shard codec."
    )
    flags.DEFINE_bool(
        "skip_bad", False, "Skip samples with NaN/Inf instead of failing."
    )
    flags.mark_flags_as_required(
        ["data", "labels", "split", "out", "num_classes"]
    )


def _parts(data, labels, splits):
    if not len(data) == len(labels) == len(splits):
        raise KskelError(
            f"--data ({len(data)}), --labels ({len(labels)}) and --split "
            f"({len(splits)}) must be given the same number of times."
        )
    return list(zip(splits, data, labels))


def _preprocessing(text):
    try:
        value = json.loads(text)
    except ValueError as err:
        raise KskelError(f"--preprocessing is not JSON ({err}).") from None
    if not isinstance(value, dict):
        raise KskelError("--preprocessing must be a JSON object.")
    return value


def _class_names(path):
    if path is None:
        return None
    try:
        lines = pathlib.Path(path).read_text().splitlines()
    except OSError as err:
        raise KskelError(
            f"--class_names_file {path}: {err.strerror}."
        ) from None
    return [line.strip() for line in lines if line.strip()]


def main(argv):
    del argv
    f = flags.FLAGS
    if f.num_classes < 1 or f.samples_per_shard < 1:
        raise KskelError("--num_classes and --samples_per_shard must be >= 1.")
    fileio.check_scheme(f.out, "out")
    manifest = import_numpy(
        f.out,
        _parts(f.data, f.labels, f.split),
        num_classes=f.num_classes,
        layout=f.layout,
        class_names=_class_names(f.class_names_file),
        preprocessing=_preprocessing(f.preprocessing),
        samples_per_shard=f.samples_per_shard,
        compression=f.compression,
        skip_bad=f.skip_bad,
    )
    for split, entry in manifest["splits"].items():
        print(
            f"{split}: {entry['num_samples']} samples in "
            f"{len(entry['shards'])} shards, "
            f"{len(manifest['skipped'][split])} skipped"
        )
    print(f"wrote {f.out}")
    return 0


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
