"""Checks a kskel TFRecord dataset record by record.

Usage:

    python -m data_prep.validate --data DIR

Reads every shard listed in `DIR/manifest.json` and checks that each record
parses, has the manifest's shape, holds finite values, a label below
`num_classes` and `num_frames <= T`, that names are unique within a split,
that each shard holds as many records as the manifest says, and that its
SHA-256 matches. Prints a short summary per split. On the first problem it
prints one line naming the shard file (and the record index) and exits 1.
"""

import re

import numpy as np
import tensorflow as tf
from absl import flags
from google.protobuf import message

from kskel import cli
from kskel.data import schema
from kskel.errors import KskelError


class _Problem(Exception):
    """What is wrong with one record."""


def validate_dataset(data_dir):
    """Checks every record of every shard of the dataset at `data_dir`.

    Args:
        data_dir: str, a dataset directory written by `schema.write_dataset`.

    Returns:
        dict with `manifest` (the manifest) and `splits`: split name ->
        `num_samples`, `num_shards`, `classes_seen` (sorted labels present)
        and `frames` (`min`, `mean`, `max` of `num_frames`; None when empty).

    Raises:
        KskelError: on the first problem, naming the shard file and, for a
            record-level problem, the record index.
    """
    manifest = schema.load_manifest(data_dir)
    splits = {}
    for split, entry in manifest["splits"].items():
        labels, frames, names = [], [], set()
        for shard in entry["shards"]:
            path = tf.io.gfile.join(str(data_dir), shard["file"])
            _check_shard(path, shard, manifest, labels, frames, names)
        splits[split] = {
            "num_samples": entry["num_samples"],
            "num_shards": len(entry["shards"]),
            "classes_seen": sorted(set(labels)),
            "frames": _stats(frames),
        }
    return {"manifest": manifest, "splits": splits}


def _check_shard(path, shard, manifest, labels, frames, names):
    if not tf.io.gfile.exists(path):
        raise KskelError(f"{path}: shard listed in the manifest is missing.")
    records = tf.data.TFRecordDataset(path, manifest["compression"])
    index = 0
    try:
        for record in records:
            label, num_frames = _check_record(record.numpy(), manifest, names)
            labels.append(label)
            frames.append(num_frames)
            index += 1
    except _Problem as problem:
        raise KskelError(f"{path}: record {index}: {problem}") from None
    except tf.errors.OpError as err:
        raise KskelError(
            f"{path}: record {index}: unreadable, the shard is corrupt "
            f"({_short(err.message)}); convert the dataset again."
        ) from None
    if index != shard["num_samples"]:
        raise KskelError(
            f"{path}: holds {index} records, the manifest says "
            f"{shard['num_samples']}; convert the dataset again."
        )
    digest = schema.file_sha256(path)
    if digest != shard["sha256"]:
        raise KskelError(
            f"{path}: sha256 {digest} does not match the manifest's "
            f"{shard['sha256']}; the file changed after it was written."
        )


def _short(tf_message):
    """A TF error message without its node and op decorations."""
    text = re.sub(r"\{\{.*?\}\}\s*", "", tf_message.splitlines()[0])
    return re.sub(r"\s*\[Op:.*$", "", text)


def _check_record(record, manifest, names):
    """Checks one serialized example; returns (label, num_frames)."""
    try:
        example = tf.train.Example.FromString(record)
    except message.DecodeError as err:
        raise _Problem(f"not a tf.train.Example ({err})") from None
    feature = example.features.feature
    shape = schema.sample_shape(manifest)
    if _ints(feature, "shape", 4) != list(shape):
        raise _Problem(
            f"shape {_ints(feature, 'shape', 4)} is not the manifest's "
            f"{list(shape)}"
        )
    _floats(feature, "skeleton", shape)
    if manifest["has_actionlet"]:
        actionlet = _floats(feature, "actionlet", shape[:3])
        if actionlet.min() < 0 or actionlet.max() > 1:
            raise _Problem("actionlet values outside [0, 1]")
    elif "actionlet" in feature:
        raise _Problem("has an actionlet but the manifest says none")
    values = {key: _ints(feature, key, 1)[0] for key in schema.INT_FEATURES}
    if not 0 <= values["label"] < manifest["num_classes"]:
        raise _Problem(
            f"label {values['label']} outside [0, {manifest['num_classes']})"
        )
    if not 0 <= values["num_frames"] <= manifest["num_frames"]:
        raise _Problem(
            f"num_frames {values['num_frames']} outside "
            f"[0, {manifest['num_frames']}]"
        )
    name = _bytes(feature, "name")
    if not name or name in names:
        raise _Problem(f"empty or duplicate name {name!r}")
    names.add(name)
    return values["label"], values["num_frames"]


def _ints(feature, key, length):
    if key not in feature or len(feature[key].int64_list.value) != length:
        raise _Problem(f"feature {key!r} is not {length} int64 value(s)")
    return list(feature[key].int64_list.value)


def _bytes(feature, key):
    if key not in feature or len(feature[key].bytes_list.value) != 1:
        raise _Problem(f"feature {key!r} is not one bytes value")
    return feature[key].bytes_list.value[0]


def _floats(feature, key, shape):
    raw = _bytes(feature, key)
    if len(raw) != 4 * int(np.prod(shape)):
        raise _Problem(
            f"feature {key!r} holds {len(raw)} bytes, expected float32 "
            f"{tuple(shape)}"
        )
    values = np.frombuffer(raw, dtype="<f4").reshape(shape)
    bad = ~np.isfinite(values)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _Problem(f"{key} has a non-finite value (NaN/Inf) at {where}")
    return values


def _stats(values):
    if not values:
        return None
    return {
        "min": int(min(values)),
        "mean": float(np.mean(values)),
        "max": int(max(values)),
    }


def format_summary(data_dir, summary):
    """The human-readable summary printed by the command line."""
    manifest = summary["manifest"]
    lines = [
        f"{data_dir}: schema {manifest['schema_version']}, layout "
        f"{manifest['layout']}, sample (M, T, V, C) = "
        f"{schema.sample_shape(manifest)}, {manifest['num_classes']} "
        f"classes, {manifest['compression']}: OK"
    ]
    for split, info in summary["splits"].items():
        frames = info["frames"]
        frame_text = (
            "no frames"
            if frames is None
            else f"frames min {frames['min']} mean {frames['mean']:.1f} "
            f"max {frames['max']}"
        )
        skipped = len(manifest["skipped"].get(split, []))
        lines.append(
            f"  {split}: {info['num_samples']} samples in "
            f"{info['num_shards']} shards, {len(info['classes_seen'])}/"
            f"{manifest['num_classes']} classes seen, {frame_text}, "
            f"{skipped} skipped when written"
        )
    return "\n".join(lines)


def _define_flags():
    # Defined only when run as a program, so that importing this module
    # beside other command-line modules cannot clash on flag names.
    flags.DEFINE_string("data", None, "Dataset directory to check.")
    flags.mark_flag_as_required("data")


def main(argv):
    del argv
    data_dir = flags.FLAGS.data
    print(format_summary(data_dir, validate_dataset(data_dir)))
    return 0


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
