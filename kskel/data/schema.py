"""The on-disk dataset format: TFRecord shards described by a JSON manifest.

A dataset directory holds

- shards `{split}-{i:05d}-of-{n:05d}.tfrecord.gz` (GZIP) or
  `.tfrecord.zlib` (ZLIB), one `tf.train.Example` per sample, and
- `manifest.json`: schema version, joint layout, sample shape, class names,
  the preprocessing applied, and per split its shards with their record
  counts and SHA-256 digests.

Features of one example:

- `skeleton`: bytes, little-endian float32 `(M, T, V, C)`, C-order.
- `shape`: int64 x 4, `[M, T, V, C]`.
- `num_frames`: int64, valid frames; frames after them are zero padding.
- `label`: int64, 0-based class index.
- `name`: bytes, UTF-8 sample name, unique within its split.
- `subject`, `camera`, `setup`, `replication`: int64, -1 when unknown.
- `actionlet` (only when the manifest says `has_actionlet`): bytes,
  little-endian float32 `(M, T, V)` mask in [0, 1].

Writing is crash-safe: an old manifest is removed first, shards go to hidden
temporary files that are renamed once their split is complete, files of
earlier runs are removed, and `manifest.json` is written last, atomically.
A directory without a manifest is not a dataset. All paths go through
`tf.io.gfile`, so `gs://` directories work too.
"""

import dataclasses
import hashlib
import json
import os
import re

import numpy as np
import tensorflow as tf

from kskel import graph
from kskel.errors import KskelError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
CHANNELS = 3
# Compression type -> shard file extension.
COMPRESSIONS = {"GZIP": ".tfrecord.gz", "ZLIB": ".tfrecord.zlib"}
ID_FIELDS = ("subject", "camera", "setup", "replication")
INT_FEATURES = ("num_frames", "label") + ID_FIELDS

