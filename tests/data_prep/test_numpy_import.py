"""data_prep.numpy_import and the restricted label-pickle reader."""

import os
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest

from data_prep import numpy_import
from data_prep import restricted_pickle
from kskel.data import pipeline
from kskel.data import schema
from kskel.errors import KskelError

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAMES = ["S001C002P003R004A005.skeleton", "S017C003P020R002A060", "clip_7"]
LABELS = [4, 59, 0]


def official_array():
    """(N, C, T, V, M) = (3, 3, 5, 25, 2) with known padding per sample."""
    x = np.arange(1, 3 * 3 * 5 * 25 * 2 + 1, dtype=np.float32)
    x = x.reshape(3, 3, 5, 25, 2)
    x[0, :, 3:] = 0.0  # frames 3 and 4 are padding -> 3 valid frames
    x[2, :, :, :, 1] = 0.0  # body 2 absent
    x[2, :, 1] = 0.0  # an empty frame inside the sequence does not count
    return x


def write_inputs(tmp_path, x=None, labels=(NAMES, LABELS), name="train"):
    data_path = tmp_path / f"{name}_position.npy"
    label_path = tmp_path / f"{name}_label.pkl"
    np.save(data_path, official_array() if x is None else x)
    label_path.write_bytes(pickle.dumps(labels))
    return str(data_path), str(label_path)


def test_import_transposes_values_and_parses_names(tmp_path):
    x = official_array()
    data_path, label_path = write_inputs(tmp_path)
    out = tmp_path / "out"
    manifest = numpy_import.import_numpy(
        str(out),
        [("train", data_path, label_path)],
        num_classes=60,
        preprocessing={"frames": 5},
    )
    assert manifest["class_names"][0] == "drink water"
    assert (manifest["num_bodies"], manifest["num_frames"]) == (2, 5)
    samples = list(pipeline.load_split(str(out), "train", shuffle=False))
    assert len(samples) == 3
    for i, got in enumerate(samples):
        skeleton = got["skeleton"].numpy()
        np.testing.assert_array_equal(skeleton, x[i].transpose(3, 1, 2, 0))
        assert int(got["label"]) == LABELS[i]
    # One element by hand: x[n, c, t, v, m] lands at out[m, t, v, c].
    assert samples[1]["skeleton"][1, 2, 7, 0] == x[1, 0, 2, 7, 1]
    assert [int(s["num_frames"]) for s in samples] == [3, 5, 5]
    assert samples[0]["name"].numpy() == b"S001C002P003R004A005"
    ids = [
        [int(s[k]) for k in ("setup", "camera", "subject", "replication")]
        for s in samples
    ]
    assert ids == [[1, 2, 3, 4], [17, 3, 20, 2], [-1, -1, -1, -1]]


def test_numpy_int_labels_and_list_pair(tmp_path):
    labels = [NAMES, [np.int64(v) for v in LABELS]]
    data_path, label_path = write_inputs(tmp_path, labels=labels)
    manifest = numpy_import.import_numpy(
        str(tmp_path / "out"), [("val", data_path, label_path)], num_classes=60
    )
    assert manifest["splits"]["val"]["num_samples"] == 3


@pytest.mark.parametrize(
    "x,pattern",
    [
        (np.zeros((2, 3, 5, 25, 2), np.float32), "2 samples, but .* 3 labels"),
        (np.zeros((3, 3, 5, 25), np.float32), "rank 4"),
        (np.zeros((3, 2, 5, 25, 2), np.float32), r"C = 2 \(axis 1"),
        (np.zeros((3, 3, 5, 24, 2), np.float32), r"V = 24 .* has 25 joints"),
        (np.zeros((3, 3, 5, 25, 2), np.int32), "not a float type"),
    ],
)
def test_shape_errors_name_the_file(tmp_path, x, pattern):
    data_path, label_path = write_inputs(tmp_path, x=x)
    with pytest.raises(KskelError, match=pattern) as err:
        numpy_import.import_numpy(
            str(tmp_path / "out"),
            [("train", data_path, label_path)],
            num_classes=60,
        )
    assert data_path in str(err.value)
    assert not (tmp_path / "out").exists()


def test_nan_names_file_and_sample_index(tmp_path):
    x = official_array()
    x[1, 2, 0, 3, 0] = np.nan
    data_path, label_path = write_inputs(tmp_path, x=x)
    out = tmp_path / "out"
    pattern = r"train_position.npy: sample 1 \(S017C003P020R002A060\).*NaN"
    with pytest.raises(KskelError, match=pattern):
        numpy_import.import_numpy(
            str(out), [("train", data_path, label_path)], num_classes=60
        )
    assert not (out / "manifest.json").exists()
    manifest = numpy_import.import_numpy(
        str(out),
        [("train", data_path, label_path)],
        num_classes=60,
        skip_bad=True,
    )
    assert manifest["splits"]["train"]["num_samples"] == 2
    assert [s["name"] for s in manifest["skipped"]["train"]] == [
        "S017C003P020R002A060"
    ]


