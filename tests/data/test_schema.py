"""The TFRecord format: round trips, manifest, atomic writes, bad samples."""

import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kskel.data import schema
from kskel.errors import KskelError

CLASSES = ["a", "b", "c"]
SHAPE = (2, 4, 25, 3)


def make_samples(count, *, seed=0, prefix="s", actionlet=False):
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        skeleton = rng.normal(size=SHAPE).astype(np.float32)
        skeleton[1, 3:] = 0.0  # body 2 leaves in the last frame
        samples.append(
            schema.Sample(
                skeleton=skeleton,
                label=i % len(CLASSES),
                name=f"{prefix}{i:03d}",
                num_frames=4 - i % 2,
                subject=i,
                camera=i + 1,
                setup=-1,
                replication=2 * i,
                actionlet=(
                    rng.uniform(size=SHAPE[:3]).astype(np.float32)
                    if actionlet
                    else None
                ),
            )
        )
    return samples


def write(out_dir, splits, **kwargs):
    return schema.write_dataset(
        str(out_dir),
        splits,
        layout="ntu25",
        class_names=CLASSES,
        preprocessing={"frames": 4},
        source="unit test",
        samples_per_shard=kwargs.pop("samples_per_shard", 2),
        **kwargs,
    )


def read_all(data_dir, split):
    manifest = schema.load_manifest(str(data_dir))
    out = []
    for shard in manifest["splits"][split]["shards"]:
        path = os.path.join(data_dir, shard["file"])
        records = tf.data.TFRecordDataset(path, manifest["compression"])
        out.extend(schema.parse_example(r, manifest) for r in records)
    return out


def assert_same(parsed, sample):
    np.testing.assert_array_equal(parsed["skeleton"].numpy(), sample.skeleton)
    assert parsed["name"].numpy().decode() == sample.name
    for key in schema.INT_FEATURES:
        assert parsed[key].dtype == tf.int32
        assert int(parsed[key]) == getattr(sample, key), key
    if sample.actionlet is None:
        assert "actionlet" not in parsed
    else:
        np.testing.assert_array_equal(
            parsed["actionlet"].numpy(), sample.actionlet
        )


@pytest.mark.parametrize(
    "compression,extension",
    [("GZIP", ".tfrecord.gz"), ("ZLIB", ".tfrecord.zlib")],
)
def test_round_trip_is_exact(tmp_path, compression, extension):
    train, val = make_samples(5), make_samples(2, seed=1, prefix="v")
    manifest = write(
        tmp_path, {"train": iter(train), "val": val}, compression=compression
    )
    assert manifest["compression"] == compression
    assert [s["file"] for s in manifest["splits"]["train"]["shards"]] == [
        f"train-0000{i}-of-00003{extension}" for i in range(3)
    ]
    for split, samples in (("train", train), ("val", val)):
        parsed = read_all(tmp_path, split)
        assert len(parsed) == len(samples)
        for got, want in zip(parsed, samples):
            assert got["skeleton"].shape == SHAPE
            assert_same(got, want)


def test_actionlet_round_trip(tmp_path):
    samples = make_samples(3, actionlet=True)
    manifest = write(tmp_path, {"train": samples})
    assert manifest["has_actionlet"] is True
    for got, want in zip(read_all(tmp_path, "train"), samples):
        assert got["actionlet"].shape == SHAPE[:3]
        assert_same(got, want)


