"""Tests for data_prep.ntu: .skeleton parsing, splits and the converter."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from data_prep import ntu
from kskel.data import schema
from kskel.errors import KskelError

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
THREE_FRAMES = FIXTURES / "three_frames.skeleton"
REPO = pathlib.Path(__file__).resolve().parents[2]


def _expected_body(frame, body):
    """xyz the fixture writes for 1-based `frame`, file-order `body`."""
    j = np.arange(1, 26)
    return np.stack(
        [frame + j / 100, -(body + 1) - j / 100, 3 + body / 10 + j / 1000], -1
    )


def test_fixture_parses_to_the_exact_numbers():
    out = ntu.read_skeleton(str(THREE_FRAMES))
    assert out.shape == (2, 3, 25, 3)
    assert out.dtype == np.float32
    expected = np.zeros((2, 3, 25, 3))
    expected[0, 0] = _expected_body(1, 0)  # frame 1: one body
    # frame 2: no body, stays zero
    expected[0, 2] = _expected_body(3, 0)  # frame 3: three bodies,
    expected[1, 2] = _expected_body(3, 1)  # the third is dropped
    np.testing.assert_array_equal(out, expected.astype(np.float32))
    assert out[0, 0, 4].tolist() == pytest.approx([1.05, -1.05, 3.005])


def test_frames_past_the_limit_are_dropped():
    out = ntu.read_skeleton(str(THREE_FRAMES), max_frames=2)
    assert out.shape == (2, 2, 25, 3)
    assert np.all(out[:, 1] == 0.0)


def _lines():
    return THREE_FRAMES.read_text().splitlines()


def _write(tmp_path, lines, name="S001C001P001R001A001.skeleton"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _garbled(lines):
    assert lines[39].startswith("3.07 -1.07 3.007 ")  # line 40
    lines[39] = lines[39].replace("3.007", "3.0o7")
    return lines


def _nan(lines):
    lines[9] = "nan" + lines[9][4:]  # line 10, x of joint 6
    return lines


def _joints24(lines):
    lines[32] = "24"  # line 33: joint count of frame 3, body 0
    return lines


def _inf_z(lines):
    fields = lines[70].split()  # line 71
    fields[2] = "-inf"
    lines[70] = " ".join(fields)
    return lines


def _short_line(lines):
    lines[99] = " ".join(lines[99].split()[:11])  # line 100
    return lines


def _bad_body_count(lines):
    lines[1] = "one"
    return lines


def _extra_content(lines):
    return lines + ["1"]


@pytest.mark.parametrize(
    "mutate, line, words",
    [
        (lambda lines: lines[:70], 71, "ends early"),
        (lambda lines: lines[:4], 5, "ends early"),
        (_garbled, 40, "not a number"),
        (_nan, 10, "NaN or infinite"),
        (_inf_z, 71, "NaN or infinite"),
        (_joints24, 33, "expected 25 joints, found 24"),
        (_short_line, 100, "expected 12 numbers per joint, found 11"),
        (_bad_body_count, 2, "body count of frame 1"),
        (_extra_content, 113, "unexpected content"),
        (lambda lines: ["0"], 1, "0 frames"),
        (lambda lines: [], 1, "empty file"),
        (lambda lines: ["  ", ""], 1, "empty file"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, mutate, line, words):
    path = _write(tmp_path, mutate(_lines()))
    with pytest.raises(KskelError) as info:
        ntu.read_skeleton(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line {line}: ")
    assert words in message


def test_binary_file_is_an_error(tmp_path):
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_bytes(b"3\n\xff\xfe\n")
    with pytest.raises(KskelError, match="not a text"):
        ntu.read_skeleton(str(path))


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(KskelError, match="cannot read"):
        ntu.read_skeleton(str(tmp_path / "nope.skeleton"))


def test_parse_sample_name_and_label():
    ids = ntu.parse_sample_name("S012C003P041R002A113.skeleton")
    assert ids == ntu.SampleIds(
        setup=12, camera=3, subject=41, replication=2, action=113
    )
    with pytest.raises(KskelError, match="SsssCcccPpppRrrrAaaa"):
        ntu.parse_sample_name("S01C003P041R002A113")


@pytest.mark.parametrize(
    "name, dataset, benchmark, train",
    [
        ("S001C001P001R001A001", "ntu60", "xsub", True),
        ("S001C001P003R001A001", "ntu60", "xsub", False),
        ("S001C001P038R001A001", "ntu60", "xsub", True),
        ("S001C001P045R001A001", "ntu60", "xsub", False),
        ("S001C001P045R001A001", "ntu120", "xsub", True),
        ("S001C001P044R001A001", "ntu120", "xsub", False),
        ("S001C001P103R001A001", "ntu120", "xsub", True),
        ("S001C001P106R001A001", "ntu120", "xsub", False),
        ("S001C001P001R001A001", "ntu60", "xview", False),
        ("S001C002P003R001A001", "ntu60", "xview", True),
        ("S001C003P003R001A001", "ntu60", "xview", True),
        ("S002C001P001R001A001", "ntu120", "xset", True),
        ("S001C002P001R001A001", "ntu120", "xset", False),
        ("S032C001P001R001A001", "ntu120", "xset", True),
        ("S031C001P001R001A001", "ntu120", "xset", False),
    ],
)
def test_split_rules(name, dataset, benchmark, train):
    ids = ntu.parse_sample_name(name)
    assert ntu.is_training(ids, dataset, benchmark) is train


def test_ntu120_xsub_subjects_are_the_53_of_the_protocol():
    assert len(ntu.NTU120_TRAIN_SUBJECTS) == 53
    assert ntu.NTU60_TRAIN_SUBJECTS < ntu.NTU120_TRAIN_SUBJECTS


@pytest.mark.parametrize(
    "dataset, benchmark, flag",
    [
        ("ntu120", "xview", "--benchmark"),
        ("ntu60", "xset", "--benchmark"),
        ("ntu60", "cross", "--benchmark"),
        ("ntu90", "xsub", "--dataset"),
    ],
)
def test_bad_options_name_the_flag_before_reading(
    tmp_path, dataset, benchmark, flag
):
    with pytest.raises(KskelError, match=flag):
        ntu.convert_ntu(
            str(tmp_path / "does-not-exist"), str(tmp_path / "out"), dataset,
            benchmark,
        )  # fmt: skip


def test_resources():
    names60, names120 = ntu.class_names("ntu60"), ntu.class_names("ntu120")
    assert len(names60) == 60 and len(names120) == 120
    assert names120[:60] == names60
    assert len(set(names120)) == 120
    assert names60[0] == "drink water"
    assert names60[59] == "walking apart from each other"
    assert names120[60] == "put on headphone"
    assert names120[119].startswith("finger-guessing game")
    missing60, missing120 = (
        ntu.missing_samples("ntu60"),
        ntu.missing_samples("ntu120"),
    )
    assert len(missing60) == 302 and len(missing120) == 535
    assert missing60 == {n for n in missing120 if int(n[1:4]) <= 17}


def _raw_dir(tmp_path, names):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in names:
        shutil.copy(THREE_FRAMES, raw / f"{name}.skeleton")
    return raw


def test_list_samples_filters_sorts_and_honours_the_missing_list(tmp_path):
    raw = _raw_dir(
        tmp_path,
        [
            "S002C001P001R001A002",
            "S001C002P005R002A008",  # on both missing lists
            "S001C001P001R001A001",
            "S018C001P001R001A001",  # NTU120 setup
            "S001C001P001R001A061",  # NTU120 action
        ],
    )
    (raw / "README.txt").write_text("not a sample")
    report = ntu.ConversionReport()
    got60 = [n for n, _ in ntu.list_samples(str(raw), "ntu60", report, False)]
    assert got60 == [
        "S001C001P001R001A001.skeleton",
        "S002C001P001R001A002.skeleton",
    ]
    got120 = [n for n, _ in ntu.list_samples(str(raw), "ntu120", report, False)]
    assert got120 == [
        "S001C001P001R001A001.skeleton",
        "S001C001P001R001A061.skeleton",
        "S002C001P001R001A002.skeleton",
        "S018C001P001R001A001.skeleton",
    ]
    assert report.skipped == []


def test_list_samples_bad_name(tmp_path):
    raw = _raw_dir(tmp_path, ["S001C001P001R001A001", "S1C1P1R1A1"])
    with pytest.raises(KskelError, match="S1C1P1R1A1.skeleton"):
        ntu.list_samples(str(raw), "ntu60", ntu.ConversionReport(), False)
    report = ntu.ConversionReport()
    found = ntu.list_samples(str(raw), "ntu60", report, True)
    assert len(found) == 1 and len(report.skipped) == 1


def test_list_samples_empty_dir(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(KskelError, match="--raw_dir"):
        ntu.list_samples(
            str(tmp_path / "raw"), "ntu60", ntu.ConversionReport(), False
        )


def test_make_sample_preprocessed_and_raw():
    raw = ntu.read_skeleton(str(THREE_FRAMES))
    fields = dict(label=0, name="x", subject=1, camera=1, setup=1)
    sample = ntu.make_sample(raw, keep_raw_length=False, path="p", **fields)
    assert sample.skeleton.shape == (2, 50, 25, 3)
    assert sample.num_frames == 50
    assert np.all(sample.skeleton[:, :, 20] == 0.0)
    raw_sample = ntu.make_sample(raw, keep_raw_length=True, path="p", **fields)
    assert raw_sample.skeleton.shape == (2, 300, 25, 3)
    assert raw_sample.num_frames == 3
    np.testing.assert_array_equal(raw_sample.skeleton[:, :3], raw)
    assert np.all(raw_sample.skeleton[:, 3:] == 0.0)


def test_make_sample_rejects_a_sequence_without_body_0():
    raw = np.zeros((2, 4, 25, 3), np.float32)
    with pytest.raises(KskelError, match="body 0 is absent"):
        ntu.make_sample(raw, keep_raw_length=False, path="p", label=0, name="x")


# Names: (split under ntu60 xsub, label). P001/P002 train, P003 test.
_NAMES = {
    "S001C001P001R001A001": ("train", 0),
    "S001C002P002R002A013": ("train", 12),
    "S001C001P003R001A060": ("test", 59),
    "S001C003P003R002A005": ("test", 4),
    "S002C001P001R001A002": ("train", 1),
}


def _read_split(out_dir, manifest, split):
    import tensorflow as tf

    files = [
        os.path.join(out_dir, shard["file"])
        for shard in manifest["splits"][split]["shards"]
    ]
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [schema.parse_example(r, manifest) for r in records]


def test_convert_ntu_end_to_end(tmp_path):
    raw = _raw_dir(tmp_path, list(_NAMES) + ["S001C002P005R002A008"])
    out = tmp_path / "out"
    report = ntu.convert_ntu(str(raw), str(out), "ntu60", "xsub")
    manifest = schema.load_manifest(str(out))
    assert manifest == report.manifest
    assert manifest["splits"]["train"]["num_samples"] == 3
    assert manifest["splits"]["test"]["num_samples"] == 2
    assert manifest["num_frames"] == 50 and manifest["num_bodies"] == 2
    assert manifest["num_classes"] == 60
    assert manifest["preprocessing"]["y_rotation"] is True
    examples = _read_split(str(out), manifest, "test")
    assert [e["name"].numpy().decode() for e in examples] == [
        "S001C001P003R001A060",
        "S001C003P003R002A005",
    ]
    assert [int(e["label"]) for e in examples] == [59, 4]
    assert [int(e["camera"]) for e in examples] == [1, 3]
    assert [int(e["replication"]) for e in examples] == [1, 2]
    expected = ntu.make_sample(
        ntu.read_skeleton(str(THREE_FRAMES)),
        keep_raw_length=False,
        path="",
        label=0,
        name="",
    ).skeleton
    np.testing.assert_array_equal(examples[0]["skeleton"].numpy(), expected)
    assert "wrote train 3, test 2 samples" in report.summary()


def test_convert_ntu_keep_raw_length_and_max_samples(tmp_path):
    raw = _raw_dir(tmp_path, _NAMES)
    out = tmp_path / "out"
    report = ntu.convert_ntu(
        str(raw),
        str(out),
        "ntu60",
        "xview",
        keep_raw_length=True,
        max_samples=1,
    )
    manifest = report.manifest
    # xview: cameras 2, 3 train; the first in name order of each split.
    assert manifest["splits"]["train"]["num_samples"] == 1
    assert manifest["splits"]["test"]["num_samples"] == 1
    assert manifest["num_frames"] == 300
    assert manifest["preprocessing"]["y_rotation"] is False
    (train,) = _read_split(str(out), manifest, "train")
    assert train["name"].numpy().decode() == "S001C002P002R002A013"
    assert int(train["num_frames"]) == 3
    np.testing.assert_array_equal(
        train["skeleton"].numpy()[:, :3], ntu.read_skeleton(str(THREE_FRAMES))
    )


def test_bad_file_stops_or_is_skipped(tmp_path):
    raw = _raw_dir(tmp_path, _NAMES)
    bad = raw / "S001C001P003R001A060.skeleton"
    bad.write_text("\n".join(_joints24(_lines())) + "\n")
    out = tmp_path / "out"
    with pytest.raises(KskelError, match="line 33: expected 25 joints"):
        ntu.convert_ntu(str(raw), str(out), "ntu60", "xsub")
    assert not (out / "manifest.json").exists()
    report = ntu.convert_ntu(str(raw), str(out), "ntu60", "xsub", skip_bad=True)
    assert report.manifest["splits"]["test"]["num_samples"] == 1
    assert [where for where, _ in report.skipped] == [str(bad)]
    assert "skipped 1 bad input(s)" in report.summary()


def test_killed_conversion_leaves_no_manifest_and_reruns(tmp_path, monkeypatch):
    raw = _raw_dir(tmp_path, _NAMES)
    out = tmp_path / "out"
    ntu.convert_ntu(str(raw), str(out), "ntu60", "xsub")
    real_read = ntu.read_skeleton
    calls = []

    def dying_read(path, **kwargs):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt  # a kill in the middle of "test"
        return real_read(path, **kwargs)

    monkeypatch.setattr(ntu, "read_skeleton", dying_read)
    with pytest.raises(KeyboardInterrupt):
        ntu.convert_ntu(str(raw), str(out), "ntu60", "xsub")
    assert not (out / "manifest.json").exists()
    monkeypatch.setattr(ntu, "read_skeleton", real_read)
    report = ntu.convert_ntu(str(raw), str(out), "ntu60", "xsub")
    assert report.manifest["splits"]["train"]["num_samples"] == 3
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {
        s["file"] for e in manifest["splits"].values() for s in e["shards"]
    }
    assert {p.name for p in out.iterdir()} == listed | {"manifest.json"}


def _run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "data_prep.ntu", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.large
def test_cli_end_to_end(tmp_path):
    raw = _raw_dir(tmp_path, _NAMES)
    out = tmp_path / "out"
    result = _run_cli(
        f"--raw_dir={raw}", f"--out={out}", "--dataset=ntu60",
        "--benchmark=xview",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote train 2, test 3 samples" in result.stdout
    manifest = schema.load_manifest(str(out))
    assert manifest["splits"]["train"]["num_samples"] == 2
    assert manifest["splits"]["test"]["num_samples"] == 3


@pytest.mark.large
def test_cli_error_is_one_line(tmp_path):
    result = _run_cli(
        f"--raw_dir={tmp_path}", f"--out={tmp_path / 'out'}",
        "--dataset=ntu120", "--benchmark=xview",
    )  # fmt: skip
    assert result.returncode == 1
    # TensorFlow may log to stderr on import; the error is one line, last.
    errors = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith("error: --benchmark='xview' is not defined")
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    assert not (tmp_path / "out").exists()