_TMP_SUFFIX = ".kskel-tmp"
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_SHARD_NAME = re.compile(r"^[A-Za-z0-9_]+-\d{5}-of-\d{5}\.tfrecord\.(gz|zlib)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HASH_CHUNK = 1 << 20
_MANIFEST_FIELDS = {
    "schema_version": int,
    "layout": str,
    "num_joints": int,
    "num_bodies": int,
    "num_frames": int,
    "channels": int,
    "class_names": list,
    "num_classes": int,
    "preprocessing": dict,
    "source": str,
    "compression": str,
    "has_actionlet": bool,
    "splits": dict,
    "skipped": dict,
}
_POSITIVE_FIELDS = (
    "num_joints",
    "num_bodies",
    "num_frames",
    "channels",
    "num_classes",
)


@dataclasses.dataclass
class Sample:
    """One skeleton sequence and its annotations.

    Args:
        skeleton: float32 array `(M, T, V, C)`; absent bodies are all zero.
        label: int, 0-based class index.
        name: str, e.g. "S001C002P003R002A013"; unique within a split.
        num_frames: int, valid frames (<= T); later frames are zero padding.
        subject: int, performer id, -1 when unknown.
        camera: int, camera id, -1 when unknown.
        setup: int, setup id, -1 when unknown.
        replication: int, replication id, -1 when unknown.
        actionlet: optional float32 array `(M, T, V)` in [0, 1], a
            ground-truth per-joint motion mask (synthetic data only).
    """

    skeleton: np.ndarray
    label: int
    name: str
    num_frames: int
    subject: int = -1
    camera: int = -1
    setup: int = -1
    replication: int = -1
    actionlet: np.ndarray | None = None


class _BadSample(Exception):
    """A sample that cannot be written; the message says why."""


@dataclasses.dataclass
class _Spec:
    """What every sample must match; shape fixed by the first valid one."""

    num_joints: int
    num_classes: int
    num_bodies: int | None = None
    num_frames: int | None = None
    has_actionlet: bool | None = None

    def fix(self, skeleton, actionlet):
        if self.num_bodies is None:
            self.num_bodies, self.num_frames = skeleton.shape[:2]
            self.has_actionlet = actionlet is not None


def sample_shape(manifest):
    """The `(M, T, V, C)` shape of one sample of the dataset `manifest`."""
    return (
        manifest["num_bodies"],
        manifest["num_frames"],
        manifest["num_joints"],
        manifest["channels"],
    )


def shard_extension(compression):
    """The shard file extension for `compression` ("GZIP" or "ZLIB")."""
    try:
        return COMPRESSIONS[compression]
    except KeyError:
        raise KskelError(
            f"Unknown compression {compression!r}; use one of "
            f"{', '.join(COMPRESSIONS)}."
        ) from None


def write_dataset(
    out_dir,
    splits,
    *,
    layout,
    class_names,
    preprocessing,
    source="",
    samples_per_shard=1024,
    compression="GZIP",
    skip_bad=False,
):
    """Writes samples as TFRecord shards plus `manifest.json`.

    Samples are streamed: each split may be a generator and is read once.
    The first valid sample fixes the bodies M and frames T of the whole
    dataset and whether it carries actionlets; V must match `layout` and C
    must be 3. A rerun into the same directory replaces the old dataset;
    shards of earlier runs that the new manifest does not list are removed.

    Args:
        out_dir: str, output directory (created if needed; `gs://` works).
        splits: dict, split name (letters, digits, `_`) -> iterable of
            `Sample`.
        layout: str or `SkeletonLayout`, the joint layout, e.g. "ntu25".
        class_names: list of str, one per class; labels index it.
        preprocessing: dict, JSON-able description of what was applied,
            e.g. `{"frames": 50, "center_joint": 20, "y_rotation": True}`.
        source: str, where the samples came from. Defaults to "".
        samples_per_shard: int, records per shard. Defaults to 1024.
        compression: str, "GZIP" or "ZLIB". Defaults to "GZIP".
        skip_bad: bool, leave out bad samples (wrong shape, non-finite
            values, label out of range, duplicate name) and list them in
            `manifest["skipped"]` instead of raising. Defaults to False.

    Returns:
        dict, the manifest that was written.

    Raises:
        KskelError: on a bad argument, on a bad sample (naming its split,
            index and name) unless `skip_bad`, or when no sample is valid.
    """
    layout = graph.get_layout(layout)
    _check_write_args(
        splits, class_names, preprocessing, samples_per_shard, compression
    )
    out_dir = os.fspath(out_dir)
    tf.io.gfile.makedirs(out_dir)
    manifest_path = tf.io.gfile.join(out_dir, MANIFEST_NAME)
    # The old manifest goes first: it must never describe new shards.
    if tf.io.gfile.exists(manifest_path):
        tf.io.gfile.remove(manifest_path)
    _remove_temp_files(out_dir)
    spec = _Spec(num_joints=layout.num_joints, num_classes=len(class_names))
    writer = _DatasetWriter(
        out_dir, spec, samples_per_shard, compression, skip_bad
    )
    written, skipped = {}, {}
    try:
        for split, samples in splits.items():
            written[split], skipped[split] = writer.write_split(split, samples)
    except BaseException:
        _remove_temp_files(out_dir)
        raise
    if spec.num_bodies is None:
        raise KskelError(
            f"{out_dir}: no valid sample in any split "
            f"({sum(map(len, skipped.values()))} skipped); nothing written."
        )
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "layout": layout.name,
        "num_joints": layout.num_joints,
        "num_bodies": spec.num_bodies,
        "num_frames": spec.num_frames,
        "channels": CHANNELS,
        "class_names": list(class_names),
        "num_classes": len(class_names),
        "preprocessing": preprocessing,
        "source": source,
        "compression": compression,
        "has_actionlet": spec.has_actionlet,
        "splits": written,
        "skipped": skipped,
    }
    _remove_stale_shards(out_dir, manifest)
    _write_json_atomically(manifest_path, manifest)
    return manifest


def _check_write_args(
    splits, class_names, preprocessing, samples_per_shard, compression
):
    shard_extension(compression)
    if not isinstance(splits, dict) or not splits:
        raise KskelError("splits must be a non-empty dict name -> samples.")
    for split in splits:
        if not isinstance(split, str) or not _SPLIT_NAME.match(split):
            raise KskelError(
                f"Split name {split!r} must be letters, digits and '_'."
            )
    if (
        not class_names
        or not all(isinstance(c, str) and c for c in class_names)
        or len(set(class_names)) != len(class_names)
    ):
        raise KskelError("class_names must be unique non-empty strings.")
    if not isinstance(preprocessing, dict):
        raise KskelError(f"preprocessing must be a dict, got {preprocessing!r}")
    try:
        json.dumps(preprocessing)
    except (TypeError, ValueError) as err:
        raise KskelError(f"preprocessing is not JSON-able: {err}") from None
    if (
        isinstance(samples_per_shard, bool)
        or not isinstance(samples_per_shard, int)
        or samples_per_shard < 1
    ):
        raise KskelError(
            f"samples_per_shard must be an int >= 1, got {samples_per_shard!r}."
        )