def test_label_out_of_range(tmp_path):
    data_path, label_path = write_inputs(tmp_path)
    with pytest.raises(KskelError, match=r"label 59 of sample 1.*\[0, 50\)"):
        numpy_import.import_numpy(
            str(tmp_path / "out"),
            [("train", data_path, label_path)],
            num_classes=50,
        )


class RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class RunsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize(
    "payload,refused", [("shell", "system"), ("eval", "builtins.eval")]
)
def test_malicious_pickle_is_refused_and_nothing_written(
    tmp_path, payload, refused
):
    marker = tmp_path / "pwned"
    evil = RunsShell(marker) if payload == "shell" else RunsEval()
    data_path, label_path = write_inputs(tmp_path, labels=(NAMES, [evil]))
    out = tmp_path / "out"
    with pytest.raises(KskelError, match=f"refusing to unpickle .*{refused}"):
        numpy_import.import_numpy(
            str(out), [("train", data_path, label_path)], num_classes=60
        )
    assert not marker.exists()
    assert not out.exists()


def test_pickle_reader_accepts_numpy_scalars_in_every_protocol(tmp_path):
    path = tmp_path / "labels.pkl"
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        labels = [np.int64(3), np.int32(-1), 7]
        path.write_bytes(pickle.dumps((["a", b"b", "c"], labels), protocol))
        got = restricted_pickle.load_label_pickle(str(path))
        assert got == (["a", "b", "c"], [3, -1, 7])
        assert all(type(v) is int for v in got[1])
    # NumPy 1 names the scalar constructor numpy.core.multiarray.scalar.
    old = pickle.dumps((["a"], [np.int64(9)]), 2).replace(
        b"numpy._core.multiarray", b"numpy.core.multiarray"
    )
    path.write_bytes(old)
    assert restricted_pickle.load_label_pickle(str(path)) == (["a"], [9])


@pytest.mark.parametrize(
    "content,pattern",
    [
        ((["a"], [np.array([1])]), "refusing to unpickle .*_reconstruct"),
        ((["a"], [np.str_("x")]), "non-numeric numpy.dtype"),
        ((["a"], [1.5]), "label 0 is 1.5, not an integer"),
        ((["a"], [True]), "label 0 is True"),
        ((["a", "b"], [1]), "2 names but 1 labels"),
        ((["a"], [1], ["extra"]), r"expected a \(names, labels\) pair"),
        ({"a": 1}, "expected a .* pair, got dict"),
    ],
)
def test_pickle_reader_rejects_other_content(tmp_path, content, pattern):
    path = tmp_path / "labels.pkl"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(KskelError, match=pattern) as err:
        restricted_pickle.load_label_pickle(str(path))
    assert str(path) in str(err.value)


def test_pickle_reader_missing_and_truncated(tmp_path):
    with pytest.raises(KskelError, match="cannot read"):
        restricted_pickle.load_label_pickle(str(tmp_path / "none.pkl"))
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps((NAMES, LABELS))[:-5])
    with pytest.raises(KskelError, match="not a valid label pickle"):
        restricted_pickle.load_label_pickle(str(path))


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "data_prep.numpy_import", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_a_dataset_and_reports_flag_errors(tmp_path):
    data_path, label_path = write_inputs(tmp_path)
    val_data, val_labels = write_inputs(tmp_path, name="val")
    out = tmp_path / "out"
    common = [f"--out={out}", "--num_classes=60", "--compression=ZLIB"]
    result = run_cli(
        f"--data={data_path}",
        f"--labels={label_path}",
        "--split=train",
        f"--data={val_data}",
        f"--labels={val_labels}",
        "--split=val",
        *common,
    )
    assert result.returncode == 0, result.stderr
    assert "train: 3 samples in 1 shards, 0 skipped" in result.stdout
    manifest = schema.load_manifest(str(out))
    assert sorted(manifest["splits"]) == ["train", "val"]
    assert manifest["compression"] == "ZLIB"
    result = run_cli(
        f"--data={data_path}", f"--data={val_data}", "--split=train",
        f"--labels={label_path}", *common,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --data (2), --labels (1) and --split (1) must be given the "
        "same number of times."
    )
