"""data_prep.validate: a clean dataset passes; each kind of damage is named."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_prep import validate
from kskel.data import schema
from kskel.errors import KskelError

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHAPE = (2, 4, 25, 3)


def make_dataset(out_dir):
    rng = np.random.default_rng(0)
    samples = [
        schema.Sample(
            skeleton=rng.normal(size=SHAPE).astype(np.float32),
            label=i % 3,
            name=f"s{i}",
            num_frames=4 - i % 2,
        )
        for i in range(5)
    ]
    return schema.write_dataset(
        str(out_dir),
        {"train": samples, "val": samples[:1]},
        layout="ntu25",
        class_names=["a", "b", "c"],
        preprocessing={},
        samples_per_shard=2,
    )


def save_manifest(data_dir, manifest):
    (data_dir / "manifest.json").write_text(json.dumps(manifest))


def shard_records(data_dir, shard):
    path = str(data_dir / shard["file"])
    return [r.numpy() for r in tf.data.TFRecordDataset(path, "GZIP")]


def rewrite_shard(data_dir, manifest, shard, records):
    """Replaces a shard's records and fixes its checksum in the manifest."""
    path = str(data_dir / shard["file"])
    with tf.io.TFRecordWriter(path, "GZIP") as writer:
        for record in records:
            writer.write(record)
    shard["sha256"] = schema.file_sha256(path)
    save_manifest(data_dir, manifest)


def test_clean_dataset_summary(tmp_path):
    make_dataset(tmp_path)
    summary = validate.validate_dataset(str(tmp_path))
    train = summary["splits"]["train"]
    assert train["num_samples"] == 5
    assert train["num_shards"] == 3
    assert train["classes_seen"] == [0, 1, 2]
    assert train["frames"] == {"min": 3, "mean": 3.6, "max": 4}
    assert summary["splits"]["val"]["classes_seen"] == [0]
    text = validate.format_summary(str(tmp_path), summary)
    assert "train: 5 samples in 3 shards, 3/3 classes seen" in text
    assert "frames min 3 mean 3.6 max 4" in text


def test_corrupted_byte_is_caught(tmp_path):
    manifest = make_dataset(tmp_path)
    shard = manifest["splits"]["train"]["shards"][1]
    path = tmp_path / shard["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(KskelError) as err:
        validate.validate_dataset(str(tmp_path))
    message = str(err.value)
    assert str(path) in message
    assert "sha256" in message or "record" in message


def test_checksum_mismatch_names_the_shard(tmp_path):
    manifest = make_dataset(tmp_path)
    shard = manifest["splits"]["train"]["shards"][2]
    shard["sha256"] = "0" * 64
    save_manifest(tmp_path, manifest)
    pattern = rf"{shard['file']}: sha256 [0-9a-f]{{64}} does not match"
    with pytest.raises(KskelError, match=pattern):
        validate.validate_dataset(str(tmp_path))


def test_count_mismatch_names_the_shard(tmp_path):
    manifest = make_dataset(tmp_path)
    train = manifest["splits"]["train"]
    train["shards"][0]["num_samples"] = 3
    train["num_samples"] = 6
    save_manifest(tmp_path, manifest)
    pattern = r"train-00000-of-00003.tfrecord.gz: holds 2 records, the "
    with pytest.raises(KskelError, match=pattern + "manifest says 3"):
        validate.validate_dataset(str(tmp_path))


def test_label_out_of_range_names_shard_and_record(tmp_path):
    manifest = make_dataset(tmp_path)
    manifest["num_classes"] = 2
    manifest["class_names"] = ["a", "b"]
    save_manifest(tmp_path, manifest)
    # Labels are 0, 1 | 2, 0 | 1: the first label 2 is record 0 of shard 1.
    pattern = r"train-00001-of-00003.tfrecord.gz: record 0: label 2 outside"
    with pytest.raises(KskelError, match=pattern):
        validate.validate_dataset(str(tmp_path))


def test_nan_record_names_shard_and_record(tmp_path):
    manifest = make_dataset(tmp_path)
    shard = manifest["splits"]["train"]["shards"][0]
    records = shard_records(tmp_path, shard)
    example = tf.train.Example.FromString(records[1])
    values = np.frombuffer(
        example.features.feature["skeleton"].bytes_list.value[0], "<f4"
    ).copy()
    values[7] = np.nan
    example.features.feature["skeleton"].bytes_list.value[0] = values.tobytes()
    records[1] = example.SerializeToString()
    rewrite_shard(tmp_path, manifest, shard, records)
    # Flat index 7 of (2, 4, 25, 3) is body 0, frame 0, joint 2, channel 1.
    pattern = r"record 1: skeleton has a non-finite value .* \(0, 0, 2, 1\)"
    with pytest.raises(KskelError, match=pattern):
        validate.validate_dataset(str(tmp_path))


def test_wrong_shape_and_duplicate_name(tmp_path):
    manifest = make_dataset(tmp_path)
    shard = manifest["splits"]["train"]["shards"][0]
    records = shard_records(tmp_path, shard)
    rewrite_shard(tmp_path, manifest, shard, [records[0], records[0]])
    with pytest.raises(KskelError, match="record 1: empty or duplicate name"):
        validate.validate_dataset(str(tmp_path))
    example = tf.train.Example.FromString(records[0])
    example.features.feature["shape"].int64_list.value[1] = 5
    rewrite_shard(tmp_path, manifest, shard, [example.SerializeToString()])
    with pytest.raises(KskelError, match=r"record 0: shape \[2, 5, 25, 3\]"):
        validate.validate_dataset(str(tmp_path))


def run_cli(data_dir):
    return subprocess.run(
        [sys.executable, "-m", "data_prep.validate", f"--data={data_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_ok_and_one_line_error(tmp_path):
    manifest = make_dataset(tmp_path)
    result = run_cli(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "train: 5 samples in 3 shards" in result.stdout
    manifest["splits"]["val"]["shards"][0]["sha256"] = "f" * 64
    save_manifest(tmp_path, manifest)
    result = run_cli(tmp_path)
    assert result.returncode == 1
    errors = [
        line for line in result.stderr.splitlines() if line.startswith("error")
    ]
    assert len(errors) == 1
    assert "val-00000-of-00001.tfrecord.gz: sha256" in errors[0]