class _DatasetWriter:
    """Writes the splits of one dataset into shards under temporary names."""

    def __init__(self, out_dir, spec, samples_per_shard, compression, skip):
        self._out_dir = out_dir
        self._spec = spec
        self._samples_per_shard = samples_per_shard
        self._compression = compression
        self._extension = COMPRESSIONS[compression]
        self._skip = skip

    def write_split(self, split, samples):
        """Returns the split's manifest entry and its skipped samples."""
        temp, skipped, names = [], [], set()
        writer = None
        try:
            for index, sample in enumerate(samples):
                try:
                    record = _record(sample, self._spec, names)
                except _BadSample as bad:
                    skipped.append(self._bad(split, index, sample, bad))
                    continue
                if writer is None:
                    writer = self._open(split, len(temp))
                    temp.append([writer.path, 0])
                writer.write(record)
                temp[-1][1] += 1
                if temp[-1][1] == self._samples_per_shard:
                    writer.close()
                    writer = None
        finally:
            if writer is not None:
                writer.close()
        shards = self._finalize(split, temp)
        entry = {
            "num_samples": sum(s["num_samples"] for s in shards),
            "shards": shards,
        }
        return entry, skipped

    def _bad(self, split, index, sample, bad):
        name = getattr(sample, "name", None)
        name = name if isinstance(name, str) and name else f"<item {index}>"
        if not self._skip:
            raise KskelError(
                f"Split {split!r}, sample {index} ({name}): {bad}. Fix the "
                "sample, or pass skip_bad (--skip_bad) to leave it out."
            )
        return {"name": name, "reason": str(bad)}

    def _open(self, split, shard_index):
        path = tf.io.gfile.join(
            self._out_dir,
            f".{split}-{shard_index:05d}{self._extension}{_TMP_SUFFIX}",
        )
        return _ShardWriter(path, self._compression)

    def _finalize(self, split, temp):
        """Renames complete shards to their final `-of-N` names."""
        shards = []
        for i, (path, count) in enumerate(temp):
            name = f"{split}-{i:05d}-of-{len(temp):05d}{self._extension}"
            digest = file_sha256(path)
            tf.io.gfile.rename(
                path, tf.io.gfile.join(self._out_dir, name), overwrite=True
            )
            shards.append(
                {"file": name, "num_samples": count, "sha256": digest}
            )
        return shards


class _ShardWriter:
    def __init__(self, path, compression):
        self.path = path
        options = tf.io.TFRecordOptions(compression_type=compression)
        self._writer = tf.io.TFRecordWriter(path, options)

    def write(self, record):
        self._writer.write(record)

    def close(self):
        self._writer.close()


def _record(sample, spec, names):
    """Validates `sample` against `spec` and serializes it."""
    if not isinstance(sample, Sample):
        raise _BadSample(f"expected a Sample, got {type(sample).__name__}")
    if not isinstance(sample.name, str) or not sample.name:
        raise _BadSample(f"name must be a non-empty str, got {sample.name!r}")
    if sample.name in names:
        raise _BadSample("duplicate name within the split")
    skeleton, actionlet = _validated_arrays(sample, spec)
    label = _as_int(sample.label, "label")
    if not 0 <= label < spec.num_classes:
        raise _BadSample(
            f"label {label} outside [0, {spec.num_classes}) (num_classes)"
        )
    num_frames = _as_int(sample.num_frames, "num_frames")
    if not 0 <= num_frames <= skeleton.shape[1]:
        raise _BadSample(
            f"num_frames {num_frames} outside [0, {skeleton.shape[1]}]"
        )
    for field in ID_FIELDS:
        _as_int(getattr(sample, field), field)
    spec.fix(skeleton, actionlet)
    names.add(sample.name)
    return _serialize(sample, skeleton, actionlet)