def test_manifest_fields_counts_and_checksums(tmp_path):
    manifest = write(tmp_path, {"train": make_samples(5), "test": []})
    assert manifest == schema.load_manifest(str(tmp_path))
    assert manifest["schema_version"] == schema.SCHEMA_VERSION
    assert (manifest["num_bodies"], manifest["num_frames"]) == (2, 4)
    assert (manifest["num_joints"], manifest["channels"]) == (25, 3)
    assert manifest["num_classes"] == 3
    assert manifest["class_names"] == CLASSES
    assert manifest["layout"] == "ntu25"
    assert manifest["preprocessing"] == {"frames": 4}
    assert manifest["has_actionlet"] is False
    train = manifest["splits"]["train"]
    assert train["num_samples"] == 5
    assert [s["num_samples"] for s in train["shards"]] == [2, 2, 1]
    for shard in train["shards"]:
        data = (tmp_path / shard["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]
    assert manifest["splits"]["test"] == {"num_samples": 0, "shards": []}
    assert manifest["skipped"] == {"train": [], "test": []}
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["manifest.json"] + [s["file"] for s in train["shards"]]
    )


def test_batched_parse_matches_single(tmp_path):
    samples = make_samples(3)
    manifest = write(tmp_path, {"train": samples}, samples_per_shard=8)
    path = tmp_path / manifest["splits"]["train"]["shards"][0]["file"]
    records = tf.data.TFRecordDataset(str(path), "GZIP").batch(3)
    batch = schema.parse_example(next(iter(records)), manifest)
    assert batch["skeleton"].shape == (3,) + SHAPE
    np.testing.assert_array_equal(
        batch["skeleton"].numpy(), np.stack([s.skeleton for s in samples])
    )
    np.testing.assert_array_equal(batch["label"].numpy(), [0, 1, 2])


def failing_stream(samples, fail_at):
    for i, sample in enumerate(samples):
        if i == fail_at:
            raise RuntimeError("converter died")
        yield sample


def test_crash_midway_leaves_no_manifest_and_rerun_succeeds(tmp_path):
    write(tmp_path, {"train": make_samples(5)})  # an older, complete dataset
    with pytest.raises(RuntimeError, match="converter died"):
        write(tmp_path, {"train": failing_stream(make_samples(6), 3)})
    names = os.listdir(tmp_path)
    assert "manifest.json" not in names
    assert not [n for n in names if n.endswith(".kskel-tmp")]
    with pytest.raises(KskelError, match="did not finish"):
        schema.load_manifest(str(tmp_path))
    samples = make_samples(3, seed=7)
    manifest = write(tmp_path, {"train": samples})
    assert manifest["splits"]["train"]["num_samples"] == 3
    # The older run's third shard is gone; only listed shards remain.
    assert sorted(os.listdir(tmp_path)) == [
        "manifest.json",
        "train-00000-of-00002.tfrecord.gz",
        "train-00001-of-00002.tfrecord.gz",
    ]
    for got, want in zip(read_all(tmp_path, "train"), samples):
        assert_same(got, want)


def test_stale_temp_file_is_replaced(tmp_path):
    stale = tmp_path / ".train-00000.tfrecord.gz.kskel-tmp"
    stale.write_bytes(b"half a shard from a killed run")
    (tmp_path / ".manifest.json.kskel-tmp").write_text("{")
    write(tmp_path, {"train": make_samples(3)})
    assert not stale.exists()
    assert not (tmp_path / ".manifest.json.kskel-tmp").exists()
    assert len(read_all(tmp_path, "train")) == 3


def test_nan_sample_names_the_sample(tmp_path):
    samples = make_samples(4)
    samples[2].skeleton[1, 0, 5, 2] = np.nan
    pattern = r"sample 2 \(s002\).*NaN.*\(1, 0, 5, 2\)"
    with pytest.raises(KskelError, match=pattern):
        write(tmp_path, {"train": samples})
    assert not (tmp_path / "manifest.json").exists()
    assert not os.listdir(tmp_path)


def test_wrong_shape_names_the_sample(tmp_path):
    samples = make_samples(3)
    samples[1].skeleton = np.zeros((2, 4, 24, 3), np.float32)
    with pytest.raises(KskelError, match=r"sample 1 \(s001\).*\(M, T, 25, 3\)"):
        write(tmp_path, {"train": samples})
    samples[1].skeleton = np.zeros((2, 5, 25, 3), np.float32)
    with pytest.raises(KskelError, match=r"s001.*\(M, T\) = \(2, 4\)"):
        write(tmp_path, {"train": samples})


def test_skip_bad_counts_and_reports(tmp_path):
    samples = make_samples(6)
    samples[0].skeleton = np.full(SHAPE, np.inf, np.float32)
    samples[3].label = 3
    samples[4].name = "s001"  # duplicate of a valid sample
    manifest = write(tmp_path, {"train": samples}, skip_bad=True)
    assert manifest["splits"]["train"]["num_samples"] == 3
    skipped = manifest["skipped"]["train"]
    assert [s["name"] for s in skipped] == ["s000", "s003", "s001"]
    assert "non-finite" in skipped[0]["reason"]
    assert "label 3 outside [0, 3)" in skipped[1]["reason"]
    assert "duplicate" in skipped[2]["reason"]
    names = [p["name"].numpy().decode() for p in read_all(tmp_path, "train")]
    assert names == ["s001", "s002", "s005"]


def test_bad_fields_are_rejected(tmp_path):
    samples = make_samples(2)
    samples[1].num_frames = 5
    with pytest.raises(KskelError, match="num_frames 5 outside"):
        write(tmp_path, {"train": samples})
    samples = make_samples(2, actionlet=True)
    samples[1].actionlet = samples[1].actionlet + 1.0
    with pytest.raises(KskelError, match=r"actionlet values outside \[0, 1\]"):
        write(tmp_path, {"train": samples})
    samples = make_samples(2)
    samples[1].actionlet = np.zeros(SHAPE[:3], np.float32)
    with pytest.raises(KskelError, match="present in some samples"):
        write(tmp_path, {"train": samples})


def test_bad_arguments(tmp_path):
    with pytest.raises(KskelError, match="compression"):
        write(tmp_path, {"train": []}, compression="LZ4")
    with pytest.raises(KskelError, match="Split name"):
        write(tmp_path, {"tr-ain": []})
    with pytest.raises(KskelError, match="no valid sample"):
        write(tmp_path, {"train": []})


def edit_manifest(data_dir, **changes):
    path = data_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_load_manifest_errors_name_the_file(tmp_path):
    with pytest.raises(KskelError, match="manifest.json: not found"):
        schema.load_manifest(str(tmp_path))
    write(tmp_path, {"train": make_samples(2)})
    edit_manifest(tmp_path, schema_version=2)
    with pytest.raises(KskelError, match="manifest.json: schema_version 2"):
        schema.load_manifest(str(tmp_path))
    edit_manifest(tmp_path, schema_version=1, num_classes=4)
    with pytest.raises(KskelError, match="num_classes 4 != 3"):
        schema.load_manifest(str(tmp_path))
    edit_manifest(tmp_path, num_classes=3, has_actionlet="no")
    with pytest.raises(KskelError, match="'has_actionlet' must be a bool"):
        schema.load_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(KskelError, match="manifest.json: unreadable or not"):
        schema.load_manifest(str(tmp_path))


def test_load_manifest_checks_split_totals(tmp_path):
    manifest = write(tmp_path, {"train": make_samples(3)})
    splits = manifest["splits"]
    splits["train"]["num_samples"] = 4
    edit_manifest(tmp_path, splits=splits)
    with pytest.raises(KskelError, match="split 'train': num_samples 4 != 3"):
        schema.load_manifest(str(tmp_path))