def _validated_arrays(sample, spec):
    skeleton = _float32(sample.skeleton, "skeleton")
    if skeleton.ndim != 4 or skeleton.shape[2:] != (spec.num_joints, CHANNELS):
        raise _BadSample(
            f"skeleton shape {skeleton.shape} is not "
            f"(M, T, {spec.num_joints}, {CHANNELS})"
        )
    if spec.num_bodies is not None and skeleton.shape[:2] != (
        spec.num_bodies,
        spec.num_frames,
    ):
        raise _BadSample(
            f"skeleton shape {skeleton.shape} differs from the dataset's "
            f"(M, T) = ({spec.num_bodies}, {spec.num_frames}), which its "
            "first sample set"
        )
    _check_finite(skeleton, "skeleton")
    actionlet = None
    if sample.actionlet is not None:
        actionlet = _float32(sample.actionlet, "actionlet")
        if actionlet.shape != skeleton.shape[:3]:
            raise _BadSample(
                f"actionlet shape {actionlet.shape} is not (M, T, V) = "
                f"{skeleton.shape[:3]}"
            )
        _check_finite(actionlet, "actionlet")
        if actionlet.size and (actionlet.min() < 0 or actionlet.max() > 1):
            raise _BadSample("actionlet values outside [0, 1]")
    if spec.has_actionlet is not None and spec.has_actionlet != (
        actionlet is not None
    ):
        raise _BadSample(
            "actionlet present in some samples and absent in others"
        )
    return skeleton, actionlet


def _float32(value, what):
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise _BadSample(f"{what} is not a float array ({err})") from None
    return array


def _check_finite(array, what):
    bad = ~np.isfinite(array)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _BadSample(f"{what} has a non-finite value (NaN/Inf) at {where}")


def _as_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _BadSample(f"{what} must be an int, got {value!r}")
    return int(value)


def _serialize(sample, skeleton, actionlet):
    feature = {
        "skeleton": _bytes_feature(skeleton.astype("<f4").tobytes()),
        "shape": _int_feature(skeleton.shape),
        "name": _bytes_feature(sample.name.encode("utf-8")),
    }
    for key in INT_FEATURES:
        feature[key] = _int_feature([int(getattr(sample, key))])
    if actionlet is not None:
        feature["actionlet"] = _bytes_feature(actionlet.astype("<f4").tobytes())
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString()


def _bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def file_sha256(path):
    """The hex SHA-256 of the file at `path` (read through `tf.io.gfile`)."""
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _listdir(out_dir):
    # An object store (s3://) has no empty directories: a fresh prefix that
    # `makedirs` "created" does not exist yet and holds nothing.
    if not tf.io.gfile.isdir(out_dir):
        return []
    return [name.rstrip("/") for name in tf.io.gfile.listdir(out_dir)]


def _remove_temp_files(out_dir):
    for name in _listdir(out_dir):
        if name.endswith(_TMP_SUFFIX):
            tf.io.gfile.remove(tf.io.gfile.join(out_dir, name))


def _remove_stale_shards(out_dir, manifest):
    keep = {
        shard["file"]
        for entry in manifest["splits"].values()
        for shard in entry["shards"]
    }
    for name in _listdir(out_dir):
        if _SHARD_NAME.match(name) and name not in keep:
            tf.io.gfile.remove(tf.io.gfile.join(out_dir, name))


def _write_json_atomically(path, obj):
    directory, name = os.path.split(path)
    temp = tf.io.gfile.join(directory, f".{name}{_TMP_SUFFIX}")
    with tf.io.gfile.GFile(temp, "w") as f:
        f.write(json.dumps(obj, indent=2) + "\n")
    tf.io.gfile.rename(temp, path, overwrite=True)


def load_manifest(data_dir):
    """Reads and checks `data_dir/manifest.json`.

    Args:
        data_dir: str, a dataset directory written by `write_dataset`.

    Returns:
        dict, the manifest (fields as written by `write_dataset`).

    Raises:
        KskelError: naming the file when it is missing, is not JSON, has
            another schema version, or lacks or mistypes a field.
    """
    path = tf.io.gfile.join(os.fspath(data_dir), MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        raise KskelError(
            f"{path}: not found. {data_dir} is not a kskel dataset, or the "
            "run writing it did not finish; rerun the converter."
        )
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            manifest = json.loads(f.read())
    except (ValueError, tf.errors.OpError) as err:
        raise KskelError(
            f"{path}: unreadable or not JSON ({err}); rerun the converter."
        ) from None
    _check_manifest(manifest, path)
    return manifest


def _check_manifest(manifest, path):
    if not isinstance(manifest, dict):
        raise KskelError(f"{path}: expected a JSON object.")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise KskelError(
            f"{path}: schema_version {version!r}, but this kskel reads "
            f"version {SCHEMA_VERSION}; convert the dataset again."
        )
    for key, kind in _MANIFEST_FIELDS.items():
        if key not in manifest:
            raise KskelError(f"{path}: missing field {key!r}.")
        if not _is_a(manifest[key], kind):
            raise KskelError(
                f"{path}: field {key!r} must be a {kind.__name__}, got "
                f"{manifest[key]!r}."
            )
    for key in _POSITIVE_FIELDS:
        if manifest[key] < 1:
            raise KskelError(f"{path}: field {key!r} must be >= 1.")
    if manifest["num_classes"] != len(manifest["class_names"]):
        raise KskelError(
            f"{path}: num_classes {manifest['num_classes']} != "
            f"{len(manifest['class_names'])} class_names."
        )
    if manifest["compression"] not in COMPRESSIONS:
        raise KskelError(
            f"{path}: unknown compression {manifest['compression']!r}."
        )
    for split, entry in manifest["splits"].items():
        _check_split_entry(entry, f"{path}: split {split!r}")


def _check_split_entry(entry, where):
    if not isinstance(entry, dict) or not _is_a(entry.get("num_samples"), int):
        raise KskelError(f"{where}: needs an int 'num_samples'.")
    shards = entry.get("shards")
    if not isinstance(shards, list):
        raise KskelError(f"{where}: needs a list 'shards'.")
    for shard in shards:
        if not (
            isinstance(shard, dict)
            and isinstance(shard.get("file"), str)
            and _SHARD_NAME.match(shard["file"])
            and _is_a(shard.get("num_samples"), int)
            and isinstance(shard.get("sha256"), str)
            and _SHA256.match(shard["sha256"])
        ):
            raise KskelError(
                f"{where}: malformed shard entry {shard!r} (needs file, "
                "num_samples, sha256)."
            )
    total = sum(shard["num_samples"] for shard in shards)
    if total != entry["num_samples"]:
        raise KskelError(
            f"{where}: num_samples {entry['num_samples']} != {total}, the "
            "sum over its shards."
        )


def _is_a(value, kind):
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _feature_spec(manifest):
    spec = {
        "skeleton": tf.io.FixedLenFeature([], tf.string),
        "shape": tf.io.FixedLenFeature([4], tf.int64),
        "name": tf.io.FixedLenFeature([], tf.string),
    }
    for key in INT_FEATURES:
        spec[key] = tf.io.FixedLenFeature([], tf.int64)
    if manifest["has_actionlet"]:
        spec["actionlet"] = tf.io.FixedLenFeature([], tf.string)
    return spec


def parse_example(serialized, manifest):
    """Parses serialized examples into tensors, with TF ops only.

    Works on one record (a scalar string) or a batch (a vector of strings),
    so it can be mapped before or after `Dataset.batch`.

    Args:
        serialized: string tensor of rank 0 or 1.
        manifest: dict, the dataset's manifest (gives the static shape).

    Returns:
        dict of tensors, with a leading batch axis for batched input:
        `skeleton` float32 `(M, T, V, C)`, `label`, `num_frames`,
        `subject`, `camera`, `setup`, `replication` int32, `name` string,
        and `actionlet` float32 `(M, T, V)` when the dataset has it.

    Raises:
        ValueError: if `serialized` is not of rank 0 or 1.
    """
    serialized = tf.convert_to_tensor(serialized, dtype=tf.string)
    rank = serialized.shape.rank
    spec = _feature_spec(manifest)
    if rank == 0:
        features = tf.io.parse_single_example(serialized, spec)
        lead = []
    elif rank == 1:
        features = tf.io.parse_example(serialized, spec)
        lead = [-1]
    else:
        raise ValueError(f"expected rank 0 or 1. Received: {serialized.shape=}")
    shape = sample_shape(manifest)
    check = tf.debugging.assert_equal(
        features["shape"],
        tf.constant(shape, tf.int64),
        message="record shape differs from the manifest's (M, T, V, C); "
        "run python -m data_prep.validate on the dataset",
    )
    with tf.control_dependencies([check]):
        skeleton = tf.io.decode_raw(features["skeleton"], tf.float32)
    # decode_raw loses the static batch size; restore it for Keras / XLA.
    out = {"skeleton": _reshape(skeleton, lead, serialized.shape, shape)}
    if "actionlet" in features:
        actionlet = tf.io.decode_raw(features["actionlet"], tf.float32)
        out["actionlet"] = _reshape(
            actionlet, lead, serialized.shape, shape[:3]
        )
    for key in INT_FEATURES:
        out[key] = tf.cast(features[key], tf.int32)
    out["name"] = features["name"]
    return out


def _reshape(flat, lead, batch_shape, shape):
    return tf.ensure_shape(
        tf.reshape(flat, lead + list(shape)), batch_shape.concatenate(shape)
    )
